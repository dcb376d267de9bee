//! Backend choice and fanotify specifics, on real trees under /tmp (ext4, the same filesystem
//! as the replica, so the syncer's own writes are fanotify events outside SOURCE): the forced
//! fallback of `auto`, traffic outside SOURCE ignored, directory renames kept as renames, moves
//! into and out of SOURCE, renames the kernel merged while the reader was stopped, and the
//! start-up self-report checked from outside for both backends.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::*;

const CONVERGE: Duration = Duration::from_secs(60);

/// fanotify filesystem marks need root; tests that need them say so and pass.
fn fanotify_possible() -> bool {
    if !is_root() {
        eprintln!("skipped: fanotify filesystem marks need root");
        return false;
    }
    true
}

/// Starts the syncer on `s` with `options` and one extra environment variable.
fn spawn_with_env(s: &Scratch, options: &[&str], key: &str, value: &str) -> Syncer {
    let mut command = Command::new(syncer_bin());
    command
        .env(key, value)
        .arg("--state-dir")
        .arg(&s.state)
        .arg("--status")
        .arg(&s.status)
        .args(options)
        .arg(&s.src)
        .arg(&s.dst);
    Syncer::spawn_command(command, &s.status, s.dir.path().join("env-stderr.log"))
}

#[test]
fn auto_falls_back_to_inotify_and_says_why_and_fanotify_alone_exits_1() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let mut syncer = spawn_with_env(&s, &["--backend", "auto"], "SYNCER_FANOTIFY_DISABLE", "1");
    let ready = wait_until(CONVERGE, || {
        syncer.status_json().is_some_and(|d| d["ready"] == true) || syncer.exited()
    });
    assert!(ready && !syncer.exited(), "{}", syncer.log());
    let log = syncer.log();
    assert!(
        log.contains(
            "backend: inotify (auto: fanotify unavailable: disabled by SYNCER_FANOTIFY_DISABLE)"
        ),
        "{log}"
    );
    assert_eq!(syncer.fresh_status()["backend"], "inotify");
    write(&s.src.join("f"), b"after fallback");
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    assert_eq!(syncer.stop(), Some(0));

    let out = Command::new(syncer_bin())
        .env("SYNCER_FANOTIFY_DISABLE", "1")
        .args(["--backend", "fanotify", "--state-dir"])
        .arg(&s.state)
        .arg(&s.src)
        .arg(&s.dst)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--backend fanotify")
            && stderr.contains("disabled by SYNCER_FANOTIFY_DISABLE"),
        "{stderr}"
    );
}

#[test]
fn auto_picks_fanotify_as_root_on_ext4() {
    let _k = shared_kernel();
    if !fanotify_possible() {
        return;
    }
    let s = Scratch::new();
    let syncer = s.syncer(&["--backend", "auto"]);
    assert!(
        syncer.log().contains("backend: fanotify (auto: "),
        "{}",
        syncer.log()
    );
    assert_eq!(syncer.fresh_status()["backend"], "fanotify");
}

#[test]
fn traffic_outside_source_on_the_same_filesystem_is_ignored() {
    let _k = shared_kernel();
    if !fanotify_possible() {
        return;
    }
    let s = Scratch::new();
    let sibling = s.dir.path().join("sibling");
    fs::create_dir(&sibling).unwrap();
    let syncer = s.syncer(&["--backend", "fanotify"]);
    let before = syncer.fresh_status()["events"].as_u64().unwrap();
    for d in 0..20 {
        let dir = sibling.join(format!("d{d}"));
        fs::create_dir(&dir).unwrap();
        for i in 0..250 {
            write(&dir.join(format!("{i}")), b"outside");
        }
        fs::rename(&dir, sibling.join(format!("moved{d}"))).unwrap();
    }
    // A change after the storm proves the reader got past it.
    write(&s.src.join("marker"), b"m");
    assert!(
        wait_until(CONVERGE, || s.dst.join("marker").exists()),
        "{}",
        syncer.log()
    );
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    let names: Vec<_> = fs::read_dir(&s.dst).unwrap().flatten().collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let doc = syncer.fresh_status();
    let seen = doc["events"].as_u64().unwrap() - before;
    assert!(seen >= 5000, "the outside storm was not even seen: {doc}");
    assert_eq!(doc["errors"], 0, "{doc}");
}

#[test]
fn directory_rename_under_fanotify_is_a_rename_and_moves_across_the_border_converge() {
    let _k = shared_kernel();
    if !fanotify_possible() {
        return;
    }
    let s = Scratch::new();
    fs::create_dir_all(s.src.join("old/deep")).unwrap();
    for i in 0..500 {
        write(
            &s.src.join(format!("old/deep/{i}")),
            format!("{i}").as_bytes(),
        );
    }
    let outside = s.dir.path().join("outside");
    fs::create_dir_all(outside.join("in/nested")).unwrap();
    write(&outside.join("in/nested/f"), b"moved in");
    let syncer = s.syncer(&["--backend", "fanotify"]);
    let inode_before = fs::metadata(s.dst.join("old/deep/250")).unwrap().ino();
    fs::rename(s.src.join("old"), s.src.join("new")).unwrap();
    // Written through the new name right away: must land under the new name.
    write(&s.src.join("new/deep/after"), b"after rename");
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    let inode_after = fs::metadata(s.dst.join("new/deep/250")).unwrap().ino();
    assert_eq!(inode_before, inode_after, "re-copied instead of renamed");
    assert!(syncer.fresh_status()["ops"]["rename"].as_u64().unwrap() >= 1);

    // Moved in from outside (its handles may have been seen as outside), then written in.
    fs::rename(outside.join("in"), s.src.join("in")).unwrap();
    write(&s.src.join("in/nested/g"), b"written after the move in");
    // Moved out: a delete in the replica; writes there afterwards are outside.
    fs::rename(s.src.join("new/deep"), outside.join("deep")).unwrap();
    write(&outside.join("deep/late"), b"outside now");
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    assert!(!s.dst.join("new/deep").exists());
}

