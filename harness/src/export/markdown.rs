//! README.md (how the results were made: command, revision, machine) and summary.md (a
//! side-by-side table readable at a glance, then why runs failed or were skipped).

use std::fmt::Write;

use super::RunInfo;
use super::table::Table;
use crate::scenario::Scenario;
use crate::session::result::{Outcome, RunResult};

fn ms(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e6)
}

fn secs(ns: Option<u64>) -> String {
    ns.map_or_else(|| "—".into(), |n| format!("{:.2}", n as f64 / 1e9))
}

pub fn readme(info: &RunInfo, s: &Scenario) -> String {
    let mut out = format!(
        "# {} — harness results\n\n{}\n\n",
        s.name,
        s.description.trim()
    );
    let _ = writeln!(out, "- command: `{}`", info.command);
    let _ = writeln!(
        out,
        "- scenario file: `{}` (seed {}, {} storm ops, {} repeat(s))",
        info.scenario_file, s.seed, info.storm_ops, s.repeats
    );
    let _ = writeln!(out, "- git revision: {}", info.git_revision);
    let _ = writeln!(out, "- date (UTC): {}, host: {}", info.date, info.host);
    let _ = writeln!(out, "- kernel: {}", info.kernel);
    let _ = writeln!(out, "- CPU: {}; memory: {}", info.cpu, info.memory);
    let _ = writeln!(out, "- work dir filesystem: {}", info.workdir_fs);
    let _ = writeln!(out, "- replica filesystem: {}", info.replica_fs);
    let _ = writeln!(out, "- target: {:?}", s.target);
    for (k, v) in &info.sysctls {
        let _ = writeln!(
            out,
            "- sysctl {k} = {v} (machine value; the scenario's [kernel] applies during each syncer's run)"
        );
    }
    for (k, v) in &info.tools {
        let _ = writeln!(out, "- {k}: {v}");
    }
    out.push_str(
        "\n## How to read these numbers\n\n\
         Latency is per path, from the moment the generator finished the path's final operation to the\n\
         moment the probe (fanotify or inotify on the replica) saw that final version (header id+version, size, mode).\n\
         Convergence is the time from the end of the storm to a full tree compare that found the replica\n\
         equal (names, type, size, content, mode, mtime ns, link target). CPU is user+sys of the syncer's\n\
         whole process tree, including children it already waited for, sampled when it went idle; the\n\
         daemon's is separate. `self_*` fields are the syncer's own reports. Absolute times hold only for\n\
         the machine above; compare syncers by their ratios within one run.\n",
    );
    out
}

/// The start-up table, for runs whose syncer reported capture time or whose kernel memory
/// was measured.
fn startup(out: &mut String, runs: &[RunResult]) {
    let shown: Vec<&RunResult> = runs
        .iter()
        .filter(|r| r.capture_ns.is_some() || r.kmem_pinned_bytes.is_some())
        .collect();
    if shown.is_empty() {
        return;
    }
    out.push_str("\nStart-up: capture and initial reconcile are the syncer's own report (status file: from its start until changes were captured; then until the initial reconcile was applied); ready is the harness's wait from launch. Kernel memory pinned: slab after drop_caches with the syncer running minus after it stopped (measured, /proc/meminfo `Slab`; slabinfo totals beside it).\n\n");
    let mut table = Table::new([
        "syncer",
        "rep",
        "backend",
        "capture s",
        "initial reconcile s",
        "ready s (harness)",
        "kernel memory pinned MiB",
        "(slabinfo MiB)",
    ]);
    let mib =
        |b: Option<i64>| b.map_or_else(|| "—".into(), |b| format!("{:.1}", b as f64 / 1048576.0));
    for r in shown {
        let backend = r
            .self_report
            .as_ref()
            .and_then(|v| v["backend"].as_str())
            .unwrap_or("—");
        table.row([
            r.sut.clone(),
            r.repeat.to_string(),
            backend.to_string(),
            r.capture_ns
                .map_or_else(|| "—".into(), |ns| format!("{:.4}", ns as f64 / 1e9)),
            secs(r.reconcile_ns),
            format!("{:.3}", r.ready_ns as f64 / 1e9),
            mib(r.kmem_pinned_bytes),
            mib(r.kmem_pinned_slabinfo_bytes),
        ]);
    }
    out.push_str(&table.render());
}

const RUN_COLUMNS: [&str; 20] = [
    "syncer",
    "rep",
    "result",
    "storm s",
    "ops/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "converge s",
    "idle s",
    "CPU s",
    "daemon CPU s",
    "peak RSS MiB",
    "procs",
    "daemon conns",
    "overflows (probe/self)",
    "missing/extra/mismatched",
    "floor ratio",
];

