//! The compare of a local replica: both trees walked in parallel (one rayon task per
//! directory), every entry stat'ed on both sides without following symlinks, each pair
//! compared as the syncer replicates it. Read-only: nothing is opened for writing.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use nix::fcntl::{OFlag, readlinkat};

use super::links::{LinkRow, link_findings};
use super::report::Progress;
use super::{Finding, Options, Outcome};
use crate::entry::{Kind, Meta, list_dir, stat_at, stat_fd};
use crate::error::Error;
use crate::sys::fs::{open_beneath, open_dir_beneath};

/// Compares the replica at `target` with `source` (both absolute directories).
pub fn compare(source: &Path, target: &Path, options: &Options) -> Result<Outcome, Error> {
    let open = |which: &str, path: &Path| {
        std::fs::File::open(path).map(OwnedFd::from).map_err(|err| {
            Error::NotCompared(format!("cannot open {which} {}: {err}", path.display()))
        })
    };
    let walk = Walk {
        src: open("SOURCE", source)?,
        dst: open("TARGET", target)?,
        options,
        findings: Mutex::new(Vec::new()),
        links: Mutex::new(Vec::new()),
        entries: AtomicU64::new(0),
        content_bytes: AtomicU64::new(0),
        progress: Progress::new("comparing"),
    };
    let root = (stat_fd(walk.src.as_fd()), stat_fd(walk.dst.as_fd()));
    if let (Ok(src), Ok(dst)) = root {
        walk.pair(Path::new(""), &src, &dst);
    }
    rayon::scope(|scope| walk.dir(scope, PathBuf::new()));
    walk.progress.finish();
    let mut findings = walk
        .findings
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let (link_found, link_groups) =
        link_findings(walk.links.into_inner().unwrap_or_else(|e| e.into_inner()));
    findings.extend(link_found);
    findings.sort_by(|a, b| a.path().cmp(b.path()));
    merge_same_path(&mut findings);
    Ok(Outcome {
        findings,
        entries: Some(walk.entries.into_inner()),
        content_bytes: walk.content_bytes.into_inner(),
        link_groups,
        took: Default::default(),
    })
}

struct Walk<'a> {
    src: OwnedFd,
    dst: OwnedFd,
    options: &'a Options,
    findings: Mutex<Vec<Finding>>,
    links: Mutex<Vec<LinkRow>>,
    entries: AtomicU64,
    content_bytes: AtomicU64,
    progress: Progress,
}

impl<'a> Walk<'a> {
    fn found(&self, finding: Finding) {
        self.findings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(finding);
    }

    fn dir<'s>(&'s self, scope: &rayon::Scope<'s>, rel: PathBuf) {
        let opened = (
            open_dir_beneath(self.src.as_fd(), &rel),
            open_dir_beneath(self.dst.as_fd(), &rel),
        );
        let (sdir, ddir) = match opened {
            (Ok(s), Ok(d)) => (s, d),
            (Err(err), _) => return self.found(Finding::Unreadable(rel, format!("SOURCE: {err}"))),
            (_, Err(err)) => return self.found(Finding::Unreadable(rel, format!("TARGET: {err}"))),
        };
        let listed = (list_dir(&sdir), list_dir(&ddir));
        let (snames, dnames) = match listed {
            (Ok(s), Ok(d)) => (s, d),
            (Err(err), _) => return self.found(Finding::Unreadable(rel, format!("SOURCE: {err}"))),
            (_, Err(err)) => return self.found(Finding::Unreadable(rel, format!("TARGET: {err}"))),
        };
        let mut names: BTreeMap<OsString, (bool, bool)> = BTreeMap::new();
        for (name, _) in snames {
            names.entry(name).or_default().0 = true;
        }
        for (name, _) in dnames {
            names.entry(name).or_default().1 = true;
        }
        for (name, (in_src, in_dst)) in names {
            let child = rel.join(&name);
            if self.options.excludes.is_excluded(&child) {
                continue;
            }
            let src = if in_src {
                self.stat(&sdir, &name, &child, "SOURCE")
            } else {
                Ok(None)
            };
            let dst = if in_dst {
                self.stat(&ddir, &name, &child, "TARGET")
            } else {
                Ok(None)
            };
            let (Ok(src), Ok(dst)) = (src, dst) else {
                continue;
            };
            // Sockets and device nodes are not replicated.
            let src = src.filter(|m| m.kind != Kind::Other);
            if src.is_some() {
                self.entries.fetch_add(1, Relaxed);
                self.progress.tick();
            }
            match (src, dst) {
                (Some(_), None) => self.found(Finding::Missing(child)),
                (None, Some(_)) => self.found(Finding::Extra(child)),
                (Some(s), Some(d)) => {
                    self.pair(&child, &s, &d);
                    if s.kind == Kind::Dir && d.kind == Kind::Dir {
                        scope.spawn(move |scope| self.dir(scope, child));
                    }
                }
                (None, None) => {}
            }
        }
    }

    fn stat(
        &self,
        dir: &OwnedFd,
        name: &OsString,
        rel: &Path,
        side: &str,
    ) -> Result<Option<Meta>, ()> {
        stat_at(dir.as_fd(), name).map_err(|err| {
            self.found(Finding::Unreadable(
                rel.to_path_buf(),
                format!("{side}: {err}"),
            ));
        })
    }

    /// Compares one entry present on both sides.
    fn pair(&self, rel: &Path, src: &Meta, dst: &Meta) {
        let mut what = differences(src, dst, self.options.owners);
        if src.kind == Kind::Symlink && dst.kind == Kind::Symlink {
            match (
                self.link_target(&self.src, rel),
                self.link_target(&self.dst, rel),
            ) {
                (Ok(s), Ok(d)) if s != d => {
                    what.push(format!("link target {s:?} != {d:?}"));
                }
                (Ok(_), Ok(_)) => {}
                (Err(err), _) | (_, Err(err)) => {
                    return self.found(Finding::Unreadable(rel.to_path_buf(), err.to_string()));
                }
            }
        }
        let same_length = src.kind == Kind::File && dst.kind == Kind::File && src.size == dst.size;
        if same_length && self.options.checksum {
            match self.same_content(rel, src.size) {
                Ok(true) => {}
                Ok(false) => what.push("content".into()),
                Err(err) => {
                    return self.found(Finding::Unreadable(rel.to_path_buf(), err.to_string()));
                }
            }
        }
        if src.kind == Kind::File && dst.kind == Kind::File && (src.nlink > 1 || dst.nlink > 1) {
            self.links
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(LinkRow {
                    path: rel.to_path_buf(),
                    src: (src.nlink > 1).then_some((src.dev, src.ino)),
                    dst: (dst.nlink > 1).then_some((dst.dev, dst.ino)),
                });
        }
        if !what.is_empty() {
            self.found(Finding::Differs(rel.to_path_buf(), what));
        }
    }

    fn link_target(&self, root: &OwnedFd, rel: &Path) -> io::Result<OsString> {
        let (parent, name) = crate::entry::split(rel).unwrap_or((Path::new(""), rel.as_os_str()));
        let dir = open_dir_beneath(root.as_fd(), parent)?;
        readlinkat(dir.as_fd(), name).map_err(crate::sys::errno::to_io)
    }

    /// Reads both files to their ends and compares them in blocks.
    fn same_content(&self, rel: &Path, size: u64) -> io::Result<bool> {
        const BLOCK: usize = 256 * 1024;
        let open = |root: &OwnedFd| {
            open_beneath(root.as_fd(), rel, OFlag::O_RDONLY).map(std::fs::File::from)
        };
        let (mut a, mut b) = (open(&self.src)?, open(&self.dst)?);
        let (mut abuf, mut bbuf) = (
            vec![0u8; BLOCK.min(size as usize + 1)],
            vec![0u8; BLOCK.min(size as usize + 1)],
        );
        loop {
            let n = read_full(&mut a, &mut abuf)?;
            let m = read_full(&mut b, &mut bbuf)?;
            self.content_bytes.fetch_add((n + m) as u64, Relaxed);
            if n != m || abuf[..n] != bbuf[..m] {
                return Ok(false);
            }
            if n == 0 {
                return Ok(true);
            }
        }
    }
}

