//! The agents' evidence: append-only files of one id per line, written
//! durably (write, then fsync, before the caller goes on), and read back
//! by the checker.
//!
//! Appends are group-committed: one thread writes whatever lines are
//! waiting, fsyncs once, then answers every waiting caller, so a handler's
//! line is on disk before its message is acknowledged, without one fsync
//! per message.

use std::{
    fs::File,
    io::Write,
    path::Path,
    sync::mpsc::{Receiver, Sender, channel},
};

use tokio::sync::oneshot;

type Request = (String, oneshot::Sender<Result<(), String>>);

/// An append-only, fsynced log file shared by the tasks of one agent.
#[derive(Debug, Clone)]
pub(crate) struct DurableLog {
    tx: Sender<Request>,
}

impl DurableLog {
    /// Creates (or appends to) `path`.
    pub(crate) fn open(path: &Path) -> Result<DurableLog, String> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("could not open {}: {e}", path.display()))?;
        let (tx, rx) = channel();
        std::thread::spawn(move || writer(file, rx));
        Ok(DurableLog { tx })
    }

    /// Appends `lines` (each ending in a newline) and returns once they
    /// are fsynced.
    pub(crate) async fn append(&self, lines: String) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((lines, done))
            .map_err(|_| "the log writer stopped".to_owned())?;
        wait.await
            .map_err(|_| "the log writer stopped".to_owned())?
    }
}

fn writer(mut file: File, rx: Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let text: String = batch.iter().map(|(l, _)| l.as_str()).collect();
        let result = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("could not write the log: {e}"));
        for (_, done) in batch {
            let _ = done.send(result.clone());
        }
    }
}

/// The complete lines of every file in `dir` whose name starts with
/// `prefix`. A last line without its newline was cut by a SIGKILL in the
/// middle of a write, before its fsync returned, so nothing was
/// acknowledged on it: it is left out.
pub(crate) fn read_lines(dir: &Path, prefix: &str) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .map_err(|e| format!("read {}: {e}", entry.path().display()))?;
        lines.extend(complete_lines(&text).map(str::to_owned));
    }
    Ok(lines)
}

fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    text[..end].lines()
}

/// The ids among `lines`; fails on a line that is not one (producers'
/// logs hold nothing else).
pub(crate) fn ids(lines: &[String]) -> Result<Vec<u64>, String> {
    lines
        .iter()
        .map(|l| {
            l.parse()
                .map_err(|_| format!("a producer log holds {l:?}, not an id"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_last_line_is_left_out() {
        assert_eq!(complete_lines("1\n2\n3").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(complete_lines("1\n").collect::<Vec<_>>(), ["1"]);
        assert_eq!(complete_lines("12").count(), 0);
    }

    #[tokio::test]
    async fn appended_lines_are_read_back() {
        let dir = std::env::temp_dir().join(format!("flextide-chaos-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = DurableLog::open(&dir.join("handled-1")).unwrap();
        let (a, b) = (log.clone(), log.clone());
        let (ra, rb) = tokio::join!(a.append("1\n".into()), b.append("2\n3\n".into()));
        ra.unwrap();
        rb.unwrap();
        std::fs::write(dir.join("other"), "9\n").unwrap();
        let mut lines = read_lines(&dir, "handled-").unwrap();
        lines.sort();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(lines, ["1", "2", "3"]);
    }
}
