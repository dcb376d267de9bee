//! The gate's metric catalogue: a run's JSON (one entry of run.json's `runs`) in, each
//! metric's value and the rule it is judged by out. Thresholds live here, once; the table
//! in README.md ("CI regression gate") documents them.

use serde_json::Value;

use super::verdict::Rule;

/// Counts fixed by the storm: 5% (they varied ~1% over 5 repeats on a loaded 2-core VM).
pub const FIXED_TOLERANCE: f64 = 0.05;
/// Timing-dependent metrics: a change must exceed 25% and the repeats' noise.
pub const NOISY_MIN_CHANGE: f64 = 0.25;

pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub rule: Rule,
    /// Whether the value comes from the syncer's own status file (never gating).
    pub self_report: bool,
    pub get: fn(&Value) -> Option<f64>,
}

fn num(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_f64)
}

fn per_op(v: &Value, pointer: &str) -> Option<f64> {
    let ops = num(v, "/storm_ops")?;
    (ops > 0.0).then(|| num(v, pointer).map(|x| x / ops))?
}

fn ms(v: &Value, pointer: &str) -> Option<f64> {
    num(v, pointer).map(|ns| ns / 1e6)
}

const fn noisy(abs_floor: f64) -> Rule {
    Rule::Noisy {
        min_change: NOISY_MIN_CHANGE,
        abs_floor,
    }
}

const FIXED: Rule = Rule::Fixed {
    tolerance: FIXED_TOLERANCE,
};

pub const METRICS: &[Metric] = &[
    Metric {
        key: "failed_runs",
        label: "failed runs (lost/stale, no convergence, generator errors)",
        unit: "runs",
        rule: Rule::Zero,
        self_report: false,
        get: |v| Some(f64::from(u8::from(v["outcome"] == "failed"))),
    },
    Metric {
        key: "lost_or_stale",
        label: "lost or stale paths (missing + extra + mismatched + never final)",
        unit: "paths",
        rule: Rule::Zero,
        self_report: false,
        get: |v| {
            Some(
                [
                    "/diff/missing",
                    "/diff/extra",
                    "/diff/mismatched",
                    "/samples_unseen",
                ]
                .iter()
                .filter_map(|p| num(v, p))
                .sum(),
            )
        },
    },
    Metric {
        key: "bytes_written_per_op",
        label: "bytes written per storm op (/proc io wchar)",
        unit: "B",
        rule: FIXED,
        self_report: false,
        get: |v| per_op(v, "/io/wchar"),
    },
    Metric {
        key: "write_calls_per_op",
        label: "write calls per storm op (/proc io syscw)",
        unit: "calls",
        // Not storm-fixed: the status file is rewritten every second, so a slower run makes
        // more calls (1.04 vs 1.11 per op for the same build on a 300-op storm).
        rule: noisy(0.1),
        self_report: false,
        get: |v| per_op(v, "/io/syscw"),
    },
    Metric {
        key: "p99_ms",
        label: "latency p99",
        unit: "ms",
        rule: noisy(20.0),
        self_report: false,
        get: |v| ms(v, "/latency/p99_ns"),
    },
    Metric {
        key: "p50_ms",
        label: "latency p50",
        unit: "ms",
        rule: noisy(20.0),
        self_report: false,
        get: |v| ms(v, "/latency/p50_ns"),
    },
    Metric {
        key: "converge_ms",
        label: "convergence after the storm",
        unit: "ms",
        rule: noisy(50.0),
        self_report: false,
        get: |v| ms(v, "/converge_ns"),
    },
    Metric {
        key: "cpu_ms",
        label: "CPU (user+sys, whole tree)",
        unit: "ms",
        rule: noisy(100.0),
        self_report: false,
        get: |v| ms(v, "/cpu_ns"),
    },
    Metric {
        key: "peak_rss_mib",
        label: "peak RSS",
        unit: "MiB",
        rule: noisy(2.0),
        self_report: false,
        get: |v| num(v, "/peak_rss_kib").map(|k| k / 1024.0),
    },
    Metric {
        key: "read_calls_per_op",
        label: "read calls per storm op (/proc io syscr)",
        unit: "calls",
        rule: noisy(1.0),
        self_report: false,
        get: |v| per_op(v, "/io/syscr"),
    },
    Metric {
        key: "rsync_runs",
        label: "rsync daemon connections (rsync targets)",
        unit: "runs",
        rule: noisy(2.0),
        self_report: false,
        get: |v| num(v, "/daemon_connections"),
    },
    Metric {
        key: "self_overflows",
        label: "queue overflows at the default queue",
        unit: "count",
        rule: Rule::Info,
        self_report: true,
        get: |v| num(v, "/self_report/overflows"),
    },
    Metric {
        key: "self_events_per_read",
        label: "events per read()",
        unit: "events",
        rule: Rule::Info,
        self_report: true,
        get: |v| {
            let reads = num(v, "/self_report/reads")?;
            (reads > 0.0).then(|| num(v, "/self_report/events").map(|e| e / reads))?
        },
    },
    Metric {
        key: "self_batches",
        label: "batches",
        unit: "count",
        rule: Rule::Info,
        self_report: true,
        get: |v| num(v, "/self_report/targets/0/batches"),
    },
    Metric {
        key: "self_copies_per_op",
        label: "file copies per storm op",
        unit: "copies",
        rule: Rule::Info,
        self_report: true,
        get: |v| per_op(v, "/self_report/ops/copy"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_reads_a_run_record() {
        let run = serde_json::json!({
            "outcome": "passed", "storm_ops": 100,
            "diff": {"missing": 1, "extra": 0, "mismatched": 2}, "samples_unseen": 3,
            "io": {"rchar": 1, "wchar": 5000, "syscr": 300, "syscw": 110},
            "latency": {"p50_ns": 1_000_000, "p99_ns": 9_000_000}, "converge_ns": 2_000_000,
            "cpu_ns": 50_000_000, "peak_rss_kib": 2048, "daemon_connections": 0,
            "self_report": {"overflows": 0, "reads": 10, "events": 50,
                            "ops": {"copy": 100}, "targets": [{"batches": 4}]}
        });
        let got: Vec<(&str, Option<f64>)> =
            METRICS.iter().map(|m| (m.key, (m.get)(&run))).collect();
        for (key, value) in &got {
            assert!(value.is_some(), "{key} missing from {got:?}");
        }
        let get = |k: &str| got.iter().find(|(key, _)| *key == k).unwrap().1.unwrap();
        assert_eq!(get("lost_or_stale"), 6.0);
        assert_eq!(get("bytes_written_per_op"), 50.0);
        assert_eq!(get("p99_ms"), 9.0);
        assert_eq!(get("self_events_per_read"), 5.0);
        assert_eq!(get("failed_runs"), 0.0);
    }

    #[test]
    fn self_reports_never_gate() {
        for m in METRICS.iter().filter(|m| m.self_report) {
            assert_eq!(m.rule, Rule::Info, "{}", m.key);
        }
    }
}
