//! The rsync daemon target against a real `rsync --daemon` (the seed's classic config with
//! auth) on 127.0.0.1: convergence, same-size rewrites, faults, safety, fan-out.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::daemon::Daemon;

const CONVERGE: Duration = Duration::from_secs(60);

fn start(s: &Scratch, daemons: &[&Daemon], local: bool, options: &[&str]) -> Syncer {
    let mut targets: Vec<OsString> = daemons.iter().map(|d| OsString::from(d.url())).collect();
    if local {
        targets.push(s.dst.clone().into_os_string());
    }
    let password = daemons[0].password_file.to_str().unwrap().to_string();
    let mut all = vec!["--password-file", &password];
    all.extend_from_slice(options);
    Syncer::spawn_to(&s.src, &targets, &s.state, &s.status, &all).wait_ready()
}

/// Waits until the daemon's replica equals the source (symlinks munged by the daemon).
pub fn converges(s: &Scratch, daemon: &Daemon, syncer: &Syncer) {
    assert_converges_by(
        compare_daemon_replica,
        &s.src,
        &daemon.module,
        CONVERGE,
        syncer,
    );
}

#[test]
fn classic_test_and_every_kind_of_change_reach_the_daemon() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    fs::create_dir_all(s.src.join("old/sub")).unwrap();
    write(&s.src.join("old/sub/f"), b"f");
    write(&s.src.join("gone"), b"g");
    let syncer = start(&s, &[&daemon], false, &[]);
    converges(&s, &daemon, &syncer);
    let ok = Command::new("sh")
        .arg("-c")
        .arg("for a in $(seq 200); do touch $a; done")
        .current_dir(&s.src)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    converges(&s, &daemon, &syncer);
    fs::remove_file(s.src.join("gone")).unwrap();
    fs::rename(s.src.join("1"), s.src.join("one")).unwrap();
    fs::rename(s.src.join("old"), s.src.join("new")).unwrap();
    for round in 0..20 {
        let dir = s.src.join(format!("m{round}/a/b"));
        fs::create_dir_all(&dir).unwrap();
        write(&dir.join("f"), b"nested");
    }
    write(&s.src.join(OsStr::from_bytes(b"new\nline \xff")), b"odd");
    symlink("../outside/target", s.src.join("link")).unwrap();
    fs::remove_dir_all(s.src.join("m3")).unwrap();
    converges(&s, &daemon, &syncer);
    let runs = syncer.fresh_status()["rsync_runs"].as_u64().unwrap();
    assert!(
        runs < 100,
        "{runs} rsync runs for a few hundred changes: batching is broken"
    );
}

#[test]
fn same_size_rewrites_within_a_second_arrive() {
    same_size_rewrites_arrive(&[], 1);
}

/// In place and over several directories: the runs of one batch are dealt to both streams
/// by directory, and the daemon rewrites files without temporary files.
#[test]
fn same_size_rewrites_arrive_in_place_over_parallel_streams() {
    same_size_rewrites_arrive(&["--inplace", "--streams", "2"], 8);
}

fn same_size_rewrites_arrive(options: &[&str], dirs: usize) {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    let name = |i: usize| format!("d{}/f{i}", i % dirs);
    for d in 0..dirs {
        fs::create_dir_all(s.src.join(format!("d{d}"))).unwrap();
    }
    for i in 0..300 {
        write(
            &s.src.join(name(i)),
            format!("file {i:05} version 0\n").as_bytes(),
        );
    }
    let syncer = start(&s, &[&daemon], false, options);
    converges(&s, &daemon, &syncer);
    for version in 1..=2 {
        for i in 0..300 {
            write(
                &s.src.join(name(i)),
                format!("file {i:05} version {version}\n").as_bytes(),
            );
        }
    }
    converges(&s, &daemon, &syncer);
    for i in 0..300 {
        let got = fs::read(daemon.module.join(name(i))).unwrap();
        assert_eq!(got, format!("file {i:05} version 2\n").into_bytes());
    }
}

