//! The floor: the final source tree in, the time a plain copy of it takes out (a parallel
//! copy for a local target, one `rsync -a` for the daemon target). Each syncer's convergence
//! is reported as a ratio to it, measured in the same run on the same machine.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rayon::prelude::*;

use crate::sut::daemon::{FLOOR_MODULE, RsyncDaemon};

fn walk(src: &Path, dirs: &mut Vec<PathBuf>, leaves: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(src.join(&rel))? {
            let e = e?;
            let path = rel.join(e.file_name());
            if e.file_type()?.is_dir() {
                dirs.push(path.clone());
                stack.push(path);
            } else {
                leaves.push(path);
            }
        }
    }
    Ok(())
}

/// Copies `src` into the empty dir `dst` with all cores; returns the nanoseconds it took.
pub fn parallel_copy(src: &Path, dst: &Path) -> std::io::Result<u64> {
    let start = Instant::now();
    let (mut dirs, mut leaves) = (Vec::new(), Vec::new());
    walk(src, &mut dirs, &mut leaves)?;
    // Parents come before children in walk order, so sequential mkdirs always succeed.
    for d in &dirs {
        fs::create_dir(dst.join(d))?;
    }
    leaves.par_iter().try_for_each(|rel| {
        let from = src.join(rel);
        let meta = fs::symlink_metadata(&from)?;
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, dst.join(rel))
        } else {
            fs::copy(&from, dst.join(rel)).map(|_| ())
        }
    })?;
    Ok(start.elapsed().as_nanos() as u64)
}

/// R: the median of 5 one-file `rsync --files-from` runs (the way a batching syncer sends one
/// change, with the client's TCP_NODELAY) from `src` to the daemon's floor module.
pub fn one_file_run(src: &Path, daemon: &RsyncDaemon) -> std::io::Result<u64> {
    let (mut dirs, mut leaves) = (Vec::new(), Vec::new());
    walk(src, &mut dirs, &mut leaves)?;
    let Some(file) = leaves.first() else {
        return Err(std::io::Error::other(
            "no file in the source to time a one-file run with",
        ));
    };
    let mut list = file.as_os_str().as_encoded_bytes().to_vec();
    list.push(0);
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut child = Command::new("rsync")
            .args([
                "-a",
                "--relative",
                "--from0",
                "--files-from=-",
                "--ignore-times",
            ])
            .arg("--sockopts=TCP_NODELAY")
            .arg(format!(
                "--password-file={}",
                daemon.password_file.display()
            ))
            .arg(".")
            .arg(daemon.url(FLOOR_MODULE))
            .current_dir(src)
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, &list)?;
        }
        let status = child.wait()?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "one-file rsync run failed ({status})"
            )));
        }
        times.push(start.elapsed().as_nanos() as u64);
    }
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

/// One `rsync -a` of `src` to the daemon's floor module; returns the nanoseconds it took.
pub fn rsync_copy(src: &Path, daemon: &RsyncDaemon) -> std::io::Result<u64> {
    let start = Instant::now();
    let status = Command::new("rsync")
        .arg("-a")
        .arg(format!(
            "--password-file={}",
            daemon.password_file.display()
        ))
        .arg(format!("{}/", src.display()))
        .arg(daemon.url(FLOOR_MODULE))
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "floor rsync -a failed ({status}); see {}",
            daemon.log_file.display()
        )));
    }
    Ok(start.elapsed().as_nanos() as u64)
}
