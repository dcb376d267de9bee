//! The command line as clap parses it (main.rs dispatches each subcommand to `cmd/`, which
//! takes its arguments struct from here). In the library, so the man pages and completions
//! under docs/ are generated from these very types.

pub mod args;
pub mod chaos;

use clap::{Parser, Subcommand};

pub use args::*;
pub use chaos::{Backend, ChaosArgs, Target};

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
    Run(RunArgs),
    /// Compare two sets of runs (results folders or run.json files; folders are searched
    /// recursively): every gate metric, B/A, noise, a verdict each. Exit 1 on a regression.
    Compare(CompareArgs),
    /// Regression gate: build the baseline revision's syncer, run the CI scenarios A B A B
    /// with this build's syncer, compare. Exit 1 on a regression, 0 when the baseline
    /// cannot be built (with a SKIP line saying why).
    Ci(CiArgs),
    /// Capacity planning report (report.md + SVG plots) from results folders, tune.json,
    /// sweep.json, watchcost.json and history.csv (folders are searched recursively).
    Report(ReportArgs),
    /// Kernel memory pinned per inotify watch and per fanotify filesystem mark, measured
    /// (slab after drop_caches, held vs released); writes watchcost.json. Needs root.
    Watchcost(WatchcostArgs),
    /// Quick, read-only capacity answer for a real tree: watches needed (and held already),
    /// their kernel memory, the queue for a rate and stall, /etc/sysctl.d/ lines.
    Limits(LimitsArgs),
    /// Size fs.inotify.max_queued_events: run the scenario over a grid of queue sizes x
    /// storm rates, report per rate the smallest queue with no overflow and the stall each
    /// queue tolerates, and check that prediction by SIGSTOPping the syncer mid-storm.
    Tune(TuneArgs),
    /// Open-loop rate sweep: per syncer, step every phase's rate up until p99 misses the SLO
    /// twice in a row; write the latency-vs-rate curve, its knee and the sustainable ops/s.
    Sweep(SweepArgs),
    /// Random-operation storms: seeded mixes of ordinary file operations run live under our
    /// syncer (each backend x target), every replica required to equal SOURCE exactly.
    /// Exit 1 when a case fails (its seed and replay command are printed).
    Chaos(ChaosArgs),
    /// List scenarios with their descriptions.
    List(ListArgs),
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
