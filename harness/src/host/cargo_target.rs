//! The cargo target directory and the binaries in it: the repository root in, the directory
//! cargo builds into (as `cargo metadata` reports it, else $CARGO_TARGET_DIR, else
//! ROOT/target) and our syncer's release binary (built when missing) out, or a typed error.
//! Every lookup of a binary under target/ goes through here, so a user's CARGO_TARGET_DIR
//! (or `build.target-dir` in .cargo/config.toml) never makes the harness miss a fresh build.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why our syncer's binary is not available.
#[derive(Debug)]
pub enum BinaryError {
    /// cargo could not be started at all.
    NoCargo(std::io::Error),
    /// `cargo build` ran and failed (its errors went to the terminal), or made no binary
    /// where the target dir says it should be.
    BuildFailed { status: String, expected: PathBuf },
}

impl fmt::Display for BinaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCargo(e) => write!(
                f,
                "cannot run cargo to build the syncer ({e}): build it with \
                 `cargo build --release -p syncer` or set HARNESS_SYNCER_BIN"
            ),
            Self::BuildFailed { status, expected } => write!(
                f,
                "`cargo build --release -p syncer` failed ({status}) or made no binary at {}",
                expected.display()
            ),
        }
    }
}

impl std::error::Error for BinaryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NoCargo(e) => Some(e),
            Self::BuildFailed { .. } => None,
        }
    }
}

/// The directory `cargo build` run in `root` writes to. `cargo metadata` knows every way it
/// can be set (CARGO_TARGET_DIR, CARGO_BUILD_TARGET_DIR, `build.target-dir` in a config
/// file); without a working cargo, $CARGO_TARGET_DIR (relative: to `root`, where the harness
/// runs cargo), else ROOT/target.
pub fn target_dir(root: &Path) -> PathBuf {
    from_metadata(root).unwrap_or_else(|| from_env(root))
}

fn from_env(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// `target_directory` of `cargo metadata --no-deps` (no network, no dependency resolution).
fn from_metadata(root: &Path) -> Option<PathBuf> {
    let out = Command::new("cargo")
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["target_directory"].as_str().map(PathBuf::from)
}

/// A binary of `profile` (`debug`, `release`) in the target dir, when it exists.
pub fn built(root: &Path, profile: &str, name: &str) -> Option<PathBuf> {
    Some(target_dir(root).join(profile).join(name)).filter(|p| p.is_file())
}

/// Our syncer's binary: $HARNESS_SYNCER_BIN, or TARGET/release/syncer, built when missing.
pub fn syncer_binary(root: &Path) -> Result<PathBuf, BinaryError> {
    if let Some(bin) = std::env::var_os("HARNESS_SYNCER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let bin = target_dir(root).join("release/syncer");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("harness: building the syncer (cargo build --release -p syncer)");
    // cargo's progress and errors go straight to the terminal: a cold build takes minutes.
    let status = Command::new("cargo")
        .args(["build", "--release", "-p", "syncer"])
        .current_dir(root)
        .status()
        .map_err(BinaryError::NoCargo)?;
    if status.success() && bin.is_file() {
        return Ok(bin);
    }
    Err(BinaryError::BuildFailed {
        status: status.to_string(),
        expected: bin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_dir_is_where_cargo_metadata_says() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let dir = target_dir(root);
        // The test binary itself was built there (…/TARGET/debug/deps/harness-HASH).
        let exe = std::env::current_exe().expect("test binary path");
        assert!(
            exe.starts_with(dir.canonicalize().expect("target dir exists")),
            "{} is not under {}",
            exe.display(),
            dir.display()
        );
    }
}
