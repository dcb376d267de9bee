//! Directories replaced under the same name (moved out and recreated at once, deploy swaps) and
//! `renameat2(RENAME_EXCHANGE)` of two entries: the replica ends equal to the source whatever
//! the name held before, later files in the new directory arrive, and inotify holds exactly one
//! watch per source directory (none leaked, none lost).

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use crate::common::*;

const CONVERGE: Duration = Duration::from_secs(30);

/// `renameat2(a, b, RENAME_EXCHANGE)`: swaps two existing entries atomically.
pub fn exchange(a: &Path, b: &Path) {
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE)
        .unwrap_or_else(|e| panic!("renameat2 {} <-> {}: {e}", a.display(), b.display()));
}

/// Directories in `root`, itself included: the watches an inotify syncer needs.
fn dirs_in(root: &Path) -> usize {
    1 + fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| dirs_in(&e.path()))
        .sum::<usize>()
}

/// Watches the process holds, from the kernel (`inotify wd:` lines of /proc/PID/fdinfo).
fn kernel_watches(syncer: &Syncer) -> usize {
    let dir = format!("/proc/{}/fdinfo", syncer.pid());
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| fs::read_to_string(e.path()).ok())
                .map(|info| {
                    info.lines()
                        .filter(|l| l.starts_with("inotify wd:"))
                        .count()
                })
                .sum()
        })
        .unwrap_or(0)
}

/// With inotify: the kernel and the status file both count one watch per source directory.
fn watches_match_dirs(syncer: &Syncer, src: &Path) {
    if testing_fanotify() {
        return;
    }
    let want = dirs_in(src);
    let mut seen = (0, 0);
    let ok = wait_until(CONVERGE, || {
        let status = syncer.fresh_status()["dirs_watched"].as_u64().unwrap_or(0) as usize;
        seen = (kernel_watches(syncer), status);
        seen == (want, want)
    });
    assert!(
        ok,
        "{want} directories, but (kernel, status) watches = {seen:?}\n{}",
        syncer.log()
    );
}

/// `mv S/cache /elsewhere/xN && mkdir S/cache && echo b > S/cache/b`, three times; `inner` is
/// the directory below SOURCE that holds the files (`cache` or `cache/sub`).
fn moved_out_and_recreated(inner: &str) {
    let _k = shared_kernel();
    let s = Scratch::new();
    fs::create_dir_all(s.src.join(inner)).unwrap();
    write(&s.src.join(inner).join("a"), b"old a");
    let syncer = s.syncer(&[]);
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    let elsewhere = s.dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let below_cache = Path::new(inner).strip_prefix("cache").unwrap();
    for round in 0..3 {
        let moved = elsewhere.join(format!("x{round}"));
        fs::rename(s.src.join("cache"), &moved).unwrap();
        fs::create_dir_all(s.src.join(inner)).unwrap();
        write(&s.src.join(inner).join(format!("b{round}")), b"new b");
        assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
        // Later files in the new directory arrive too; the moved one's never show up.
        write(&moved.join(below_cache).join("outside"), b"not ours");
        write(&s.src.join(inner).join(format!("c{round}")), b"later c");
        assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
        watches_match_dirs(&syncer, &s.src);
    }
}

#[test]
fn dir_moved_out_and_recreated_at_once_is_compared_whole() {
    moved_out_and_recreated("cache");
}

#[test]
fn dir_with_a_subdir_moved_out_and_recreated_at_once_is_compared_whole() {
    moved_out_and_recreated("cache/sub");
}

/// The deploy tools' shape: `mv current old && mkdir current`, the old one kept in SOURCE.
#[test]
fn deploy_swap_keeps_old_and_new_directories_apart() {
    let _k = shared_kernel();
    let s = Scratch::new();
    fs::create_dir_all(s.src.join("current/lib")).unwrap();
    write(&s.src.join("current/lib/x"), b"release 0");
    let syncer = s.syncer(&[]);
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    for round in 1..4 {
        fs::rename(s.src.join("current"), s.src.join(format!("old{round}"))).unwrap();
        fs::create_dir_all(s.src.join("current/lib")).unwrap();
        write(
            &s.src.join("current/lib/x"),
            format!("release {round}").as_bytes(),
        );
        assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
        write(&s.src.join("current/lib/later"), b"later");
        write(&s.src.join(format!("old{round}/lib/later-old")), b"old");
        assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
        watches_match_dirs(&syncer, &s.src);
    }
}

/// Exchanges `a` and `b` (relative to SOURCE) once the replica holds both, then writes into
/// whatever directories they are now, so events must be filed under the right names.
fn exchanged(s: &Scratch, syncer: &Syncer, a: &str, b: &str) {
    assert_converges(&s.src, &s.dst, CONVERGE, syncer);
    exchange(&s.src.join(a), &s.src.join(b));
    assert_converges(&s.src, &s.dst, CONVERGE, syncer);
    for name in [a, b] {
        let path = s.src.join(name);
        if path.is_dir() {
            write(&path.join("after-exchange"), name.as_bytes());
        }
    }
    assert_converges(&s.src, &s.dst, CONVERGE, syncer);
    watches_match_dirs(syncer, &s.src);
}

#[test]
fn exchange_of_two_files_replicates() {
    let _k = shared_kernel();
    let s = Scratch::new();
    write(&s.src.join("a"), b"first file");
    write(&s.src.join("b"), b"second, longer file");
    let syncer = s.syncer(&[]);
    exchanged(&s, &syncer, "a", "b");
}

#[test]
fn exchange_of_a_file_and_a_directory_replicates() {
    let _k = shared_kernel();
    let s = Scratch::new();
    write(&s.src.join("f"), b"a file");
    fs::create_dir_all(s.src.join("d/inner")).unwrap();
    write(&s.src.join("d/inner/x"), b"x");
    write(&s.src.join("d/y"), b"y");
    let syncer = s.syncer(&[]);
    exchanged(&s, &syncer, "f", "d");
    exchanged(&s, &syncer, "d", "f");
}

#[test]
fn exchange_of_two_directories_replicates() {
    let _k = shared_kernel();
    let s = Scratch::new();
    fs::create_dir_all(s.src.join("d1/sub")).unwrap();
    write(&s.src.join("d1/x"), b"x");
    write(&s.src.join("d1/sub/y"), b"y");
    fs::create_dir_all(s.src.join("p/d2")).unwrap();
    write(&s.src.join("p/d2/z"), b"z");
    let syncer = s.syncer(&[]);
    exchanged(&s, &syncer, "d1", "p/d2");
    // The subdirectory that moved with d1 is watched under its new name.
    write(&s.src.join("p/d2/sub/deeper"), b"deeper");
    exchanged(&s, &syncer, "p/d2", "d1");
}

/// Read-only chaos seed 8: a rename the read-only replica refused left a file under a name the
/// source had made a directory, and a batch held files below that directory but not the
/// directory itself. The replica's file there was taken for a gone source directory and the
/// files were dropped. Stood in for here by putting the file into the replica by hand.
#[test]
fn files_below_a_directory_the_replica_has_as_a_file_arrive() {
    let _k = shared_kernel();
    let s = Scratch::new();
    fs::create_dir(s.src.join("f2")).unwrap();
    write(&s.src.join("f2/old"), b"old");
    let mut syncer = s.syncer(&[]);
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    fs::remove_dir_all(s.dst.join("f2")).unwrap();
    write(&s.dst.join("f2"), b"a stale file");
    write(&s.src.join("f2/new"), b"new");
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    syncer.stop();
}
