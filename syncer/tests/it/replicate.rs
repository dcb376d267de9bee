//! Replication of every kind of change: the classic 200-file test, file and directory
//! operations, renames (applied as renames), symlinks, odd names, excludes, --once.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn classic_200_touch_loop() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let syncer = s.syncer(&[]);
    let status = Command::new("sh")
        .arg("-c")
        .arg("for a in $(seq 200); do touch $a; done")
        .current_dir(&s.src)
        .status()
        .unwrap();
    assert!(status.success());
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    assert_eq!(fs::read_dir(&s.dst).unwrap().count(), 200);
}

#[test]
fn file_operations_replicate() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let syncer = s.syncer(&[]);
    let f = s.src.join("f");
    let step = |what: &str| {
        let mut last = String::new();
        let ok = wait_until(CONVERGE, || {
            compare_trees(&s.src, &s.dst).map_err(|e| last = e).is_ok()
        });
        assert!(ok, "after {what}: {last}\n{}", syncer.log());
    };
    write(&f, b"created");
    step("create");
    write(&f, b"overwritten with more");
    step("overwrite");
    fs::OpenOptions::new().append(true).open(&f).unwrap();
    std::io::Write::write_all(
        &mut fs::OpenOptions::new().append(true).open(&f).unwrap(),
        b" appended",
    )
    .unwrap();
    step("append");
    fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(3)
        .unwrap();
    step("truncate");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    step("chmod");
    let status = Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06.789"])
        .arg(&f)
        .status()
        .unwrap();
    assert!(status.success());
    step("mtime change");
    fs::rename(&f, s.src.join("g")).unwrap();
    step("rename");
    fs::remove_file(s.src.join("g")).unwrap();
    step("delete");
    fs::create_dir_all(s.src.join("t/u/v")).unwrap();
    for i in 0..20 {
        write(&s.src.join(format!("t/u/v/{i}")), b"x");
    }
    step("tree create");
    fs::remove_dir_all(s.src.join("t")).unwrap();
    step("rm -rf");
    write(&s.src.join("flip"), b"file");
    step("file");
    fs::remove_file(s.src.join("flip")).unwrap();
    fs::create_dir(s.src.join("flip")).unwrap();
    write(&s.src.join("flip/inner"), b"inner");
    step("file replaced by dir");
    fs::remove_dir_all(s.src.join("flip")).unwrap();
    write(&s.src.join("flip"), b"file again");
    step("dir replaced by file");
}

#[test]
fn directory_rename_is_applied_as_a_rename() {
    let _k = shared_kernel();
    let s = Scratch::new();
    fs::create_dir(s.src.join("old")).unwrap();
    for i in 0..1000 {
        write(&s.src.join(format!("old/{i}")), format!("{i}").as_bytes());
    }
    let syncer = s.syncer(&[]);
    let inode_before = fs::metadata(s.dst.join("old/500")).unwrap().ino();
    fs::rename(s.src.join("old"), s.src.join("new")).unwrap();
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    let inode_after = fs::metadata(s.dst.join("new/500")).unwrap().ino();
    assert_eq!(
        inode_before, inode_after,
        "the replica's files were re-copied, not renamed"
    );
    let doc = syncer.fresh_status();
    assert!(doc["ops"]["rename"].as_u64().unwrap() >= 1, "{doc}");
}

#[test]
fn directory_renamed_while_files_inside_are_rewritten() {
    let _k = shared_kernel();
    let s = Scratch::new();
    fs::create_dir(s.src.join("d0")).unwrap();
    for i in 0..200 {
        write(&s.src.join(format!("d0/{i}")), b"v0");
    }
    let syncer = s.syncer(&[]);
    let src = s.src.clone();
    let writer = std::thread::spawn(move || {
        for round in 1..=30 {
            let dir = src.join(format!("d{}", round - 1));
            for i in (0..200).step_by(7) {
                write(&dir.join(format!("{i}")), format!("v{round}").as_bytes());
            }
            fs::rename(&dir, src.join(format!("d{round}"))).unwrap();
        }
    });
    writer.join().unwrap();
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
}

#[test]
fn nested_mkdir_with_immediate_file_100_rounds() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let syncer = s.syncer(&[]);
    for round in 0..100 {
        let dir = s.src.join(format!("r{round}/a/b/c"));
        fs::create_dir_all(&dir).unwrap();
        write(&dir.join("f"), format!("round {round}").as_bytes());
    }
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
}

