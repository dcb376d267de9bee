//! The baseline's syncer binary: a git revision in, its `syncer` built in a temporary git
//! worktree under the build dir (removed afterwards) and copied out, or why it could not be.
//! The build shares the candidate's target dir, so dependencies are never rebuilt: measured
//! here, 31 s for the baseline's syncer crate against ~2 min for a separate, cold target dir.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::CiError;
use crate::host::cargo_target::target_dir;

fn git(root: &Path, args: &[&str]) -> Result<String, CiError> {
    let o = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .map_err(CiError::NoGit)?;
    if !o.status.success() {
        return Err(CiError::Git {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// `--baseline REV`, or by default the merge base with main when HEAD is on a branch off
/// main, else HEAD~1 (the previous commit on main). Returns (what was asked, commit id).
pub fn resolve(root: &Path, wanted: Option<&str>) -> Result<(String, String), CiError> {
    let rev = match wanted {
        Some(r) => r.to_string(),
        None => {
            let head = git(root, &["rev-parse", "HEAD"])?;
            match git(root, &["merge-base", "HEAD", "main"]) {
                Ok(base) if base != head => base,
                _ => "HEAD~1".to_string(),
            }
        }
    };
    let id = git(
        root,
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    )
    .map_err(|e| CiError::NoCommit {
        rev: rev.clone(),
        source: Box::new(e),
    })?;
    Ok((rev, id))
}

/// Builds TARGET/release/syncer of the working tree at `root` (quick when up to date).
pub fn build_candidate(root: &Path, out: &Path) -> Result<PathBuf, CiError> {
    cargo_build(root, None)?;
    let bin = target_dir(root).join("release/syncer");
    copy(&bin, &out.join("candidate-syncer"))
}

/// A git worktree, removed (with `git worktree prune`) on drop.
struct Worktree<'a> {
    root: &'a Path,
    path: PathBuf,
}

impl Drop for Worktree<'_> {
    fn drop(&mut self) {
        let path = self.path.display().to_string();
        if let Err(e) = git(self.root, &["worktree", "remove", "--force", &path]) {
            eprintln!("harness ci: {e}; remove {path} and run `git worktree prune`");
        }
    }
}

/// Builds the syncer of commit `id` and copies it to OUT/baseline-syncer. The shared
/// target's `release/syncer` is put back afterwards: cargo does not re-copy a fresh binary
/// there, so the candidate's would otherwise stay replaced by the baseline's.
pub fn build(root: &Path, id: &str, out: &Path) -> Result<PathBuf, CiError> {
    let target = target_dir(root);
    let wt = Worktree {
        root,
        path: target.join(format!("ci-gate-baseline-{}", std::process::id())),
    };
    let path = wt.path.display().to_string();
    git(root, &["worktree", "add", "--detach", "--force", &path, id])?;
    let shared_bin = target.join("release/syncer");
    let saved = out.join("target-release-syncer.saved");
    let had_bin = shared_bin.is_file() && copy(&shared_bin, &saved).is_ok();
    let built = cargo_build(&wt.path, Some(&target))
        .and_then(|()| copy(&shared_bin, &out.join("baseline-syncer")));
    if had_bin {
        copy(&saved, &shared_bin)?;
    }
    built
}

fn cargo_build(dir: &Path, target: Option<&Path>) -> Result<(), CiError> {
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "-p", "syncer"])
        .current_dir(dir);
    if let Some(t) = target {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    let o = cmd.output().map_err(CiError::NoCargo)?;
    if o.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(CiError::Build {
        dir: dir.to_path_buf(),
        stderr_tail: lines[lines.len().saturating_sub(4)..].join(" / "),
    })
}

/// Copies through a temp name and a rename, so a running binary is never overwritten.
fn copy(from: &Path, to: &Path) -> Result<PathBuf, CiError> {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp)
        .and_then(|_| std::fs::rename(&tmp, to))
        .map_err(|source| CiError::Copy {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            source,
        })?;
    Ok(to.to_path_buf())
}
