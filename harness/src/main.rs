//! harness CLI: arguments in, `run`, `compare`, `ci`, `tune`, `sweep`, `report`, `watchcost`,
//! `limits`, `chaos` or `list` out; exit 0 when every run passed (or the gate passed or was
//! skipped), 1 on a failed run or a regression, 2 on a usage or setup error (any
//! `harness::Error`, printed as `harness <cmd>: <error>`).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use harness::cli::{Cli, Cmd};
use harness::cmd;

static STOP: AtomicBool = AtomicBool::new(false);

/// How a command that ran to its end came out.
enum Outcome {
    /// Every run passed, the gate passed or was skipped, or the command only reports.
    Passed,
    /// A run failed verification or an SLO, a chaos case failed, or the gate regressed.
    Failed,
}

fn main() -> ExitCode {
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
    let prefix = error_prefix(&cli.command);
    match run(cli) {
        Ok(Outcome::Passed) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{prefix}: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The one map from an error to the exit code. Every kind is 2 today: a usage error, a
/// setup error, an I/O failure and an interrupted command all mean "no verdict".
fn exit_code(e: &harness::Error) -> u8 {
    match e {
        harness::Error::Usage(_)
        | harness::Error::Setup(_)
        | harness::Error::Io(_)
        | harness::Error::Interrupted(_) => 2,
    }
}

/// What an error line starts with: `harness` for run and list, `harness <cmd>` otherwise.
fn error_prefix(command: &Cmd) -> &'static str {
    match command {
        Cmd::Run(_) | Cmd::List(_) => "harness",
        Cmd::Compare(_) => "harness compare",
        Cmd::Ci(_) => "harness ci",
        Cmd::Report(_) => "harness report",
        Cmd::Watchcost(_) => "harness watchcost",
        Cmd::Limits(_) => "harness limits",
        Cmd::Tune(_) => "harness tune",
        Cmd::Sweep(_) => "harness sweep",
        Cmd::Chaos(_) => "harness chaos",
    }
}

fn passed_if(ok: bool) -> Outcome {
    if ok { Outcome::Passed } else { Outcome::Failed }
}

/// Runs one subcommand; what it prints on success is printed here, errors by main.
fn run(cli: Cli) -> Result<Outcome, harness::Error> {
    Ok(match cli.command {
        Cmd::Run(args) => {
            prepare_for_runs();
            passed_if(cmd::run::run(&args, &STOP)?)
        }
        Cmd::Compare(args) => passed_if(cmd::compare::compare(&args)?),
        Cmd::Ci(args) => {
            harness::host::proctree::become_subreaper();
            match cmd::ci::ci(&args, &STOP)? {
                cmd::ci::CiOutcome::Passed => Outcome::Passed,
                cmd::ci::CiOutcome::Regressed => Outcome::Failed,
                cmd::ci::CiOutcome::Skipped(why) => {
                    println!("harness ci: SKIP (gate not run): {why}");
                    Outcome::Passed
                }
            }
        }
        Cmd::Report(args) => {
            let path = cmd::report::report(&args)?;
            println!("harness report: {}", path.display());
            Outcome::Passed
        }
        Cmd::Tune(args) => {
            prepare_for_runs();
            passed_if(cmd::tune::tune(&args, &STOP)?)
        }
        Cmd::Watchcost(args) => {
            let out = args.out_dir();
            let w = cmd::watchcost::watchcost(&args, &out, &STOP)?;
            print!("{}", cmd::watchcost::summary(&w));
            eprintln!("harness: wrote {}", out.join("watchcost.json").display());
            Outcome::Passed
        }
        Cmd::Limits(args) => {
            print!(
                "{}",
                cmd::limits::limits(&args, &harness::host::env::repo_root())?
            );
            Outcome::Passed
        }
        Cmd::Sweep(args) => {
            prepare_for_runs();
            cmd::tune::sweep::sweep(&args, &STOP)?;
            Outcome::Passed
        }
        Cmd::Chaos(args) => {
            let all_passed = cmd::chaos::main(&args, &STOP)?;
            if !all_passed {
                eprintln!("harness chaos: some cases FAILED (seeds and replay commands above)");
            }
            passed_if(all_passed)
        }
        Cmd::List(args) => {
            print!("{}", cmd::list::list(&args.dir)?);
            Outcome::Passed
        }
    })
}

/// Before storms run: adopt the syncers' orphaned children (so they are reaped and stopped),
/// and exact modes for generated files (the verifier compares modes).
fn prepare_for_runs() {
    harness::host::proctree::become_subreaper();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
}
