//! The `syncer` binary: parse and validate the command line, run the pipeline, exit.

use clap::{CommandFactory, FromArgMatches};
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
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    match cli.command {
        Some(Command::Verify(args)) => syncer::verify::run(args),
        Some(Command::Wait(args)) => syncer::barrier::client::run(args),
        None => syncer::pipeline::run(Config::from_cli(cli.run, &matches)?),
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