#[test]
fn symlinks_are_copied_never_followed() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("outside-file"), b"outside");
    let syncer = s.syncer(&[]);
    symlink("relative/target", s.src.join("dangling")).unwrap();
    symlink(outside.path(), s.src.join("to-outside")).unwrap();
    write(&s.src.join("real"), b"real");
    symlink("real", s.src.join("to-real")).unwrap();
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    assert!(
        fs::symlink_metadata(s.dst.join("to-outside"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Replace a symlink by a file and a file by a symlink.
    fs::remove_file(s.src.join("to-real")).unwrap();
    write(&s.src.join("to-real"), b"now a file");
    fs::remove_file(s.src.join("real")).unwrap();
    symlink("/etc/passwd", s.src.join("real")).unwrap();
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    // Nothing was ever written into the directory outside the tree.
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
}

#[test]
fn odd_names_replicate_exactly() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let syncer = s.syncer(&[]);
    let names: [&[u8]; 5] = [
        b"with space",
        b"new\nline",
        b"bad\xffutf8",
        b"-dash",
        b"tab\there",
    ];
    for name in names {
        let path = s.src.join(OsStr::from_bytes(name));
        write(&path, name);
        fs::create_dir(s.src.join(OsStr::from_bytes(&[name, b".d"].concat()))).unwrap();
    }
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    fs::rename(
        s.src.join(OsStr::from_bytes(b"new\nline")),
        s.src.join(OsStr::from_bytes(b"renamed\n\xfe")),
    )
    .unwrap();
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
}

#[test]
fn excluded_paths_are_neither_watched_nor_copied() {
    let _k = shared_kernel();
    let s = Scratch::new();
    fs::create_dir_all(s.src.join("cache/deep")).unwrap();
    write(&s.src.join("cache/deep/x"), b"x");
    let syncer = s.syncer(&["--exclude", "cache", "--exclude", "*.tmp"]);
    write(&s.src.join("keep"), b"keep");
    write(&s.src.join("drop.tmp"), b"drop");
    write(&s.src.join("cache/new"), b"drop");
    assert!(
        wait_until(CONVERGE, || s.dst.join("keep").exists()),
        "{}",
        syncer.log()
    );
    // A change after "keep" proves the reader is past the excluded ones.
    write(&s.src.join("marker"), b"m");
    assert!(wait_until(CONVERGE, || s.dst.join("marker").exists()));
    assert!(!s.dst.join("drop.tmp").exists());
    assert!(!s.dst.join("cache").exists());
    let doc = syncer.fresh_status();
    if doc["backend"] == "inotify" {
        assert_eq!(doc["dirs_watched"], 1, "{doc}");
    }
}

#[test]
fn once_syncs_and_exits() {
    let _k = shared_kernel();
    let s = Scratch::new();
    fs::create_dir_all(s.src.join("a/b")).unwrap();
    write(&s.src.join("a/b/f"), b"f");
    write(&s.src.join("top"), b"t");
    fs::create_dir_all(s.dst.join("stale-dir")).unwrap();
    let status = Command::new(syncer_bin())
        .args(["--once", "-q", "--state-dir"])
        .arg(&s.state)
        .arg(&s.src)
        .arg(&s.dst)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    compare_trees(&s.src, &s.dst).unwrap();
}

#[test]
fn a_growing_file_is_copied_after_quiet_or_max_age_not_per_write() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let syncer = s.syncer(&[]);
    let mut log = fs::File::create(s.src.join("growing.log")).unwrap();
    // The create and first open are events of their own; count copies from here on.
    assert!(wait_until(CONVERGE, || s.dst.join("growing.log").exists()));
    let copies_before = syncer.fresh_status()["ops"]["copy"].as_u64().unwrap();
    let started = std::time::Instant::now();
    let mut seen_partial = false;
    for i in 0..60 {
        std::io::Write::write_all(&mut log, format!("line {i}\n").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let replica = fs::read(s.dst.join("growing.log")).unwrap_or_default();
        seen_partial |= !replica.is_empty();
    }
    // Written for 3 s without a close: the 1 s maximum age delivered copies meanwhile.
    assert!(seen_partial, "no copy while the file kept growing");
    drop(log);
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    let copies = syncer.fresh_status()["ops"]["copy"].as_u64().unwrap() - copies_before;
    assert!(
        copies <= 8,
        "{copies} copies for 60 writes in {:?}",
        started.elapsed()
    );
}

#[test]
fn several_local_targets_converge_together() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let second = s.dir.path().join("dst2");
    let syncer = s.syncer(&["--", second.to_str().unwrap()]);
    fs::create_dir_all(s.src.join("a/b")).unwrap();
    for i in 0..50 {
        write(&s.src.join(format!("a/b/{i}")), b"both");
    }
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    assert_converges(&s.src, &second, CONVERGE, &syncer);
    assert_eq!(
        syncer.fresh_status()["targets"].as_array().unwrap().len(),
        2
    );
}