/// Renames `a` to `b` and back `rounds` times, then once more to `b`.
fn rename_back_and_forth(a: &Path, b: &Path, rounds: usize) {
    for _ in 0..rounds {
        fs::rename(a, b).unwrap();
        fs::rename(b, a).unwrap();
    }
    fs::rename(a, b).unwrap();
}

#[test]
fn renames_back_and_forth_while_the_reader_is_stopped_converge() {
    // The reader is stopped, so every rename sits in the queue: the kernel folds each repeat
    // into its identical twin and the stream shows a->b, b->a only, ending at the old name.
    let _k = shared_kernel();
    if !fanotify_possible() {
        return;
    }
    let s = Scratch::new();
    let outside = s.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::create_dir_all(s.src.join("d/sub")).unwrap();
    fs::create_dir(s.src.join("swap")).unwrap();
    for i in 0..10 {
        write(&s.src.join(format!("d/sub/f{i}")), b"before");
        write(&s.src.join(format!("swap/f{i}")), b"before");
    }
    write(&s.src.join("file"), b"a file renamed back and forth");
    // Moved across SOURCE's border and back: `leaver` ends outside, `comer` inside.
    fs::create_dir_all(s.src.join("leaver/sub")).unwrap();
    write(&s.src.join("leaver/sub/f"), b"leaves");
    fs::create_dir_all(outside.join("comer/sub")).unwrap();
    write(&outside.join("comer/sub/f"), b"comes in");
    let syncer = s.syncer(&["--backend", "fanotify"]);
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    for round in 0..3 {
        syncer.signal(Signal::SIGSTOP);
        rename_back_and_forth(&s.src.join("d"), &s.src.join("e"), 50);
        // Written through the final name: its directory's handle must not resolve to `d`.
        write(&s.src.join("e/sub/f0"), format!("round {round}").as_bytes());
        rename_back_and_forth(&s.src.join("file"), &s.src.join("renamed"), 50);
        // The symlink swap of faults.rs, with the directory ending under its temporary name.
        for _ in 0..50 {
            fs::rename(s.src.join("swap"), s.src.join("swap.real")).unwrap();
            std::os::unix::fs::symlink(&outside, s.src.join("swap")).unwrap();
            fs::remove_file(s.src.join("swap")).unwrap();
            fs::rename(s.src.join("swap.real"), s.src.join("swap")).unwrap();
        }
        fs::rename(s.src.join("swap"), s.src.join("swap.real")).unwrap();
        rename_back_and_forth(&s.src.join("leaver"), &outside.join("leaver"), 50);
        rename_back_and_forth(&outside.join("comer"), &s.src.join("comer"), 50);
        write(
            &s.src.join("comer/sub/f"),
            format!("round {round}").as_bytes(),
        );
        syncer.signal(Signal::SIGCONT);
        assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
        fs::rename(outside.join("leaver"), s.src.join("leaver")).unwrap();
        fs::rename(s.src.join("comer"), outside.join("comer")).unwrap();
        // Back to the starting names for the next round.
        fs::rename(s.src.join("e"), s.src.join("d")).unwrap();
        fs::rename(s.src.join("renamed"), s.src.join("file")).unwrap();
        fs::rename(s.src.join("swap.real"), s.src.join("swap")).unwrap();
        assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    }
}

/// Creates `tops` x `subs` directories with two files each; returns the last one by name.
fn make_tree(root: &Path, tops: usize, subs: usize) -> std::path::PathBuf {
    let mut last = root.to_path_buf();
    for t in 0..tops {
        for u in 0..subs {
            let dir = root.join(format!("t{t:03}/s{u:03}"));
            fs::create_dir_all(&dir).unwrap();
            write(&dir.join("a"), b"aaaa");
            write(&dir.join("b"), b"bbbb");
            last = dir;
        }
    }
    last
}

#[test]
fn a_change_right_after_capturing_is_reported_replicates_for_both_backends() {
    let _k = shared_kernel();
    for backend in ["inotify", "fanotify"] {
        if backend == "fanotify" && !fanotify_possible() {
            continue;
        }
        let s = Scratch::new();
        let last = make_tree(&s.src, 40, 25);
        let first = s.src.join("t000/s000");
        let mut syncer =
            Syncer::spawn(&s.src, &s.dst, &s.state, &s.status, &["--backend", backend]);
        let capturing = wait_until(CONVERGE, || {
            syncer.status_json().is_some_and(|d| d["capturing"] == true) || syncer.exited()
        });
        assert!(capturing && !syncer.exited(), "{}", syncer.log());
        // In the directory a walk reaches last and the one it reaches first; one new file and
        // one same-size rewrite each.
        for dir in [&last, &first] {
            write(&dir.join("new"), backend.as_bytes());
            write(&dir.join("a"), b"AAAA");
        }
        assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
        assert_eq!(
            fs::read(s.dst.join(last.strip_prefix(&s.src).unwrap()).join("a")).unwrap(),
            b"AAAA"
        );
        let doc = syncer.fresh_status();
        assert_eq!(doc["backend"], backend, "{doc}");
        assert!(doc["capture_ns"].as_u64().unwrap() > 0, "{doc}");
        assert_eq!(syncer.stop(), Some(0));
    }
}