#[test]
fn wrong_password_and_open_password_file_are_refused_clearly() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    let wrong = s.dir.path().join("wrong.password");
    fs::write(&wrong, "not-the-password\n").unwrap();
    fs::set_permissions(&wrong, fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(syncer_bin())
        .args([
            "--state-dir",
            s.state.to_str().unwrap(),
            "--password-file",
            wrong.to_str().unwrap(),
        ])
        .arg(&s.src)
        .arg(daemon.url())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("auth failed on module backup") && err.contains("rsync_backup"),
        "{err}"
    );

    fs::set_permissions(&wrong, fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(syncer_bin())
        .args(["--password-file", wrong.to_str().unwrap()])
        .arg(&s.src)
        .arg(daemon.url())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("readable by other users") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn daemon_killed_in_a_storm_and_restarted_converges() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let mut daemon = Daemon::start(&s.dir.path().join("daemon"));
    let syncer = start(&s, &[&daemon], false, &[]);
    for d in 0..6 {
        let dir = s.src.join(format!("d{d}"));
        fs::create_dir(&dir).unwrap();
        for i in 0..300 {
            write(&dir.join(format!("{i}")), format!("{d}/{i}").as_bytes());
        }
        if d == 2 {
            daemon.kill();
        }
    }
    assert!(
        wait_until(CONVERGE, || syncer.log().contains("retrying with backoff")),
        "the outage was not reported:\n{}",
        syncer.log()
    );
    daemon.restart();
    converges(&s, &daemon, &syncer);
}

#[test]
fn a_directory_replaced_while_the_daemon_is_down_keeps_none_of_its_old_entries() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let mut daemon = Daemon::start(&s.dir.path().join("daemon"));
    for dir in ["current", "swapped"] {
        fs::create_dir_all(s.src.join(dir).join("sub")).unwrap();
        write(&s.src.join(dir).join("old"), b"old");
        write(&s.src.join(dir).join("sub/old"), b"old");
    }
    let syncer = start(&s, &[&daemon], false, &[]);
    converges(&s, &daemon, &syncer);
    daemon.kill();
    // The killed daemon's open connections live on (warm clients use them): changes until
    // runs fail for good, boundedly.
    let failures = || syncer.log().matches("retrying with backoff").count();
    for tick in 0..100 {
        if failures() > 0 {
            break;
        }
        write(&s.src.join(format!("tick{tick}")), b"t");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = failures();
    assert!(before > 0, "the outage was not reported:\n{}", syncer.log());
    // `rm -r current` and `swapped` swapped for a file: runs that fail while the daemon is down.
    fs::remove_dir_all(s.src.join("current")).unwrap();
    fs::remove_dir_all(s.src.join("swapped")).unwrap();
    write(&s.src.join("swapped"), b"a file for a while");
    assert!(
        wait_until(CONVERGE, || failures() > before),
        "the failed runs were not reported:\n{}",
        syncer.log()
    );
    // Both names directories again before the daemon is back: retried by name, they must be
    // compared whole, not sent as bare directory entries over the daemon's old ones.
    fs::create_dir(s.src.join("current")).unwrap();
    write(&s.src.join("current/new"), b"new");
    fs::remove_file(s.src.join("swapped")).unwrap();
    fs::create_dir(s.src.join("swapped")).unwrap();
    daemon.restart();
    converges(&s, &daemon, &syncer);
}

