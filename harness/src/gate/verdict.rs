//! The verdict on one metric: the baseline's and the candidate's repeat values and a rule in,
//! medians, the ratio B/A, the noise across repeats and better / same / worse out. Pure: no
//! clock, no I/O, so synthetic repeat sets test it.

use serde::Serialize;

use crate::util::stats::median;

/// How a metric is judged (all metrics are lower-is-better).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "rule")]
pub enum Rule {
    /// Lost or stale files, failed runs: any candidate value above zero fails at once.
    Zero,
    /// Counts fixed by the storm itself: worse when B/A exceeds 1 + `tolerance`, whatever
    /// the noise (they hardly vary; measured spread ~1% over 5 repeats here).
    Fixed { tolerance: f64 },
    /// Timing-dependent metrics: worse only when the change exceeds `min_change` (relative),
    /// stands out of the noise across the repeats, and exceeds `abs_floor` (the metric's
    /// unit), so a shared, loaded machine does not cry wolf. With 6 or more repeats a side
    /// (`RANK_TEST_MIN`), "out of the noise" is a one-sided Mann-Whitney rank test at
    /// p <= 0.002 (`RANK_TEST_ALPHA`; one outlier cannot hide a shift, as it could behind
    /// max - min; so strict because some 20 metrics are judged per gate run); with fewer,
    /// the change must exceed the relative range.
    Noisy { min_change: f64, abs_floor: f64 },
    /// Recorded and shown (the syncer's self-reports), never gating.
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Better,
    Same,
    Worse,
    /// A `Zero` metric that is not zero in the candidate.
    Fail,
    /// Not judged (an `Info` metric, or no values on one side).
    Info,
}

