//! Machine facts for the results README: nothing in, text out (kernel, CPU, memory,
//! filesystem of a path, git revision, tool versions).

use std::path::Path;
use std::process::Command;

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success() || !o.stdout.is_empty())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "not installed".into())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "host".into(), |h| h.trim().to_string())
}

pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_string())
}

pub fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".into(), |m| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores available")
}

pub fn memory() -> String {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find(|l| l.starts_with("MemTotal"))
        .map_or("unknown".into(), |l| {
            l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
        })
}

/// The filesystem type and mount point holding `path` (longest mount prefix in /proc/mounts).
pub fn filesystem(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || !path.starts_with(f[1]) {
            continue;
        }
        if best.as_ref().is_none_or(|(len, _)| f[1].len() >= *len) {
            best = Some((f[1].len(), format!("{} on {} ({})", f[2], f[1], f[3])));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, s)| s)
}

pub fn git_revision(repo: &Path) -> String {
    let rev = first_line(
        "git",
        &[
            "-C",
            &repo.display().to_string(),
            "rev-parse",
            "--short=12",
            "HEAD",
        ],
    );
    let dirty = Command::new("git")
        .args([
            "-C",
            &repo.display().to_string(),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    if dirty {
        format!("{rev} (with uncommitted changes)")
    } else {
        rev
    }
}

pub fn tool_versions() -> Vec<(String, String)> {
    vec![
        ("rsync".into(), first_line("rsync", &["--version"])),
        ("lsyncd".into(), first_line("lsyncd", &["--version"])),
        ("inotifywait".into(), first_line("inotifywait", &["--help"])),
    ]
}

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_date(secs);
    format!("{year:04}-{month:02}-{day:02}")
}

/// (year, month, day) in UTC of `secs` since the epoch: the days-since-epoch civil calendar
/// algorithm.
pub fn civil_date(secs: u64) -> (i64, i64, i64) {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `n` with a comma between thousands: 1,048,576.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped() {
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(100_001), "100,001");
    }
}
