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
    /// SOURCE as text, lossily for a name that is not UTF-8 (serde refuses such a path, so
    /// no checkpoint could be saved); the file name, a hash of the exact bytes, still tells
    /// two such sources apart.
    source: String,
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
        self.read(&std::fs::read(&self.path).ok()?)
    }

    /// A file's body, if it is a checkpoint of this pair; anything else (torn, garbage, of
    /// another pair) is no checkpoint, and the start compares every file.
    fn read(&self, body: &[u8]) -> Option<Recorded> {
        let doc: Document = serde_json::from_slice(body).ok()?;
        (doc.source == self.source.to_string_lossy() && doc.target == self.target).then_some(
            Recorded {
                checkpoint: doc.caught_up_unix_ns,
                identity: doc.source_identity,
            },
        )
    }

    /// Stores the checkpoint atomically (temp file + rename).
    pub fn save(&self, caught_up_unix_ns: u64) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let doc = Document {
            source: self.source.to_string_lossy().into_owned(),
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

    /// Found by the round-trip property: a SOURCE whose name is not UTF-8 failed every save
    /// ("path contains invalid UTF-8 characters"), so it never had a checkpoint.
    #[test]
    fn a_source_named_in_other_bytes_than_utf8_saves_and_loads() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let source = Path::new(std::ffi::OsStr::from_bytes(b"/\x80"));
        let state = StateFile::new(dir.path(), source, "/dst");
        state.save(7).unwrap();
        assert_eq!(state.load().map(|r| r.checkpoint), Some(7));
        let other = StateFile::new(
            dir.path(),
            Path::new(std::ffi::OsStr::from_bytes(b"/\x81")),
            "/dst",
        );
        assert_ne!(other.path, state.path);
        assert_eq!(other.load(), None);
    }

    mod prop {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;

        use proptest::prelude::*;

        use super::super::*;

        fn state(source: &[u8], target: &str) -> StateFile {
            StateFile::new(
                Path::new("/nonexistent"),
                Path::new(OsStr::from_bytes(source)),
                target,
            )
        }

        /// JSON-ish text: a checkpoint with its fields mixed, retyped, dropped and cut.
        fn document() -> impl Strategy<Value = String> {
            let value = prop_oneof![
                Just("\"/src\"".to_string()),
                Just("\"/dst\"".to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                Just("1e400".to_string()),
                Just("null".to_string()),
                Just("{}".to_string()),
                Just("{\"fsid\":1,\"root_ino\":2,\"mount_id\":3}".to_string()),
                Just("[1,2]".to_string()),
                "\\PC{0,8}".prop_map(|s| format!("{s:?}")),
            ];
            let key = prop_oneof![
                Just("source"),
                Just("target"),
                Just("caught_up_unix_ns"),
                Just("source_identity"),
                Just("other"),
            ];
            (
                proptest::collection::vec((key, value), 0..6),
                any::<proptest::sample::Index>(),
            )
                .prop_map(|(fields, cut)| {
                    let body: Vec<String> =
                        fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    let text = format!("{{{}}}", body.join(","));
                    // Sometimes torn, as a crash in the middle of a write would leave it.
                    let at = cut.index(text.len() * 2 + 1);
                    if at < text.len() && text.is_char_boundary(at) {
                        text[..at].to_string()
                    } else {
                        text
                    }
                })
        }

        proptest! {
            #![proptest_config(crate::prop::config(256))]

            #[test]
            fn prop_state_any_bytes_never_panic(
                body in proptest::collection::vec(any::<u8>(), 0..256),
            ) {
                prop_assert_eq!(state(b"/src", "/dst").read(&body), None);
            }

            #[test]
            fn prop_state_any_document_never_panics(text in document()) {
                if state(b"/src", "/dst").read(text.as_bytes()).is_some() {
                    prop_assert!(text.contains("caught_up_unix_ns"));
                }
            }

            /// What `save` writes, `load` reads back, for any source path and target name.
            #[test]
            fn prop_state_save_then_load_round_trips(
                source in proptest::collection::vec(1u8..=255, 1..24),
                target in "\\PC{1,24}",
                checkpoint in any::<u64>(),
                identity in proptest::option::of(any::<(u64, u64, u64)>()),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let mut path = b"/".to_vec();
                path.extend_from_slice(&source);
                let source = Path::new(OsStr::from_bytes(&path));
                let mut state = StateFile::new(dir.path(), source, &target);
                if let Some((fsid, root_ino, mount_id)) = identity {
                    state.set_identity(SourceIdentity { fsid, root_ino, mount_id });
                }
                state.save(checkpoint).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let loaded = state.load();
                prop_assert_eq!(loaded.map(|r| r.checkpoint), Some(checkpoint));
                prop_assert_eq!(loaded.and_then(|r| r.identity), state.identity);
            }
        }
    }
}
