//! SIGHUP with `--config`: the file read again and, if it is good and changes only what may
//! change while running (`config::reload`), put in force without a full resync. New excludes
//! take effect for every event and walk from then on; what they no longer exclude is
//! watched and compared (only those subtrees); what they now exclude stays in the replicas
//! as it is (nothing is deleted for being excluded, as with rsync without
//! `--delete-excluded`). Target options (bandwidth, delete cap, per-run rsync options) apply
//! from the next batch.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use crate::backend::Backend;
use crate::change::COMPARE_WHOLE;
use crate::config::Config;
use crate::config::file::CommandLine;
use crate::control::Control;
use crate::entry::{Kind, list_dir};
use crate::exclude::{ExcludeSet, Excludes};
use crate::queue::shared::TargetQueue;
use crate::replica::Target;
use crate::source::SourceTree;

/// One running target as a reload sees it.
pub struct Reloadable {
    pub target: Arc<dyn Target>,
    pub queue: Arc<TargetQueue>,
    pub excludes: Arc<ExcludeSet>,
}

/// What a reload needs of the running syncer; owned by the signal thread.
pub struct Reloader {
    /// The settings in force (the file's, as last loaded).
    pub running: Config,
    pub source: Arc<SourceTree>,
    pub backend: Option<Arc<dyn Backend>>,
    pub targets: Vec<Reloadable>,
    pub control: Arc<Control>,
}

impl Reloader {
    /// Reads the file again and applies it, or logs why not (the syncer runs on unchanged).
    pub fn reload(&mut self) {
        let Some(file) = self.running.file.clone() else {
            return;
        };
        let command_line = CommandLine {
            once: self.running.once,
            allow_source_change: self.running.allow_source_change,
            ..CommandLine::default()
        };
        let loaded = crate::config::file::load(&file, command_line).map_err(|e| e.to_string());
        let plan = loaded.and_then(|mut new| {
            new.log_level = self.running.log_level;
            crate::config::reload::plan(&self.running, new)
        });
        let plan = match plan {
            Ok(plan) => plan,
            Err(why) => {
                crate::error!(
                    "SIGHUP: {file:?} not reloaded: {why}",
                    file = file.display()
                );
                return;
            }
        };
        if !plan.changes_anything() {
            crate::info!("SIGHUP: {} read again: nothing changed", file.display());
            return;
        }
        // Held like a reconcile: no barrier passes and no target counts as caught up with
        // subtrees still to be compared.
        self.control.reconciling.fetch_add(1, SeqCst);
        let old_global = self.source.excludes.replace(plan.config.excludes.clone());
        let mut old_targets = Vec::new();
        for (running, (target, config)) in self
            .targets
            .iter()
            .zip(plan.config.targets.iter().enumerate())
        {
            old_targets.push(running.excludes.replace(config.excludes.clone()));
            if plan.global_excludes_changed || plan.excludes_changed[target] {
                running.queue.filter_from_now();
            }
        }
        let mut compared = 0usize;
        if plan.global_excludes_changed {
            // Watched before they are compared, so nothing made meanwhile is missed.
            for subtree in newly_included(&self.source, &old_global, &plan.config.excludes) {
                // Only directories are watched (a file's events come from its parent's watch).
                if self.source.open_dir(&subtree).is_err() {
                    continue;
                }
                if let Some(backend) = &self.backend {
                    if let Err(err) = backend.capture(&subtree) {
                        crate::error!("SIGHUP: watching {subtree:?}, now included, failed: {err}");
                    }
                }
            }
        }
        for (index, running) in self.targets.iter().enumerate() {
            let new = &plan.config.targets[index];
            if plan.excludes_changed[index] {
                for subtree in newly_included(&self.source, &old_targets[index], &new.excludes) {
                    crate::debug!(
                        "{}: {subtree:?} is included now: compared",
                        running.target.name()
                    );
                    running
                        .queue
                        .mark(subtree, COMPARE_WHOLE, self.control.now_ns());
                    compared += 1;
                }
            }
            if plan.options_changed[index] {
                running.target.reconfigure(&new.options);
            }
        }
        self.control.reconciling.fetch_sub(1, SeqCst);
        let changed: Vec<String> = self
            .targets
            .iter()
            .enumerate()
            .filter(|(i, _)| plan.excludes_changed[*i] || plan.options_changed[*i])
            .map(|(_, t)| t.target.name().to_string())
            .collect();
        crate::info!(
            "SIGHUP: {} reloaded: {} changed; {compared} subtrees no longer excluded are compared",
            file.display(),
            if changed.is_empty() {
                "the global excludes".to_string()
            } else {
                changed.join(", ")
            }
        );
        self.running = plan.config;
    }
}

/// The topmost paths that `old` excluded and `new` does not (their subtrees are to be
/// compared), found by a walk of the directories `new` includes. Nothing to walk when the
/// patterns did not shrink.
pub fn newly_included(source: &SourceTree, old: &Excludes, new: &Excludes) -> Vec<PathBuf> {
    if old.patterns().iter().all(|p| new.patterns().contains(p)) {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let Ok(dir) = source.open_dir(&rel) else {
            continue;
        };
        let Ok(entries) = list_dir(&dir) else {
            continue;
        };
        for (name, kind) in entries {
            let child = rel.join(&name);
            if new.is_excluded(&child) {
                continue;
            }
            if old.is_excluded(&child) {
                found.push(child);
                continue;
            }
            match kind {
                Some(Kind::Dir) => dirs.push(child),
                // getdents did not say: only a directory opens as one.
                None if source.open_dir(&child).is_ok() => dirs.push(child),
                _ => {}
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_topmost_paths_no_longer_excluded_are_found() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["a/logs/deep", "b/cache", "c"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        for f in ["a/logs/deep/x", "a/x.tmp", "b/cache/y", "c/z.tmp", "c/keep"] {
            std::fs::write(dir.path().join(f), "1").unwrap();
        }
        let source = SourceTree::open(dir.path().to_path_buf(), Excludes::none(), 16).unwrap();
        let old = Excludes::new(&["logs".into(), "*.tmp".into(), "/b/cache".into()]).unwrap();
        let new = Excludes::new(&["*.tmp".into()]).unwrap();
        let found = newly_included(&source, &old, &new);
        assert_eq!(
            found,
            vec![PathBuf::from("a/logs"), PathBuf::from("b/cache")]
        );
        // Patterns only added: nothing became included, nothing is walked.
        assert!(newly_included(&source, &new, &old).is_empty());
        let none = Excludes::none();
        assert_eq!(newly_included(&source, &new, &none).len(), 2);
    }
}
