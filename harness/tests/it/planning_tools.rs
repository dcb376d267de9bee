//! `harness limits` and `harness watchcost` end to end: the real binary on real temp trees,
//! real /proc/*/fdinfo and real slab readings (root needed, as in CI).

use std::path::Path;
use std::process::Command;

use harness::capacity::records::WatchCost;
use syncer::sys::inotify::{Inotify, WATCH_MASK};

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harness"))
}

/// `per` directories under the root, `per` under each of those with two files each.
fn tree(root: &Path, per: usize) -> u64 {
    let mut dirs = 1;
    for a in 0..per {
        let top = root.join(format!("a{a}"));
        std::fs::create_dir(&top).unwrap();
        dirs += 1;
        for b in 0..per {
            let sub = top.join(format!("b{b}"));
            std::fs::create_dir(&sub).unwrap();
            std::fs::write(sub.join("f1"), "x").unwrap();
            std::fs::write(sub.join("f2"), "y").unwrap();
            dirs += 1;
        }
    }
    dirs
}

#[test]
fn limits_counts_the_tree_and_the_watches_this_user_already_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = tree(tmp.path(), 6);
    // A symlink to a big directory must not be followed.
    std::os::unix::fs::symlink("/usr", tmp.path().join("usr-link")).unwrap();
    let counted = harness::cmd::limits::walk(tmp.path()).unwrap();
    assert_eq!(counted.dirs, dirs);
    assert_eq!(counted.files, 6 * 6 * 2 + 1);

    // Watches held by this test process show up in fdinfo as "already held".
    let ino = Inotify::new().unwrap();
    let held = 5;
    for i in 0..held {
        ino.add_watch(&tmp.path().join(format!("a{i}/b0")), WATCH_MASK)
            .unwrap();
    }
    let euid = nix::unistd::geteuid().as_raw();
    let in_use = harness::host::watches::watches_in_use(euid);
    let me = std::process::id();
    let mine = in_use.holders.iter().find(|h| h.0 == me).map(|h| h.2);
    assert_eq!(mine, Some(held), "{in_use:?}");

    let cost = tmp.path().join("cost.json");
    let record = WatchCost {
        inotify: Some(harness::capacity::records::MemoryCost {
            bytes_per_directory: 1000.0,
            directories: 10,
            objects: 10,
            pinned_bytes: 10_000,
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(&cost, serde_json::to_string(&record).unwrap()).unwrap();
    let out = harness()
        .args(["limits", "--rate", "2000", "--stall-ms", "500", "--tree"])
        .arg(tmp.path())
        .arg("--cost")
        .arg(&cost)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!(": {dirs} directories")), "{text}");
    assert!(text.contains(&format!("{dirs} x 1000 B")), "{text}");
    // 2000 ops/s x 3 events/op x 0.5 s.
    assert!(text.contains("= 3,000 events"), "{text}");
    assert!(text.contains("fs.inotify.max_user_watches = "), "{text}");
    assert!(text.contains("fs.inotify.max_queued_events = "), "{text}");
    drop(ino);
}

#[test]
fn limits_refuses_a_file_with_a_clear_error() {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let out = harness()
        .args(["limits", "--tree"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
}

#[test]
fn watchcost_measures_a_positive_cost_per_inotify_watch() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    // The directories go to the temp dir's disk filesystem, where a held watch keeps an
    // otherwise reclaimable inode: a few hundred bytes per watch at least.
    let out = harness()
        .args(["watchcost", "--dirs", "2000", "--rounds", "2", "--out"])
        .arg(&out_dir)
        .arg("--dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = std::fs::read_to_string(out_dir.join("watchcost.json")).unwrap();
    let w: WatchCost = serde_json::from_str(&text).unwrap();
    let ino = w.inotify.expect("inotify measured");
    assert_eq!(ino.objects, 2000);
    assert_eq!(ino.samples_bytes.len(), 2);
    assert!(
        (100.0..100_000.0).contains(&ino.bytes_per_directory),
        "implausible {} B per watch: {stderr}",
        ino.bytes_per_directory
    );
    let fan = w.fanotify.expect("fanotify measured");
    assert_eq!(fan.objects, 1);
    assert!(out_dir.join("README.md").is_file());
    assert!(!w.machine.kernel.is_empty());
}
