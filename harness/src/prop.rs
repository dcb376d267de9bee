//! Settings shared by the property tests (every one is named `prop_*`, so
//! `cargo test -p harness --lib prop_` runs them alone): a default case count per test, which
//! `PROPTEST_CASES` overrides for a long fuzz run, and no regression files (a failure found is
//! kept as a named unit test beside the parser instead).

use proptest::test_runner::Config;

pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}
