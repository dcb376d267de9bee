//! Measurement: the plan's expectations, the generator's stamps and the probe's sightings in,
//! latency histograms (hdrhistogram, 3 significant figures, nanoseconds) and counts out.
//! Latency is from the completion of each path's final op; with a rate also from its planned
//! time (open loop), so a generator that fell behind cannot hide a slow syncer. Also the
//! storm's timeline: ops and latency per fixed time bin (`planning::TimelineBin`).

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::capacity::records::TimelineBin;
use crate::probe::ProbeReport;
use crate::storm::generator::PhaseRun;
use crate::storm::ops::Expected;
use crate::storm::plan::Plan;

/// Largest latency recorded: one hour; anything slower is clamped (and is a failure anyway).
const MAX_NS: u64 = 3_600_000_000_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: u64,
}

pub struct Latency {
    pub from_done: Histogram<u64>,
    pub from_plan: Option<Histogram<u64>>,
    /// Expected paths the replica never showed in their final state.
    pub unseen: u64,
    pub unseen_examples: Vec<String>,
    /// Samples the probe found by scanning (no event of its own for them).
    pub by_scan: u64,
    /// Deletions of paths the replica never had (coalesced away): not latency samples.
    pub absent_never_seen: u64,
    /// Time the last expected path was seen (ns on the run clock).
    pub last_seen_ns: u64,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

pub fn stats(h: &Histogram<u64>) -> LatencyStats {
    if h.is_empty() {
        return LatencyStats::default();
    }
    LatencyStats {
        count: h.len(),
        p50_ns: h.value_at_quantile(0.5),
        p90_ns: h.value_at_quantile(0.9),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
        max_ns: h.max(),
        mean_ns: h.mean() as u64,
    }
}

/// Builds the histograms. `runs` holds one `PhaseRun` per plan phase.
pub fn latency(plan: &Plan, runs: &[PhaseRun], probe: &ProbeReport) -> Latency {
    let rated = plan.phases.iter().any(|p| p.rate > 0.0);
    let mut out = Latency {
        from_done: new_hist(),
        from_plan: rated.then(new_hist),
        unseen: 0,
        unseen_examples: Vec::new(),
        by_scan: 0,
        absent_never_seen: 0,
        last_seen_ns: 0,
    };
    for (i, e) in plan.expect.iter().enumerate() {
        let seen = probe.seen_ns.get(i).copied().unwrap_or(0);
        let Some(run) = runs.get(e.phase as usize) else {
            continue;
        };
        let done = run.done_ns.get(e.op as usize).copied().unwrap_or(0);
        if seen == 0 || done == 0 {
            out.unseen += 1;
            if out.unseen_examples.len() < crate::measure::verify::EXAMPLES {
                out.unseen_examples.push(e.path.clone());
            }
            continue;
        }
        out.last_seen_ns = out.last_seen_ns.max(seen);
        if probe.by_scan[i] {
            if e.state == Expected::Absent {
                out.absent_never_seen += 1;
                continue;
            }
            out.by_scan += 1;
        }
        out.from_done
            .saturating_record(seen.saturating_sub(done).clamp(1, MAX_NS));
        if let Some(h) = out.from_plan.as_mut() {
            let planned = run.start_ns + plan.phases[e.phase as usize].ops[e.op as usize].at_ns;
            h.saturating_record(seen.saturating_sub(planned).clamp(1, MAX_NS));
        }
    }
    out
}

/// About 150 bins over the storm, whole milliseconds, never under 10 ms (finer bins hold too
/// few samples for a p99 and make the CSV large for nothing).
pub fn bin_width_ms(storm_ns: u64) -> u64 {
    storm_ns.div_ceil(150 * 1_000_000).max(10)
}

/// Nearest-rank percentile of sorted values (exact: a bin holds few enough samples).
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The storm in fixed time bins from its start: ops completed per bin, and each latency
/// sample (as in `latency`, from the final op's completion) in the bin where that op completed.
pub fn timeline(plan: &Plan, runs: &[PhaseRun], probe: &ProbeReport) -> Vec<TimelineBin> {
    let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
        return Vec::new();
    };
    let start = first.start_ns;
    let width_ns = bin_width_ms(last.end_ns.saturating_sub(start)) * 1_000_000;
    let bins = (last.end_ns.saturating_sub(start) / width_ns + 1) as usize;
    let bin_of = |t: u64| ((t.saturating_sub(start) / width_ns) as usize).min(bins - 1);
    let mut ops = vec![0u64; bins];
    for t in runs.iter().flat_map(|r| &r.done_ns).filter(|&&t| t > 0) {
        ops[bin_of(*t)] += 1;
    }
    let mut lat: Vec<Vec<u64>> = vec![Vec::new(); bins];
    for (i, e) in plan.expect.iter().enumerate() {
        let seen = probe.seen_ns.get(i).copied().unwrap_or(0);
        let done = runs
            .get(e.phase as usize)
            .and_then(|r| r.done_ns.get(e.op as usize).copied())
            .unwrap_or(0);
        // Same samples as `latency`: seen, and not a delete the replica never had.
        let coalesced = probe.by_scan.get(i) == Some(&true) && e.state == Expected::Absent;
        if seen == 0 || done == 0 || coalesced {
            continue;
        }
        lat[bin_of(done)].push(seen.saturating_sub(done).clamp(1, MAX_NS));
    }
    ops.into_iter()
        .zip(lat)
        .enumerate()
        .map(|(i, (ops, mut l))| {
            l.sort_unstable();
            TimelineBin {
                t_ms: i as u64 * width_ns / 1_000_000,
                ops,
                samples: l.len() as u64,
                p50_ns: nearest_rank(&l, 0.5),
                p99_ns: nearest_rank(&l, 0.99),
                max_ns: l.last().copied().unwrap_or(0),
            }
        })
        .collect()
}

/// The percentile distribution in HdrHistogram's text (.hgrm) format, values in ms.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    if h.is_empty() {
        return out;
    }
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            "inf".to_string()
        };
        out.push_str(&format!(
            "{:12.3} {:14.12} {:10} {:>14}\n",
            v.value_iterated_to() as f64 / 1e6,
            q,
            v.count_since_last_iteration(),
            inv
        ));
    }
    let s = stats(h);
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n",
        h.mean() / 1e6,
        h.stdev() / 1e6,
        s.max_ns as f64 / 1e6,
        h.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_known_values() {
        let mut h = new_hist();
        for v in 1..=1000u64 {
            h.record(v * 1_000_000).expect("in range");
        }
        let s = stats(&h);
        assert_eq!(s.count, 1000);
        assert!((499_000_000..=501_000_000).contains(&s.p50_ns), "{s:?}");
        assert!((989_000_000..=991_000_000).contains(&s.p99_ns), "{s:?}");
        assert!(hgrm(&h).contains("Total count"));
    }

    #[test]
    fn bin_width_scales_with_the_storm_and_has_a_floor() {
        assert_eq!(bin_width_ms(300_000_000), 10);
        assert_eq!(bin_width_ms(15_000_000_000), 100);
        assert_eq!(bin_width_ms(15_000_000_001), 101);
        assert_eq!(bin_width_ms(134_000_000_000), 894);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=200).collect();
        assert_eq!(nearest_rank(&v, 0.5), 100);
        assert_eq!(nearest_rank(&v, 0.99), 198);
        assert_eq!(nearest_rank(&[7], 0.99), 7);
        assert_eq!(nearest_rank(&[], 0.5), 0);
    }
}
