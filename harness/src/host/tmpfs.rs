//! A small tmpfs of its own for a chaos case's replica, so that faults can fill it or make it
//! read-only without touching anything else: a directory and a size in, a mounted directory
//! out, unmounted on drop (also on error and panic, which unwind through the case).
//! `sweep_below` unmounts what a killed earlier run left mounted under a work directory, so
//! removing that directory never walks into a live filesystem.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// How long a read-only remount is retried while a writer holds a file open (EBUSY).
const REMOUNT_PATIENCE: Duration = Duration::from_secs(3);
const REMOUNT_POLL: Duration = Duration::from_millis(10);

pub struct TmpfsMount {
    pub dir: PathBuf,
    options: String,
}

fn error(what: &str, dir: &Path, errno: Errno) -> io::Error {
    io::Error::new(
        io::Error::from(errno).kind(),
        format!(
            "{what} {}: {errno} (mounting a tmpfs needs root)",
            dir.display()
        ),
    )
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size_mib` MiB on `dir` (created if missing).
    pub fn create(dir: &Path, size_mib: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let options = format!("size={size_mib}m,mode=0755");
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOATIME,
            Some(options.as_str()),
        )
        .map_err(|e| error("mount -t tmpfs on", dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            options,
        })
    }

    /// Remounts read-only, retrying while a file is open for writing (the kernel refuses with
    /// EBUSY then); Ok(false) when writers kept it busy for the whole patience.
    pub fn remount_read_only(&self) -> io::Result<bool> {
        let deadline = Instant::now() + REMOUNT_PATIENCE;
        loop {
            match self.remount(MsFlags::MS_RDONLY) {
                Ok(()) => return Ok(true),
                Err(Errno::EBUSY) if Instant::now() < deadline => std::thread::sleep(REMOUNT_POLL),
                Err(Errno::EBUSY) => return Ok(false),
                Err(e) => return Err(error("remount read-only", &self.dir, e)),
            }
        }
    }

    /// Remounts read-write.
    pub fn remount_read_write(&self) -> io::Result<()> {
        self.remount(MsFlags::empty())
            .map_err(|e| error("remount read-write", &self.dir, e))
    }

    fn remount(&self, flags: MsFlags) -> Result<(), Errno> {
        mount(
            None::<&str>,
            &self.dir,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_NOATIME | flags,
            Some(self.options.as_str()),
        )
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // A process still holding a file there (a syncer killed a moment ago, its rsync
        // children) makes a plain unmount fail: detach lazily then; the memory goes when the
        // last holder lets go.
        if umount2(&self.dir, MntFlags::empty()).is_err()
            && let Err(e) = umount2(&self.dir, MntFlags::MNT_DETACH)
        {
            eprintln!(
                "harness: cannot unmount {} ({e}): unmount it by hand (umount -l)",
                self.dir.display()
            );
        }
    }
}

/// Mount points at or below `dir` (from /proc/self/mountinfo), deepest first.
pub fn mounts_below(dir: &Path) -> io::Result<Vec<PathBuf>> {
    // mountinfo holds resolved paths.
    let dir = dir.canonicalize()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|point| point.starts_with(&dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(found)
}

/// Unmounts (lazily) every mount point at or below `dir`: what a killed earlier run left.
pub fn sweep_below(dir: &Path) -> io::Result<usize> {
    let points = mounts_below(dir)?;
    for point in &points {
        umount2(point, MntFlags::MNT_DETACH).map_err(|e| error("unmount", point, e))?;
    }
    Ok(points.len())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b\134c"), PathBuf::from("/tmp/a b\\c"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape(r"/odd\09"), PathBuf::from(r"/odd\09"));
    }
}
