//! SIGHUP with `--config`: what a changed file may change in a running syncer. Excludes
//! (global and per target) and the per-run options of each target change in place; what
//! threads, watches, pools or files were set up from (SOURCE, the targets, the backend,
//! streams, ...) needs a restart, and a file that changes any of it is refused whole.

use super::Config;
use crate::replica::TargetOptions;

/// The settings a reload puts in force.
#[derive(Debug)]
pub struct Reload {
    pub config: Config,
    /// Per target (in order): whether its excludes changed.
    pub excludes_changed: Vec<bool>,
    /// Per target: whether its other options changed.
    pub options_changed: Vec<bool>,
    pub global_excludes_changed: bool,
}

impl Reload {
    pub fn changes_anything(&self) -> bool {
        self.global_excludes_changed
            || self.excludes_changed.iter().any(|c| *c)
            || self.options_changed.iter().any(|c| *c)
    }
}

/// Compares the running settings with the file's; Err names every key that needs a restart.
pub fn plan(running: &Config, new: Config) -> Result<Reload, String> {
    let mut restart: Vec<String> = Vec::new();
    let mut differs = |same: bool, key: &str| {
        if !same {
            restart.push(key.to_string());
        }
    };
    differs(running.source == new.source, "source");
    differs(running.backend == new.backend, "backend");
    differs(running.state_dir == new.state_dir, "state-dir");
    differs(running.status == new.status, "status");
    differs(running.metrics == new.metrics, "metrics");
    differs(running.strict == new.strict, "strict");
    differs(
        running.timing == new.timing,
        "batch-delay, max-batch, modify-quiet, modify-max-age",
    );
    differs(
        running.rescan_interval == new.rescan_interval,
        "rescan-interval",
    );
    differs(running.max_links == new.max_links, "max-links");
    let names = |c: &Config| c.targets.iter().map(|t| t.spec.clone()).collect::<Vec<_>>();
    if names(running) != names(&new) {
        restart.push("the list of targets (added, removed or reordered)".into());
    } else {
        for (index, (old, now)) in running.targets.iter().zip(&new.targets).enumerate() {
            for key in restart_keys(&old.options, &now.options) {
                restart.push(format!("target[{index}].{key}"));
            }
        }
    }
    if !restart.is_empty() {
        return Err(format!(
            "changing {} needs a restart; nothing was reloaded, the syncer runs on as before",
            restart.join(", ")
        ));
    }
    let global_excludes_changed = running.excludes.patterns() != new.excludes.patterns();
    let excludes_changed = running
        .targets
        .iter()
        .zip(&new.targets)
        .map(|(old, now)| old.excludes.patterns() != now.excludes.patterns())
        .collect();
    let options_changed = running
        .targets
        .iter()
        .zip(&new.targets)
        .map(|(old, now)| old.options != now.options)
        .collect();
    Ok(Reload {
        config: new,
        excludes_changed,
        options_changed,
        global_excludes_changed,
    })
}

/// The options of one target that were set up once: copy threads, fsync, parallel runs and
/// warm clients (rsync targets under `--max-delete` run one stream, so turning it on or off
/// changes that too).
fn restart_keys(old: &TargetOptions, new: &TargetOptions) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.jobs != new.jobs {
        keys.push("jobs");
    }
    if old.fsync != new.fsync {
        keys.push("fsync");
    }
    if old.rsync.streams != new.rsync.streams {
        keys.push("streams");
    }
    if old.rsync.warm_clients != new.rsync.warm_clients {
        keys.push("warm-clients");
    }
    if (&old.backup_dir, old.backup_keep) != (&new.backup_dir, new.backup_keep) {
        keys.push("backup-dir, backup-keep");
    }
    if old.max_delete.is_some() != new.max_delete.is_some() {
        keys.push("max-delete (on or off; its number changes in place)");
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Args;
    use clap::Parser;

    fn config(extra: &[&str]) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let mut argv = vec![
            "syncer".to_string(),
            dir.path().join("src").display().to_string(),
            dir.path().join("dst").display().to_string(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let config = Config::from_args(Args::try_parse_from(argv).unwrap()).unwrap();
        (dir, config)
    }

    #[test]
    fn excludes_and_run_options_reload_the_rest_needs_a_restart() {
        let (_d, running) = config(&[]);
        let mut new = running.clone();
        new.excludes = crate::exclude::Excludes::new(&["*.tmp".into()]).unwrap();
        new.targets[0].excludes = new.excludes.clone();
        new.targets[0].options.bwlimit = Some(1 << 20);
        let reload = plan(&running, new).unwrap();
        assert!(reload.global_excludes_changed);
        assert_eq!(reload.excludes_changed, vec![true]);
        assert_eq!(reload.options_changed, vec![true]);

        let mut new = running.clone();
        new.targets[0].options.rsync.streams = 5;
        new.strict = !running.strict;
        let err = plan(&running, new).unwrap_err();
        assert!(
            err.contains("strict, target[0].streams needs a restart"),
            "{err}"
        );

        let unchanged = plan(&running, running.clone()).unwrap();
        assert!(!unchanged.changes_anything());
    }
}
