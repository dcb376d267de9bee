//! The tune grid's arithmetic, pure: runs' results in, `TuneCell`s, the smallest queue per
//! rate, the stall each queue tolerates (queue / event rate) and the cell worth a SIGSTOP
//! check out. No clock, no files: tables test it.

use crate::capacity::records::{QueueForRate, StallBudget, TuneCell};
use crate::session::result::RunResult;
use crate::util::stats::median;

/// Default `max_queued_events` values: 256 to 65536 by factors of 4. Measured here (2 cores,
/// tune-queue.toml on tmpfs, 2026-11-25): at 20,000 creates/s our syncer's queue of 256
/// overflowed 46 times while 1024 did not, and 65536 (4x the kernel default 16384) holds
/// 21 s of a 1,000 creates/s storm (3 events per create), more than any pause we check.
pub const DEFAULT_QUEUES: [u64; 5] = [256, 1024, 4096, 16384, 65536];

/// Default offered rates, creates/s. Measured here: the generator alone reached about
/// 55,000 creates/s (40,000 files, 2 threads, tmpfs) and our syncer replicated about
/// 25,000-30,000 files/s, so 32,000 is past the syncer's ceiling yet within the
/// generator's (the offered rate is still achieved); 500 is an everyday load.
pub const DEFAULT_RATES: [f64; 4] = [500.0, 2000.0, 8000.0, 32000.0];

/// Kernel events per storm op: the syncer's own count of events it read (`events` in its
/// status file: exactly the events its queue held) when it reports one, else the probe's
/// events on the replica (a proxy: the replica sees the syncer's writes, not the storm's).
pub fn events_per_op(r: &RunResult) -> (f64, &'static str) {
    let ops = r.storm_ops.max(1) as f64;
    match r.self_report.as_ref().and_then(|v| v["events"].as_u64()) {
        Some(events) => (events as f64 / ops, "syncer self-report"),
        None => (r.probe_events as f64 / ops, "probe (replica side)"),
    }
}

/// Overflows of the tuned syncer's own queue: its self-report (status file, or lsyncd's log);
/// the probe's own count only when the syncer reports nothing (another instance's overflow
/// is invisible to the probe).
pub fn overflows(r: &RunResult) -> u64 {
    r.self_overflows.unwrap_or(r.probe_overflows)
}

/// Missing plus stale (mismatched) plus extra entries at the end.
pub fn lost(r: &RunResult) -> u64 {
    r.diff.missing + r.diff.mismatched + r.diff.extra
}

/// One grid cell's record from its run.
pub fn cell_record(queue: u64, rate: f64, r: &RunResult, run_dir: String) -> TuneCell {
    TuneCell {
        queue,
        rate,
        achieved_ops_s: r.ops_per_s,
        events_per_op: events_per_op(r).0,
        overflows: overflows(r),
        reconciles: r
            .self_report
            .as_ref()
            .and_then(|v| v["reconciles"].as_u64()),
        p50_ns: r.latency.p50_ns,
        p99_ns: r.latency.p99_ns,
        converge_ns: r.converge_ns,
        cpu_ns: r.cpu_ns,
        lost: lost(r),
        run_dir,
    }
}

