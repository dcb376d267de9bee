//! The command line as clap parses it (main.rs dispatches each subcommand to `cmd/`). In the
//! library, so the man pages and completions under docs/ are generated from these very types.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    propagate_version = true,
    about = "File storms against real-time replicators: latency, convergence, CPU, verification"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
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
        #[arg(long, default_value_t = crate::cmd::limits::DEFAULT_EVENTS_PER_OP)]
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
    Chaos(crate::cmd::chaos::config::ChaosArgs),
    /// List scenarios with their descriptions.
    List {
        #[arg(default_value = "scenarios")]
        dir: PathBuf,
    },
}

/// The man pages and shell completions under docs/ are generated from the clap definitions of
/// both programs; this test fails when the committed files no longer match them (CI's check).
/// `scripts/gen-docs.sh` writes them anew.
#[cfg(test)]
mod generated_docs {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use clap::CommandFactory;
    use clap_complete::Shell;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Every generated file, by its path relative to the workspace.
    fn rendered() -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        for mut cmd in [syncer::cli::Cli::command(), super::Cli::command()] {
            cmd.build();
            let name = cmd.get_name().to_string();
            // `build` gave each subcommand its display name ("syncer verify") for the synopsis.
            let mut pages = vec![(name.clone(), cmd.clone())];
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                pages.push((format!("{name}-{}", sub.get_name()), sub.clone()));
            }
            for (page, command) in pages {
                let mut out = Vec::new();
                clap_mangen::Man::new(command)
                    .title(page.clone())
                    .render(&mut out)
                    .expect("render a man page");
                files.insert(PathBuf::from(format!("docs/man/{page}.1")), out);
            }
            for (shell, file) in [
                (Shell::Bash, format!("{name}.bash")),
                (Shell::Zsh, format!("_{name}")),
                (Shell::Fish, format!("{name}.fish")),
            ] {
                let mut out = Vec::new();
                clap_complete::generate(shell, &mut cmd.clone(), &name, &mut out);
                files.insert(PathBuf::from("docs/completions").join(file), out);
            }
        }
        files
    }

    fn committed() -> Vec<PathBuf> {
        let mut found = Vec::new();
        for dir in ["docs/man", "docs/completions"] {
            let Ok(entries) = std::fs::read_dir(workspace().join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                found.push(Path::new(dir).join(entry.file_name()));
            }
        }
        found
    }

    #[test]
    fn man_pages_and_completions_match_the_clap_definitions() {
        let files = rendered();
        let root = workspace();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            for stale in committed().iter().filter(|p| !files.contains_key(*p)) {
                std::fs::remove_file(root.join(stale)).unwrap();
            }
            for (path, content) in &files {
                std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
                std::fs::write(root.join(path), content).unwrap();
            }
            return;
        }
        let mut wrong: Vec<String> = files
            .iter()
            .filter(|(path, content)| {
                std::fs::read(root.join(path)).ok().as_ref() != Some(*content)
            })
            .map(|(path, _)| format!("{} differs or is missing", path.display()))
            .collect();
        wrong.extend(
            committed()
                .iter()
                .filter(|p| !files.contains_key(*p))
                .map(|p| format!("{} is no longer generated", p.display())),
        );
        assert!(
            wrong.is_empty(),
            "the committed man pages and completions do not match the command lines: {}; run scripts/gen-docs.sh and commit docs/",
            wrong.join(", ")
        );
    }
}
