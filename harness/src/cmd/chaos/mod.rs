//! The random-operation storm (`harness chaos`): seeded op logs of ordinary file operations
//! run live under the real syncer, each case required to end with the replica exactly equal
//! to SOURCE; failures are reported with their seed, the replay command and, on request, an
//! op log shrunk by delta debugging. Flow: config -> generate (op log) -> case (syncer +
//! storm + verify) -> campaign (many cases at once) -> report.

pub mod campaign;
pub mod case;
pub mod config;
pub mod error;
pub mod fault;
pub mod generate;
pub mod inject;
pub mod mix;
pub mod op;
pub mod report;
pub mod shrink;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::cli::ChaosArgs;
use config::ChaosConfig;
pub use error::ChaosError;

fn default_workdir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// `harness chaos`: Ok(true) when every case converged.
pub fn main(args: &ChaosArgs, stop: &AtomicBool) -> Result<bool, ChaosError> {
    let repo_root = crate::host::env::repo_root();
    if !args.merge.is_empty() {
        let folders: Vec<&Path> = args.merge.iter().map(PathBuf::as_path).collect();
        let rows = report::merged(&folders)?;
        let config = ChaosConfig::load(args, &repo_root)?;
        let scenario = args
            .scenario
            .as_deref()
            .map_or("scenarios/chaos.toml".into(), |p| p.display().to_string());
        std::fs::create_dir_all(&args.out).map_err(ChaosError::io("create", &args.out))?;
        let path = args.out.join("summary.md");
        std::fs::write(&path, report::summary(&config, &rows, &scenario, &args.out))
            .map_err(ChaosError::io("write", &path))?;
        print!("{}", report::short(&rows));
        return Ok(rows.iter().all(|r| r.passed));
    }
    let config = ChaosConfig::load(args, &repo_root)?;
    let parent = args.workdir.clone().unwrap_or_else(default_workdir);
    let workdir = tempfile::Builder::new()
        .prefix("harness-chaos-")
        .tempdir_in(&parent)
        .map_err(ChaosError::io("make a work dir in", &parent))?;
    // Others may enter it (not list it): the unprivileged syncer of source-perm cases must
    // reach its case folder.
    std::fs::set_permissions(workdir.path(), std::fs::Permissions::from_mode(0o711))
        .map_err(ChaosError::io("chmod", workdir.path()))?;
    if args.print_ops {
        let log = campaign::op_log(&config, config.seeds.0, workdir.path())?;
        print!("{}", log.render(&format!("seed {}", config.seeds.0)));
        return Ok(true);
    }
    let syncer = crate::host::cargo_target::syncer_binary(&repo_root)?;
    let env = campaign::CampaignEnv {
        syncer: &syncer,
        out: &args.out,
        workdir: workdir.path(),
        repo_root: &repo_root,
        shrink: args.shrink.then_some(args.shrink_trials),
        shrink_tries: args.shrink_tries,
        resume: args.resume,
    };
    if let Some(path) = &args.replay {
        std::fs::create_dir_all(&args.out).map_err(ChaosError::io("create", &args.out))?;
        return campaign::replay(&config, &env, path, stop);
    }
    let scenario = args
        .scenario
        .as_deref()
        .map_or("scenarios/chaos.toml".into(), |p| p.display().to_string());
    campaign::run(&config, &env, &scenario, stop)
}
