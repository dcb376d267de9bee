//! Fault injection (`[[fault]]` in chaos scenario files, scenarios/faults/): the shipped fault
//! scenarios run through the binary, and a syncer that mishandles the fault is caught.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{repo, syncer, sysctls_as_they_are, text};

/// `harness chaos SCENARIO --seeds 1 EXTRA...` for one backend and target, into `out`.
fn chaos(
    scenario: &str,
    (backend, target): (&str, &str),
    out: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["chaos", scenario, "--seeds", "1", "--jobs", "1"])
        .args(extra)
        .args(["--backend", backend, "--target", target])
        .arg("--out")
        .arg(out)
        .env("HARNESS_SYNCER_BIN", syncer())
        .envs(env.iter().copied())
        .current_dir(repo())
        .output()
        .expect("harness runs")
}

#[test]
fn an_overflow_while_stopped_is_recovered_and_a_syncer_that_ignores_it_is_caught() {
    // The flood must overflow the default queue: no test may raise max_queued_events meanwhile.
    let _sysctls = sysctls_as_they_are();
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = "scenarios/faults/sigstop.toml";
    let good = chaos(
        scenario,
        ("inotify", "local"),
        &out.path().join("good"),
        &[],
        &[],
    );
    let said = text(&good);
    assert!(good.status.success(), "{said}");
    let rows = std::fs::read_to_string(out.path().join("good/runs.csv")).expect("runs.csv");
    let mut reader = csv::Reader::from_reader(rows.as_bytes());
    let header = reader.headers().expect("a header").clone();
    let row = reader.records().next().expect("one case").expect("a row");
    let field = |name: &str| {
        let i = header.iter().position(|h| h == name).expect(name);
        row.get(i).unwrap_or_default().to_string()
    };
    assert_eq!(field("faults"), "1", "{rows}");
    assert_ne!(
        field("overflows"),
        "0",
        "the flood overflowed the queue: {rows}"
    );
    assert!(!field("recover_ms").is_empty(), "{rows}");

    // The test hook: overflows are counted but not reconciled, so the flood's lost events stay
    // lost, and the case must say which paths.
    let bad = chaos(
        scenario,
        ("inotify", "local"),
        &out.path().join("bad"),
        &["--converge-s", "5"],
        &[("SYNCER_TEST_IGNORE_OVERFLOW", "1")],
    );
    let said = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{said}");
    assert!(said.contains("missing"), "{said}");
    assert!(said.contains("flood-1/"), "names the lost paths: {said}");
}

#[test]
fn a_killed_syncer_and_a_killed_daemon_lose_nothing() {
    let _sysctls = sysctls_as_they_are();
    let out = tempfile::tempdir().expect("tempdir");
    for (scenario, target) in [
        ("scenarios/faults/kill9.toml", "rsync"),
        ("scenarios/faults/daemon-restart.toml", "rsync"),
    ] {
        let dir = out
            .path()
            .join(target)
            .join(Path::new(scenario).file_stem().expect("a file name"));
        let run = chaos(scenario, ("fanotify", target), &dir, &[], &[]);
        let said = text(&run);
        assert!(run.status.success(), "{scenario}: {said}");
        let summary = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
        assert!(summary.contains("faults per case"), "{summary}");
    }
}

/// `rsync -r SRC/ URL` with the daemon's password; true when it succeeded.
fn push(src: &Path, url: &str, password_file: &Path, timeout_s: u32) -> bool {
    Command::new("rsync")
        .arg("-r")
        .arg(format!("--timeout={timeout_s}"))
        .arg(format!("--contimeout={timeout_s}"))
        .arg(format!("--password-file={}", password_file.display()))
        .arg(format!("{}/", src.display()))
        .arg(url)
        .output()
        .expect("rsync runs")
        .status
        .success()
}

#[test]
fn a_replica_host_in_a_namespace_is_reached_cut_off_healed_and_leaves_nothing_behind() {
    use harness::host::netns::{NetNs, Rules};
    use harness::sut::daemon::{MODULE, RsyncDaemon};
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, replica) = (dir.path().join("src"), dir.path().join("replica"));
    for d in [&src, &replica] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(src.join("a"), "one").expect("write");
    let ns = NetNs::create().expect("a namespace (root, iproute2, util-linux)");
    let link = format!("/sys/class/net/hx{}h", ns.slot);
    let daemon = RsyncDaemon::start_in(&ns, &dir.path().join("d"), &replica, &dir.path().join("f"))
        .expect("a daemon inside");
    let url = daemon.url(MODULE);
    assert!(url.contains(&ns.ns_addr.to_string()), "{url}");
    assert!(push(&src, &url, &daemon.password_file, 5), "reached");
    assert_eq!(std::fs::read_to_string(replica.join("a")).unwrap(), "one");

    ns.set_rules(Rules::Partition).expect("nft");
    std::fs::write(src.join("b"), "two").expect("write");
    assert!(!push(&src, &url, &daemon.password_file, 2), "cut off");
    assert!(!replica.join("b").exists());
    ns.set_rules(Rules::Loss(5)).expect("nft");
    ns.set_rules(Rules::Open).expect("nft");
    assert!(push(&src, &url, &daemon.password_file, 5), "healed");
    assert!(replica.join("b").exists());

    let pid = daemon.pid().expect("running");
    drop(daemon);
    ns.close().expect("nothing left of the namespace");
    assert!(!Path::new(&link).exists(), "{link} left behind");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the daemon outlived its namespace"
    );
}