#[test]
fn a_daemon_back_with_another_password_stops_the_syncer_and_the_right_one_loses_nothing() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let mut daemon = Daemon::start(&s.dir.path().join("daemon"));
    write(&s.src.join("before"), b"before");
    let mut syncer = start(&s, &[&daemon], false, &[]);
    converges(&s, &daemon, &syncer);
    // The daemon comes back with another password (its secrets file rewritten, mode kept).
    daemon.kill();
    let secrets = daemon.dir.join("rsync.password");
    fs::write(
        &secrets,
        format!("{}:changed-on-the-server\n", crate::daemon::USER),
    )
    .unwrap();
    daemon.restart();
    // Changes until a run meets the new password (a warm client of the old daemon may still
    // take one), boundedly.
    for tick in 0..100 {
        if syncer.exited() {
            break;
        }
        write(&s.src.join(format!("during{tick}")), b"during");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        wait_until(CONVERGE, || syncer.exited()),
        "the syncer went on with a refused password:\n{}",
        syncer.log()
    );
    let log = syncer.log();
    assert_eq!(syncer.stop(), Some(1), "{log}");
    assert!(log.contains("auth failed on module backup"), "{log}");
    // The right password again: the restarted syncer (same state dir) loses nothing.
    fs::write(
        &secrets,
        format!("{}:{}\n", crate::daemon::USER, crate::daemon::PASSWORD),
    )
    .unwrap();
    write(&s.src.join("after"), b"after");
    let syncer = start(&s, &[&daemon], false, &[]);
    converges(&s, &daemon, &syncer);
}

#[test]
fn a_directory_swapped_for_a_symlink_never_sends_the_secret() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    let secrets = s.dir.path().join("secrets");
    fs::create_dir(&secrets).unwrap();
    write(&secrets.join("secret"), b"TOPSECRET");
    fs::create_dir(s.src.join("d")).unwrap();
    let syncer = start(&s, &[&daemon], false, &[]);
    for round in 0..60 {
        write(
            &s.src.join(format!("d/f{}", round % 7)),
            format!("round {round}").as_bytes(),
        );
        fs::rename(s.src.join("d"), s.src.join("d.real")).unwrap();
        symlink(&secrets, s.src.join("d")).unwrap();
        fs::remove_file(s.src.join("d")).unwrap();
        fs::rename(s.src.join("d.real"), s.src.join("d")).unwrap();
    }
    fs::rename(s.src.join("d"), s.src.join("d.real")).unwrap();
    symlink(&secrets, s.src.join("d")).unwrap();
    converges(&s, &daemon, &syncer);
    let leaked = Command::new("grep")
        .args(["-rl", "TOPSECRET"])
        .arg(&daemon.module)
        .output()
        .unwrap();
    assert!(
        leaked.stdout.is_empty(),
        "secret reached the daemon: {}",
        String::from_utf8_lossy(&leaked.stdout)
    );
}

#[test]
fn two_daemons_and_a_local_dir_converge_and_a_dead_daemon_delays_nobody() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let mut first = Daemon::start(&s.dir.path().join("daemon1"));
    let second = Daemon::start(&s.dir.path().join("daemon2"));
    // One password file serves both: same user and password.
    let syncer = start(&s, &[&first, &second], true, &[]);
    for i in 0..100 {
        write(&s.src.join(format!("a{i}")), b"round one");
    }
    converges(&s, &first, &syncer);
    converges(&s, &second, &syncer);
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);

    first.kill();
    let started = Instant::now();
    for i in 0..100 {
        write(&s.src.join(format!("b{i}")), b"round two");
    }
    converges(&s, &second, &syncer);
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "live targets waited for the dead one: {took:?}"
    );
    first.restart();
    converges(&s, &first, &syncer);
}

#[test]
fn daemon_replica_of_an_existing_tree_needs_one_full_run() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    for d in 0..10 {
        fs::create_dir(s.src.join(format!("d{d}"))).unwrap();
        for i in 0..50 {
            write(&s.src.join(format!("d{d}/{i}")), b"x");
        }
    }
    let syncer = start(&s, &[&daemon], false, &[]);
    converges(&s, &daemon, &syncer);
    let doc = syncer.fresh_status();
    assert_eq!(doc["rsync_runs"], 1, "{doc}");
    let _ = Path::new("");
}

