//! The `syncer` binary: parse and validate the command line, run the pipeline, exit.

use clap::Parser;
use syncer::cli::{Cli, Command};
use syncer::config::Config;
use syncer::error::Error;

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            err.exit_code()
        }
    };
    std::process::exit(code);
}

fn run() -> Result<i32, Error> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Verify(args)) => syncer::verify::run(args),
        Some(Command::Wait(args)) => syncer::barrier::client::run(args),
        None => syncer::pipeline::run(Config::from_args(cli.run)?),
    }
}

/// Usage errors go to stderr as a plain line, like clap's own; the rest go through the log
/// (timestamped, like everything the running syncer says).
fn report(err: &Error) {
    match err {
        Error::Usage(message) => eprintln!("syncer: {message}"),
        _ => syncer::error!("{err}"),
    }
}
