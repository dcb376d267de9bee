//! The floor: the final source tree in, the time a plain copy of it takes out (a parallel
//! copy for a local target, one `rsync -a` for the daemon target). Each syncer's convergence
//! is reported as a ratio to it, measured in the same run on the same machine.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rayon::prelude::*;

use crate::daemon::{FLOOR_MODULE, RsyncDaemon};

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
