//! The delete guard: a SOURCE that goes away (unmounted, mounted over, emptied) never wipes a
//! replica, and `--max-delete` caps a mass delete. Real loop-mounted ext4 and tmpfs mounts;
//! every mount is undone on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::daemon::Daemon;

const CONVERGE: Duration = Duration::from_secs(60);
const EXIT_GUARD: i32 = 3;

fn run(program: &str, args: &[&std::ffi::OsStr]) {
    let ok = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
        .success();
    assert!(ok, "{program} {args:?} failed");
}

/// A small ext4 image, loop-mounted at `at` while `mounted`; undone on drop (lazily, if the
/// syncer still holds it: the loop device goes with the last reference).
struct LoopExt4 {
    image: PathBuf,
    at: PathBuf,
}

impl LoopExt4 {
    fn create(image: PathBuf, at: &Path) -> Self {
        fs::File::create(&image)
            .and_then(|f| f.set_len(32 << 20))
            .unwrap();
        run(
            "mkfs.ext4",
            &["-q".as_ref(), "-F".as_ref(), image.as_os_str()],
        );
        let fs = Self {
            image,
            at: at.to_path_buf(),
        };
        fs.mount();
        fs
    }

    fn mount(&self) {
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                self.image.as_os_str(),
                self.at.as_os_str(),
            ],
        );
    }

    fn unmount_lazily(&self) {
        run("umount", &["-l".as_ref(), self.at.as_os_str()]);
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        while is_mount_point(&self.at) {
            if !Command::new("umount")
                .arg("-l")
                .arg(&self.at)
                .status()
                .is_ok_and(|s| s.success())
            {
                break;
            }
        }
        let _ = fs::remove_file(&self.image);
    }
}

/// A tmpfs mounted over `at` until drop.
struct TmpfsOver(PathBuf);

impl Drop for TmpfsOver {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(path) = fs::canonicalize(path) else {
        return false;
    };
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap_or("")))
}

fn fill(root: &Path, n: usize) {
    fs::create_dir_all(root.join("sub")).unwrap();
    for i in 0..n {
        write(
            &root.join(format!("f{i}")),
            format!("file {i}\n").as_bytes(),
        );
        write(&root.join(format!("sub/g{i}")), b"below\n");
    }
}

fn count_files(root: &Path) -> usize {
    walkdir(root).len()
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// Waits for the syncer to exit on its own and returns its exit code.
fn exits_by_itself(syncer: &mut Syncer, within: Duration) -> Option<i32> {
    let exited = wait_until(within, || syncer.exited());
    assert!(
        exited,
        "the syncer did not stop by itself; log:\n{}",
        syncer.log()
    );
    syncer.stop()
}

fn assert_guard_stop(syncer: &mut Syncer, what: &str) {
    let code = exits_by_itself(syncer, Duration::from_secs(15));
    let log = syncer.log();
    assert_eq!(code, Some(EXIT_GUARD), "{what}: exit code; log:\n{log}");
    assert!(
        log.contains("no deletes were applied") && log.contains("--allow-source-change"),
        "{what}: the log says what happened and what to do:\n{log}"
    );
}

#[test]
fn an_unmounted_source_stops_the_syncer_a_restart_is_refused_and_a_remount_resumes() {
    if !is_root() {
        eprintln!("skipped: loop mounts need root");
        return;
    }
    let _k = shared_kernel();
    let s = Scratch::new();
    let disk = LoopExt4::create(s.dir.path().join("source.img"), &s.src);
    fill(&s.src, 40);
    let mut syncer = s.syncer(&[]);
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    let held = count_files(&s.dst);

    // umount -l: the syncer still reads the detached tree and gets no events; the mount
    // table tells it.
    disk.unmount_lazily();
    assert_guard_stop(&mut syncer, "unmounted while running");
    assert_eq!(count_files(&s.dst), held, "the replica is intact");

    // As after a reboot where the mount failed: SOURCE is the empty mount point.
    let mut restarted = Syncer::spawn(&s.src, &s.dst, &s.state, &s.status, &[]);
    assert_guard_stop(&mut restarted, "restart on the empty mount point");
    assert!(
        restarted
            .log()
            .contains("not the tree the replicas were made from")
    );
    assert_eq!(count_files(&s.dst), held, "the replica is intact");

    // The same filesystem mounted again is the same tree: no false alarm.
    disk.mount();
    write(&s.src.join("after-remount"), b"new\n");
    let mut resumed = s.syncer(&[]);
    assert_converges(&s.src, &s.dst, CONVERGE, &resumed);
    assert_eq!(resumed.stop(), Some(0), "log:\n{}", resumed.log());
}

#[test]
fn another_filesystem_mounted_over_source_stops_the_syncer() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let _k = shared_kernel();
    let s = Scratch::new();
    fill(&s.src, 30);
    let mut syncer = s.syncer(&[]);
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    let held = count_files(&s.dst);
    run(
        "mount",
        &[
            "-t".as_ref(),
            "tmpfs".as_ref(),
            "tmpfs".as_ref(),
            s.src.as_os_str(),
        ],
    );
    let _over = TmpfsOver(s.src.clone());
    assert_guard_stop(&mut syncer, "tmpfs mounted over SOURCE");
    assert_eq!(count_files(&s.dst), held, "the replica is intact");
}

