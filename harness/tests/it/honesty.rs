//! The harness's own honesty (issue 13), end to end on real processes and files: our syncer
//! is found in a CARGO_TARGET_DIR elsewhere; a run whose syncer under test was not run exits
//! non-zero with the reason on its last line; and deliberately broken syncers (`command`
//! suts: a copy loop that never deletes, one that loses renames, one that trusts rsync's quick
//! check) fail their storms while our syncer passes the same scenarios.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{debug_syncer, repo, results_dir, sysctls_as_they_are};

/// What one `harness run` did: its exit code and stdout and stderr as one stream, in the
/// order a terminal shows them (both go to one file).
struct Ran {
    code: Option<i32>,
    output: String,
}

impl Ran {
    fn last_line(&self) -> &str {
        self.output
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
    }
}

/// `harness run SCENARIO` with results and work dir in `out`, `envs` set and
/// HARNESS_SYNCER_BIN set to `syncer` (None: unset, the harness finds the binary itself).
fn run(scenario: &Path, out: &Path, syncer: Option<&Path>, envs: &[(&str, &Path)]) -> Ran {
    let _sysctls = sysctls_as_they_are();
    let log = out.join("harness-output.txt");
    let file = std::fs::File::create(&log).expect("output file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .arg("--workdir")
        .arg(out)
        .current_dir(repo())
        .env_remove("HARNESS_SYNCER_BIN")
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().expect("dup")))
        .stderr(Stdio::from(file));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    if let Some(bin) = syncer {
        cmd.env("HARNESS_SYNCER_BIN", bin);
    }
    let status = cmd.status().expect("harness runs");
    Ran {
        code: status.code(),
        output: std::fs::read_to_string(&log).expect("output"),
    }
}

fn summary(out: &Path, scenario: &str) -> String {
    let dir = results_dir(out, scenario);
    std::fs::read_to_string(dir.join("summary.md")).expect("summary.md")
}

fn write_scenario(dir: &Path, text: &str) -> PathBuf {
    let file = dir.join("scenario.toml");
    std::fs::write(&file, text).expect("scenario");
    file
}

const TINY: &str = r#"
name = "tiny"
calibrate = false
[tree]
files = 5
[[phase]]
ops = 20
mix = { create = 2, write = 1, delete = 1 }
[timeouts]
ready_s = 20
converge_s = 20
idle_s = 1
[[sut]]
kind = "syncer"
"#;

#[test]
fn with_cargo_target_dir_elsewhere_the_syncer_there_is_the_one_run() {
    let target = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(target.path().join("release")).expect("mkdir");
    let bin = target.path().join("release/syncer");
    std::fs::copy(debug_syncer(), &bin).expect("copy the syncer");
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(out.path(), TINY);
    let ran = run(
        &scenario,
        out.path(),
        None,
        &[("CARGO_TARGET_DIR", target.path())],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.output);
    let summary = summary(out.path(), "tiny");
    assert!(summary.contains("| syncer | 1 | pass |"), "{summary}");
    // The results name the binary: the one in CARGO_TARGET_DIR, not ./target's.
    assert!(
        summary.contains(&format!("flags: `{}", bin.display())),
        "{summary}"
    );
    assert!(
        ran.last_line().starts_with("harness: PASS"),
        "{}",
        ran.output
    );
}

#[test]
fn our_syncer_failing_to_build_fails_the_run_with_the_reason_last() {
    // A target dir below a regular file: cargo cannot create it, so the build fails at once.
    let out = tempfile::tempdir().expect("tempdir");
    let blocker = out.path().join("not-a-dir");
    std::fs::write(&blocker, "").expect("file");
    let scenario = write_scenario(out.path(), TINY);
    let ran = run(
        &scenario,
        out.path(),
        None,
        &[("CARGO_TARGET_DIR", &blocker.join("target"))],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.output);
    let last = ran.last_line();
    assert!(
        last.starts_with(
            "harness: FAIL: syncer r1: not run: `cargo build --release -p syncer` failed"
        ),
        "{}",
        ran.output
    );
    assert!(last.contains("not-a-dir/target/release/syncer"), "{last}");
    assert!(
        summary(out.path(), "tiny").contains("| syncer | 1 | **FAIL** |"),
        "{}",
        ran.output
    );
}

#[test]
fn our_syncer_skipped_fails_the_run_with_the_reason_last() {
    // A "syncer" whose --help never mentions rsync:// cannot take the daemon target: skipped,
    // which for the syncer under test is a failure.
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(
        out.path(),
        &TINY.replace(
            "calibrate = false",
            "calibrate = false\ntarget = \"rsync-daemon\"",
        ),
    );
    let ran = run(&scenario, out.path(), Some(Path::new("/bin/true")), &[]);
    assert_eq!(ran.code, Some(1), "{}", ran.output);
    assert!(
        ran.last_line().starts_with(
            "harness: FAIL: syncer r1: not run: /bin/true takes only a directory TARGET"
        ),
        "{}",
        ran.output
    );
}

/// Runs a fixture with its broken `command` syncer and ours: the run must fail because of the
/// broken one alone, whose row shows `what`; ours must pass.
fn broken_fails_ours_passes(fixture: &str, broken: &str, what: &str) {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = repo().join("harness/tests/fixtures/honesty").join(fixture);
    let ran = run(&scenario, out.path(), Some(&debug_syncer()), &[]);
    assert_eq!(ran.code, Some(1), "{}", ran.output);
    let name = format!("honesty-{}", fixture.trim_end_matches(".toml"));
    let summary = summary(out.path(), &name);
    assert!(
        summary.contains(&format!("| {broken} | 1 | **FAIL** |")),
        "{summary}"
    );
    assert!(summary.contains("| syncer | 1 | pass |"), "{summary}");
    let last = ran.last_line();
    assert!(
        last.starts_with(&format!("harness: FAIL: {broken} r1: ")) && !last.contains("syncer r1"),
        "{}",
        ran.output
    );
    assert!(last.contains(what), "{last}");
}

#[test]
fn a_syncer_that_never_deletes_fails_a_delete_storm() {
    broken_fails_ours_passes(
        "no-delete.toml",
        "rsync-no-delete",
        "replica differs from source: 10 extra",
    );
}

#[test]
fn a_syncer_that_loses_renames_fails_a_rename_storm() {
    broken_fails_ours_passes(
        "no-rename.toml",
        "rsync-no-rename",
        "replica differs from source: 10 missing",
    );
}

#[test]
fn a_quick_check_only_copy_fails_same_size_rewrites() {
    broken_fails_ours_passes(
        "quick-check.toml",
        "rsync-quick-check",
        "paths never reached their final state in the replica",
    );
}
