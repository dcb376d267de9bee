//! `--backup-dir DIR`: what a replica would lose (a file rewritten, deleted, renamed over, a
//! directory removed) is kept under DIR/STAMP/its/path, in a local replica and on a real
//! rsync daemon; DIR is never synced away, `verify --backup-dir` leaves it out, and
//! `--backup-keep` removes folders past the retention.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use crate::daemon::Daemon;

/// Every file below `dir/.bk/*/` with its content, by path below the STAMP folder.
fn backups(replica: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let Ok(stamps) = fs::read_dir(replica.join(".bk")) else {
        return found;
    };
    for stamp in stamps.flatten() {
        let root = stamp.path();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(&root).unwrap().to_path_buf();
                    found.push((rel, fs::read_to_string(&path).unwrap_or_default()));
                }
            }
        }
    }
    found.sort();
    found
}

fn seed(src: &Path) {
    fs::create_dir_all(src.join("d")).unwrap();
    fs::create_dir_all(src.join("gone/deep")).unwrap();
    for (name, body) in [
        ("a", "a-old"),
        ("d/b", "b-old"),
        ("c", "c-moved"),
        ("over", "over-old"),
        ("gone/deep/x", "x-old"),
        ("gone/y", "y-old"),
    ] {
        write(&src.join(name), body.as_bytes());
    }
}

/// Rewrites `a`, deletes `d/b`, renames `c` over `over`, removes `gone/`.
fn lose_things(src: &Path) {
    write(&src.join("a"), b"a-new, longer");
    fs::remove_file(src.join("d/b")).unwrap();
    fs::rename(src.join("c"), src.join("over")).unwrap();
    fs::remove_dir_all(src.join("gone")).unwrap();
}

fn expected() -> Vec<(PathBuf, String)> {
    let mut want: Vec<(PathBuf, String)> = [
        ("a", "a-old"),
        ("d/b", "b-old"),
        ("over", "over-old"),
        ("gone/deep/x", "x-old"),
        ("gone/y", "y-old"),
    ]
    .iter()
    .map(|(p, b)| (PathBuf::from(p), b.to_string()))
    .collect();
    want.sort();
    want
}

#[test]
fn a_local_replica_keeps_what_it_would_lose() {
    let _k = shared_kernel();
    let s = Scratch::new();
    seed(&s.src);
    let mut syncer = s.syncer(&["--backup-dir", ".bk"]);
    assert!(
        backups(&s.dst).is_empty(),
        "a first sync backed something up"
    );
    lose_things(&s.src);
    let kept = wait_until(Duration::from_secs(20), || backups(&s.dst) == expected());
    assert!(kept, "backups: {:?}\n{}", backups(&s.dst), syncer.log());
    // The replica itself is the source's, and DIR survives a restart's whole compare.
    compare_trees_except(&s.src, &s.dst, ".bk");
    assert_eq!(syncer.stop(), Some(0));
    let mut again = s.syncer(&["--backup-dir", ".bk"]);
    assert_eq!(backups(&s.dst), expected(), "{}", again.log());
    assert_eq!(again.stop(), Some(0));
    let verify = std::process::Command::new(syncer_bin())
        .arg("verify")
        .args([&s.src, &s.dst])
        .args(["--backup-dir", ".bk"])
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn an_rsync_daemon_keeps_what_it_would_lose() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    seed(&s.src);
    let password = daemon.password_file.display().to_string();
    let mut syncer = Syncer::spawn_to(
        &s.src,
        &[OsString::from(daemon.url())],
        &s.state,
        &s.status,
        &["--password-file", &password, "--backup-dir", ".bk"],
    )
    .wait_ready();
    lose_things(&s.src);
    // The rsync protocol has no rename: the daemon deletes the old name `c` (so keeps it)
    // and receives `over` anew. A path sent twice (a re-send of the same content) is kept
    // twice, in two run folders: every old content must be there, more may be.
    let mut want = expected();
    want.push((PathBuf::from("c"), "c-moved".into()));
    let kept = wait_until(Duration::from_secs(20), || {
        let held = backups(&daemon.module);
        want.iter().all(|w| held.contains(w))
    });
    assert!(
        kept,
        "backups: {:?}\n{}",
        backups(&daemon.module),
        syncer.log()
    );
    compare_trees_except(&s.src, &daemon.module, ".bk");
    assert_eq!(syncer.stop(), Some(0), "{}", syncer.log());
}

#[test]
fn backup_folders_past_the_retention_are_removed() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    let old = ".bk/2000-01-01T00-00-00Z";
    let recent = format!(".bk/{}", chrono_free_stamp_hours_ago(1));
    for root in [&s.dst, &daemon.module] {
        for folder in [old, recent.as_str()] {
            fs::create_dir_all(root.join(folder).join("sub")).unwrap();
            write(&root.join(folder).join("sub/f"), b"kept");
        }
    }
    write(&s.src.join("f"), b"1");
    let password = daemon.password_file.display().to_string();
    let mut syncer = Syncer::spawn_to(
        &s.src,
        &[s.dst.clone().into_os_string(), OsString::from(daemon.url())],
        &s.state,
        &s.status,
        &[
            "--password-file",
            &password,
            "--backup-dir",
            ".bk",
            "--backup-keep",
            "1",
        ],
    )
    .wait_ready();
    let pruned = wait_until(Duration::from_secs(20), || {
        !s.dst.join(old).exists() && !daemon.module.join(old).exists()
    });
    assert!(pruned, "{}", syncer.log());
    for root in [&s.dst, &daemon.module] {
        assert!(
            root.join(&recent).join("sub/f").exists(),
            "a recent backup was removed"
        );
        assert!(root.join("f").exists());
    }
    assert_eq!(syncer.stop(), Some(0), "{}", syncer.log());
}

/// The STAMP of a moment `hours` ago, as the syncer names its folders.
fn chrono_free_stamp_hours_ago(hours: u64) -> String {
    syncer::replica::backup::stamp(std::time::SystemTime::now() - Duration::from_secs(hours * 3600))
}

/// `compare_trees`, with `skip` at the replica's root left out.
fn compare_trees_except(src: &Path, dst: &Path, skip: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("replica");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(dst)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    fs::remove_dir_all(copy.join(skip)).unwrap();
    if let Err(diff) = compare_trees(src, &copy) {
        panic!("replica differs from SOURCE: {diff}");
    }
}
