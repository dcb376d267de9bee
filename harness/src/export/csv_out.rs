//! runs.csv: one row per syncer and repeat, units in the headers.

use std::path::Path;

use crate::session::result::RunResult;

const HEADERS: [&str; 35] = [
    "sut",
    "repeat",
    "outcome",
    "storm_ns",
    "storm_ops",
    "ops_per_s",
    "ready_ns",
    "p50_ns",
    "p90_ns",
    "p99_ns",
    "p999_ns",
    "max_ns",
    "planned_p99_ns",
    "gen_lag_max_ns",
    "converge_ns",
    "idle_ns",
    "cpu_ns",
    "daemon_cpu_ns",
    "peak_rss_kib",
    "main_rss_kib",
    "processes_seen",
    "daemon_connections",
    "probe_overflows",
    "self_overflows",
    "missing",
    "extra",
    "mismatched",
    "unseen",
    "floor_ns",
    "floor_ratio",
    "capture_ns",
    "reconcile_ns",
    "kmem_pinned_bytes",
    "kmem_pinned_slabinfo_bytes",
    "expect_fail",
];

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

pub fn write(path: &Path, runs: &[RunResult]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_path(path).map_err(std::io::Error::other)?;
    w.write_record(HEADERS).map_err(std::io::Error::other)?;
    for r in runs {
        let row = [
            r.sut.clone(),
            r.repeat.to_string(),
            format!("{:?}", r.outcome).to_lowercase(),
            r.storm_ns.to_string(),
            r.storm_ops.to_string(),
            format!("{:.1}", r.ops_per_s),
            r.ready_ns.to_string(),
            r.latency.p50_ns.to_string(),
            r.latency.p90_ns.to_string(),
            r.latency.p99_ns.to_string(),
            r.latency.p999_ns.to_string(),
            r.latency.max_ns.to_string(),
            opt(r.latency_planned.map(|l| l.p99_ns)),
            r.gen_lag_max_ns.to_string(),
            opt(r.converge_ns),
            opt(r.idle_ns),
            r.cpu_ns.to_string(),
            r.daemon_cpu_ns.to_string(),
            r.peak_rss_kib.to_string(),
            r.main_rss_kib.to_string(),
            r.processes_seen.to_string(),
            r.daemon_connections.to_string(),
            r.probe_overflows.to_string(),
            opt(r.self_overflows),
            r.diff.missing.to_string(),
            r.diff.extra.to_string(),
            r.diff.mismatched.to_string(),
            r.samples_unseen.to_string(),
            r.floor_ns.to_string(),
            opt(r.floor_ratio.map(|x| format!("{x:.3}"))),
            opt(r.capture_ns),
            opt(r.reconcile_ns),
            opt(r.kmem_pinned_bytes),
            opt(r.kmem_pinned_slabinfo_bytes),
            r.expect_fail.to_string(),
        ];
        w.write_record(&row).map_err(std::io::Error::other)?;
    }
    w.flush()
}