/// One row per run; a skipped run has its name and nothing else.
fn runs_table(runs: &[RunResult]) -> Table {
    let mut table = Table::new(RUN_COLUMNS);
    for r in runs {
        if r.outcome == Outcome::Skipped {
            let mut cells = vec![r.sut.clone(), r.repeat.to_string(), "skipped".into()];
            cells.resize(RUN_COLUMNS.len(), String::new());
            table.row(cells);
            continue;
        }
        let result = match (r.outcome == Outcome::Passed, r.expect_fail) {
            (true, false) => "pass",
            (true, true) => "pass (expected to fail)",
            (false, false) => "**FAIL**",
            (false, true) => "**FAIL** (expected)",
        };
        table.row([
            r.sut.clone(),
            r.repeat.to_string(),
            result.to_string(),
            format!("{:.2}", r.storm_ns as f64 / 1e9),
            format!("{:.0}", r.ops_per_s),
            ms(r.latency.p50_ns),
            ms(r.latency.p90_ns),
            ms(r.latency.p99_ns),
            ms(r.latency.p999_ns),
            ms(r.latency.max_ns),
            secs(r.converge_ns),
            secs(r.idle_ns),
            format!("{:.2}", r.cpu_ns as f64 / 1e9),
            format!("{:.2}", r.daemon_cpu_ns as f64 / 1e9),
            format!("{:.1}", r.peak_rss_kib as f64 / 1024.0),
            r.processes_seen.to_string(),
            r.daemon_connections.to_string(),
            format!(
                "{}/{}",
                r.probe_overflows,
                r.self_overflows
                    .map_or_else(|| "—".into(), |n| n.to_string())
            ),
            format!("{}/{}/{}", r.diff.missing, r.diff.extra, r.diff.mismatched),
            r.floor_ratio
                .map_or_else(|| "—".into(), |x| format!("{x:.2}")),
        ]);
    }
    table
}

pub fn summary(
    info: &RunInfo,
    s: &Scenario,
    calibration: Option<&RunResult>,
    runs: &[RunResult],
) -> String {
    let mut out = format!(
        "# {} on {} ({}, kernel {})\n\n",
        s.name, info.host, info.cpu, info.kernel
    );
    if let Some(c) = calibration {
        let _ = writeln!(
            out,
            "Probe floor (calibration, generator writing straight into the replica): p50 {} ms, p99 {} ms, max {} ms over {} samples.\n",
            ms(c.latency.p50_ns),
            ms(c.latency.p99_ns),
            ms(c.latency.max_ns),
            c.latency.count
        );
    }
    if let Some(probe) = calibration
        .into_iter()
        .chain(runs)
        .map(|r| r.probe.as_str())
        .find(|p| !p.is_empty())
    {
        let _ = writeln!(
            out,
            "Probe: {probe} (the replica watcher that stamps arrivals).\n"
        );
    }
    out.push_str(&runs_table(runs).render());
    startup(&mut out, runs);
    let timed: Vec<&RunResult> = runs
        .iter()
        .filter(|r| r.one_file_run_ns.is_some())
        .collect();
    if !timed.is_empty() {
        out.push_str(
            "\nR = one-file `--files-from` run to the same daemon (client TCP_NODELAY), median of 5, timed right after each run:\n\n",
        );
        for r in timed {
            let one = r.one_file_run_ns.unwrap_or(0);
            let _ = writeln!(
                out,
                "- {} r{}: R {} ms, 2R + 10 ms = {} ms, p99 {} ms ({:.2} x R)",
                r.sut,
                r.repeat,
                ms(one),
                ms(2 * one + 10_000_000),
                ms(r.latency.p99_ns),
                r.latency.p99_ns as f64 / one.max(1) as f64
            );
        }
    }
    let notes: Vec<&RunResult> = runs
        .iter()
        .filter(|r| !r.reasons.is_empty() || !r.flags.is_empty())
        .collect();
    if !notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for r in notes {
            if !r.flags.is_empty() {
                let _ = writeln!(out, "- {} r{} flags: `{}`", r.sut, r.repeat, r.flags);
            }
            for reason in &r.reasons {
                let _ = writeln!(
                    out,
                    "- {} r{} {}: {}",
                    r.sut,
                    r.repeat,
                    if r.outcome == Outcome::Skipped {
                        "skipped"
                    } else {
                        "failed"
                    },
                    reason
                );
            }
            if r.latency_planned.is_some() {
                let _ = writeln!(
                    out,
                    "- {} r{} open-loop p99 from planned time: {} ms (generator lag max {} ms)",
                    r.sut,
                    r.repeat,
                    ms(r.latency_planned.map_or(0, |l| l.p99_ns)),
                    ms(r.gen_lag_max_ns)
                );
            }
        }
    }
    out.push_str("\nCPU, RSS and spawns are measured from outside (/proc, the rsync daemon's log); `self` overflows are the syncer's own report. Processes seen are a lower bound (sampled every 200 ms) for scripts that spawn many short rsync runs; the daemon's connection count is exact.\n");
    out
}
