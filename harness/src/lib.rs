//! harness: file-storm generator and measurement tool for real-time replicators. Folders
//! follow the data flow of one run (ARCHITECTURE.md): scenario -> storm (plan, generator) ->
//! [sut] -> replica -> probe -> measure -> session -> export; cmd/ holds the commands on top,
//! host/ the machine, util/ what needs nothing else. A folder imports only folders below it.
#![forbid(unsafe_code)]

pub mod capacity;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod export;
pub mod gate;
pub mod host;
pub mod measure;
pub mod probe;
#[cfg(test)]
mod prop;
pub mod scenario;
pub mod session;
pub mod storm;
pub mod sut;
pub mod util;

pub use error::Error;
