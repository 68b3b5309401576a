//! How a payload is shown: JSON pretty-printed, other UTF-8 text as it is,
//! binary as a hex dump; cut past a limit, saying the full size.

/// Most bytes of a payload the payload view shows.
pub(crate) const VIEW_LIMIT: usize = 64 * 1024;
/// Most characters of a payload a list shows.
pub(crate) const PREVIEW_CHARS: usize = 120;

/// What the page shows of a payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Shown {
    /// "json", "text" or "binary".
    pub(crate) kind: &'static str,
    pub(crate) text: String,
    /// The payload's full size in bytes.
    pub(crate) size: usize,
    /// Whether `text` shows only the first `VIEW_LIMIT` bytes.
    pub(crate) truncated: bool,
}

pub(crate) fn show(payload: &[u8]) -> Shown {
    let size = payload.len();
    if size <= VIEW_LIMIT
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload)
        && (v.is_object() || v.is_array())
    {
        return Shown {
            kind: "json",
            text: serde_json::to_string_pretty(&v).unwrap_or_default(),
            size,
            truncated: false,
        };
    }
    let truncated = size > VIEW_LIMIT;
    let head = &payload[..size.min(VIEW_LIMIT)];
    match std::str::from_utf8(head) {
        Ok(text) => Shown {
            kind: "text",
            text: text.to_owned(),
            size,
            truncated,
        },
        // Cut in the middle of a character: still text up to there.
        Err(e) if truncated && e.error_len().is_none() && e.valid_up_to() > 0 => Shown {
            kind: "text",
            text: String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned(),
            size,
            truncated,
        },
        Err(_) => {
            let head = &payload[..size.min(VIEW_LIMIT / 4)];
            Shown {
                kind: "binary",
                text: hex_dump(head),
                size,
                truncated: head.len() < size,
            }
        }
    }
}

/// Offset, 16 bytes in hex, and their printable ASCII, per line.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 + 16);
    for (i, chunk) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x}  ", i * 16));
        for j in 0..16 {
            match chunk.get(j) {
                Some(b) => out.push_str(&format!("{b:02x} ")),
                None => out.push_str("   "),
            }
        }
        out.push(' ');
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    out
}

/// A one-line preview for lists: text cut to `PREVIEW_CHARS` characters,
/// binary as the first bytes in hex.
pub(crate) fn preview(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) => {
            let one_line: String = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(PREVIEW_CHARS)
                .collect();
            if text.chars().count() > PREVIEW_CHARS {
                format!("{one_line}…")
            } else {
                one_line
            }
        }
        Err(_) => {
            let hex: String = payload
                .iter()
                .take(24)
                .map(|b| format!("{b:02x}"))
                .collect();
            format!(
                "0x{hex}{} (binary)",
                if payload.len() > 24 { "…" } else { "" }
            )
        }
    }
}

/// A size for people: bytes, KiB or MiB.
pub(crate) fn human_size(n: usize) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_printed() {
        let s = show(br#"{"step":"send","n":[1,2]}"#);
        assert_eq!(s.kind, "json");
        assert!(s.text.contains("\n  \"step\": \"send\""), "{}", s.text);
        assert!(!s.truncated);
    }

    #[test]
    fn binary_is_hex() {
        let s = show(&[0xff, 0x00, b'A']);
        assert_eq!(s.kind, "binary");
        assert!(s.text.starts_with("00000000  ff 00 41 "), "{}", s.text);
        assert!(s.text.trim_end().ends_with("..A"), "{}", s.text);
    }

    #[test]
    fn large_payloads_are_cut_with_their_size() {
        let big = vec![b'x'; VIEW_LIMIT * 2];
        let s = show(&big);
        assert_eq!(s.kind, "text");
        assert!(s.truncated);
        assert_eq!(s.size, VIEW_LIMIT * 2);
        assert_eq!(s.text.len(), VIEW_LIMIT);
        let bin = vec![0xffu8; VIEW_LIMIT * 2];
        let s = show(&bin);
        assert_eq!(s.kind, "binary");
        assert!(s.truncated);
    }

    #[test]
    fn previews() {
        assert_eq!(preview(b"a\nb"), "a b");
        assert!(preview(&[b'y'; 500]).ends_with('…'));
        assert_eq!(preview(&[0xff, 0xfe]), "0xfffe (binary)");
        assert_eq!(human_size(2048), "2.0 KiB");
    }
}
