//! The delete guard: a replica is never wiped because SOURCE went away. `identity` tells
//! whether SOURCE is still the tree the replicas were made from (at start against the state
//! file, while running against the directory the syncer holds open); `mounts` re-checks it
//! whenever the mount table changes; `budget` caps deletes per minute (`--max-delete`). The
//! pipeline stops with `error::EXIT_GUARD` before anything more is deleted, and the message
//! says what to do.

pub mod budget;
pub mod identity;
pub mod mounts;

pub use budget::{DeleteBudget, DeleteRefused};
pub use identity::{SourceGuard, SourceIdentity, SourceLost};
