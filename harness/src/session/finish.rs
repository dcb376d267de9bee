//! The end of a run: the stopped syncer, daemon and diff in, the remaining `RunResult`
//! fields out (CPU, RSS, spawns, self-reports, floor ratio) and the pass/fail verdict.

use std::path::Path;
use std::time::Duration;

use crate::host::proctree::TreeTracker;
use crate::scenario::Scenario;
use crate::session::result::{Outcome, RunResult};
use crate::sut::SutProcess;
use crate::sut::daemon::RsyncDaemon;

pub fn read_status(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// How long a syncer under test may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Final CPU/RSS sample, stop by PID (SIGTERM, then SIGKILL), self-reports.
pub fn finish_sut(
    p: &mut SutProcess,
    tracker: &mut TreeTracker,
    daemon: Option<&mut RsyncDaemon>,
    r: &mut RunResult,
) {
    let sample = tracker.sample();
    r.cpu_ns = sample.cpu_ns;
    r.processes_seen = u64::from(sample.seen);
    r.peak_rss_kib = tracker.peak_rss_kib;
    r.main_rss_kib = tracker.root_rss_kib;
    r.io = crate::host::procio::read_tree(&tracker.live_pids());
    if let Some(d) = daemon {
        if let Some(pid) = d.pid() {
            r.daemon_cpu_ns = TreeTracker::new(pid).sample().cpu_ns;
        }
        r.daemon_connections = d.connections();
    }
    // Longer than our syncer's own drain limit (10 s, then it exits): a SIGKILL mid-copy would
    // leave its temporary files in the replica and fail a run that was only slow to stop.
    let status = p.stop(tracker, STOP_GRACE);
    r.exit_status = status.map_or_else(|| "unknown".into(), |s| s.to_string());
    if let Some(path) = &p.status_file {
        r.self_report = read_status(path);
        r.self_overflows = r.self_report.as_ref().and_then(|v| v["overflows"].as_u64());
    } else {
        // lsyncd logs queue overflows ("Overflow" in its log); the script logs nothing.
        let dir = p.log_file.parent().unwrap_or(Path::new("."));
        let log = std::fs::read_to_string(dir.join("lsyncd.log")).unwrap_or_default()
            + &std::fs::read_to_string(&p.log_file).unwrap_or_default();
        let n = log
            .lines()
            .filter(|l| l.to_lowercase().contains("overflow"))
            .count() as u64;
        r.self_overflows = (n > 0).then_some(n);
    }
}

/// The syncer's start-up milestones from its final status (self-reported): capture, and the
/// initial reconcile (ready minus capture).
pub fn startup_times(r: &mut RunResult) {
    let Some(status) = &r.self_report else { return };
    let capture = status["capture_ns"].as_u64().filter(|&ns| ns > 0);
    let ready = status["ready_ns"].as_u64().filter(|&ns| ns > 0);
    r.capture_ns = capture;
    r.reconcile_ns = capture.zip(ready).map(|(c, d)| d.saturating_sub(c));
}

/// Kernel memory the syncer pinned: the slab reading taken while it ran minus one taken now
/// that it has stopped (both after drop_caches). A failed reading leaves the fields empty
/// and says why in the reasons (it does not fail the run).
pub fn kmem_pinned(running: std::io::Result<crate::host::kmem::KmemReading>, r: &mut RunResult) {
    let stopped = crate::host::kmem::settled();
    match (running, stopped) {
        (Ok(running), Ok(stopped)) => {
            let (slab, slabinfo) = running.delta(&stopped);
            r.kmem_running_bytes = Some(running.slab_bytes);
            r.kmem_stopped_bytes = Some(stopped.slab_bytes);
            r.kmem_pinned_bytes = Some(slab);
            r.kmem_pinned_slabinfo_bytes = Some(slabinfo);
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("harness: kernel memory not measured: {e}");
        }
    }
}

/// Times the floor copy of the final source tree.
pub fn floor(src: &Path, floor_dir: &Path, daemon: Option<&RsyncDaemon>, r: &mut RunResult) {
    let timed = match daemon {
        Some(d) => crate::measure::floor::rsync_copy(src, d),
        None => crate::measure::floor::parallel_copy(src, floor_dir),
    };
    match timed {
        Ok(ns) => {
            r.floor_ns = ns;
            r.floor_ratio = r
                .converge_ns
                .map(|c| (r.storm_ns + c) as f64 / ns.max(1) as f64);
        }
        Err(e) => eprintln!("harness: floor copy failed ({e}); the ratio is left out"),
    }
    if let Some(d) = daemon {
        match crate::measure::floor::one_file_run(src, d) {
            Ok(ns) => r.one_file_run_ns = Some(ns),
            Err(e) => eprintln!("harness: timing a one-file rsync run failed ({e})"),
        }
    }
}

/// Pass or fail: a lost or corrupted file fails the run whatever its speed; then the SLOs.
pub fn judge(s: &Scenario, calibration: bool, r: &mut RunResult) {
    if r.outcome == Outcome::Skipped {
        return;
    }
    if !r.diff.is_equal() {
        r.reasons.push(format!(
            "replica differs from source: {}",
            r.diff.describe()
        ));
    }
    if r.samples_unseen > 0 {
        r.reasons.push(format!(
            "{} paths never reached their final state in the replica (e.g. {})",
            r.samples_unseen,
            r.unseen_examples.join(", ")
        ));
    }
    if r.op_errors > 0 {
        r.reasons
            .push(format!("{} generator operations failed", r.op_errors));
    }
    if !calibration {
        match (r.converge_ns, s.slo.converge_ms) {
            (None, _) => r.reasons.push("did not converge before the timeout".into()),
            (Some(c), Some(slo)) if c as f64 / 1e6 > slo => r.reasons.push(format!(
                "SLO: converged in {:.1} ms > {slo} ms",
                c as f64 / 1e6
            )),
            _ => {}
        }
        if let Some(slo) = s.slo.p99_ms
            && r.latency.p99_ns as f64 / 1e6 > slo
        {
            r.reasons.push(format!(
                "SLO: p99 latency {:.1} ms > {slo} ms",
                r.latency.p99_ns as f64 / 1e6
            ));
        }
    }
    r.outcome = if r.reasons.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed
    };
}

