//! Loaded inputs in, chart descriptions (`plots::Chart`) out: which series each plot shows,
//! on which axes, and which files it names as its sources. Drawing is plots.rs's job.

use std::path::Path;

use super::hgrm::axis_x;
use super::inputs::{HistoryRow, Loaded, RunEntry, RunFolder};
use super::plots::{Axis, Chart, Series, Stroke};
use crate::capacity::records::{SweepReport, TuneReport};

/// Log scale when the positive values span more than two decades, else linear.
pub fn pick_axis(values: impl Iterator<Item = f64>) -> Axis {
    let pos: Vec<f64> = values.filter(|v| *v > 0.0 && v.is_finite()).collect();
    let max = pos.iter().copied().fold(0.0, f64::max);
    let min = pos.iter().copied().fold(f64::MAX, f64::min);
    if !pos.is_empty() && max / min > 100.0 {
        Axis::Log
    } else {
        Axis::Linear
    }
}

/// Latencies below 1 µs are drawn at 1 µs: the probe stamps a path seen before the
/// generator's own stamp as 1 ns, which would stretch a log axis over six empty decades.
const FLOOR_MS: f64 = 0.001;

/// Runs of a folder in drawing order: the calibration (probe floor) first.
fn entries(f: &RunFolder) -> Vec<&RunEntry> {
    f.calibration.iter().chain(&f.runs).collect()
}

/// Source lines of a folder's chart: the folder, then its files by name.
fn from_folder(
    dir: &Path,
    files: &[std::path::PathBuf],
    rel: &dyn Fn(&Path) -> String,
) -> Vec<String> {
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| Some(f.file_name()?.to_string_lossy().into_owned()))
        .collect();
    vec![format!("from {}/: {}", rel(dir), names.join(", "))]
}

