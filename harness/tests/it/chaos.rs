//! Regression tests from the random-operation storm: each failure class `harness chaos`
//! found is a named test replaying its shrunk op log (tests/fixtures/chaos/NAME.ops) under
//! the real syncer on both backends, into a local directory and a real rsync daemon; the
//! replica must equal SOURCE. Plus one small live campaign through the binary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::cmd::chaos::case::{self, Backend, CaseSpec, Target};
use harness::cmd::chaos::op::OpLog;

use crate::common::{repo, syncer, sysctls_as_they_are};

fn fixture(name: &str) -> OpLog {
    let path = repo().join(format!("harness/tests/fixtures/chaos/{name}.ops"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    OpLog::parse(&text).expect("fixture parses")
}

/// Replays `name` on every backend and target kind; fails with each case's differences.
fn replays_exactly(name: &str) {
    let _sysctls = sysctls_as_they_are();
    let log = fixture(name);
    let work = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for backend in [Backend::Inotify, Backend::Fanotify] {
        for target in [Target::Local, Target::Rsync] {
            let spec = CaseSpec {
                syncer: syncer().to_path_buf(),
                backend,
                target,
                dir: work.path().join(format!("{backend}-{target}")),
                converge: Duration::from_secs(10),
                syncer_args: Vec::new(),
            };
            let outcome = case::run(&log, &spec);
            if !outcome.passed {
                let syncer_log =
                    std::fs::read_to_string(spec.dir.join("syncer.log")).unwrap_or_default();
                failures.push(format!(
                    "{backend}/{target}: {} {}\n{syncer_log}",
                    outcome.problem.unwrap_or_default(),
                    outcome.diff.describe()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

#[test]
fn exchange_of_files_in_two_directories() {
    replays_exactly("exchange_of_files_in_two_directories");
}

#[test]
fn chown_of_a_symlink() {
    replays_exactly("chown_of_a_symlink");
}

#[test]
fn absolute_symlink_to_the_daemon() {
    replays_exactly("absolute_symlink_to_the_daemon");
}

#[test]
fn exchange_then_move_out_and_recreate() {
    replays_exactly("exchange_then_move_out_and_recreate");
}

#[test]
fn dir_swapped_for_a_symlink_while_rsync_reads_it() {
    replays_exactly("dir_swapped_for_a_symlink_while_rsync_reads_it");
}

#[test]
fn parent_becomes_a_file_while_rsync_reads_it() {
    replays_exactly("parent_becomes_a_file_while_rsync_reads_it");
}

#[test]
fn moved_away_name_reused_then_renamed() {
    replays_exactly("moved_away_name_reused_then_renamed");
}

#[test]
fn exchange_then_rename_of_a_parent() {
    replays_exactly("exchange_then_rename_of_a_parent");
}

#[test]
fn moved_out_and_back_in_under_another_name() {
    replays_exactly("moved_out_and_back_in_under_another_name");
}

#[test]
fn made_moved_out_and_made_again_before_read() {
    replays_exactly("made_moved_out_and_made_again_before_read");
}

#[test]
fn exchange_of_a_file_and_a_directory_then_rename() {
    replays_exactly("exchange_of_a_file_and_a_directory_then_rename");
}

#[test]
fn exchange_with_a_moved_in_directory_soak_seed_64() {
    replays_exactly("exchange_with_a_moved_in_directory_soak_seed_64");
}

#[test]
fn written_then_parent_renamed_before_read() {
    replays_exactly("written_then_parent_renamed_before_read");
}

/// The binary end to end: a small campaign passes and writes its folder; a broken syncer
/// (one that exits at once after a copy) is caught with its seed and replay command.
#[test]
fn a_small_campaign_passes_and_a_broken_syncer_is_caught() {
    let _sysctls = sysctls_as_they_are();
    let out = tempfile::tempdir().expect("tempdir");
    let run = |bin: &Path, dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["chaos", "--seeds", "2", "--ops", "60", "--jobs", "2"])
            .args([
                "--backend",
                "inotify",
                "--target",
                "local",
                "--converge-s",
                "3",
            ])
            .arg("--out")
            .arg(dir)
            .env("HARNESS_SYNCER_BIN", bin)
            .current_dir(repo())
            .output()
            .expect("harness runs")
    };
    let good = run(syncer(), &out.path().join("good"));
    let text =
        String::from_utf8_lossy(&good.stderr).into_owned() + &String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{text}");
    assert!(text.contains("all 2 cases converged"), "{text}");
    let rows = std::fs::read_to_string(out.path().join("good/runs.csv")).expect("runs.csv");
    assert_eq!(rows.lines().count(), 3, "{rows}");
    assert!(out.path().join("good/summary.md").is_file());

    // A "syncer" that copies once with --once and then sleeps: ready, but blind to the storm.
    let fake = out.path().join("once-then-sleep.sh");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n# args: --backend B --status F --state-dir D SRC DST\n\
             status=\"$4\"; src=\"$7\"; dst=\"$8\"\n\
             {} --once \"$src\" \"$dst\" || exit 1\n\
             echo '{{\"ready\": true}}' > \"$status\"\n\
             trap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n",
            syncer().display()
        ),
    )
    .expect("write fake");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let bad = run(&fake, &out.path().join("bad"));
    let text =
        String::from_utf8_lossy(&bad.stderr).into_owned() + &String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED seed-1-inotify-local"), "{text}");
    assert!(text.contains("--seed-range 1..2"), "{text}");
    assert!(
        out.path()
            .join("bad/failures/seed-1-inotify-local/ops.txt")
            .is_file()
    );
}

#[test]
fn removed_unmapped_directory_then_made_again() {
    replays_exactly("removed_unmapped_directory_then_made_again");
}

#[test]
fn moved_out_dir_replaced_then_parent_exchanged() {
    replays_exactly("moved_out_dir_replaced_then_parent_exchanged");
}

#[test]
fn a_linked_name_moved_out_and_back_in() {
    replays_exactly("a_linked_name_moved_out_and_back_in");
}

#[test]
fn a_link_made_into_a_directory_renamed_at_once() {
    replays_exactly("a_link_made_into_a_directory_renamed_at_once");
}

#[test]
fn linked_names_vanish_during_a_subtree_run() {
    replays_exactly("linked_names_vanish_during_a_subtree_run");
}

#[test]
fn written_through_a_name_then_unlinked() {
    replays_exactly("written_through_a_name_then_unlinked");
}

#[test]
fn new_directory_exchanged_then_its_parent_renamed() {
    replays_exactly("new_directory_exchanged_then_its_parent_renamed");
}
