//! Measurement: latency and the storm's timeline from the generator's stamps and the probe's
//! sightings (latency.rs), the replica compared with the source (verify.rs), and the floor, a
//! plain copy of the final tree (floor.rs).

pub mod floor;
pub mod latency;
pub mod verify;
