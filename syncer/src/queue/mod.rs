//! The dirty set of each target: marks and renames in (`crate::change`), batches out.

pub mod pathkey;
pub mod pending;
pub mod shared;
