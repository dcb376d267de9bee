//! Carrying out a case's faults (fault.rs) against the live syncer and the rsync daemon, in
//! the storm's own thread: a fault entry of the op log acts when the storm reaches it, and
//! what it must undo later (a restart after `down_ms`, freeing a full disk, a read-write
//! remount) is due at a moment `tick`, called before every operation, checks. Counts what was injected and when the last fault ended,
//! for the case's time to recover.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;

use super::case::Running;
use super::error::ChaosError;
use super::fault::Fault;
use crate::host::tmpfs::TmpfsMount;
use crate::storm::ops::Rng;
use crate::sut::daemon::RsyncDaemon;

/// How long a new flood folder gets before the syncer is stopped, for its inotify watch.
const WATCH_GRACE: Duration = Duration::from_millis(300);

/// What the case's faults did, for its outcome.
#[derive(Debug, Default)]
pub struct Injected {
    /// Faults carried out.
    pub faults: u32,
    /// Faults that did not apply to this case (a daemon fault into a local directory).
    pub skipped: u32,
    /// When the last fault ended: the syncer or the daemon running again.
    pub last_end: Option<Instant>,
    /// The syncer's overflow and reconcile counters, summed over its lives.
    pub overflows: u64,
    pub reconciles: u64,
    /// The first replica copy found holding two versions of a rewritten file at once.
    pub torn: Option<String>,
}

/// What the replica's filesystem is going through until its fault is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FsFault {
    Full,
    ReadOnly,
}

/// The faults of one case in progress.
pub struct Injector<'a> {
    src: &'a Path,
    /// The replica directory (the daemon's module for daemon targets), read for torn copies.
    replica: &'a Path,
    /// The replica's own filesystem, for the faults that act on it.
    replica_fs: Option<&'a TmpfsMount>,
    syncer_due: Option<Instant>,
    daemon_due: Option<Instant>,
    fs_due: Option<(Instant, FsFault)>,
    /// Source entries whose permissions are taken, each with its mode to give back; held
    /// open (O_PATH), so a rename by the storm meanwhile does not lose one.
    perm_due: Option<(Instant, Vec<(OwnedFd, u32)>)>,
    floods: u32,
    rewrites: u32,
    pub done: Injected,
}

impl<'a> Injector<'a> {
    pub fn new(src: &'a Path, replica: &'a Path, replica_fs: Option<&'a TmpfsMount>) -> Self {
        Self {
            src,
            replica,
            replica_fs,
            syncer_due: None,
            daemon_due: None,
            fs_due: None,
            perm_due: None,
            floods: 0,
            rewrites: 0,
            done: Injected::default(),
        }
    }