#[cfg(test)]
mod tests {
    mod prop {
        use proptest::prelude::*;

        use super::super::*;

        /// Reads `body` as the status file and takes from it what a run takes: readiness,
        /// overflows, start-up times.
        fn take(body: &[u8]) -> Result<(), TestCaseError> {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), body).unwrap();
            let status = read_status(file.path());
            prop_assert_eq!(
                status.is_some(),
                serde_json::from_slice::<serde_json::Value>(body).is_ok()
            );
            let mut r = RunResult::skipped("syncer".into(), "syncer".into(), 1, String::new());
            if let Some(v) = &status {
                let _ready = v["ready"] == serde_json::Value::Bool(true);
                r.self_overflows = v["overflows"].as_u64();
            }
            r.self_report = status;
            startup_times(&mut r);
            if let (Some(capture), Some(reconcile)) = (r.capture_ns, r.reconcile_ns) {
                prop_assert!(capture > 0);
                prop_assert!(reconcile < u64::MAX);
            }
            Ok(())
        }

        /// A status object with its keys set to values of any type, sometimes cut short (a
        /// reader that races a writer without the rename would see that).
        fn status() -> impl Strategy<Value = String> {
            let key = proptest::sample::select(
                &["ready", "capture_ns", "ready_ns", "overflows", "other"][..],
            );
            let value = prop_oneof![
                Just("true".to_string()),
                Just("null".to_string()),
                Just("-1".to_string()),
                Just("1e30".to_string()),
                Just("[]".to_string()),
                Just("{}".to_string()),
                Just("\"x\"".to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
            ];
            (
                proptest::collection::vec((key, value), 0..6),
                any::<proptest::sample::Index>(),
            )
                .prop_map(|(fields, cut)| {
                    let body: Vec<String> =
                        fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    let text = format!("{{{}}}", body.join(","));
                    let at = cut.index(text.len() * 2 + 1).min(text.len());
                    text[..at].to_string()
                })
        }

        proptest! {
            #![proptest_config(crate::prop::config(256))]

            #[test]
            fn prop_status_file_any_bytes_never_panic(
                body in proptest::collection::vec(any::<u8>(), 0..256),
            ) {
                take(&body)?;
            }

            #[test]
            fn prop_status_file_any_object_never_panics(text in status()) {
                take(text.as_bytes())?;
            }
        }
    }
}
