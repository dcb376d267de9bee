//! HdrHistogram text (.hgrm, as measure.rs writes it) in, percentile points out; and the
//! percentile axis of HdrHistogram plots: x = 1/(1-q) on a log scale, labelled 90%, 99%, ...

/// One row of an .hgrm: latency up to `value_ms` covers quantile `q` of the samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HgrmPoint {
    pub value_ms: f64,
    pub q: f64,
}

/// A line of an .hgrm that is not a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: expected `value percentile count 1/(1-percentile)`, found `{found}`")]
pub struct HgrmError {
    pub line: usize,
    pub found: String,
}

/// The rows of an .hgrm file. Header, blank and `#[...]` lines are skipped; any other line
/// that is not four numbers is an error naming its line number.
pub fn parse(text: &str) -> Result<Vec<HgrmPoint>, HgrmError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() || line.starts_with('#') || cols[0] == "Value" {
            continue;
        }
        let bad = || HgrmError {
            line: i + 1,
            found: line.trim().to_string(),
        };
        if cols.len() != 4 {
            return Err(bad());
        }
        let value_ms: f64 = cols[0].parse().map_err(|_| bad())?;
        let q: f64 = cols[1].parse().map_err(|_| bad())?;
        if !(0.0..=1.0).contains(&q) {
            return Err(bad());
        }
        out.push(HgrmPoint { value_ms, q });
    }
    Ok(out)
}

/// Where quantile `q` sits on the percentile axis: 1/(1-q), so 90% -> 10, 99% -> 100.
/// None for q = 1 (the maximum lies at infinity on this axis).
pub fn axis_x(q: f64) -> Option<f64> {
    (q < 1.0).then(|| 1.0 / (1.0 - q))
}

/// The label of axis position `x`: the percentile with as many decimals as its nines need
/// (10 -> "90%", 1000 -> "99.9%", 1 -> "0%").
pub fn percentile_label(x: f64) -> String {
    let x = x.max(1.0);
    let pct = 100.0 * (1.0 - 1.0 / x);
    let decimals = (x.log10() - 1e-9).ceil() as i64 - 2;
    format!("{pct:.*}%", decimals.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_and_skips_header_and_footer() {
        let text = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
                    \x20      0.031 0.887500000000          2           8.89\n\
                    \x20    167.500 0.990000000000          3         100.00\n\
                    \x20    170.000 1.000000000000          1            inf\n\
                    #[Mean    =       12.000, StdDeviation   =        3.000]\n\
                    #[Max     =      170.000, Total count    =          200]\n";
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(
            p[1],
            HgrmPoint {
                value_ms: 167.5,
                q: 0.99
            }
        );
        assert_eq!(p[2].q, 1.0);
    }

    #[test]
    fn a_broken_row_names_its_line() {
        let err = parse("Value Percentile\n\n1.0 0.5 3\n").unwrap_err();
        assert!(err.to_string().starts_with("line 3:"), "{err}");
        assert!(
            parse("1.0 1.5 3 2.0\n").is_err(),
            "a quantile above 1 is refused"
        );
    }

    #[test]
    fn percentile_axis_maps_nines_to_decades() {
        assert_eq!(axis_x(0.0), Some(1.0));
        assert!((axis_x(0.9).unwrap() - 10.0).abs() < 1e-9);
        assert!((axis_x(0.999).unwrap() - 1000.0).abs() < 1e-6);
        assert_eq!(axis_x(1.0), None);
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(2.0), "50%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
    }
}