impl Verdict {
    pub fn gates(self) -> bool {
        matches!(self, Verdict::Worse | Verdict::Fail)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    pub a_median: Option<f64>,
    pub b_median: Option<f64>,
    /// B/A of the medians; None when A's median is 0 and B's is not (or a side is empty).
    pub ratio: Option<f64>,
    /// The larger relative range (max - min) / median of the two sides' repeats.
    pub noise: f64,
    /// One-sided Mann-Whitney p-value of the observed direction (B above A when B's median
    /// is higher); None with fewer than `RANK_TEST_MIN` (6) repeats a side.
    pub p_value: Option<f64>,
    pub verdict: Verdict,
}

/// Relative range of one side's repeats: 0 for fewer than two values or a zero median.
pub fn relative_range(xs: &[f64]) -> f64 {
    let (Some(m), Some(lo), Some(hi)) = (
        median(xs),
        xs.iter().copied().reduce(f64::min),
        xs.iter().copied().reduce(f64::max),
    ) else {
        return 0.0;
    };
    if xs.len() < 2 || m <= 0.0 {
        0.0
    } else {
        (hi - lo) / m
    }
}

/// Repeats a side from which the rank test decides (with 5, its smallest p is 1/252, above
/// the level below).
const RANK_TEST_MIN: usize = 6;
/// Its significance level: with 6 a side, every candidate run beyond every baseline run
/// (p = 1/924). Some 20 metrics are judged per gate run and most of them are timings: at
/// 0.01 two runs of one binary were flagged (convergence, p = 0.008) in a fresh-clone CI.
const RANK_TEST_ALPHA: f64 = 0.002;

/// Ways to interleave `n` values of one sample with `m` of the other such that exactly `u`
/// (one-sample, other-sample) pairs have the other above: the exact null distribution of
/// the Mann-Whitney U statistic, as counts indexed by u.
fn u_distribution(n: usize, m: usize) -> Vec<f64> {
    // ways[j][u] for the first sample's n values and j of the other's, built row by row.
    let mut ways = vec![vec![1.0]; m + 1];
    for i in 1..=n {
        let mut next: Vec<Vec<f64>> = vec![Vec::new(); m + 1];
        for j in 0..=m {
            let mut row = vec![0.0; i * j + 1];
            // Largest value from the first sample: it is above all j others, adds no pairs.
            for (u, w) in ways[j].iter().enumerate() {
                row[u] += w;
            }
            // Largest from the other sample: above all i first-sample values, adds i pairs.
            if j > 0 {
                for (u, w) in next[j - 1].iter().enumerate() {
                    row[u + i] += w;
                }
            }
            next[j] = row;
        }
        ways = next;
    }
    ways.swap_remove(m)
}

/// One-sided exact p-value that `above` tends to lie above `below` (ties count half).
pub fn rank_test_p(below: &[f64], above: &[f64]) -> f64 {
    let mut u = 0.0_f64;
    for x in below {
        for y in above {
            u += if y > x {
                1.0
            } else if y == x {
                0.5
            } else {
                0.0
            };
        }
    }
    let dist = u_distribution(below.len(), above.len());
    let total: f64 = dist.iter().sum();
    // Ties make u a half-integer: round down, the conservative side.
    let from = u.floor() as usize;
    dist.iter().skip(from).sum::<f64>() / total
}

pub fn judge(a: &[f64], b: &[f64], rule: Rule) -> Judged {
    let (a_median, b_median) = (median(a), median(b));
    let noise = relative_range(a).max(relative_range(b));
    let p_value = (a.len() >= RANK_TEST_MIN && b.len() >= RANK_TEST_MIN).then(|| {
        if b_median >= a_median {
            rank_test_p(a, b)
        } else {
            rank_test_p(b, a)
        }
    });
    let ratio = match (a_median, b_median) {
        (Some(x), Some(y)) if x > 0.0 => Some(y / x),
        (Some(_), Some(0.0)) => Some(1.0),
        _ => None,
    };
    let verdict = match (rule, a_median, b_median) {
        (Rule::Zero, _, Some(_)) => {
            if b.iter().any(|&x| x > 0.0) {
                Verdict::Fail
            } else {
                Verdict::Same
            }
        }
        (Rule::Info, _, _) | (_, None, _) | (_, _, None) => Verdict::Info,
        (Rule::Fixed { tolerance }, Some(x), Some(y)) => {
            if y > x * (1.0 + tolerance) {
                Verdict::Worse
            } else if y < x * (1.0 - tolerance) {
                Verdict::Better
            } else {
                Verdict::Same
            }
        }
        (
            Rule::Noisy {
                min_change,
                abs_floor,
            },
            Some(x),
            Some(y),
        ) => {
            // Relative change either way, measured against the smaller side, so a halving
            // and a doubling are the same size of change.
            let change = (y - x).abs() / x.min(y).max(f64::MIN_POSITIVE);
            let out_of_noise = p_value.map_or(change > noise, |p| p <= RANK_TEST_ALPHA);
            if change > min_change && out_of_noise && (y - x).abs() > abs_floor {
                if y > x {
                    Verdict::Worse
                } else {
                    Verdict::Better
                }
            } else {
                Verdict::Same
            }
        }
    };
    Judged {
        a_median,
        b_median,
        ratio,
        noise,
        p_value,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOISY: Rule = Rule::Noisy {
        min_change: 0.25,
        abs_floor: 0.0,
    };
    const FIXED: Rule = Rule::Fixed { tolerance: 0.05 };

    #[test]
    fn noise_larger_than_the_difference_is_same() {
        // A 40% higher median, but each side's own repeats spread over more than 100%.
        let a = [100.0, 250.0, 60.0, 120.0, 90.0];
        let b = [140.0, 70.0, 300.0, 160.0, 130.0];
        let j = judge(&a, &b, NOISY);
        assert!(j.ratio.unwrap() > 1.25, "{j:?}");
        assert!(j.noise > j.ratio.unwrap() - 1.0, "{j:?}");
        assert_eq!(j.verdict, Verdict::Same, "{j:?}");
    }

    #[test]
    fn consistent_30_percent_slowdown_is_worse() {
        let a = [100.0, 104.0, 97.0, 101.0, 99.0];
        let b: Vec<f64> = a.iter().map(|x| x * 1.3).collect();
        let j = judge(&a, &b, NOISY);
        assert_eq!(j.verdict, Verdict::Worse, "{j:?}");
        assert!((j.ratio.unwrap() - 1.3).abs() < 1e-9);
    }

    #[test]
    fn consistent_30_percent_speedup_is_better() {
        let a = [130.0, 131.0, 129.0];
        let b = [100.0, 101.0, 99.0];
        assert_eq!(judge(&a, &b, NOISY).verdict, Verdict::Better);
    }

    #[test]
    fn a_20_percent_change_is_below_the_noisy_threshold() {
        let a = [100.0, 100.0, 100.0];
        let b = [120.0, 120.0, 120.0];
        assert_eq!(judge(&a, &b, NOISY).verdict, Verdict::Same);
    }

    #[test]
    fn the_absolute_floor_ignores_tiny_values() {
        let rule = Rule::Noisy {
            min_change: 0.25,
            abs_floor: 20.0,
        };
        // 2 ms to 6 ms p99 is 3x, but under a 20 ms floor.
        assert_eq!(
            judge(&[2.0, 2.0, 2.0], &[6.0, 6.0, 6.0], rule).verdict,
            Verdict::Same
        );
        assert_eq!(
            judge(&[2.0, 2.0, 2.0], &[60.0, 60.0, 60.0], rule).verdict,
            Verdict::Worse
        );
    }

    #[test]
    fn fixed_counts_use_a_tight_threshold_whatever_the_noise() {
        let a = [1000.0, 1002.0, 1001.0];
        assert_eq!(
            judge(&a, &[1040.0, 1041.0, 1039.0], FIXED).verdict,
            Verdict::Same
        );
        assert_eq!(
            judge(&a, &[1070.0, 1071.0, 1069.0], FIXED).verdict,
            Verdict::Worse
        );
        assert_eq!(
            judge(&a, &[900.0, 901.0, 899.0], FIXED).verdict,
            Verdict::Better
        );
    }

    #[test]
    fn any_lost_file_fails_at_once() {
        let j = judge(&[0.0, 0.0, 0.0], &[0.0, 1.0, 0.0], Rule::Zero);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.verdict.gates());
        assert_eq!(
            judge(&[3.0], &[0.0, 0.0], Rule::Zero).verdict,
            Verdict::Same
        );
    }

    #[test]
    fn from_zero_to_something_has_no_ratio_but_is_judged() {
        let j = judge(&[0.0, 0.0], &[5.0, 5.0], FIXED);
        assert_eq!(j.ratio, None);
        assert_eq!(j.verdict, Verdict::Worse);
        assert_eq!(judge(&[0.0], &[0.0], FIXED).ratio, Some(1.0));
    }

    #[test]
    fn info_metrics_and_empty_sides_never_gate() {
        assert_eq!(judge(&[1.0], &[100.0], Rule::Info).verdict, Verdict::Info);
        assert_eq!(judge(&[], &[100.0], NOISY).verdict, Verdict::Info);
    }

    #[test]
    fn one_outlier_does_not_hide_a_consistent_shift() {
        // One candidate repeat hit a load spike (600): max - min says 270% noise, but every
        // candidate repeat lies above every baseline one.
        let a = [100.0, 98.0, 103.0, 102.0, 101.0, 99.0];
        let b = [160.0, 158.0, 162.0, 165.0, 600.0, 161.0];
        let j = judge(&a, &b, NOISY);
        assert!(j.noise > 2.0, "{j:?}");
        assert!(j.p_value.unwrap() <= RANK_TEST_ALPHA, "{j:?}");
        assert_eq!(j.verdict, Verdict::Worse, "{j:?}");
    }

    #[test]
    fn rank_test_matches_the_exact_tables() {
        // n = m = 3: all three above is 1 of C(6,3) = 20 orders.
        assert!((rank_test_p(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]) - 0.05).abs() < 1e-12);
        // n = m = 5: U' <= 4 has 12 of 252 orders (p = 0.0476), U' <= 5 has 19 (0.0754).
        let below = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert!((rank_test_p(&below, &[5.0, 6.0, 7.0, 8.0, 11.0]) - 12.0 / 252.0).abs() < 1e-12);
        assert!((rank_test_p(&below, &[5.0, 6.0, 7.0, 8.0, 9.0]) - 19.0 / 252.0).abs() < 1e-12);
        // No shift at all: about one half.
        assert!(rank_test_p(&[1.0, 3.0, 5.0], &[2.0, 4.0, 6.0]) > 0.3);
        let total: f64 = u_distribution(4, 6).iter().sum();
        assert_eq!(total, 210.0);
    }

    #[test]
    fn median_and_range() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(relative_range(&[90.0, 100.0, 110.0]), 0.2);
        assert_eq!(relative_range(&[5.0]), 0.0);
    }
}