    /// Carries out `fault` now.
    pub fn inject(
        &mut self,
        fault: Fault,
        syncer: &mut Running,
        daemon: Option<&mut RsyncDaemon>,
    ) -> Result<(), ChaosError> {
        match fault {
            Fault::Kill9 { down_ms } => {
                // A restart still due: the syncer is down already; this crash is the next one.
                self.restart_syncer(syncer)?;
                self.count_lives(syncer);
                syncer.kill9();
                self.syncer_due = Some(Instant::now() + ms(down_ms));
            }
            Fault::Sigstop { stop_ms, flood } => {
                if self.syncer_due.is_some() {
                    self.done.skipped += 1;
                    return Ok(());
                }
                // The flood's folder first, and time for an inotify watch on it: files made
                // in a folder nobody watches yet raise no events (its scan finds them), so
                // they could not overflow anything.
                let dir = self.flood_dir()?;
                std::thread::sleep(WATCH_GRACE);
                let started = Instant::now();
                signal(syncer, Signal::SIGSTOP)?;
                let flooded = flood_files(&dir, flood);
                std::thread::sleep(ms(stop_ms).saturating_sub(started.elapsed()));
                signal(syncer, Signal::SIGCONT)?;
                flooded?;
                self.done.last_end = Some(Instant::now());
            }
            Fault::DaemonRestart { down_ms } => {
                let Some(daemon) = daemon else {
                    self.done.skipped += 1;
                    return Ok(());
                };
                if self.daemon_due.take().is_some() {
                    daemon.restart().map_err(ChaosError::Daemon)?;
                }
                daemon.kill();
                self.daemon_due = Some(Instant::now() + ms(down_ms));
            }
            Fault::DiskFull { full_ms } => {
                let Some(mount) = self.replica_fs else {
                    self.done.skipped += 1;
                    return Ok(());
                };
                self.undo_fs(mount)?;
                fill(&ballast(mount)).map_err(ChaosError::io("fill", &mount.dir))?;
                self.fs_due = Some((Instant::now() + ms(full_ms), FsFault::Full));
            }
            Fault::ReadOnly { ro_ms } => {
                let Some(mount) = self.replica_fs else {
                    self.done.skipped += 1;
                    return Ok(());
                };
                self.undo_fs(mount)?;
                let remounted = mount
                    .remount_read_only()
                    .map_err(ChaosError::io("remount", &mount.dir))?;
                if !remounted {
                    // Files open for writing the whole time: a moment this fault cannot have.
                    self.done.skipped += 1;
                    return Ok(());
                }
                self.fs_due = Some((Instant::now() + ms(ro_ms), FsFault::ReadOnly));
            }
            Fault::SourcePerm {
                deny_ms,
                entries,
                pick,
            } => {
                self.undo_perm()?;
                let denied = deny(self.src, entries, pick)?;
                if denied.is_empty() {
                    self.done.skipped += 1;
                    return Ok(());
                }
                self.perm_due = Some((Instant::now() + ms(deny_ms), denied));
            }
            Fault::RewriteDuringCopy {
                rewrite_ms,
                files,
                size_kib,
            } => self.rewrite_during_copy(rewrite_ms, files, size_kib)?,
        }
        self.done.faults += 1;
        Ok(())
    }

    /// Frees the full disk or makes the filesystem writable again, if that is still due.
    fn undo_fs(&mut self, mount: &TmpfsMount) -> Result<(), ChaosError> {
        match self.fs_due.take() {
            None => return Ok(()),
            Some((_, FsFault::Full)) => {
                let path = ballast(mount);
                fs::remove_file(&path).map_err(ChaosError::io("remove", &path))?;
            }
            Some((_, FsFault::ReadOnly)) => mount
                .remount_read_write()
                .map_err(ChaosError::io("remount", &mount.dir))?,
        }
        self.done.last_end = Some(Instant::now());
        Ok(())
    }

    /// Gives the denied source entries their modes back, if that is still due.
    fn undo_perm(&mut self) -> Result<(), ChaosError> {
        let Some((_, denied)) = self.perm_due.take() else {
            return Ok(());
        };
        for (fd, mode) in denied {
            let path = fd_path(&fd);
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(ChaosError::io("chmod", &path))?;
        }
        self.done.last_end = Some(Instant::now());
        Ok(())
    }

    /// Ends the faults whose time is up; called before every operation.
    pub fn tick(
        &mut self,
        syncer: &mut Running,
        daemon: Option<&mut RsyncDaemon>,
    ) -> Result<(), ChaosError> {
        let now = Instant::now();
        if self.syncer_due.is_some_and(|due| due <= now) {
            self.restart_syncer(syncer)?;
        }
        if let Some(daemon) = daemon
            && self.daemon_due.is_some_and(|due| due <= now)
        {
            self.daemon_due = None;
            daemon.restart().map_err(ChaosError::Daemon)?;
            self.done.last_end = Some(Instant::now());
        }
        if let Some(mount) = self.replica_fs
            && self.fs_due.is_some_and(|(due, _)| due <= now)
        {
            self.undo_fs(mount)?;
        }
        if self.perm_due.as_ref().is_some_and(|(due, _)| *due <= now) {
            self.undo_perm()?;
        }
        Ok(())
    }

