//! The delete guard: a replica is never wiped because SOURCE went away. `identity` tells
//! whether SOURCE is still the tree the replicas were made from (at start against the state
//! file, while running against the directory the syncer holds open); `mounts` re-checks it
//! whenever the mount table changes. The pipeline stops with `error::EXIT_GUARD` before
//! anything is deleted, and the message says what to do.

pub mod identity;
pub mod mounts;

pub use identity::{SourceGuard, SourceIdentity, SourceLost};
