//! Statistics over samples: medians, spreads. Two medians on purpose: `median` of measured
//! floats (timings, ratios) and `median_spread` of signed byte counts, which stays integral.

pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}
/// Median and (min, max) of signed samples.
pub fn median_spread(samples: &[i64]) -> (i64, i64, i64) {
    if samples.is_empty() {
        return (0, 0, 0);
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2
    } else {
        v[mid]
    };
    (median, v[0], v[v.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread_of_odd_and_even_samples() {
        assert_eq!(median_spread(&[5, -1, 3]), (3, -1, 5));
        assert_eq!(median_spread(&[4, 2, 10, 8]), (6, 2, 10));
        assert_eq!(median_spread(&[]), (0, 0, 0));
    }
}
