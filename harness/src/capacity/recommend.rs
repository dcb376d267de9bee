//! Capacity arithmetic, pure: measured counts and rates in, the numbers of the report's
//! recommendations table and its sysctl lines out. Each function is one rule, stated in its
//! doc so the report can quote it.

use crate::capacity::records::{SweepPoint, TimelineBin};

/// Kernel default of `fs.inotify.max_queued_events`.
pub const DEFAULT_QUEUE: u64 = 16_384;

/// A file written by a storm op costs IN_CREATE + IN_MODIFY + IN_CLOSE_WRITE = 3 queued events
/// in the watching instance (inotify(7); identical consecutive events are merged, so a large
/// write's many IN_MODIFY count once while nothing else is queued in between). The syncer's
/// own event counts in the committed results stay below it: 2.0 per op for empty creates
/// (million-files, inotify), 2.2 for mixed, 2.5 for modify-hot's rewrites.
pub const DEFAULT_EVENTS_PER_OP: f64 = 3.0;

/// Headroom on watches for a tree that grows: needed x 5/4.
pub const WATCH_HEADROOM: f64 = 1.25;

/// Watches one user needs: one per directory of the tree, plus those its other processes
/// already hold (`max_user_watches` counts per user).
pub fn watches_needed(tree_dirs: u64, in_use: u64) -> u64 {
    tree_dirs + in_use
}

/// `max_user_watches` to set: needed plus 25 % headroom, rounded up to a multiple of 1024,
/// and never below the current value (lowering it can break other watchers).
pub fn max_user_watches(needed: u64, current: u64) -> u64 {
    let with_headroom = (needed as f64 * WATCH_HEADROOM).ceil() as u64;
    (with_headroom.div_ceil(1024).max(1) * 1024).max(current)
}

/// Kernel memory the watches pin: watches x measured bytes per directory.
pub fn kernel_bytes(watches: u64, bytes_per_directory: f64) -> u64 {
    (watches as f64 * bytes_per_directory).ceil() as u64
}

/// Events queued while the syncer does not read for `stall_ms` at `events_per_s`.
pub fn queue_needed(events_per_s: f64, stall_ms: f64) -> u64 {
    (events_per_s * stall_ms / 1000.0).ceil() as u64
}

/// `max_queued_events` to set: the next power of two at or above the need, never below the
/// current value nor the kernel default.
pub fn max_queued_events(needed: u64, current: u64) -> u64 {
    needed
        .max(1)
        .next_power_of_two()
        .max(current)
        .max(DEFAULT_QUEUE)
}

/// The stall a queue absorbs at `events_per_s`, in ms (queue / rate).
pub fn tolerated_stall_ms(queue: u64, events_per_s: f64) -> f64 {
    queue as f64 / events_per_s.max(f64::MIN_POSITIVE) * 1000.0
}

/// The busiest window of `window_ms` in a timeline as ops/s, with its start (ms): the ops a
/// syncer stalled that long at the worst moment would find queued. `width_ms` is the bin
/// width; a window shorter than a bin is one bin.
pub fn peak_ops_per_s(bins: &[TimelineBin], width_ms: u64, window_ms: u64) -> Option<(f64, u64)> {
    let width_ms = width_ms.max(1);
    let span = window_ms.div_ceil(width_ms).max(1);
    // A window longer than the timeline holds all of it.
    let (sum, start) = bins
        .windows((span as usize).clamp(1, bins.len().max(1)))
        .map(|w| (w.iter().map(|b| b.ops).sum::<u64>(), w[0].t_ms))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .filter(|(sum, _)| *sum > 0)?;
    Some((sum as f64 * 1000.0 / (span * width_ms) as f64, start))
}

/// The highest achieved ops/s of a sweep whose p99 met `slo_ns` with nothing lost.
pub fn sustainable_at(points: &[SweepPoint], slo_ns: u64) -> Option<&SweepPoint> {
    points
        .iter()
        .filter(|p| p.p99_ns <= slo_ns && p.lost == 0)
        .max_by(|a, b| a.achieved_ops_s.total_cmp(&b.achieved_ops_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_get_headroom_and_never_shrink_the_limit() {
        assert_eq!(watches_needed(1_001, 24), 1_025);
        // 1025 x 1.25 = 1281.25 -> 1282 -> 2 x 1024, but the current limit is larger.
        assert_eq!(max_user_watches(1_025, 192_536), 192_536);
        assert_eq!(max_user_watches(1_025, 1_000), 2_048);
        assert_eq!(max_user_watches(1_000_000, 8_192), 1_250_304);
        assert_eq!(max_user_watches(0, 0), 1_024);
    }

    #[test]
    fn memory_is_watches_times_bytes_per_directory() {
        assert_eq!(kernel_bytes(1_025, 1_061.5), 1_088_038);
        assert_eq!(kernel_bytes(0, 1_061.5), 0);
    }

    #[test]
    fn queue_holds_the_peak_rate_for_the_stall_budget() {
        assert_eq!(queue_needed(17_000.0, 1_000.0), 17_000);
        assert_eq!(queue_needed(17_000.0, 250.0), 4_250);
        assert_eq!(queue_needed(0.5, 1.0), 1);
        assert_eq!(max_queued_events(17_000, 16_384), 32_768);
        assert_eq!(max_queued_events(4_250, 16_384), 16_384);
        assert_eq!(
            max_queued_events(4_250, 0),
            16_384,
            "never below the kernel default"
        );
        assert_eq!(max_queued_events(70_000, 131_072), 131_072);
        assert!((tolerated_stall_ms(16_384, 32_768.0) - 500.0).abs() < 1e-9);
    }

    #[test]
    fn peak_is_the_busiest_window_of_the_stall_budget() {
        let bin = |t_ms, ops| TimelineBin {
            t_ms,
            ops,
            ..TimelineBin::default()
        };
        let bins = [bin(0, 30), bin(20, 170), bin(40, 5), bin(60, 160)];
        // A window of one bin: the busiest bin.
        assert_eq!(peak_ops_per_s(&bins, 20, 20), Some((8_500.0, 20)));
        assert_eq!(peak_ops_per_s(&bins, 20, 1), Some((8_500.0, 20)));
        // Two bins: 30 + 170 = 200 ops in 40 ms beats 170 + 5 and 5 + 160.
        assert_eq!(peak_ops_per_s(&bins, 20, 40), Some((5_000.0, 0)));
        // Longer than the storm: every op, over the window.
        assert_eq!(peak_ops_per_s(&bins, 20, 1_000), Some((365.0, 0)));
        assert_eq!(peak_ops_per_s(&[bin(0, 0)], 20, 20), None);
        assert_eq!(peak_ops_per_s(&[], 20, 20), None);
    }

    #[test]
    fn sustainable_rate_is_the_fastest_point_within_the_slo_and_exact() {
        let pt = |achieved, p99_ms: u64, lost| SweepPoint {
            achieved_ops_s: achieved,
            p99_ns: p99_ms * 1_000_000,
            lost,
            ..SweepPoint::default()
        };
        let pts = [
            pt(100.0, 50, 0),
            pt(400.0, 90, 0),
            pt(800.0, 95, 2), // within the SLO but lost files: does not count
            pt(1_600.0, 900, 0),
        ];
        assert_eq!(
            sustainable_at(&pts, 100_000_000).map(|p| p.achieved_ops_s),
            Some(400.0)
        );
        assert_eq!(
            sustainable_at(&pts, 1_000_000_000).map(|p| p.achieved_ops_s),
            Some(1_600.0)
        );
        assert!(sustainable_at(&pts, 10_000_000).is_none());
    }
}
