//! The checkpoint file: the last moment a target's pending set was empty (the replica had
//! caught up with every event seen), persisted outside both trees so a restart can re-copy
//! every file changed (ctime) since then, even when its size and mtime look unchanged. It
//! also records which tree SOURCE was (`guard::SourceIdentity`), so a start on another one
//! (the filesystem not mounted, say) is refused before it deletes anything.
//!
//! Location: `--state-dir DIR`, else `$SYNCER_STATE_DIR`, else `/var/lib/syncer` as root, else
//! `$XDG_STATE_HOME/syncer` (default `~/.local/state/syncer`). One file per source/target
//! pair, named by a hash of both paths.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::guard::SourceIdentity;

/// Margin subtracted from the checkpoint: events queued in the kernel but not yet read when
/// the checkpoint was taken, and coarse ctime granularity, are covered by it.
pub const CHECKPOINT_MARGIN_NS: i128 = 2_000_000_000;

#[derive(Debug, Serialize, Deserialize)]
struct Document {
    source: PathBuf,
    target: String,
    caught_up_unix_ns: u64,
    /// Absent in files written before the guard existed.
    #[serde(default)]
    source_identity: Option<SourceIdentity>,
}

/// What an earlier run recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub checkpoint: u64,
    pub identity: Option<SourceIdentity>,
}

#[derive(Debug, Clone)]
pub struct StateFile {
    pub path: PathBuf,
    source: PathBuf,
    target: String,
    /// Written with every checkpoint.
    identity: Option<SourceIdentity>,
}

/// FNV-1a, 64 bit: a stable file name (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The default state directory (see the module comment).
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SYNCER_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/syncer");
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("syncer")
}

impl StateFile {
    pub fn new(dir: &Path, source: &Path, target: &str) -> Self {
        let mut key = source.as_os_str().as_encoded_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(target.as_bytes());
        Self {
            path: dir.join(format!("{:016x}.json", fnv1a(&key))),
            source: source.to_path_buf(),
            target: target.to_string(),
            identity: None,
        }
    }

    /// Records `identity` as SOURCE's with every later checkpoint.
    pub fn set_identity(&mut self, identity: SourceIdentity) {
        self.identity = Some(identity);
    }

    /// The stored checkpoint (ns since the epoch) and identity, if any.
    pub fn load(&self) -> Option<Recorded> {
        let body = std::fs::read(&self.path).ok()?;
        let doc: Document = serde_json::from_slice(&body).ok()?;
        (doc.source == self.source && doc.target == self.target).then_some(Recorded {
            checkpoint: doc.caught_up_unix_ns,
            identity: doc.source_identity,
        })
    }

    /// Stores the checkpoint atomically (temp file + rename).
    pub fn save(&self, caught_up_unix_ns: u64) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let doc = Document {
            source: self.source.clone(),
            target: self.target.clone(),
            caught_up_unix_ns,
            source_identity: self.identity,
        };
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&doc)?)?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_pair_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = StateFile::new(dir.path(), Path::new("/src"), "/dst");
        assert_eq!(state.load(), None);
        state.save(42).unwrap();
        let recorded = state.load().unwrap();
        assert_eq!((recorded.checkpoint, recorded.identity), (42, None));
        let identity = SourceIdentity {
            fsid: 7,
            root_ino: 2,
            mount_id: 30,
        };
        state.set_identity(identity);
        state.save(43).unwrap();
        assert_eq!(state.load().unwrap().identity, Some(identity));
        let other = StateFile::new(dir.path(), Path::new("/src"), "/other");
        assert_ne!(other.path, state.path);
        assert_eq!(other.load(), None);
    }

    #[test]
    fn a_file_from_before_the_guard_loads_without_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::new(dir.path(), Path::new("/src"), "/dst");
        std::fs::create_dir_all(dir.path()).unwrap();
        let old = r#"{"source":"/src","target":"/dst","caught_up_unix_ns":5}"#;
        std::fs::write(&state.path, old).unwrap();
        assert_eq!(
            state.load(),
            Some(Recorded {
                checkpoint: 5,
                identity: None
            })
        );
    }
}