#[test]
fn an_emptied_source_is_refused_at_start_unless_allowed() {
    let _k = shared_kernel();
    let s = Scratch::new();
    fill(&s.src, 20);
    let mut syncer = s.syncer(&[]);
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    assert_eq!(syncer.stop(), Some(0));
    let held = count_files(&s.dst);

    empty_dir(&s.src);
    let mut refused = Syncer::spawn(&s.src, &s.dst, &s.state, &s.status, &[]);
    assert_guard_stop(&mut refused, "start on an emptied SOURCE");
    assert!(refused.log().contains("is empty, but"), "{}", refused.log());
    assert_eq!(count_files(&s.dst), held, "the replica is intact");

    // Intended: allowed once, the replica follows SOURCE.
    let mut allowed = s.syncer(&["--allow-source-change"]);
    assert_converges(&s.src, &s.dst, CONVERGE, &allowed);
    assert_eq!(count_files(&s.dst), 0);
    assert_eq!(allowed.stop(), Some(0));
}

#[test]
fn the_daemon_replica_survives_an_unmounted_and_an_emptied_source() {
    if !is_root() {
        eprintln!("skipped: loop mounts need root");
        return;
    }
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    let password = daemon.password_file.to_str().unwrap().to_string();
    let options = ["--password-file", password.as_str()];
    let targets = [std::ffi::OsString::from(daemon.url())];
    let start = || Syncer::spawn_to(&s.src, &targets, &s.state, &s.status, &options);

    let disk = LoopExt4::create(s.dir.path().join("source.img"), &s.src);
    fill(&s.src, 30);
    let mut syncer = start().wait_ready();
    assert_converges_by(
        compare_daemon_replica,
        &s.src,
        &daemon.module,
        CONVERGE,
        &syncer,
    );
    let held = count_files(&daemon.module);
    disk.unmount_lazily();
    assert_guard_stop(&mut syncer, "unmounted while running (daemon)");
    let mut restarted = start();
    assert_guard_stop(&mut restarted, "restart on the empty mount point (daemon)");
    assert_eq!(
        count_files(&daemon.module),
        held,
        "the daemon's replica is intact"
    );

    // Emptied while stopped: the daemon is asked whether it holds anything.
    disk.mount();
    empty_dir(&s.src);
    let mut refused = start();
    assert_guard_stop(&mut refused, "start on an emptied SOURCE (daemon)");
    assert!(refused.log().contains("is empty, but"), "{}", refused.log());
    assert_eq!(
        count_files(&daemon.module),
        held,
        "the daemon's replica is intact"
    );
}

fn empty_dir(root: &Path) {
    for entry in fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fs::remove_dir_all(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
    }
}

fn assert_capped(syncer: &mut Syncer, replica: &Path, held: usize, cap: usize) {
    let code = exits_by_itself(syncer, Duration::from_secs(30));
    let log = syncer.log();
    assert_eq!(code, Some(EXIT_GUARD), "exit code; log:\n{log}");
    assert!(
        log.contains("--max-delete") && log.contains("no more deletes were applied"),
        "the log says why:\n{log}"
    );
    let left = count_files(replica);
    assert!(
        held - left <= cap,
        "at most {cap} entries deleted, {} were (log:\n{log})",
        held - left
    );
    assert!(left > 0, "the replica was not wiped");
}

#[test]
fn max_delete_lets_a_few_deletes_through_and_stops_a_mass_delete() {
    let _k = shared_kernel();
    let s = Scratch::new();
    fill(&s.src, 150);
    let mut syncer = s.syncer(&["--max-delete", "100"]);
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    for i in 0..5 {
        fs::remove_file(s.src.join(format!("f{i}"))).unwrap();
    }
    assert_converges(&s.src, &s.dst, CONVERGE, &syncer);
    assert!(!syncer.exited(), "5 deletes are within the cap");
    let held = count_files(&s.dst);
    empty_dir(&s.src);
    // 5 of the 100 are spent already.
    assert_capped(&mut syncer, &s.dst, held, 95);
}

#[test]
fn max_delete_caps_what_the_daemon_deletes() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let daemon = Daemon::start(&s.dir.path().join("daemon"));
    let password = daemon.password_file.to_str().unwrap().to_string();
    let options = [
        "--password-file",
        password.as_str(),
        "--max-delete",
        "100",
        "-v",
    ];
    let targets = [std::ffi::OsString::from(daemon.url())];
    fill(&s.src, 150);
    let mut syncer = Syncer::spawn_to(&s.src, &targets, &s.state, &s.status, &options).wait_ready();
    assert_converges_by(
        compare_daemon_replica,
        &s.src,
        &daemon.module,
        CONVERGE,
        &syncer,
    );
    let held = count_files(&daemon.module);
    empty_dir(&s.src);
    assert_capped(&mut syncer, &daemon.module, held, 100);
}
