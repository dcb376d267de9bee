//! The probe's fanotify source: one filesystem mark on the replica's filesystem in, the
//! replica-relative paths its events touch out (`Hit`s). A filesystem mark takes no inotify
//! watch (so `max_user_watches` limit runs do not count the probe) and its queue does not
//! depend on the inotify sysctls another process may have shrunk (measured here: a colleague's
//! test left `max_queued_events` = 64 while a probe instance was created, and the probe
//! overflowed 10 times in rename-storm). Needs CAP_SYS_ADMIN; the probe falls back to inotify.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use syncer::event::fanotify::{Events, InfoKind, InfoRecord};
use syncer::sys::fanotify::{
    FAN_CREATE, FAN_MOVED_TO, FAN_ONDIR, FAN_Q_OVERFLOW, FAN_RENAME, Fanotify, InitOptions,
    name_to_handle_at,
};

use crate::storm::ops::join;

/// What one event means for the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    /// This replica path may have reached its final state.
    Check(String),
    /// A directory appeared here (created or moved in): scan it.
    NewDir(String),
    /// Events were lost: rescan everything.
    Overflow,
}

pub struct FanSource {
    pub fan: Fanotify,
    /// Any fd for `name_to_handle_at` (absolute paths ignore it).
    root: File,
    /// Directory handle bytes -> (handle type, replica-relative path); only replica dirs are
    /// in it, which is how events from the rest of the filesystem are filtered out. Keyed by
    /// the bytes so a lookup borrows from the read buffer (no allocation per event).
    dirs: HashMap<Vec<u8>, (i32, String)>,
}

impl FanSource {
    /// A notification group with an unlimited queue and a filesystem mark on `replica`.
    pub fn new(replica: &Path) -> std::io::Result<Self> {
        let fan = Fanotify::init_preferred(InitOptions {
            target_fid: false,
            unlimited_queue: true,
        })?;
        // FAN_RENAME (5.17+) pairs directory moves; without it a moved directory is only
        // seen as created (MOVED_TO) and scanned, which re-records its handle.
        fan.mark_filesystem_probing_rename(replica)?;
        Ok(Self {
            fan,
            root: File::open(replica)?,
            dirs: HashMap::new(),
        })
    }

    /// Records the handle of the replica directory `abs` (at `rel`); false if it is gone.
    pub fn add_dir(&mut self, abs: &Path, rel: &str) -> bool {
        match name_to_handle_at(self.root.as_fd(), abs, 0) {
            Ok((h, _mount)) => {
                self.dirs
                    .insert(h.bytes().to_vec(), (h.handle_type, rel.to_string()));
                true
            }
            Err(_) => false,
        }
    }

    fn path_of(&self, rec: &InfoRecord<'_>) -> Option<String> {
        let (kind, dir) = self.dirs.get(rec.handle)?;
        if *kind != rec.handle_type {
            return None;
        }
        let name = std::str::from_utf8(rec.name).ok()?;
        Some(if name.is_empty() || name == "." {
            dir.clone()
        } else {
            join(dir, name)
        })
    }

    /// A directory moved from `old` to `new`: its descendants' paths change with it.
    fn rekey(&mut self, old: &str, new: &str) {
        let prefix = format!("{old}/");
        for (_, path) in self.dirs.values_mut() {
            if path == old {
                *path = new.to_string();
            } else if let Some(rest) = path.strip_prefix(&prefix) {
                *path = join(new, rest);
            }
        }
    }

    /// Turns one read's events into hits (and the number of events). New directories get
    /// their handle at once, so later events in the same buffer resolve beneath them.
    pub fn parse(&mut self, bytes: &[u8], replica: &Path, hits: &mut Vec<Hit>) -> u64 {
        let mut n = 0;
        for ev in Events::new(bytes) {
            n += 1;
            if ev.mask & FAN_Q_OVERFLOW != 0 {
                hits.push(Hit::Overflow);
                continue;
            }
            let is_dir = ev.mask & FAN_ONDIR != 0;
            if ev.mask & FAN_RENAME != 0 {
                let old = ev
                    .record(InfoKind::OldDfidName)
                    .and_then(|r| self.path_of(&r));
                let new = ev
                    .record(InfoKind::NewDfidName)
                    .and_then(|r| self.path_of(&r));
                if let (true, Some(o), Some(nw)) = (is_dir, &old, &new) {
                    self.rekey(o, nw);
                }
                if let Some(o) = old {
                    hits.push(Hit::Check(o));
                }
                if let Some(nw) = new {
                    if is_dir {
                        self.add_dir(&replica.join(&nw), &nw);
                        hits.push(Hit::NewDir(nw.clone()));
                    }
                    hits.push(Hit::Check(nw));
                }
                continue;
            }
            let Some(path) = ev.record(InfoKind::DfidName).and_then(|r| self.path_of(&r)) else {
                continue;
            };
            let appeared = ev.mask & (FAN_CREATE | FAN_MOVED_TO) != 0;
            if is_dir && appeared && !path.is_empty() {
                self.add_dir(&replica.join(&path), &path);
                hits.push(Hit::NewDir(path.clone()));
            }
            hits.push(Hit::Check(path));
        }
        n
    }
}