    /// At the storm's end: whatever is still down comes back now.
    pub fn finish(
        &mut self,
        syncer: &mut Running,
        daemon: Option<&mut RsyncDaemon>,
    ) -> Result<(), ChaosError> {
        self.syncer_due = self.syncer_due.map(|_| Instant::now());
        self.daemon_due = self.daemon_due.map(|_| Instant::now());
        self.fs_due = self.fs_due.map(|(_, fault)| (Instant::now(), fault));
        if let Some((due, _)) = &mut self.perm_due {
            *due = Instant::now();
        }
        self.tick(syncer, daemon)
    }

    /// The last life's counters, added once the case is over.
    pub fn count_lives(&mut self, syncer: &Running) {
        self.done.overflows += syncer.counter("overflows");
        self.done.reconciles += syncer.counter("reconciles");
    }

    fn restart_syncer(&mut self, syncer: &mut Running) -> Result<(), ChaosError> {
        if self.syncer_due.take().is_some() {
            syncer.respawn()?;
            self.done.last_end = Some(Instant::now());
        }
        Ok(())
    }

    /// Rewrites `files` files in a folder of their own (`rewrite-K/`) in place, version after
    /// version, for `rewrite_ms`, reading the replica's copies at each quiet moment (a pause
    /// after each round).
    fn rewrite_during_copy(
        &mut self,
        rewrite_ms: u32,
        files: u32,
        size_kib: u32,
    ) -> Result<(), ChaosError> {
        self.rewrites += 1;
        let rel = PathBuf::from(format!("rewrite-{}", self.rewrites));
        let dir = self.src.join(&rel);
        fs::create_dir(&dir).map_err(ChaosError::io("create", &dir))?;
        let blocks = u64::from(size_kib / 4).max(1);
        let names: Vec<String> = (0..files).map(|i| format!("f{i}")).collect();
        for name in &names {
            let path = dir.join(name);
            write_version(&path, 0, blocks).map_err(ChaosError::io("write", &path))?;
        }
        // Time for the first copies, so later rounds rewrite files being copied.
        std::thread::sleep(WATCH_GRACE);
        let end = Instant::now() + ms(rewrite_ms);
        let mut version = 0;
        while Instant::now() < end {
            version += 1;
            for name in &names {
                let path = dir.join(name);
                write_version(&path, version, blocks).map_err(ChaosError::io("write", &path))?;
            }
            // A quiet moment: a copy the syncer took while a version was half written is
            // replaced by now (the close that ended the version asks for it).
            std::thread::sleep(QUIET);
            for name in &names {
                let copy = self.replica.join(&rel).join(name);
                if let Some(mix) = mixed_versions(&copy) {
                    self.done
                        .torn
                        .get_or_insert(format!("{}: {mix}", rel.join(name).display()));
                }
            }
        }
        self.done.last_end = Some(Instant::now());
        Ok(())
    }

    /// A folder of its own for the next flood: `flood-K`.
    fn flood_dir(&mut self) -> Result<PathBuf, ChaosError> {
        self.floods += 1;
        let dir = self.src.join(format!("flood-{}", self.floods));
        fs::create_dir(&dir).map_err(ChaosError::io("create", &dir))?;
        Ok(dir)
    }
}

/// `n` empty files in `dir`, made while the syncer is stopped.
fn flood_files(dir: &Path, n: u32) -> Result<(), ChaosError> {
    for i in 0..n {
        let path = dir.join(format!("f{i}"));
        fs::File::create(&path).map_err(ChaosError::io("create", &path))?;
    }
    Ok(())
}