/// The distinct values of `key` over the cells, ascending.
fn distinct(cells: &[TuneCell], key: impl Fn(&TuneCell) -> f64) -> Vec<f64> {
    let mut v: Vec<f64> = cells.iter().map(key).collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// Per rate: the smallest queue of the grid from which on no queue overflowed (that queue
/// and every larger one ran clean), so one lucky small queue among overflowing larger ones
/// is not recommended. None when the largest queue overflowed too.
pub fn smallest_queues(cells: &[TuneCell]) -> Vec<QueueForRate> {
    distinct(cells, |c| c.rate)
        .into_iter()
        .map(|rate| {
            let mut at: Vec<&TuneCell> = cells.iter().filter(|c| c.rate == rate).collect();
            at.sort_by_key(|c| std::cmp::Reverse(c.queue));
            let mut smallest = None;
            for c in at {
                if c.overflows > 0 {
                    break;
                }
                smallest = Some(c.queue);
            }
            QueueForRate {
                rate,
                smallest_queue: smallest,
            }
        })
        .collect()
}

/// Events per op at `rate`: the median over that rate's cells without an overflow (an
/// overflow drops events, so those cells undercount); else over every clean cell.
pub fn events_per_op_at(cells: &[TuneCell], rate: f64) -> Option<f64> {
    let clean = |c: &&TuneCell| c.overflows == 0 && c.events_per_op > 0.0;
    let at_rate: Vec<f64> = cells
        .iter()
        .filter(|c| c.rate == rate)
        .filter(clean)
        .map(|c| c.events_per_op)
        .collect();
    let all: Vec<f64> = cells
        .iter()
        .filter(clean)
        .map(|c| c.events_per_op)
        .collect();
    median(&at_rate).or_else(|| median(&all))
}

/// How long a syncer may stop reading before `queue` events overflow at `events_per_s`.
pub fn tolerated_stall_ns(queue: u64, events_per_s: f64) -> u64 {
    if events_per_s <= 0.0 {
        return u64::MAX;
    }
    (queue as f64 / events_per_s * 1e9) as u64
}

/// Every (queue, rate) of the grid: events/s = rate x events per op, stall = queue / that.
pub fn stall_budgets(cells: &[TuneCell]) -> Vec<StallBudget> {
    let mut out = Vec::new();
    for rate in distinct(cells, |c| c.rate) {
        let Some(epo) = events_per_op_at(cells, rate) else {
            continue;
        };
        let events_per_s = rate * epo;
        for queue in distinct(cells, |c| c.queue as f64) {
            let queue = queue as u64;
            out.push(StallBudget {
                queue,
                rate,
                events_per_s,
                tolerated_stall_ns: tolerated_stall_ns(queue, events_per_s),
            });
        }
    }
    out
}

/// The budget to check with SIGSTOP: its own cell ran clean (no overflow, nothing lost) and
/// its stall is closest to `target_ns` on a log scale (long enough to dwarf scheduling
/// noise, short enough to keep the check quick), within [target/20, target*20].
pub fn pick_stall_check<'a>(
    budgets: &'a [StallBudget],
    cells: &[TuneCell],
    target_ns: u64,
) -> Option<&'a StallBudget> {
    let clean = |b: &StallBudget| {
        cells
            .iter()
            .any(|c| c.queue == b.queue && c.rate == b.rate && c.overflows == 0 && c.lost == 0)
    };
    let distance = |b: &StallBudget| (b.tolerated_stall_ns as f64 / target_ns as f64).ln().abs();
    budgets
        .iter()
        .filter(|b| clean(b) && distance(b) <= 20f64.ln())
        .min_by(|a, b| distance(a).total_cmp(&distance(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(queue: u64, rate: f64, overflows: u64) -> TuneCell {
        TuneCell {
            queue,
            rate,
            overflows,
            events_per_op: 3.0,
            ..TuneCell::default()
        }
    }

    #[test]
    fn smallest_queue_is_the_start_of_the_clean_tail() {
        let cells = vec![
            cell(256, 1000.0, 0),
            cell(1024, 1000.0, 0),
            cell(256, 8000.0, 5),
            cell(1024, 8000.0, 0),
            cell(4096, 8000.0, 0),
            cell(1024, 1000.0 * 32.0, 0), // a lucky small queue...
            cell(4096, 32000.0, 2),       // ...below one that overflowed
            cell(16384, 32000.0, 0),
            cell(256, 64000.0, 9),
            cell(16384, 64000.0, 1),
        ];
        let got: Vec<(f64, Option<u64>)> = smallest_queues(&cells)
            .into_iter()
            .map(|q| (q.rate, q.smallest_queue))
            .collect();
        assert_eq!(
            got,
            vec![
                (1000.0, Some(256)),
                (8000.0, Some(1024)),
                (32000.0, Some(16384)),
                (64000.0, None),
            ]
        );
    }

    #[test]
    fn stall_is_queue_over_event_rate() {
        // 16384 events at 2000 ops/s x 3 events per op = 6000 events/s: 2.73 s.
        assert_eq!(tolerated_stall_ns(16384, 6000.0), 2_730_666_666);
        assert_eq!(tolerated_stall_ns(16384, 0.0), u64::MAX);
        let cells = vec![cell(1024, 2000.0, 0), cell(16384, 2000.0, 0)];
        let b = stall_budgets(&cells);
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].queue, 16384);
        assert_eq!(b[1].events_per_s, 6000.0);
        assert_eq!(b[1].tolerated_stall_ns, 2_730_666_666);
    }

    #[test]
    fn events_per_op_ignores_overflowed_cells_and_falls_back_to_clean_ones() {
        let mut lossy = cell(256, 8000.0, 40);
        lossy.events_per_op = 1.2; // dropped events undercount
        let mut clean = cell(4096, 8000.0, 0);
        clean.events_per_op = 3.1;
        let mut other = cell(4096, 500.0, 0);
        other.events_per_op = 2.9;
        let mut all_lossy = cell(256, 64000.0, 7);
        all_lossy.events_per_op = 0.5;
        let cells = vec![lossy, clean, other, all_lossy];
        assert_eq!(events_per_op_at(&cells, 8000.0), Some(3.1));
        assert_eq!(events_per_op_at(&cells, 64000.0), Some(3.0)); // median of 2.9, 3.1
        assert_eq!(events_per_op_at(&[cell(1, 1.0, 3)], 1.0), None);
    }

    #[test]
    fn the_stall_check_takes_a_clean_cell_nearest_the_target() {
        let cells = vec![
            cell(1024, 2000.0, 0),  // 0.17 s
            cell(4096, 2000.0, 0),  // 0.68 s
            cell(16384, 2000.0, 3), // 2.7 s, but its own run overflowed
            cell(65536, 500.0, 0),  // 43.7 s: too far from 1 s
        ];
        let b = stall_budgets(&cells);
        let pick = pick_stall_check(&b, &cells, 1_000_000_000).expect("a pick");
        assert_eq!((pick.queue, pick.rate), (4096, 2000.0));
        let only_far = vec![cell(65536, 500.0, 0)];
        let b = stall_budgets(&only_far);
        assert!(pick_stall_check(&b, &only_far, 1_000_000_000).is_none());
    }
}
