//! `--bwlimit`: a file several times the per-second rate takes at least that long to reach a
//! local replica and a real rsync daemon, and arrives whole; a bad rate is a usage error.

use std::ffi::OsString;
use std::fs;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::daemon::Daemon;

/// Writes the payload and returns how long the replica took to hold it whole.
fn time_to_arrive(src: &std::path::Path, replica: &std::path::Path, syncer: &Syncer) -> Duration {
    // 3 MiB that neither compression nor a clone can shortcut.
    let data = incompressible(3 << 20);
    let started = Instant::now();
    write(&src.join("big"), &data);
    let arrived = wait_until(Duration::from_secs(60), || {
        fs::read(replica.join("big")).is_ok_and(|got| got == data)
    });
    assert!(arrived, "{}", syncer.log());
    started.elapsed()
}

#[test]
fn a_local_target_is_held_to_the_rate() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let syncer = s.syncer(&["--bwlimit", "1M"]);
    let took = time_to_arrive(&s.src, &s.dst, &syncer);
    // 3 MiB at 1 MiB/s with a quarter second of burst: 2.75 s at the least.
    assert!(took >= Duration::from_millis(2500), "3 MiB in {took:?}");
}

#[test]
fn an_rsync_target_is_held_to_the_rate() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    let password = daemon.password_file.to_str().unwrap().to_string();
    let targets = [OsString::from(daemon.url())];
    let options = [
        "--password-file",
        &password,
        "--bwlimit",
        "2M",
        "--streams",
        "2",
    ];
    let syncer = Syncer::spawn_to(&s.src, &targets, &s.state, &s.status, &options).wait_ready();
    let took = time_to_arrive(&s.src, &daemon.module, &syncer);
    // One run carries the file, at half the target's rate: 1 MiB/s.
    assert!(took >= Duration::from_millis(2000), "3 MiB in {took:?}");
}

#[test]
fn a_bad_rate_is_a_usage_error() {
    let s = Scratch::new();
    let out = std::process::Command::new(syncer_bin())
        .args(["--bwlimit", "fast"])
        .arg(&s.src)
        .arg(&s.dst)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("e.g. 500K"));
    assert!(!s.dst.exists());
}