/// Takes every permission from `entries` entries of SOURCE (files and directories, not
/// symlinks, whose mode is their target's), drawn with `pick` from the tree's sorted walk, so
/// a replay denies the same ones. Returns each, held open, with the mode to give back.
fn deny(src: &Path, entries: u32, pick: u32) -> Result<Vec<(OwnedFd, u32)>, ChaosError> {
    let mut all = Vec::new();
    walk(src, &mut all).map_err(ChaosError::io("walk", src))?;
    all.sort();
    let mut rng = Rng::new(u64::from(pick));
    let mut denied = Vec::new();
    for _ in 0..entries.min(all.len() as u32) {
        let path = all.swap_remove(rng.below(all.len() as u64) as usize);
        let meta = fs::symlink_metadata(&path).map_err(ChaosError::io("stat", &path))?;
        let fd = nix::fcntl::open(
            &path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ChaosError::io("open", &path)(io::Error::from(e)))?;
        let held = fd_path(&fd);
        fs::set_permissions(&held, fs::Permissions::from_mode(0o000))
            .map_err(ChaosError::io("chmod", &path))?;
        denied.push((fd, meta.permissions().mode() & 0o7777));
    }
    Ok(denied)
}

/// Files and directories below `dir` (not the flood folders, whose thousands of files would
/// crowd out the storm's own).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            if entry.file_name().as_bytes().starts_with(b"flood-") {
                continue;
            }
            walk(&path, out)?;
            out.push(path);
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// A name for the entry `fd` holds, whatever it is called now.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// How long the rewriter pauses before it reads the replica's copies.
const QUIET: Duration = Duration::from_millis(100);

/// One 4 KiB block of a rewritten file: its version and its index, then filler of the
/// version's own.
const BLOCK: usize = 4096;

/// Writes version `version` of a rewritten file over the old one in place (no truncation:
/// every version has the same size), in 64 KiB writes, so a reader can meet a mix.
fn write_version(path: &Path, version: u64, blocks: u64) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let mut chunk = Vec::with_capacity(16 * BLOCK);
    for index in 0..blocks {
        let mut block = [(version as u8).wrapping_mul(31).wrapping_add(7); BLOCK];
        block[..8].copy_from_slice(&version.to_le_bytes());
        block[8..16].copy_from_slice(&index.to_le_bytes());
        chunk.extend_from_slice(&block);
        if chunk.len() == 16 * BLOCK || index + 1 == blocks {
            file.write_all(&chunk)?;
            chunk.clear();
        }
    }
    Ok(())
}

/// What is wrong with a replica copy of a rewritten file, if it mixes versions (or blocks):
/// None for a whole version, a missing copy, or one cut short (an rsync run writing a new file
/// in place; the final compare sees that).
fn mixed_versions(copy: &Path) -> Option<String> {
    let bytes = fs::read(copy).ok()?;
    let version = |block: &[u8]| u64::from_le_bytes(block[..8].try_into().unwrap_or_default());
    let first = bytes.get(..BLOCK).map(version)?;
    for (index, block) in bytes.chunks_exact(BLOCK).enumerate() {
        let at = u64::from_le_bytes(block[8..16].try_into().unwrap_or_default());
        if version(block) != first || at != index as u64 {
            return Some(format!(
                "block {index} holds version {} (block {at}), block 0 version {first}",
                version(block)
            ));
        }
    }
    None
}

/// The ballast file beside the replica, on the same filesystem.
fn ballast(mount: &TmpfsMount) -> PathBuf {
    mount.dir.join("ballast")
}

/// Writes `path` until the filesystem has no byte left: big chunks first, then pages, so the
/// last free page goes too (ENOSPC ends each stage).
fn fill(path: &Path) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    for chunk in [1 << 20, 4096] {
        let zeros = vec![0u8; chunk];
        loop {
            match file.write_all(&zeros) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::StorageFull => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn ms(n: u32) -> Duration {
    Duration::from_millis(u64::from(n))
}

fn signal(syncer: &Running, signal: Signal) -> Result<(), ChaosError> {
    kill(syncer.pid(), signal).map_err(|e| ChaosError::Signal {
        signal: signal.as_str(),
        source: std::io::Error::from(e),
    })
}
