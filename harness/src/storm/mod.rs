//! The storm: a scenario in, a plan out (plan.rs on the simulated tree of model.rs), then
//! the generator (generator.rs) turns planned ops into files on disk, phase by phase with a
//! progress bar and the syncer paused where asked (phases.rs).

pub mod generator;
pub mod model;
pub mod ops;
pub mod phases;
pub mod plan;
