//! harness CLI: arguments in, `run`, `compare`, `ci`, `tune`, `sweep`, `report`, `watchcost`,
//! `limits` or `list` out; exit 0 when every run passed (or the gate passed), 1 on a failed run
//! or a regression, 2 on a usage or setup error.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "harness",
    about = "File storms against real-time replicators: latency, convergence, CPU, verification"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario against its syncers under test, one after another.
    Run {
        scenario: PathBuf,
        /// Only this syncer (label or kind); repeatable; selects syncers that are off by default.
        #[arg(long = "sut")]
        suts: Vec<String>,
        /// Repeats per syncer (overrides the scenario's `repeats`).
        #[arg(long)]
        repeat: Option<u32>,
        /// Results root; a folder <date>-<host>-<scenario> is written inside.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Where sources and replicas live (default: a new temp dir).
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// Keep the work dir afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Compare two sets of runs (results folders or run.json files; folders are searched
    /// recursively): every gate metric, B/A, noise, a verdict each. Exit 1 on a regression.
    Compare {
        /// Baseline runs.
        a: PathBuf,
        /// Candidate runs.
        b: PathBuf,
        /// Which syncer's runs to compare (its label in the results).
        #[arg(long, default_value = "syncer")]
        sut: String,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Regression gate: build the baseline revision's syncer, run the CI scenarios A B A B
    /// with this build's syncer, compare. Exit 1 on a regression, 0 when the baseline
    /// cannot be built (with a SKIP line saying why).
    Ci {
        /// Baseline revision (default: the merge base with main, or HEAD~1 on main).
        #[arg(long)]
        baseline: Option<String>,
        /// Comma-separated scenario files (default: scenarios/ci-*.toml).
        #[arg(long, value_delimiter = ',')]
        scenarios: Vec<PathBuf>,
        /// A/B pairs per scenario (at least 3; from 6 the rank test decides timing metrics).
        #[arg(long, default_value_t = 6)]
        pairs: u32,
        /// Where runs, report.md and report.json go (runs/ inside is replaced).
        #[arg(long, default_value = "target/ci-gate")]
        out: PathBuf,
        /// Append every run's floor ratio and latency to results/history.csv.
        #[arg(long)]
        record: bool,
        /// Which syncer entry of the scenarios to run.
        #[arg(long, default_value = "syncer")]
        sut: String,
        /// Testing: the baseline's syncer binary (nothing is built for it).
        #[arg(long)]
        baseline_bin: Option<PathBuf>,
        /// Testing: the candidate's syncer binary (default: build this tree's).
        #[arg(long)]
        candidate_bin: Option<PathBuf>,
        /// Testing: extra syncer arguments for the candidate only, e.g. "--batch-delay 2000"
        /// to check that the gate catches an injected regression.
        #[arg(long, allow_hyphen_values = true)]
        candidate_args: Option<String>,
    },
    /// Capacity planning report (report.md + SVG plots) from results folders, tune.json,
    /// sweep.json, watchcost.json and history.csv (folders are searched recursively).
    Report {
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where report.md and the plots go.
        #[arg(long, default_value = "results/capacity-report")]
        out: PathBuf,
        /// p99 objective for "sustainable ops/s" (default: the sweep's, else 1000 ms).
        #[arg(long)]
        slo_ms: Option<f64>,
        /// How long the syncer may stop reading events; sizes max_queued_events.
        #[arg(long, default_value_t = 1000.0)]
        stall_budget_ms: f64,
    },
    /// Kernel memory pinned per inotify watch and per fanotify filesystem mark, measured
    /// (slab after drop_caches, held vs released); writes watchcost.json. Needs root.
    Watchcost {
        /// Directories to watch.
        #[arg(long, default_value_t = 100_000)]
        dirs: u64,
        /// Held/released rounds per mechanism (median and spread are reported).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Folder for watchcost.json and README.md (default results/<date>-<host>-watchcost).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the directories are made; its filesystem decides what a watch pins (default:
        /// the temp dir, ext4 here, where a watch keeps an otherwise reclaimable inode).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Quick, read-only capacity answer for a real tree: watches needed (and held already),
    /// their kernel memory, the queue for a rate and stall, /etc/sysctl.d/ lines.
    Limits {
        #[arg(long)]
        tree: PathBuf,
        /// Storm rate, file operations per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// How long the syncer may stop reading without an overflow, ms.
        #[arg(long, default_value_t = 1000)]
        stall_ms: u64,
        /// Queued events per file operation.
        #[arg(long, default_value_t = harness::cmd::limits::DEFAULT_EVENTS_PER_OP)]
        events_per_op: f64,
        /// watchcost.json (default: the newest results/*/watchcost.json).
        #[arg(long)]
        cost: Option<PathBuf>,
    },
    /// Size fs.inotify.max_queued_events: run the scenario over a grid of queue sizes x
    /// storm rates, report per rate the smallest queue with no overflow and the stall each
    /// queue tolerates, and check that prediction by SIGSTOPping the syncer mid-storm.
    Tune {
        scenario: PathBuf,
        /// max_queued_events values, comma-separated (default 256,1024,4096,16384,65536).
        #[arg(long = "queue", value_delimiter = ',')]
        queues: Vec<u64>,
        /// Offered storm rates in ops/s, comma-separated (default 500,2000,8000,32000).
        #[arg(long = "rate", value_delimiter = ',')]
        rates: Vec<f64>,
        /// Only this syncer (label or kind); repeatable. Our syncer is pinned to --backend inotify.
        #[arg(long = "sut")]
        suts: Vec<String>,
        /// Results root; a folder <date>-<host>-tune-<scenario> is written inside.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Where sources live during the runs (default /dev/shm, else the temp dir).
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// Skip the SIGSTOP checks of the predicted stall budget.
        #[arg(long)]
        no_stall_check: bool,
        /// The queue of the cell to stall-check (with --stall-rate; default: the clean cell
        /// whose predicted stall is nearest 1 s).
        #[arg(long)]
        stall_queue: Option<u64>,
        /// The rate of the cell to stall-check (with --stall-queue).
        #[arg(long)]
        stall_rate: Option<f64>,
    },
    /// Open-loop rate sweep: per syncer, step every phase's rate up until p99 misses the SLO
    /// twice in a row; write the latency-vs-rate curve, its knee and the sustainable ops/s.
    Sweep {
        scenario: PathBuf,
        /// Offered rates in ops/s, comma-separated (default 1000 to 48000).
        #[arg(long = "rate", value_delimiter = ',')]
        rates: Vec<f64>,
        /// Only this syncer (label or kind); repeatable.
        #[arg(long = "sut")]
        suts: Vec<String>,
        /// The p99 objective in ms (default: the scenario's [slo] p99_ms).
        #[arg(long)]
        slo_ms: Option<f64>,
        /// Results root; a folder <date>-<host>-sweep-<scenario> is written inside.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Where sources live during the runs (default /dev/shm, else the temp dir).
        #[arg(long)]
        workdir: Option<PathBuf>,
    },
    /// Random-operation storms: seeded mixes of ordinary file operations run live under our
    /// syncer (each backend x target), every replica required to equal SOURCE exactly.
    /// Exit 1 when a case fails (its seed and replay command are printed).
    Chaos(harness::cmd::chaos::config::ChaosArgs),
    /// List scenarios with their descriptions.
    List {
        #[arg(default_value = "scenarios")]
        dir: PathBuf,
    },
}

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
