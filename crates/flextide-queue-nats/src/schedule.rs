//! Delayed pushes through JetStream message schedules (nats-server 2.12+).
//!
//! A delayed message is published to a subject of its own
//! (`ftsched.<queue>.<token>`) with `Nats-Schedule: @at <time>` and
//! `Nats-Schedule-Target: ftq.<queue>`; at that time the server publishes
//! it onto the queue's subject. Older servers do not know the headers: they
//! store the message as an ordinary one on the schedule subject, where no
//! consumer reads it — it would never be delivered. So the server version
//! is read at open, and a delayed push is refused before 2.12.

use std::time::{Duration, SystemTime};

/// The first server version with message schedules.
pub(crate) const MIN_VERSION: (u64, u64) = (2, 12);

/// Whether a server of `version` (`2.12.1`, `2.14.0-beta.2`) has message schedules.
pub(crate) fn supported(version: &str) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= MIN_VERSION
}

/// `@at <RFC 3339 UTC time>` of `delay` from now, rounded up to the second
/// (a schedule fires no earlier than asked).
pub(crate) fn at(delay: Duration) -> String {
    let due = SystemTime::now() + delay;
    let since = due
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() + u64::from(since.subsec_nanos() > 0);
    format!("@at {}", rfc3339(secs))
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian, UTC).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(!supported("2.9.10"));
        assert!(!supported("2.11.4"));
        assert!(supported("2.12.0"));
        assert!(supported("2.14.0-beta.2"));
        assert!(supported("3.0.0"));
        assert!(!supported("garbage"));
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
        assert!(at(Duration::from_secs(5)).starts_with("@at 20"));
    }
}
