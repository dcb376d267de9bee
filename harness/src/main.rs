//! harness CLI: arguments in, `run` or `list` out; exit 0 when every run passed, 1 when a
//! run failed verification or an SLO, 2 on a usage or setup error.
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
        Cmd::List { dir } => match harness::run::list(&dir) {
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
            harness::proctree::become_subreaper();
            // Exact modes for generated files: the verifier compares modes.
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            let args = harness::run::RunArgs {
                scenario,
                suts,
                repeat,
                out,
                workdir,
                keep,
                command_line: std::env::args().collect::<Vec<_>>().join(" "),
            };
            match harness::run::run(&args, &STOP) {
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
