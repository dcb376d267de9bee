//! systemd integration without systemd: the syncer's notifications (`Type=notify`) read from
//! a datagram socket of the test's own, as systemd would read them; the unit file checked by
//! `systemd-analyze verify` where that is installed.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::*;

/// Starts the syncer with `NOTIFY_SOCKET=socket` and the other variables given.
fn spawn_notifying(s: &Scratch, targets: &[&str], env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(syncer_bin());
    command
        .arg("--state-dir")
        .arg(&s.state)
        .arg(&s.src)
        .args(targets)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("start syncer")
}

/// Every datagram received within `window`.
fn messages(
    socket: &UnixDatagram,
    window: Duration,
    until: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let deadline = Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !until(&got) {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

fn stop(mut child: Child) -> Option<i32> {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    child.wait().ok().and_then(|s| s.code())
}

#[test]
fn ready_status_watchdog_and_stopping_reach_the_notify_socket() {
    let _k = shared_kernel();
    let s = Scratch::new();
    write(&s.src.join("f"), b"x\n");
    let path = s.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let dst = s.dst.to_str().unwrap().to_string();
    let child = spawn_notifying(
        &s,
        &[&dst],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let got = messages(&socket, Duration::from_secs(20), |got| {
        got.iter().any(|m| m.starts_with("READY=1"))
            && got.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3
    });
    let ready = got.iter().find(|m| m.starts_with("READY=1"));
    assert!(ready.is_some_and(|m| m.contains("\nSTATUS=")), "{got:?}");
    assert!(
        got.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3,
        "pings at least twice per 0.4 s period: {got:?}"
    );
    assert!(got.iter().any(|m| m.starts_with("STATUS=")), "{got:?}");
    assert!(s.dst.join("f").exists());
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let got = messages(&socket, Duration::from_secs(10), |got| {
        got.iter().any(|m| m == "STOPPING=1")
    });
    assert!(got.iter().any(|m| m == "STOPPING=1"), "{got:?}");
    assert_eq!(stop(child), Some(0));
}

#[test]
fn a_start_that_makes_progress_extends_its_timeout_on_an_abstract_socket() {
    let _k = shared_kernel();
    let s = Scratch::new();
    write(&s.src.join("f"), b"x\n");
    let name = format!("syncer-it-{}-{:?}", std::process::id(), Instant::now());
    let socket =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    // Nothing listens on port 9: the initial sync retries (progress) and never ends.
    let child = spawn_notifying(
        &s,
        &["rsync://127.0.0.1:9/backup"],
        &[
            ("NOTIFY_SOCKET", &format!("@{name}")),
            ("RSYNC_PASSWORD", "x"),
        ],
    );
    let got = messages(&socket, Duration::from_secs(8), |got| {
        got.iter()
            .filter(|m| m.starts_with("EXTEND_TIMEOUT_USEC="))
            .count()
            >= 2
    });
    assert!(
        got.iter()
            .filter(|m| m.starts_with("EXTEND_TIMEOUT_USEC="))
            .count()
            >= 2,
        "{got:?}"
    );
    assert!(
        !got.iter().any(|m| m.starts_with("READY=1")),
        "not ready while the initial sync fails: {got:?}"
    );
    assert!(
        got.iter().any(|m| m.starts_with("STATUS=initial sync")),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|m| m == "WATCHDOG=1"),
        "no watchdog configured, no pings: {got:?}"
    );
    stop(child);
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify_where_installed() {
    let unit =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd/syncer.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "RestartPreventExitStatus=2 3",
    ] {
        assert!(text.contains(line), "{} lacks {line}", unit.display());
    }
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
    else {
        eprintln!(
            "SKIP: systemd-analyze is not installed here; the unit's keys were checked by text"
        );
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The binary and its man page need not be installed on a build machine.
    let real: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("/usr/local/bin/syncer") && !l.contains("man syncer(1)"))
        .collect();
    assert!(out.status.success() || real.is_empty(), "{stderr}");
}