/// Latency by percentile, one line per run, on HdrHistogram's percentile axis.
pub fn percentiles(f: &RunFolder, rel: &dyn Fn(&Path) -> String) -> Option<Chart> {
    let mut series = Vec::new();
    let mut sources = Vec::new();
    for (i, e) in entries(f).into_iter().enumerate() {
        let Some(h) = &e.hgrm else { continue };
        let points: Vec<(f64, f64)> = h
            .data
            .iter()
            .filter_map(|p| Some((axis_x(p.q)?, p.value_ms.max(FLOOR_MS))))
            .collect();
        if points.is_empty() {
            continue;
        }
        let calibration = e.sut == "calibration";
        series.push(Series {
            label: if calibration {
                "probe floor (calibration)".into()
            } else {
                e.label()
            },
            points,
            stroke: if calibration {
                Stroke::Dashed
            } else {
                Stroke::Solid
            },
            colour: i,
        });
        sources.push(h.path.clone());
    }
    if series.is_empty() {
        return None;
    }
    let y_axis = pick_axis(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    Some(Chart {
        title: format!("{}: latency by percentile", f.scenario),
        x_desc: "percentile (log of 1/(1-q))".into(),
        y_desc: "latency ms (under 0.001 drawn at 0.001)".into(),
        x_axis: Axis::Percentile,
        y_axis,
        series,
        hlines: Vec::new(),
        marks: Vec::new(),
        sources: from_folder(&f.dir, &sources, rel),
    })
}

/// Bin width of a run's timeline in ms: the step between bins, or from the storm length.
pub fn bin_width_ms(e: &RunEntry, bins: &[crate::capacity::records::TimelineBin]) -> u64 {
    match bins {
        [a, b, ..] => b.t_ms.saturating_sub(a.t_ms).max(1),
        _ => crate::measure::latency::bin_width_ms(e.storm_ns),
    }
}

/// p99 (solid) and p50 (dashed) of each time bin, by the bin of the final op's completion.
pub fn timeline_latency(f: &RunFolder, rel: &dyn Fn(&Path) -> String) -> Option<Chart> {
    let mut series = Vec::new();
    let mut sources = Vec::new();
    for (i, e) in entries(f).into_iter().enumerate() {
        let Some(t) = &e.timeline else { continue };
        // Empty bins break the line (NaN): no sample there, not a latency of 0.
        let with = |pick: fn(&crate::capacity::records::TimelineBin) -> u64| -> Vec<(f64, f64)> {
            t.data
                .iter()
                .map(|b| {
                    let y = if b.samples > 0 {
                        (pick(b) as f64 / 1e6).max(FLOOR_MS)
                    } else {
                        f64::NAN
                    };
                    (b.t_ms as f64 / 1000.0, y)
                })
                .collect()
        };
        let p99 = with(|b| b.p99_ns);
        let filled = t.data.iter().filter(|b| b.samples > 0).count();
        if filled == 0 {
            continue;
        }
        let stroke = if filled < 30 {
            Stroke::Points
        } else {
            Stroke::Solid
        };
        series.push(Series {
            label: format!("{} p99", e.label()),
            points: p99,
            stroke,
            colour: i,
        });
        series.push(Series {
            label: format!("{} p50", e.label()),
            points: with(|b| b.p50_ns),
            stroke: if filled < 30 {
                Stroke::Rings
            } else {
                Stroke::Dashed
            },
            colour: i,
        });
        sources.push(t.path.clone());
    }
    if series.is_empty() {
        return None;
    }
    let y_axis = pick_axis(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    Some(Chart {
        title: format!("{}: latency during the storm", f.scenario),
        x_desc: "storm time s (bin of the path's final op)".into(),
        y_desc: "latency ms (under 0.001 drawn at 0.001)".into(),
        x_axis: Axis::Linear,
        y_axis,
        series,
        hlines: Vec::new(),
        marks: Vec::new(),
        sources: from_folder(&f.dir, &sources, rel),
    })
}

/// Storm ops completed per second, per time bin.
pub fn timeline_ops(f: &RunFolder, rel: &dyn Fn(&Path) -> String) -> Option<Chart> {
    let mut series = Vec::new();
    let mut sources = Vec::new();
    for (i, e) in entries(f).into_iter().enumerate() {
        let Some(t) = &e.timeline else { continue };
        if t.data.is_empty() {
            continue;
        }
        let width = bin_width_ms(e, &t.data).max(1) as f64;
        series.push(Series {
            label: e.label(),
            points: t
                .data
                .iter()
                .map(|b| (b.t_ms as f64 / 1000.0, b.ops as f64 * 1000.0 / width))
                .collect(),
            stroke: if t.data.len() < 30 {
                Stroke::Dots
            } else {
                Stroke::Solid
            },
            colour: i,
        });
        sources.push(t.path.clone());
    }
    if series.is_empty() {
        return None;
    }
    Some(Chart {
        title: format!("{}: storm ops/s over time", f.scenario),
        x_desc: "storm time s".into(),
        y_desc: "ops/s (ops completed in the bin / bin width)".into(),
        x_axis: Axis::Linear,
        y_axis: Axis::Linear,
        series,
        hlines: Vec::new(),
        marks: Vec::new(),
        sources: from_folder(&f.dir, &sources, rel),
    })
}

/// p99 against offered rate per syncer, the SLO as a line and each knee marked.
pub fn sweep(s: &Loaded<SweepReport>, slo_ns: u64, rel: &dyn Fn(&Path) -> String) -> Chart {
    let mut series = Vec::new();
    let mut marks = Vec::new();
    for (i, c) in s.data.curves.iter().enumerate() {
        let mut pts: Vec<(f64, f64)> = c
            .points
            .iter()
            .map(|p| (p.offered_rate, p.p99_ns as f64 / 1e6))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(knee) = c.knee_rate {
            let at = pts
                .iter()
                .min_by(|a, b| (a.0 - knee).abs().total_cmp(&(b.0 - knee).abs()))
                .map_or(0.0, |p| p.1);
            marks.push(((knee, at), format!("  knee {} {knee:.0} ops/s", c.sut)));
        }
        series.push(Series {
            label: format!("{} p99", c.sut),
            points: pts,
            stroke: Stroke::Dots,
            colour: i,
        });
    }
    let y_axis = pick_axis(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain([slo_ns as f64 / 1e6]),
    );
    Chart {
        title: format!("{}: p99 latency vs offered rate", s.data.scenario),
        x_desc: "offered ops/s (open loop)".into(),
        y_desc: "p99 latency ms".into(),
        x_axis: Axis::Linear,
        y_axis,
        series,
        hlines: vec![(
            slo_ns as f64 / 1e6,
            format!("SLO p99 {} ms", slo_ns as f64 / 1e6),
        )],
        marks,
        sources: vec![format!(
            "from {} (each point: one run, run_dir in the file)",
            rel(&s.path)
        )],
    }
}

/// Overflows against queue size, one line per offered rate.
pub fn tune(t: &Loaded<TuneReport>, rel: &dyn Fn(&Path) -> String) -> Chart {
    let mut rates: Vec<f64> = t.data.cells.iter().map(|c| c.rate).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let series = rates
        .iter()
        .enumerate()
        .map(|(i, rate)| {
            let mut pts: Vec<(f64, f64)> = t
                .data
                .cells
                .iter()
                .filter(|c| c.rate == *rate)
                .map(|c| (c.queue as f64, c.overflows as f64))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label: format!("{rate:.0} ops/s"),
                points: pts,
                stroke: Stroke::Dots,
                colour: i,
            }
        })
        .collect();
    Chart {
        title: format!(
            "{} ({}): overflows vs max_queued_events",
            t.data.scenario, t.data.sut
        ),
        x_desc: "fs.inotify.max_queued_events".into(),
        y_desc: "queue overflows in the run".into(),
        x_axis: Axis::Log,
        y_axis: Axis::Linear,
        series,
        hlines: Vec::new(),
        marks: Vec::new(),
        sources: vec![format!(
            "from {} (each point: one run, run_dir in the file)",
            rel(&t.path)
        )],
    }
}

/// Floor ratio and p99 of one scenario over the history, one line per syncer and side.
pub fn history(
    h: &Loaded<Vec<HistoryRow>>,
    scenario: &str,
    rel: &dyn Fn(&Path) -> String,
) -> [Chart; 2] {
    let rows: Vec<(usize, &HistoryRow)> = h
        .data
        .iter()
        .enumerate()
        .filter(|(_, r)| r.scenario == scenario)
        .collect();
    let mut keys: Vec<(String, String)> = rows
        .iter()
        .map(|(_, r)| (r.sut.clone(), r.side.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let first = rows.first().map_or("", |r| r.1.date.as_str());
    let last = rows.last().map_or("", |r| r.1.date.as_str());
    let source = format!(
        "from {}, rows of {scenario} (x: line number in the file, dates {first} to {last})",
        rel(&h.path)
    );
    let make = |pick: &dyn Fn(&HistoryRow) -> Option<f64>, title: &str, y: &str| {
        let series: Vec<Series> = keys
            .iter()
            .enumerate()
            .map(|(i, (sut, side))| Series {
                label: format!("{sut} ({side})"),
                points: rows
                    .iter()
                    .filter(|(_, r)| r.sut == *sut && r.side == *side)
                    .filter_map(|(n, r)| Some(((n + 2) as f64, pick(r)?)))
                    .collect(),
                stroke: Stroke::Dots,
                colour: i,
            })
            .collect();
        Chart {
            title: format!("{scenario}: {title}"),
            x_desc: "history.csv line".into(),
            y_desc: y.into(),
            x_axis: Axis::Linear,
            y_axis: Axis::Linear,
            series,
            hlines: Vec::new(),
            marks: Vec::new(),
            sources: vec![source.clone()],
        }
    };
    [
        make(
            &|r| r.floor_ratio,
            "ratio to the floor copy over time",
            "(storm + converge) / floor copy",
        ),
        make(
            &|r| r.p99_ns.map(|n| n as f64 / 1e6),
            "p99 latency over time",
            "p99 ms",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_only_for_wide_spans() {
        assert_eq!(pick_axis([1.0, 50.0].into_iter()), Axis::Linear);
        assert_eq!(pick_axis([0.0, 0.1, 15_000.0].into_iter()), Axis::Log);
        assert_eq!(pick_axis(std::iter::empty()), Axis::Linear);
    }
}
