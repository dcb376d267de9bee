//! The `syncer` binary: parse and validate the command line, run the pipeline, exit.

use clap::Parser;
use syncer::cli::Args;

fn main() {
    let args = Args::parse();
    let config = match args.validate() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("syncer: {message}");
            std::process::exit(2);
        }
    };
    match syncer::pipeline::run(config) {
        Ok(code) => std::process::exit(code),
        Err(message) => {
            syncer::error!("{message}");
            std::process::exit(1);
        }
    }
}
