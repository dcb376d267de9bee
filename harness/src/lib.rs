//! harness: file-storm generator and measurement tool for real-time replicators. Flow (see
//! DESIGN.md): scenario -> plan -> exec -> [syncer] -> replica -> probe -> measure -> verify
//! -> result -> export.
#![forbid(unsafe_code)]

pub mod cargo_target;
pub mod chaos;
pub mod ci;
pub mod compare;
pub mod daemon;
pub mod env;
pub mod exec;
pub mod export;
pub mod floor;
pub mod history;
pub mod kernel;
pub mod kmem;
pub mod limits;
pub mod loopfs;
pub mod measure;
pub mod model;
pub mod plan;
pub mod planning;
pub mod probe;
pub mod probe_fan;
pub mod procio;
pub mod proctree;
pub mod report;
pub mod result;
pub mod run;
pub mod scenario;
pub mod scenario_check;
pub mod session;
pub mod session_end;
pub mod storm;
pub mod sut;
pub mod tune;
pub mod verify;
pub mod wait;
pub mod watchcost;
