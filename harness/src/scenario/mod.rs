//! Scenarios: the types (types.rs), TOML parsing with line/column errors (parse.rs) and the
//! semantic checks serde cannot express (check.rs). This facade re-exports the types and the
//! loaders, so callers write `scenario::Scenario` and `scenario::load`.

pub mod check;
pub mod parse;
pub mod types;

pub use parse::{ScenarioError, load, parse};
pub use types::*;
