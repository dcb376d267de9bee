//! The sweep's arithmetic, pure: latency-vs-rate points in, the knee of the curve, the
//! sustainable ops/s at an SLO and whether to keep stepping the rate up out.

use crate::capacity::records::SweepPoint;

/// Below this rise from the lowest to the highest p99 the curve has no knee: latency never
/// turned up, it only wobbled (run-to-run noise here is well under 2x).
const MIN_RISE: f64 = 4.0;
/// Kneedle's flat-to-steep score must reach this (0 is a straight line, 1 a right angle).
const MIN_SCORE: f64 = 0.15;

/// The knee of p99 latency over offered rate: the last rate before latency turns up sharply.
/// Kneedle (Satopaa et al. 2011) on log-log axes: with both axes normalised to [0, 1], the
/// knee is the point farthest above the curve, i.e. the largest (x - y). Log axes because
/// rates are stepped geometrically and latency explodes by orders of magnitude; on them a
/// power law is a straight line, and it has no knee. `points` are (rate, p99_ns).
pub fn knee(points: &[(f64, u64)]) -> Option<f64> {
    // (ln rate, ln p99, rate): the rate itself is returned, not exp(ln rate).
    let mut pts: Vec<(f64, f64, f64)> = points
        .iter()
        .filter(|(r, p)| *r > 0.0 && r.is_finite() && *p > 0)
        .map(|&(r, p)| (r.ln(), (p as f64).ln(), r))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts.dedup_by(|a, b| a.0 == b.0);
    if pts.len() < 3 {
        return None;
    }
    let (x0, x1) = (pts[0].0, pts[pts.len() - 1].0);
    let y_min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if y_max - y_min < MIN_RISE.ln() {
        return None;
    }
    let (best, score) = pts
        .iter()
        .map(|&(x, y, _)| ((x - x0) / (x1 - x0)) - ((y - y_min) / (y_max - y_min)))
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (score >= MIN_SCORE).then_some(pts[best].2)
}

/// A point meets the SLO: p99 within it, nothing lost, converged.
pub fn meets(p: &SweepPoint, slo_ns: u64) -> bool {
    p.p99_ns <= slo_ns && p.lost == 0 && p.converge_ns.is_some()
}

/// The highest achieved ops/s among the points that met the SLO.
pub fn sustainable(points: &[SweepPoint], slo_ns: u64) -> Option<f64> {
    points
        .iter()
        .filter(|p| meets(p, slo_ns))
        .map(|p| p.achieved_ops_s)
        .max_by(f64::total_cmp)
}

/// Keep stepping the rate up until two points in a row miss the SLO (one miss may be noise
/// on a shared machine; two mean the syncer is past its ceiling).
pub fn keep_stepping(points: &[SweepPoint], slo_ns: u64) -> bool {
    let n = points.len();
    n < 2 || meets(&points[n - 1], slo_ns) || meets(&points[n - 2], slo_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn curve(rates: &[f64], p99_ms: &[f64]) -> Vec<(f64, u64)> {
        rates
            .iter()
            .zip(p99_ms)
            .map(|(&r, &p)| (r, (p * MS as f64) as u64))
            .collect()
    }

    const RATES: [f64; 7] = [1000.0, 2000.0, 4000.0, 8000.0, 16000.0, 32000.0, 64000.0];

    #[test]
    fn a_hockey_stick_has_its_knee_at_the_last_flat_rate() {
        let c = curve(&RATES, &[2.0, 2.1, 2.3, 2.8, 40.0, 900.0, 2500.0]);
        assert_eq!(knee(&c), Some(8000.0));
        // Order of the input does not matter.
        let mut rev = c.clone();
        rev.reverse();
        assert_eq!(knee(&rev), Some(8000.0));
    }

    #[test]
    fn a_late_turn_is_found_late() {
        let c = curve(&RATES, &[3.0, 2.8, 3.1, 3.0, 3.3, 3.9, 800.0]);
        assert_eq!(knee(&c), Some(32000.0));
    }

    #[test]
    fn flat_noise_has_no_knee() {
        let c = curve(&RATES, &[2.0, 3.1, 2.2, 2.9, 2.4, 3.5, 2.6]);
        assert_eq!(knee(&c), None);
    }

    #[test]
    fn a_power_law_is_straight_on_log_axes_and_has_no_knee() {
        let p: Vec<f64> = RATES.iter().map(|r| (r / 1000.0).powi(2)).collect();
        assert_eq!(knee(&curve(&RATES, &p)), None);
    }

    #[test]
    fn too_few_points_have_no_knee() {
        assert_eq!(knee(&curve(&[1000.0, 2000.0], &[1.0, 500.0])), None);
        assert_eq!(knee(&[]), None);
    }

    fn point(rate: f64, p99_ms: u64, lost: u64) -> SweepPoint {
        SweepPoint {
            offered_rate: rate,
            achieved_ops_s: rate * 0.98,
            p99_ns: p99_ms * MS,
            converge_ns: Some(MS),
            lost,
            ..SweepPoint::default()
        }
    }

    #[test]
    fn sustainable_is_the_highest_achieved_rate_within_the_slo_with_nothing_lost() {
        let pts = vec![
            point(1000.0, 3, 0),
            point(4000.0, 8, 0),
            point(8000.0, 9, 2), // fast but lost files
            point(16000.0, 80, 0),
        ];
        assert_eq!(sustainable(&pts, 10 * MS), Some(4000.0 * 0.98));
        assert_eq!(sustainable(&pts, MS), None);
        let mut unconverged = point(2000.0, 1, 0);
        unconverged.converge_ns = None;
        assert_eq!(sustainable(&[unconverged], 10 * MS), None);
    }

    #[test]
    fn stepping_stops_after_two_misses_in_a_row() {
        let slo = 10 * MS;
        let mut pts = vec![point(1000.0, 3, 0)];
        assert!(keep_stepping(&pts, slo));
        pts.push(point(2000.0, 30, 0));
        assert!(keep_stepping(&pts, slo), "one miss may be noise");
        pts.push(point(4000.0, 5, 0));
        pts.push(point(8000.0, 50, 0));
        assert!(keep_stepping(&pts, slo));
        pts.push(point(16000.0, 90, 0));
        assert!(!keep_stepping(&pts, slo));
    }
}