/// Many deletions in one directory go as one sweep of it (`--delete --existing
/// --ignore-existing`), a deleted directory as one forced delete: both converge, and a name
/// excluded from syncing that lives only on the replica survives the sweep.
#[test]
fn mass_deletes_converge_and_spare_excluded_names() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    for (dir, files) in [("a", 300), ("a/sub", 20), ("b", 10)] {
        fs::create_dir_all(s.src.join(dir)).unwrap();
        for i in 0..files {
            write(&s.src.join(format!("{dir}/f{i}")), b"x");
        }
    }
    let syncer = start(&s, &[&daemon], false, &["--exclude", "*.keep"]);
    converges(&s, &daemon, &syncer);
    let kept = daemon.module.join("a/local.keep");
    write(&kept, b"the replica's own");
    for i in 0..250 {
        fs::remove_file(s.src.join(format!("a/f{i}"))).unwrap();
    }
    fs::remove_dir_all(s.src.join("a/sub")).unwrap();
    for i in 0..3 {
        fs::remove_file(s.src.join(format!("b/f{i}"))).unwrap();
    }
    let names = |dir: &Path| -> Vec<OsString> {
        let mut v: Vec<OsString> = fs::read_dir(dir)
            .map(|it| it.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let settled = wait_until(CONVERGE, || {
        let mut want_a = names(&s.src.join("a"));
        want_a.push("local.keep".into());
        want_a.sort();
        names(&daemon.module.join("a")) == want_a
            && names(&daemon.module.join("b")) == names(&s.src.join("b"))
    });
    assert!(
        settled,
        "replica a: {:?}",
        names(&daemon.module.join("a")).len()
    );
    assert_eq!(fs::read(&kept).unwrap(), b"the replica's own");
    fs::remove_file(&kept).unwrap();
    converges(&s, &daemon, &syncer);
}

/// A directory filled with new files goes as one `dir/.` listing that rsync reads itself: it
/// must still leave excluded names out, and a same-size rewrite of an old file in the same
/// batch must still arrive (it is listed apart, with --ignore-times).
#[test]
fn a_directory_filled_with_new_files_converges_without_its_excluded_names() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    fs::create_dir_all(s.src.join("burst")).unwrap();
    write(&s.src.join("burst/old"), b"one");
    let syncer = start(&s, &[&daemon], false, &["--exclude", "*.tmp"]);
    converges(&s, &daemon, &syncer);
    write(&s.src.join("burst/scratch.tmp"), b"never sent");
    for i in 0..400 {
        write(
            &s.src.join(format!("burst/f{i}")),
            format!("{i}").as_bytes(),
        );
    }
    write(&s.src.join("burst/old"), b"two");
    let replica_names = || fs::read_dir(daemon.module.join("burst")).map_or(0, |it| it.count());
    // 400 new files plus "old".
    assert!(
        wait_until(CONVERGE, || replica_names() == 401),
        "replica burst/ holds {} entries",
        replica_names()
    );
    assert!(!daemon.module.join("burst/scratch.tmp").exists());
    fs::remove_file(s.src.join("burst/scratch.tmp")).unwrap();
    converges(&s, &daemon, &syncer);
    assert_eq!(fs::read(daemon.module.join("burst/old")).unwrap(), b"two");
}

/// `mv S/cache elsewhere && mkdir S/cache && echo b > S/cache/b`: the daemon's `cache/a` goes
/// (the new directory is compared whole), and files written later in the new one arrive.
#[test]
fn dir_moved_out_and_recreated_at_once_reaches_the_daemon() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    fs::create_dir_all(s.src.join("cache/sub")).unwrap();
    write(&s.src.join("cache/a"), b"old a");
    write(&s.src.join("cache/sub/a"), b"old sub a");
    let syncer = start(&s, &[&daemon], false, &[]);
    converges(&s, &daemon, &syncer);
    let elsewhere = s.dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    for round in 0..2 {
        fs::rename(s.src.join("cache"), elsewhere.join(format!("x{round}"))).unwrap();
        fs::create_dir_all(s.src.join("cache/sub")).unwrap();
        write(&s.src.join(format!("cache/sub/b{round}")), b"new b");
        converges(&s, &daemon, &syncer);
        write(&s.src.join(format!("cache/c{round}")), b"later c");
        converges(&s, &daemon, &syncer);
    }
}

