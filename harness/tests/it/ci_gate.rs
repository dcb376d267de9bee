//! The regression gate end to end on real runs: the same syncer build on both sides must
//! pass, and the candidate started with a fixed batch delay of at least 5x the baseline's p99
//! (an injected regression, through the syncer's own `--batch-delay` tuning option) must fail.
//! Both sides use the syncer binary the workspace tests already built: nothing extra is built.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{alone, repo};

/// The debug syncer `cargo test --workspace` built ($HARNESS_SYNCER_BIN overrides).
fn syncer_bin() -> PathBuf {
    crate::common::syncer().to_path_buf()
}

const SCENARIO: &str = r#"
name = "ci-injected"
description = "Gate self-test: 300 files created in 5 dirs, local target."
seed = 5
calibrate = false

[tree]
dirs = 5
depth = 1
fanout = 5

[[phase]]
sequence = ["create"]
files = 300
threads = 2
size = { min_bytes = 1024, max_bytes = 4096 }

[timeouts]
ready_s = 30
converge_s = 60
idle_s = 10

# inotify: fanotify (auto as root) marks the whole filesystem, so other jobs' file activity
# on a shared machine would show up in this syncer's CPU and read calls.
[[sut]]
kind = "syncer"
args = ["--backend", "inotify"]
"#;

fn gate(scenario: &Path, out: &Path, candidate_args: Option<&str>) -> (Output, serde_json::Value) {
    let bin = syncer_bin();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.arg("ci")
        .arg("--scenarios")
        .arg(scenario)
        .args(["--pairs", "6", "--out"])
        .arg(out)
        .arg("--baseline-bin")
        .arg(&bin)
        .arg("--candidate-bin")
        .arg(&bin)
        .current_dir(repo());
    if let Some(a) = candidate_args {
        cmd.arg(format!("--candidate-args={a}"));
    }
    let o = cmd.output().expect("harness ci runs");
    let report = std::fs::read_to_string(out.join("report.json")).unwrap_or_else(|e| {
        panic!(
            "no report.json ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (
        o,
        serde_json::from_str(&report).expect("report.json is JSON"),
    )
}

fn p99_values(report: &serde_json::Value, side: &str) -> Vec<f64> {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["metric"] == "p99_ms")
        .expect("a p99 row")[side]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect()
}

#[test]
fn same_build_passes_and_an_injected_batch_delay_fails_the_gate() {
    // Timing-sensitive: no sysctl-changing test runs beside it.
    let _alone = alone();
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("ci-injected.toml");
    std::fs::write(&scenario, SCENARIO).expect("scenario");

    let (o, report) = gate(&scenario, &dir.path().join("same"), None);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0), "same build must pass:\n{text}");
    assert!(text.contains("Regression gate: PASS"), "{text}");
    assert_eq!(report["passed"], true);

    // At least 5x the worst baseline p99 measured just now (and at least 500 ms).
    let p99_max = p99_values(&report, "a").into_iter().fold(0.0, f64::max);
    let delay_ms = (p99_max * 5.0).max(500.0).ceil() as u64;
    let (o, report) = gate(
        &scenario,
        &dir.path().join("injected"),
        Some(&format!("--batch-delay {delay_ms}")),
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(
        o.status.code(),
        Some(1),
        "--batch-delay {delay_ms} (baseline p99 max {p99_max:.0} ms) must fail the gate:\n{text}"
    );
    // Caught by what a batch delay slows (one slow baseline run can widen p99's noise so
    // far that only convergence or p50 flags it), not by a lost file.
    let regressions = report["regressions"].to_string();
    assert!(
        [
            "latency p99 worse",
            "latency p50 worse",
            "convergence after the storm worse"
        ]
        .iter()
        .any(|m| regressions.contains(m)),
        "{regressions}"
    );
    assert!(!regressions.contains("not zero"), "{regressions}");
    assert!(
        text.contains(&format!("with `--batch-delay {delay_ms}`")),
        "{text}"
    );
}
