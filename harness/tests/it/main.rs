//! The harness's integration tests, one binary (one link, one process): a module per topic,
//! the shared helpers in common.rs. Tests that change sysctls, environment variables or time
//! the CI gate take `common::LOCK`; fixtures stay in harness/tests/fixtures/.

mod common;

mod chaos;
mod ci_gate;
mod e2e;
mod faults;
mod honesty;
mod planning_tools;
mod report;
mod tune;
