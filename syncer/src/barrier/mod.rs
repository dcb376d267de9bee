//! The sync barrier behind `syncer wait`: every change made in SOURCE before the call has
//! reached every replica once it returns 0.
//!
//! A client (`client.rs`, a process other than the syncer) creates a cookie file at SOURCE's
//! root. The syncer's reader sees its creation after every event of the changes made before
//! it (the kernel queues events in order) and queues a barrier at that moment in every
//! target's dirty set. A target has passed the barrier once nothing dirtied before that
//! moment is still pending or in flight there: files waiting for their quiet period and
//! batches waiting for a retry hold it, and so does any reconcile still running (an overflow
//! lost events). `registry.rs` writes, per cookie, an acknowledgement file in the state
//! directory that the client reads: which targets have passed.
//!
//! Cookies are never replicated: `Excludes` leaves them out of events, scans, rsync runs and
//! `syncer verify`.

pub mod client;
pub mod registry;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Cookie names: this prefix, the client's pid and a timestamp, at SOURCE's root only.
pub const COOKIE_PREFIX: &str = ".syncer-wait-";

/// True for a cookie: a name at SOURCE's root that starts with [`COOKIE_PREFIX`].
pub fn is_cookie(rel: &Path) -> bool {
    rel.parent() == Some(Path::new(""))
        && rel
            .as_os_str()
            .as_bytes()
            .starts_with(COOKIE_PREFIX.as_bytes())
}

/// Where acknowledgements live: `barriers/` in the state directory.
pub fn ack_path(state_dir: &Path, cookie: &OsStr) -> PathBuf {
    let mut name = cookie.to_os_string();
    name.push(".json");
    state_dir.join("barriers").join(name)
}

/// An acknowledgement file: written when the syncer sees the cookie, rewritten each time a
/// target passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Every target has passed.
    pub passed: bool,
    pub targets: Vec<TargetAck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetAck {
    pub name: String,
    pub passed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_root_names_with_the_prefix() {
        assert!(is_cookie(Path::new(".syncer-wait-12-345")));
        assert!(!is_cookie(Path::new("d/.syncer-wait-12-345")));
        assert!(!is_cookie(Path::new("syncer-wait-12")));
        assert!(!is_cookie(Path::new("")));
        assert_eq!(
            ack_path(Path::new("/var/lib/syncer"), OsStr::new(".syncer-wait-1-2")),
            PathBuf::from("/var/lib/syncer/barriers/.syncer-wait-1-2.json")
        );
    }
}
