//! A loop-mounted ext4 for the replica (`replica_fs = "loop-ext4"`): an image path and size in,
//! a mounted directory out, unmounted and its image removed on drop (also on error, panic and
//! Ctrl-C, which all unwind through the session). The replica then has a filesystem of its own,
//! so the probe's and a fanotify syncer's filesystem marks do not see each other's traffic.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopMount {
    pub dir: PathBuf,
    image: PathBuf,
    keep_image: bool,
}

fn run(cmd: &mut Command, what: &str) -> std::io::Result<()> {
    let out = cmd.output().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot run {what} ({e}): install e2fsprogs and mount (util-linux)"),
        )
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "{what} failed ({}): {}; loop mounts need root and a free /dev/loop*, or use replica_fs = \"tmpfs\"",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

impl LoopMount {
    /// Makes a sparse `size_mib` image at `image`, an ext4 without journal on it (as `/` here)
    /// with one inode per 4 KiB (small files), and mounts it on `dir`.
    pub fn create(
        image: &Path,
        dir: &Path,
        size_mib: u64,
        keep_image: bool,
    ) -> std::io::Result<Self> {
        let file = std::fs::File::create(image)?;
        file.set_len(size_mib << 20)?;
        drop(file);
        run(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-O", "^has_journal", "-i", "4096", "-m", "0"])
                .arg(image),
            "mkfs.ext4",
        )?;
        std::fs::create_dir_all(dir)?;
        run(
            Command::new("mount")
                .args(["-o", "loop,noatime"])
                .arg(image)
                .arg(dir),
            "mount -o loop",
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
            image: image.to_path_buf(),
            keep_image,
        })
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        // A process still holding a file there makes umount fail: detach lazily then, so the
        // loop device goes away once it lets go.
        let plain = run(Command::new("umount").arg(&self.dir), "umount");
        if let Err(e) = plain {
            eprintln!("harness: {e}; detaching lazily");
            if let Err(e) = run(Command::new("umount").arg("-l").arg(&self.dir), "umount -l") {
                eprintln!(
                    "harness: {e}: unmount {} by hand (umount -l)",
                    self.dir.display()
                );
                return;
            }
        }
        if !self.keep_image {
            // A leftover image is only disk space in the work dir, which is removed anyway.
            let _ = std::fs::remove_file(&self.image);
        }
    }
}
