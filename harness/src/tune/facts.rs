//! Machine facts for tune.json and sweep.json: the work dir and the command line in,
//! `MachineFacts` out (host, kernel, CPU, memory, filesystem, revision, UTC time).

use std::path::Path;

use crate::planning::MachineFacts;

pub fn machine_facts(workdir: &Path, repo_root: &Path, command: &str) -> MachineFacts {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    MachineFacts {
        host: crate::env::hostname(),
        kernel: crate::env::kernel(),
        cpu: crate::env::cpu(),
        memory: crate::env::memory(),
        filesystem: crate::env::filesystem(workdir),
        git_revision: crate::env::git_revision(repo_root),
        measured_at: utc_timestamp(secs),
        command: command.to_string(),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (from one clock reading, so date and
/// time agree at midnight).
pub fn utc_timestamp(secs: u64) -> String {
    let (year, month, day) = crate::env::civil_date(secs);
    let t = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_time() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        // `date -u -d @1795635071`: Wed Nov 25 19:31:11 UTC 2026.
        assert_eq!(utc_timestamp(1_795_635_071), "2026-11-25T19:31:11Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    }
}
