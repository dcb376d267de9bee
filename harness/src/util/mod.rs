//! What needs nothing else in the crate: the monotonic clock, statistics, number and date
//! formatting.

pub mod clock;
pub mod fmt;
pub mod stats;