/// One line per path: a link difference joins the other differences of its name.
fn merge_same_path(findings: &mut Vec<Finding>) {
    let mut merged: Vec<Finding> = Vec::with_capacity(findings.len());
    for finding in findings.drain(..) {
        if let (Some(Finding::Differs(last, what)), Finding::Differs(path, more)) =
            (merged.last_mut(), &finding)
            && last == path
        {
            what.extend(more.iter().cloned());
            continue;
        }
        merged.push(finding);
    }
    *findings = merged;
}

/// Fills `buf` unless the file ends first; the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "directory",
        Kind::Symlink => "symlink",
        Kind::Fifo => "fifo",
        Kind::Other => "socket or device",
    }
}

/// What differs between two entries as the syncer replicates them: type, mode (not for
/// symlinks), size, mtime (not for directories: every entry written changes theirs), owner.
pub fn differences(src: &Meta, dst: &Meta, owners: bool) -> Vec<String> {
    if src.kind != dst.kind {
        return vec![format!(
            "type {} != {}",
            kind_name(src.kind),
            kind_name(dst.kind)
        )];
    }
    let mut what = Vec::new();
    if src.kind != Kind::Symlink && src.mode != dst.mode {
        what.push(format!("mode {:o} != {:o}", src.mode, dst.mode));
    }
    if src.kind == Kind::File && src.size != dst.size {
        what.push(format!("size {} != {}", src.size, dst.size));
    }
    if src.kind != Kind::Dir && src.mtime != dst.mtime {
        let t = |m: (i64, i64)| format!("{}.{:09}", m.0, m.1);
        what.push(format!("mtime {} != {}", t(src.mtime), t(dst.mtime)));
    }
    if owners && (src.uid, src.gid) != (dst.uid, dst.gid) {
        what.push(format!(
            "owner {}:{} != {}:{}",
            src.uid, src.gid, dst.uid, dst.gid
        ));
    }
    what
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: Kind) -> Meta {
        Meta {
            kind,
            mode: 0o644,
            size: 10,
            mtime: (100, 5),
            ctime: (100, 5),
            uid: 0,
            gid: 0,
            dev: 1,
            ino: 2,
            nlink: 1,
        }
    }

    #[test]
    fn differences_are_named_as_source_then_target() {
        let a = meta(Kind::File);
        assert!(differences(&a, &a, true).is_empty());
        let b = Meta {
            size: 12,
            mtime: (100, 6),
            uid: 1000,
            ..a
        };
        assert_eq!(
            differences(&a, &b, true),
            [
                "size 10 != 12",
                "mtime 100.000000005 != 100.000000006",
                "owner 0:0 != 1000:0"
            ]
        );
        assert_eq!(
            differences(&a, &b, false).len(),
            2,
            "owners only on request"
        );
        let dir = meta(Kind::Dir);
        let newer = Meta {
            mtime: (200, 0),
            ..dir
        };
        assert!(
            differences(&dir, &newer, true).is_empty(),
            "directory mtimes are not replicated"
        );
        assert_eq!(differences(&a, &dir, true), ["type file != directory"]);
    }
}
