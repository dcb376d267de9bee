//! harness CLI: arguments in, `run`, `compare`, `ci`, `tune`, `sweep`, `report`, `watchcost`,
//! `limits` or `list` out; exit 0 when every run passed (or the gate passed), 1 on a failed run
//! or a regression, 2 on a usage or setup error.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use harness::cli::{Cli, Cmd};

static STOP: AtomicBool = AtomicBool::new(false);

fn main() {
    let cli = Cli::parse();
    // First Ctrl-C/SIGTERM: stop gracefully (guards restore sysctls, children are stopped by
    // PID). Second: exit at once; scripts/restore-sysctls.sh then restores saved sysctls.
    let handler = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("harness: second interrupt, exiting now");
            std::process::exit(130);
        }
        eprintln!("harness: interrupted, stopping the syncer and restoring sysctls...");
    });
    if let Err(e) = handler {
        eprintln!("harness: cannot install the Ctrl-C handler ({e}); Ctrl-C will not clean up");
    }
    let code = match cli.command {
        Cmd::Compare { a, b, sut, json } => {
            harness::cmd::compare::compare(&a, &b, &sut, json.as_deref())
        }
        Cmd::Ci {
            baseline,
            scenarios,
            pairs,
            out,
            record,
            sut,
            baseline_bin,
            candidate_bin,
            candidate_args,
        } => {
            harness::host::proctree::become_subreaper();
            let args = harness::cmd::ci::CiArgs {
                baseline,
                scenarios,
                pairs,
                out,
                record,
                sut,
                baseline_bin,
                candidate_bin,
                candidate_args: candidate_args
                    .map(|s| s.split_whitespace().map(String::from).collect())
                    .unwrap_or_default(),
            };
            match harness::cmd::ci::ci(&args, &STOP) {
                Ok(harness::cmd::ci::CiOutcome::Passed) => 0,
                Ok(harness::cmd::ci::CiOutcome::Regressed) => 1,
                Ok(harness::cmd::ci::CiOutcome::Skipped(why)) => {
                    println!("harness ci: SKIP (gate not run): {why}");
                    0
                }
                Err(e) => {
                    eprintln!("harness ci: {e}");
                    2
                }
            }
        }
        Cmd::Report {
            inputs,
            out,
            slo_ms,
            stall_budget_ms,
        } => {
            let args = harness::cmd::report::ReportArgs {
                inputs,
                out,
                slo_ms,
                stall_budget_ms,
                command_line: std::env::args().collect::<Vec<_>>().join(" "),
            };
            match harness::cmd::report::report(&args) {
                Ok(path) => {
                    println!("harness report: {}", path.display());
                    0
                }
                Err(e) => {
                    eprintln!("harness report: {e}");
                    2
                }
            }
        }
        Cmd::Tune {
            scenario,
            queues,
            rates,
            suts,
            out,
            workdir,
            no_stall_check,
            stall_queue,
            stall_rate,
        } => {
            prepare_for_runs();
            let args = harness::cmd::tune::TuneArgs {
                scenario,
                queues,
                rates,
                suts,
                out,
                workdir,
                stall_check: !no_stall_check,
                stall_queue,
                stall_rate,
                command_line: std::env::args().collect::<Vec<_>>().join(" "),
            };
            match harness::cmd::tune::tune(&args, &STOP) {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(e) => {
                    eprintln!("harness tune: {e}");
                    2
                }
            }
        }
        Cmd::Watchcost {
            dirs,
            rounds,
            out,
            dir,
        } => {
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "results/{}-{}-watchcost",
                    harness::util::fmt::today(),
                    harness::host::env::hostname()
                ))
            });
            let args = harness::cmd::watchcost::WatchcostArgs {
                dirs,
                rounds,
                out: out.clone(),
                parent: dir.unwrap_or_else(std::env::temp_dir),
                command_line: std::env::args().collect::<Vec<_>>().join(" "),
            };
            match harness::cmd::watchcost::watchcost(&args, &STOP) {
                Ok(w) => {
                    print!("{}", harness::cmd::watchcost::summary(&w));
                    eprintln!("harness: wrote {}", out.join("watchcost.json").display());
                    0
                }
                Err(e) => {
                    eprintln!("harness watchcost: {e}");
                    2
                }
            }
        }
        Cmd::Limits {
            tree,
            rate,
            stall_ms,
            events_per_op,
            cost,
        } => {
            let args = harness::cmd::limits::LimitsArgs {
                tree,
                rate,
                stall_ms,
                events_per_op,
                cost,
            };
            match harness::cmd::limits::limits(&args, &harness::host::env::repo_root()) {
                Ok(text) => {
                    print!("{text}");
                    0
                }
                Err(e) => {
                    eprintln!("harness limits: {e}");
                    2
                }
            }
        }
        Cmd::Sweep {
            scenario,
            rates,
            suts,
            slo_ms,
            out,
            workdir,
        } => {
            prepare_for_runs();
            let args = harness::cmd::tune::sweep::SweepArgs {
                scenario,
                rates,
                suts,
                slo_ms,
                out,
                workdir,
                command_line: std::env::args().collect::<Vec<_>>().join(" "),
            };
            match harness::cmd::tune::sweep::sweep(&args, &STOP) {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("harness sweep: {e}");
                    2
                }
            }
        }
        Cmd::Chaos(args) => match harness::cmd::chaos::main(&args, &STOP) {
            Ok(true) => 0,
            Ok(false) => {
                eprintln!("harness chaos: some cases FAILED (seeds and replay commands above)");
                1
            }
            Err(e) => {
                eprintln!("harness chaos: {e}");
                2
            }
        },
        Cmd::List { dir } => match harness::cmd::list::list(&dir) {
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(e) => {
                eprintln!("harness: {e}");
                2
            }
        },
        Cmd::Run {
            scenario,
            suts,
            repeat,
            out,
            workdir,
            keep,
        } => {
            prepare_for_runs();
            let args = harness::cmd::run::RunArgs {
                scenario,
                suts,
                repeat,
                out,
                workdir,
                keep,
                command_line: std::env::args().collect::<Vec<_>>().join(" "),
            };
            match harness::cmd::run::run(&args, &STOP) {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(e) => {
                    eprintln!("harness: {e}");
                    2
                }
            }
        }
    };
    std::process::exit(code);
}

/// Before storms run: adopt the syncers' orphaned children (so they are reaped and stopped),
/// and exact modes for generated files (the verifier compares modes).
fn prepare_for_runs() {
    harness::host::proctree::become_subreaper();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
}
