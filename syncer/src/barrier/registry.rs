//! The syncer's side of the barrier: cookies seen by the reader in, acknowledgement files out
//! as each target passes. A file is written when its cookie is registered (every target
//! still waiting) and rewritten at each pass, atomically (temp file and rename), so the
//! client always reads a whole one.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{Ack, TargetAck, ack_path};

pub struct Barriers {
    state_dir: PathBuf,
    source: PathBuf,
    targets: Vec<String>,
    /// Cookies not yet passed by every target: which targets have.
    open: Mutex<HashMap<OsString, Vec<bool>>>,
}

impl Barriers {
    pub fn new(state_dir: PathBuf, source: PathBuf, targets: Vec<String>) -> Self {
        Self {
            state_dir,
            source,
            targets,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<OsString, Vec<bool>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The reader saw `cookie` created; the targets' queues get the barrier next.
    pub fn register(&self, cookie: &OsStr) {
        let passed = vec![false; self.targets.len()];
        self.write(cookie, &passed);
        self.open().insert(cookie.to_os_string(), passed);
    }

    /// Target number `target` has applied everything queued before these cookies.
    pub fn passed(&self, target: usize, cookies: Vec<OsString>) {
        for cookie in cookies {
            let done = {
                let mut open = self.open();
                let Some(passed) = open.get_mut(&cookie) else {
                    continue;
                };
                if let Some(slot) = passed.get_mut(target) {
                    *slot = true;
                }
                let snapshot = passed.clone();
                if snapshot.iter().all(|p| *p) {
                    open.remove(&cookie);
                }
                snapshot
            };
            // A client that gave up removed its cookie: nobody reads this any more.
            if self.source.join(&cookie).exists() {
                self.write(&cookie, &done);
            }
        }
    }

    fn write(&self, cookie: &OsStr, passed: &[bool]) {
        let ack = Ack {
            passed: passed.iter().all(|p| *p),
            targets: self
                .targets
                .iter()
                .zip(passed)
                .map(|(name, passed)| TargetAck {
                    name: name.clone(),
                    passed: *passed,
                })
                .collect(),
        };
        if let Err(err) = write_atomically(&ack_path(&self.state_dir, cookie), &ack) {
            crate::warn!(
                "cannot write the barrier acknowledgement for {cookie:?} in {}: {err} (syncer wait times out)",
                self.state_dir.display()
            );
        }
    }
}

fn write_atomically(path: &std::path::Path, ack: &Ack) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, serde_json::to_vec(ack)?)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &std::path::Path) -> Ack {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn an_ack_says_which_targets_passed_until_all_have() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        std::fs::create_dir(&source).unwrap();
        let cookie = OsStr::new(".syncer-wait-1-2");
        std::fs::write(source.join(cookie), b"").unwrap();
        let state = dir.path().join("state");
        let barriers = Barriers::new(state.clone(), source, vec!["/a".into(), "/b".into()]);
        barriers.register(cookie);
        let path = ack_path(&state, cookie);
        assert!(!read(&path).passed);
        barriers.passed(1, vec![cookie.into()]);
        let ack = read(&path);
        assert!(!ack.passed && !ack.targets[0].passed && ack.targets[1].passed);
        barriers.passed(0, vec![cookie.into()]);
        assert!(read(&path).passed);
        assert!(barriers.open().is_empty());
    }
}
