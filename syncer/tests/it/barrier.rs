//! `syncer wait`, the sync barrier: the real binary waits on a real running syncer, and
//! every change made before the call is in the replica when it returns 0, under batch
//! delays, files still in their quiet period and a running storm; a target that cannot
//! catch up is named on timeout; cookies are never replicated.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::daemon::Daemon;

struct Waited {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn wait_for(src: &Path, state: &Path, timeout_secs: &str) -> Waited {
    let started = Instant::now();
    let out = Command::new(syncer_bin())
        .arg("wait")
        .arg(src)
        .arg("--state-dir")
        .arg(state)
        .args(["--timeout", timeout_secs])
        .output()
        .unwrap();
    Waited {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

fn cookies_in(dir: &Path) -> Vec<OsString> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().starts_with(".syncer-wait-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn wait_returns_once_every_change_before_it_is_in_the_replica() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let syncer = s.syncer(&["--batch-delay", "700", "--modify-quiet", "900"]);
    for i in 0..50 {
        write(
            &s.src.join(format!("f{i}")),
            format!("file {i}\n").as_bytes(),
        );
    }
    // Written and still open: due only after its quiet period.
    let mut open = fs::File::create(s.src.join("growing.log")).unwrap();
    open.write_all(b"line 1\n").unwrap();
    let w = wait_for(&s.src, &s.state, "30");
    assert_eq!(
        w.code,
        Some(0),
        "{}{}\n{}",
        w.stdout,
        w.stderr,
        syncer.log()
    );
    // The moment it returns, with nothing more to wait for.
    compare_trees(&s.src, &s.dst).unwrap_or_else(|e| panic!("after wait returned: {e}"));
    assert!(
        w.took >= Duration::from_millis(500),
        "returned before the quiet period: {:?}",
        w.took
    );
    assert!(
        w.stdout.starts_with("passed: ") && w.stdout.contains("1 target"),
        "{}",
        w.stdout
    );
    assert!(cookies_in(&s.src).is_empty() && cookies_in(&s.dst).is_empty());
    assert_eq!(
        fs::read_dir(s.state.join("barriers")).unwrap().count(),
        0,
        "acknowledgements are removed"
    );
    drop(open);
    // An idle syncer answers at once.
    let w = wait_for(&s.src, &s.state, "30");
    assert_eq!(w.code, Some(0), "{}", w.stderr);
    assert!(w.took < Duration::from_secs(2), "{:?}", w.took);
    // A cookie is never replicated, and syncer verify does not see one either.
    write(&s.src.join(".syncer-wait-stray"), b"");
    write(&s.src.join("after"), b"after the stray cookie\n");
    let arrived = wait_until(Duration::from_secs(20), || s.dst.join("after").exists());
    assert!(arrived, "{}", syncer.log());
    assert!(cookies_in(&s.dst).is_empty());
    let verify = Command::new(syncer_bin())
        .arg("verify")
        .arg(&s.src)
        .arg(&s.dst)
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
fn wait_holds_under_a_running_storm() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let syncer = s.syncer(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (src, stop, written) = (s.src.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut i = 0;
            while !stop.load(SeqCst) && Instant::now() < deadline && i < 200_000 {
                let dir = src.join(format!("d{}", i / 500));
                fs::create_dir_all(&dir).unwrap();
                fs::write(dir.join(format!("f{i}")), format!("{i}\n")).unwrap();
                i += 1;
                written.store(i, SeqCst);
            }
        })
    };
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        let before = written.load(SeqCst);
        let w = wait_for(&s.src, &s.state, "30");
        assert_eq!(
            w.code,
            Some(0),
            "round {round}: {}{}\n{}",
            w.stdout,
            w.stderr,
            syncer.log()
        );
        for i in 0..before {
            let rel = format!("d{}/f{i}", i / 500);
            let got = fs::read(s.dst.join(&rel)).unwrap_or_default();
            assert_eq!(
                got,
                format!("{i}\n").into_bytes(),
                "round {round}: {rel} written before the wait, not in the replica when it returned"
            );
        }
    }
    stop.store(true, SeqCst);
    writer.join().unwrap();
    assert_converges(&s.src, &s.dst, Duration::from_secs(60), &syncer);
}

#[test]
fn a_target_that_cannot_catch_up_is_named_on_timeout() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let mut daemon = Daemon::start(&s.dir.path().join("daemon"));
    let password = daemon.password_file.to_str().unwrap().to_string();
    let url = daemon.url();
    let targets = [s.dst.clone().into_os_string(), OsString::from(&url)];
    let syncer = Syncer::spawn_to(
        &s.src,
        &targets,
        &s.state,
        &s.status,
        &["--password-file", &password, "--warm-clients", "0"],
    )
    .wait_ready();
    // Without warm clients: one connected before the kill is still served by the daemon's
    // forked child.
    daemon.kill();
    write(&s.src.join("while the daemon is down"), b"x\n");
    let w = wait_for(&s.src, &s.state, "2");
    assert_eq!(
        w.code,
        Some(1),
        "{}{}\n{}",
        w.stdout,
        w.stderr,
        syncer.log()
    );
    let url_shown = url.trim_end_matches('/');
    assert!(
        w.stderr
            .contains(&format!("not caught up yet: {url_shown}"))
            && w.stderr
                .contains(&format!("(caught up: {})", s.dst.display())),
        "{}",
        w.stderr
    );
    assert!(
        cookies_in(&s.src).is_empty(),
        "the cookie is removed on timeout too"
    );
}
