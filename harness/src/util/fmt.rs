//! Number and date formatting: values in, the text the reports print out.

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_date(secs);
    format!("{year:04}-{month:02}-{day:02}")
}

/// (year, month, day) in UTC of `secs` since the epoch: the days-since-epoch civil calendar
/// algorithm.
pub fn civil_date(secs: u64) -> (i64, i64, i64) {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `n` with a comma between thousands: 1,048,576.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (from one clock reading, so date and
/// time agree at midnight).
pub fn utc_timestamp(secs: u64) -> String {
    let (year, month, day) = crate::util::fmt::civil_date(secs);
    let t = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}
/// Bytes as a short human string (KiB/MiB, signed).
pub fn human(bytes: i64) -> String {
    let b = bytes as f64;
    if bytes.unsigned_abs() >= 1 << 20 {
        format!("{:.1} MiB", b / 1048576.0)
    } else if bytes.unsigned_abs() >= 1 << 10 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped() {
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(100_001), "100,001");
    }

    #[test]
    fn timestamps_are_utc_civil_time() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        // `date -u -d @1795635071`: Wed Nov 25 19:31:11 UTC 2026.
        assert_eq!(utc_timestamp(1_795_635_071), "2026-11-25T19:31:11Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    }
}
