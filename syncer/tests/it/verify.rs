//! `syncer verify`: the real binary against real trees and a real rsync daemon; every kind of
//! difference is found and named, `--repair` makes the replica equal, and what cannot be
//! compared exits 2 with a message that says what to do.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::daemon::Daemon;

struct Verdict {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn verify(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Verdict {
    let out = Command::new(syncer_bin())
        .arg("verify")
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap();
    Verdict {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn once(s: &Scratch, target: &str, extra: &[&str]) {
    let out = Command::new(syncer_bin())
        .arg(&s.src)
        .arg(target)
        .arg("--once")
        .arg("--state-dir")
        .arg(&s.state)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tree with one of each kind the syncer replicates.
fn fill(src: &Path) {
    fs::create_dir_all(src.join("d/e")).unwrap();
    write(&src.join("a"), b"alpha\n");
    write(&src.join("d/same"), b"12345678\n");
    write(&src.join("d/e/mode"), b"mode\n");
    fs::hard_link(src.join("a"), src.join("d/linked")).unwrap();
    symlink("../a", src.join("d/l")).unwrap();
    symlink("e", src.join("d/to-e")).unwrap();
    write(&src.join("new\nline"), b"odd name\n");
    let fifo = Command::new("mkfifo")
        .arg(src.join("d/pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
}

/// `touch -h -d 2020-01-01`: a symlink's own mtime.
fn touch_link_into_the_past(path: &Path) {
    let done = Command::new("touch")
        .args(["-h", "-d", "2020-01-01"])
        .arg(path)
        .status()
        .unwrap();
    assert!(done.success());
}

/// Rewrites `path` with other bytes of the same length, keeping its mtime: only a content
/// compare can tell.
fn same_size_same_mtime(path: &Path) {
    let before = fs::metadata(path).unwrap().modified().unwrap();
    let len = fs::metadata(path).unwrap().len() as usize;
    fs::write(path, vec![b'z'; len]).unwrap();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(before)
        .unwrap();
}

#[test]
fn a_local_replica_is_equal_then_every_difference_is_named_and_repaired() {
    let s = Scratch::new();
    fill(&s.src);
    let dst = s.dst.to_str().unwrap().to_string();
    once(&s, &dst, &[]);
    let v = verify(&[&s.src, &s.dst]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.starts_with("equal: "), "{}", v.stdout);
    assert!(v.stdout.contains("1 hard-link group"), "{}", v.stdout);

    fs::remove_file(s.dst.join("new\nline")).unwrap();
    write(&s.dst.join("d/extra"), b"not in the source\n");
    same_size_same_mtime(&s.dst.join("d/same"));
    fs::set_permissions(s.dst.join("d/e/mode"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(s.dst.join("d/l")).unwrap();
    symlink("../elsewhere", s.dst.join("d/l")).unwrap();
    touch_link_into_the_past(&s.dst.join("d/to-e"));
    // The replica's second name becomes a copy of its own: linked no more.
    fs::remove_file(s.dst.join("d/linked")).unwrap();
    fs::copy(s.dst.join("a"), s.dst.join("d/linked")).unwrap();
    let t = fs::metadata(s.src.join("a")).unwrap().modified().unwrap();
    fs::File::options()
        .write(true)
        .open(s.dst.join("d/linked"))
        .unwrap()
        .set_modified(t)
        .unwrap();

    let v = verify(&[&s.src, &s.dst]);
    assert_eq!(v.code, Some(1), "{}{}", v.stdout, v.stderr);
    let lines: Vec<&str> = v.stdout.lines().collect();
    assert!(lines[0].starts_with("DIFFERENT: "), "{}", v.stdout);
    for expected in [
        "missing     \"new\\nline\"",
        "extra       \"d/extra\"",
        "different   \"d/e/mode\": mode 644 != 600",
        "link target \"../a\" != \"../elsewhere\"",
        "different   \"d/to-e\": mtime",
        "different   \"d/linked\": hard link: shares its inode with \"a\" in SOURCE, not in TARGET",
    ] {
        assert!(
            v.stdout.contains(expected),
            "no {expected:?} in\n{}",
            v.stdout
        );
    }
    assert!(
        !v.stdout.contains("d/same"),
        "same size and mtime: no difference without --checksum\n{}",
        v.stdout
    );
    let v = verify(&[&s.src, &s.dst, &"--checksum"]);
    assert!(
        v.stdout.contains("different   \"d/same\": content"),
        "{}",
        v.stdout
    );

    let v = verify(&[
        &s.src,
        &s.dst,
        &"--checksum",
        &"--repair",
        &"--state-dir",
        &s.state,
    ]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    assert!(
        v.stdout.lines().last().unwrap().starts_with("equal: "),
        "{}",
        v.stdout
    );
    assert!(v.stderr.contains("repairing"), "{}", v.stderr);
    let v = verify(&[&s.src, &s.dst, &"--checksum"]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    compare_trees(&s.src, &s.dst).unwrap();
}

#[test]
fn excluded_paths_are_not_compared() {
    let s = Scratch::new();
    fill(&s.src);
    write(&s.src.join("d/cache.tmp"), b"scratch\n");
    once(&s, s.dst.to_str().unwrap(), &["--exclude", "*.tmp"]);
    write(&s.dst.join("d/left.tmp"), b"in the replica only\n");
    let v = verify(&[&s.src, &s.dst, &"--exclude", &"*.tmp"]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    let v = verify(&[&s.src, &s.dst]);
    assert_eq!(v.code, Some(1), "{}", v.stdout);
    assert!(
        v.stdout.contains("missing     \"d/cache.tmp\"")
            && v.stdout.contains("extra       \"d/left.tmp\""),
        "{}",
        v.stdout
    );
}

#[test]
fn what_cannot_be_compared_exits_2_and_says_what_to_do() {
    let s = Scratch::new();
    fill(&s.src);
    let v = verify(&[&s.src, &s.dst]);
    assert_eq!(v.code, Some(2));
    assert!(
        v.stderr.contains("does not exist") && v.stderr.contains("--repair"),
        "{}",
        v.stderr
    );
    assert!(!s.dst.exists(), "a verify without --repair writes nothing");
    let v = verify(&[&s.dir.path().join("nope"), &s.dst]);
    assert_eq!(v.code, Some(2));
    assert!(v.stderr.contains("SOURCE"), "{}", v.stderr);
    // Nothing listens on port 9 of loopback.
    let v = verify(&[&s.src, &"rsync://127.0.0.1:9/backup"]);
    assert_eq!(v.code, Some(2), "{}{}", v.stdout, v.stderr);
    assert!(
        v.stderr
            .contains("rsync dry run against rsync://127.0.0.1:9/backup failed"),
        "{}",
        v.stderr
    );
}

#[test]
fn a_daemon_replica_is_compared_through_rsync_and_repaired() {
    let s = Scratch::new();
    fill(&s.src);
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    let url = daemon.url();
    let password = daemon.password_file.to_str().unwrap().to_string();
    once(&s, &url, &["--password-file", &password]);
    let v = verify(&[&s.src, &url, &"--password-file", &password]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.starts_with("equal: "), "{}", v.stdout);

    let replica = &daemon.module;
    fs::remove_file(replica.join("new\nline")).unwrap();
    write(&replica.join("d/extra"), b"not in the source\n");
    fs::set_permissions(replica.join("d/e/mode"), fs::Permissions::from_mode(0o600)).unwrap();
    same_size_same_mtime(&replica.join("d/same"));
    let v = verify(&[&s.src, &url, &"--password-file", &password]);
    assert_eq!(v.code, Some(1), "{}{}", v.stdout, v.stderr);
    for expected in [
        "missing     \"new\\nline\"",
        "extra       \"d/extra\"",
        "different   \"d/e/mode\": mode",
    ] {
        assert!(
            v.stdout.contains(expected),
            "no {expected:?} in\n{}",
            v.stdout
        );
    }
    assert!(!v.stdout.contains("d/same"), "{}", v.stdout);
    let v = verify(&[&s.src, &url, &"--password-file", &password, &"--checksum"]);
    assert!(
        v.stdout.contains("different   \"d/same\": content"),
        "{}",
        v.stdout
    );

    let v = verify(&[
        &s.src,
        &url,
        &"--password-file",
        &password,
        &"--checksum",
        &"--repair",
        &"--state-dir",
        &s.state,
    ]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    compare_daemon_replica(&s.src, replica).unwrap();
    let bad = s.dir.path().join("wrong.password");
    fs::write(&bad, "wrong\n").unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o600)).unwrap();
    let v = verify(&[&s.src, &url, &"--password-file", &bad]);
    assert_eq!(v.code, Some(2), "{}{}", v.stdout, v.stderr);
    assert!(v.stderr.contains("auth failed"), "{}", v.stderr);
}
