//! Machine facts for tune.json, sweep.json and watchcost.json: the work dir, the repository
//! and the command line in, `MachineFacts` out (host, kernel, CPU, memory, filesystem,
//! revision, UTC time from one clock reading, so date and time agree at midnight).

use std::path::Path;

use crate::capacity::records::MachineFacts;
use crate::util::fmt::utc_timestamp;

pub fn machine_facts(workdir: &Path, repo_root: &Path, command: &str) -> MachineFacts {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    MachineFacts {
        host: crate::host::env::hostname(),
        kernel: crate::host::env::kernel(),
        cpu: crate::host::env::cpu(),
        memory: crate::host::env::memory(),
        filesystem: crate::host::env::filesystem(workdir),
        git_revision: crate::host::env::git_revision(repo_root),
        measured_at: utc_timestamp(secs),
        command: command.to_string(),
    }
}
