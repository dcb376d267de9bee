//! `--config FILE.toml`: targets with options of their own (excludes on top of the global
//! ones) against a local directory and a real rsync daemon; SIGHUP reloads excludes and
//! options in place, compares only what became included, and refuses a bad or unsupported
//! file whole while replication goes on.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::*;
use crate::daemon::Daemon;

/// Starts `syncer --config FILE` (plus `extra`), its stderr into a log beside the status file.
fn start_with_config(s: &Scratch, file: &Path, extra: &[&str]) -> Syncer {
    let mut command = Command::new(syncer_bin());
    command.arg("--config").arg(file).args(extra);
    Syncer::spawn_command(command, &s.status, s.status.with_extension("stderr")).wait_ready()
}

/// The file's text: `source`, the test's backend, state and status files, then `rest`.
fn config_text(s: &Scratch, rest: &str) -> String {
    format!(
        "source = {:?}\nbackend = {:?}\nstate-dir = {:?}\nstatus = {:?}\n{rest}",
        s.src,
        test_backend().unwrap(),
        s.state,
        s.status
    )
}

fn local_target(path: &Path, lines: &str) -> String {
    format!("[[target]]\npath = {path:?}\n{lines}\n")
}

fn daemon_target(daemon: &Daemon, lines: &str) -> String {
    format!(
        "[[target]]\nurl = {:?}\npassword-file = {:?}\n{lines}\n",
        daemon.url(),
        daemon.password_file
    )
}

fn seed_tree(src: &Path) {
    for dir in ["logs", "docs"] {
        fs::create_dir_all(src.join(dir)).unwrap();
    }
    for (name, body) in [
        ("keep", "k"),
        ("x.tmp", "t"),
        ("logs/old", "l"),
        ("docs/a", "a"),
    ] {
        write(&src.join(name), body.as_bytes());
    }
}

#[test]
fn each_target_gets_its_own_excludes_on_top_of_the_global_ones() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    seed_tree(&s.src);
    let file = s.dir.path().join("syncer.toml");
    let text = config_text(
        &s,
        &format!(
            "exclude = [\"*.tmp\"]\n{}{}",
            local_target(&s.dst, "exclude = [\"/logs\"]"),
            daemon_target(&daemon, "exclude = [\"/docs\"]\nstreams = 1")
        ),
    );
    fs::write(&file, text).unwrap();
    let mut syncer = start_with_config(&s, &file, &[]);
    let (local, remote) = (&s.dst, &daemon.module);
    assert!(local.join("keep").exists() && remote.join("keep").exists());
    assert!(!local.join("x.tmp").exists() && !remote.join("x.tmp").exists());
    assert!(
        local.join("docs/a").exists() && !local.join("logs").exists(),
        "{}",
        syncer.log()
    );
    assert!(
        remote.join("logs/old").exists() && !remote.join("docs").exists(),
        "{}",
        syncer.log()
    );

    // Live: a file in a subtree one target excludes reaches only the other; a file moved
    // from one excluded subtree into the other appears in one replica and leaves the other
    // (a rename into an excluded name is a delete there).
    write(&s.src.join("logs/new"), b"n");
    write(&s.src.join("docs/new"), b"n");
    fs::rename(s.src.join("logs/old"), s.src.join("docs/old")).unwrap();
    fs::rename(s.src.join("docs/a"), s.src.join("logs/a")).unwrap();
    let arrived = wait_until(Duration::from_secs(20), || {
        remote.join("logs/new").exists()
            && local.join("docs/new").exists()
            && local.join("docs/old").exists()
            && !remote.join("logs/old").exists()
            && !local.join("docs/a").exists()
            && remote.join("logs/a").exists()
    });
    assert!(arrived, "{}", syncer.log());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !local.join("logs").exists(),
        "an excluded subtree reached the local replica"
    );
    assert!(
        !remote.join("docs").exists(),
        "an excluded subtree reached the daemon"
    );
    assert_eq!(syncer.stop(), Some(0), "{}", syncer.log());
}