/// A file changed just before its directory's parent is moved out and made again: the file
/// and its parent are gone, the grandparent stands. Listing the file for deletion made rsync
/// send its vanished parent as an implied directory, fail with exit 24, and the same run was
/// retried at once, forever (soak-3 seed 125).
#[test]
fn a_change_under_a_parent_moved_out_and_made_again_is_not_retried_forever() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    fs::create_dir_all(s.src.join("x/current")).unwrap();
    write(&s.src.join("x/current/f4"), b"four");
    let syncer = start(&s, &[&daemon], false, &[]);
    converges(&s, &daemon, &syncer);
    let elsewhere = s.dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::set_permissions(
        s.src.join("x/current/f4"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::rename(s.src.join("x"), elsewhere.join("x")).unwrap();
    fs::create_dir(s.src.join("x")).unwrap();
    converges(&s, &daemon, &syncer);
    let retries = || {
        syncer.fresh_status()["targets"][0]["retries"]
            .as_u64()
            .unwrap()
    };
    let before = retries();
    std::thread::sleep(Duration::from_secs(2));
    let after = retries();
    assert!(
        after <= before + 1,
        "still retrying after convergence: {before} -> {after} retries\n{}",
        syncer.log()
    );
    // Escalation (the parent compared whole) would repair it too, after rounds of failed
    // runs: the deletion itself must go through.
    assert!(
        !syncer.log().contains("times in a row"),
        "the deletion failed round after round before it went through:\n{}",
        syncer.log()
    );
}

/// `mv d e; echo > d` makes the syncer plan "send the file d" to replace the daemon's copy of
/// the renamed directory. If `rm d; mkdir d` follows before rsync reads the name, rsync sends
/// a directory entry instead and the daemon keeps the old directory's entries under it, while
/// the new events say only "d changed" (found by the random-operation storm, CI seed 2: an
/// extra `d2/x.tmp`). The daemon's pre-transfer hook holds each run for 2 s while a flag file
/// exists, so the swap lands between the syncer's check and rsync's read on every run.
#[test]
fn a_directory_made_again_under_a_renamed_directorys_old_name_mid_run_is_compared_whole() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon_dir = s.dir.path().join("daemon");
    fs::create_dir_all(&daemon_dir).unwrap();
    let hold = daemon_dir.join("hold");
    let hook = daemon_dir.join("pre-xfer.sh");
    fs::write(
        &hook,
        format!("#!/bin/sh\n[ ! -e '{}' ] || sleep 2\n", hold.display()),
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = Daemon::start_with(
        &daemon_dir,
        &format!("pre-xfer exec = {}\n", hook.display()),
    );
    fs::create_dir(s.src.join("d")).unwrap();
    write(&s.src.join("d/old"), b"old");
    // Cold clients only: a warm one would have passed the hook before the batch.
    let syncer = start(&s, &[&daemon], false, &["--warm-clients", "0"]);
    converges(&s, &daemon, &syncer);

    write(&hold, b"");
    fs::rename(s.src.join("d"), s.src.join("e")).unwrap();
    write(&s.src.join("d"), b"a file for a moment");
    // The syncer checks `d` within a batch interval; its runs then wait in the hook.
    std::thread::sleep(Duration::from_millis(700));
    fs::remove_file(s.src.join("d")).unwrap();
    fs::create_dir(s.src.join("d")).unwrap();
    write(&s.src.join("d/new"), b"new");
    fs::remove_file(&hold).unwrap();
    converges(&s, &daemon, &syncer);
}
