//! Pure arithmetic of the report: latency summaries, rates, ratios and the
//! formatting of figures. Everything here is unit-tested.

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Latency {
    pub(crate) samples: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
}

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Summarises a histogram; `None` when it holds no sample.
pub(crate) fn summarize(h: &Histogram<u64>) -> Option<Latency> {
    if h.is_empty() {
        return None;
    }
    Some(Latency {
        samples: h.len(),
        p50_us: h.value_at_quantile(0.50),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    })
}

/// Messages per second; zero when no time passed.
pub(crate) fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// library ÷ raw, when both are measured and the raw figure is not zero.
pub(crate) fn ratio(library: Option<f64>, raw: Option<f64>) -> Option<f64> {
    match (library, raw) {
        (Some(l), Some(r)) if r > 0.0 && l.is_finite() && r.is_finite() => Some(l / r),
        _ => None,
    }
}

/// A rate for a table: `12,345/s`, `1.2M/s`.
pub(crate) fn fmt_rate(r: f64) -> String {
    if r >= 10_000_000.0 {
        format!("{:.1}M/s", r / 1_000_000.0)
    } else {
        format!("{}/s", group(r.round() as u64))
    }
}

/// A count with thousands separators.
pub(crate) fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds for a table: `850 µs`, `1.25 ms`, `3.4 s`.
pub(crate) fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

/// `p50 / p99 / p99.9`.
pub(crate) fn fmt_latency(l: &Latency) -> String {
    format!(
        "{} / {} / {}",
        fmt_us(l.p50_us),
        fmt_us(l.p99_us),
        fmt_us(l.p999_us)
    )
}

/// A ratio for a table: `0.93`.
pub(crate) fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}"))
}

/// Bytes as `100 B`, `1 KiB`, `256 KiB`.
pub(crate) fn fmt_bytes(n: usize) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm), so the
/// report needs no date crate.
pub(crate) fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn utc_timestamp(secs: u64) -> String {
    let (y, m, d) = civil_date((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let l = summarize(&h).unwrap();
        assert_eq!(l.samples, 1000);
        assert_eq!(l.p50_us, 500);
        assert_eq!(l.p99_us, 990);
        assert_eq!(l.p999_us, 999);
        assert_eq!(l.max_us, 1000);
        assert!(summarize(&new_histogram()).is_none());
    }

    #[test]
    fn ratios_and_rates() {
        assert_eq!(ratio(Some(90.0), Some(100.0)), Some(0.9));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(rate(500, 0.5), 1000.0);
        assert_eq!(rate(5, 0.0), 0.0);
    }

    #[test]
    fn formatting() {
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(12), "12");
        assert_eq!(fmt_rate(12_345.4), "12,345/s");
        assert_eq!(fmt_rate(25_000_000.0), "25.0M/s");
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(1_250), "1.25 ms");
        assert_eq!(fmt_us(3_400_000), "3.40 s");
        assert_eq!(fmt_ratio(Some(0.934)), "0.93");
        assert_eq!(fmt_ratio(None), "–");
        assert_eq!(fmt_bytes(100), "100 B");
        assert_eq!(fmt_bytes(16 * 1024), "16 KiB");
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(civil_date(19_782), (2024, 2, 29));
    }
}