#[test]
fn sighup_reloads_excludes_and_compares_only_what_became_included() {
    let _k = shared_kernel();
    let s = Scratch::new();
    seed_tree(&s.src);
    let file = s.dir.path().join("syncer.toml");
    let first = config_text(
        &s,
        &format!(
            "exclude = [\"*.tmp\"]\n{}",
            local_target(&s.dst, "exclude = [\"/logs\"]")
        ),
    );
    fs::write(&file, &first).unwrap();
    let mut syncer = start_with_config(&s, &file, &["-v"]);
    assert!(!s.dst.join("logs").exists() && !s.dst.join("x.tmp").exists());

    // Nothing excluded but `*.bak` now: logs/ and x.tmp arrive without a full compare.
    let second = config_text(
        &s,
        &format!("exclude = [\"*.bak\"]\n{}", local_target(&s.dst, "")),
    );
    fs::write(&file, &second).unwrap();
    syncer.signal(Signal::SIGHUP);
    let included = wait_until(Duration::from_secs(20), || {
        s.dst.join("logs/old").exists() && s.dst.join("x.tmp").exists()
    });
    assert!(included, "{}", syncer.log());
    let log = syncer.log();
    assert!(log.contains("reloaded"), "{log}");
    // A file no longer excluded needs no watch: nothing is reported unwatched.
    assert!(!log.contains("not watched"), "{log}");
    assert_eq!(syncer.fresh_status()["watch_limit_hit"], false, "{log}");
    assert!(
        log.contains("2 subtrees no longer excluded are compared"),
        "{log}"
    );
    // Only those two were compared: no whole-tree reconcile ran after the start-up one.
    let whole_tree = format!("reconcile of {} \"\":", s.dst.display());
    assert_eq!(log.matches(&whole_tree).count(), 1, "{log}");
    write(&s.src.join("z.bak"), b"b");
    write(&s.src.join("logs/later"), b"l");
    assert!(
        wait_until(Duration::from_secs(20), || s
            .dst
            .join("logs/later")
            .exists()),
        "{}",
        syncer.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !s.dst.join("z.bak").exists(),
        "a newly excluded file was replicated"
    );

    // A broken file and one changing what needs a restart are refused whole; replication
    // goes on under the settings in force.
    fs::write(&file, format!("{second}streams = \n")).unwrap();
    syncer.signal(Signal::SIGHUP);
    let restart = config_text(
        &s,
        &format!("exclude = []\n{}", local_target(&s.dst, "streams = 7")),
    );
    assert!(
        wait_until(Duration::from_secs(10), || syncer
            .log()
            .contains("not reloaded")),
        "{}",
        syncer.log()
    );
    fs::write(&file, restart).unwrap();
    syncer.signal(Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || syncer
            .log()
            .contains("needs a restart")),
        "{}",
        syncer.log()
    );
    write(&s.src.join("y.bak"), b"b");
    write(&s.src.join("after"), b"a");
    assert!(
        wait_until(Duration::from_secs(20), || s.dst.join("after").exists()),
        "{}",
        syncer.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !s.dst.join("y.bak").exists(),
        "a refused reload was applied"
    );
    let log = syncer.log();
    assert!(
        log.contains("syncer.toml:"),
        "the refusal names the place: {log}"
    );
    assert_eq!(syncer.stop(), Some(0), "{log}");
}

#[test]
fn a_bad_config_file_is_refused_before_anything_is_touched() {
    let s = Scratch::new();
    let file = s.dir.path().join("syncer.toml");
    let text = config_text(
        &s,
        &format!("{}password = \"secret\"\n", local_target(&s.dst, "")),
    );
    fs::write(&file, text).unwrap();
    let out = Command::new(syncer_bin())
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("syncer.toml:8:1: password: passwords are never read"),
        "{stderr}"
    );
    assert!(
        !s.dst.exists() && !s.state.exists(),
        "a refused file touched the replica"
    );

    // An option on the command line beside --config is refused, naming the key to write.
    fs::write(&file, config_text(&s, &local_target(&s.dst, ""))).unwrap();
    let out = Command::new(syncer_bin())
        .arg("--config")
        .arg(&file)
        .args(["--bwlimit", "1M"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("write bwlimit = ..."), "{stderr}");
    assert!(!s.dst.exists());
}
