//! Syncers under test: a `SutSpec` and the run's paths in, a started child process (or a
//! reason it was skipped) out. Our `syncer`, the seed blog's script, lsyncd with a generated
//! config, or any command template. Each is stopped by PID, its whole tree, on drop.

pub mod daemon;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::host::proctree::TreeTracker;
use crate::scenario::{SutKind, SutSpec};
use crate::sut::daemon::{MODULE, RsyncDaemon};

/// Where a syncer under test reads, writes and logs.
pub struct SutEnv<'a> {
    pub src: &'a Path,
    pub replica: &'a Path,
    /// A fresh directory for this syncer's config, logs and state.
    pub dir: &'a Path,
    pub daemon: Option<&'a RsyncDaemon>,
    pub repo_root: &'a Path,
}

/// How the harness knows the syncer is ready for the storm.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// `ready: true` in our syncer's status JSON.
    StatusFile(PathBuf),
    /// At least this many inotify watches in the process tree (one per source directory).
    Watches(u64),
}

pub struct SutProcess {
    child: Option<Child>,
    pub pid: u32,
    pub readiness: Readiness,
    pub status_file: Option<PathBuf>,
    pub log_file: PathBuf,
    /// Flags that matter for comparing results (e.g. rsync options), recorded in results.
    pub flags: String,
}

pub enum Launch {
    Started(SutProcess),
    Skipped(String),
}

/// Whether a skip of this kind fails the run: our own syncer (missing, failed to build, or
/// unable to take the target) and a scenario's own command are what is under test, so not
/// running them tested nothing. A baseline tool that is not installed is only a skip.
pub fn must_run(kind: SutKind) -> bool {
    matches!(kind, SutKind::Syncer | SutKind::Command)
}

/// Finds `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn count_dirs(root: &Path) -> u64 {
    let mut n = 1;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                n += 1;
                stack.push(e.path());
            }
        }
    }
    n
}

pub fn launch(spec: &SutSpec, env: &SutEnv) -> std::io::Result<Launch> {
    fs::create_dir_all(env.dir)?;
    let log_file = env.dir.join("sut.log");
    let dirs = count_dirs(env.src);
    let (mut cmd, readiness, status_file, flags) = match spec.kind {
        SutKind::Syncer => {
            let bin = match crate::host::cargo_target::syncer_binary(env.repo_root) {
                Ok(b) => b,
                Err(e) => return Ok(Launch::Skipped(e.to_string())),
            };
            if env.daemon.is_some() && !supports_rsync_target(&bin) {
                return Ok(Launch::Skipped(format!(
                    "{} takes only a directory TARGET (no rsync:// in its --help): use target = \"local\"",
                    bin.display()
                )));
            }
            let status = env.dir.join("status.json");
            let state = env.dir.join("state");
            fs::create_dir_all(&state)?;
            // Which build ran is part of the record (a stale target dir measures old code).
            let flags = std::iter::once(bin.display().to_string())
                .chain(spec.args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            let mut cmd = Command::new(bin);
            cmd.args(&spec.args)
                .arg("--status")
                .arg(&status)
                .arg("--state-dir")
                .arg(&state)
                .arg(env.src);
            match env.daemon {
                Some(d) => {
                    cmd.arg(d.url(MODULE))
                        .env("RSYNC_PASSWORD", crate::sut::daemon::PASSWORD);
                }
                None => {
                    cmd.arg(env.replica);
                }
            }
            (
                cmd,
                Readiness::StatusFile(status.clone()),
                Some(status),
                flags,
            )
        }
        SutKind::SeedScript => {
            let Some(daemon) = env.daemon else {
                return Ok(Launch::Skipped(
                    "the seed script needs an rsync daemon".into(),
                ));
            };
            let Some(inotifywait) = which("inotifywait") else {
                return Ok(Launch::Skipped(
                    "inotifywait is not installed: apt-get install inotify-tools".into(),
                ));
            };
            let inotify_home = inotifywait
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("/usr"))
                .to_path_buf();
            let script = env.repo_root.join("scripts/seed-inotify-rsync.sh");
            let mut cmd = Command::new("bash");
            cmd.arg(script)
                .env("SEED_HOST", "127.0.0.1")
                .env("SEED_PORT", daemon.port.to_string())
                .env("SEED_SRC", format!("{}/", env.src.display()))
                .env("SEED_MODULE", MODULE)
                .env("SEED_USER", crate::sut::daemon::USER)
                .env("SEED_PASSWORD_FILE", &daemon.password_file)
                .env("SEED_INOTIFY_HOME", inotify_home);
            (
                cmd,
                Readiness::Watches(dirs),
                None,
                "rsync -aruz -R --delete --timeout=100 (per event)".into(),
            )
        }
        SutKind::Lsyncd => {
            if which("lsyncd").is_none() {
                return Ok(Launch::Skipped(
                    "lsyncd is not installed: apt-get install lsyncd".into(),
                ));
            }
            let config = env.dir.join("lsyncd.conf.lua");
            fs::write(&config, lsyncd_config(spec.delay_s, env))?;
            let mut cmd = Command::new("lsyncd");
            cmd.arg(&config);
            (
                cmd,
                Readiness::Watches(dirs),
                None,
                format!("lsyncd default.rsync archive=true delay={}", spec.delay_s),
            )
        }
        SutKind::Command => {
            let text = expand(&spec.command, env);
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(&text);
            (cmd, Readiness::Watches(0), None, text)
        }
    };
    let log = fs::File::create(&log_file)?;
    let child = cmd
        .current_dir(env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot start {} ({e})", spec.label()))
        })?;
    Ok(Launch::Started(SutProcess {
        pid: child.id(),
        child: Some(child),
        readiness,
        status_file,
        log_file,
        flags,
    }))
}

/// Whether this syncer build accepts an rsync daemon URL as TARGET (its --help says so).
fn supports_rsync_target(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("rsync://"))
}

/// Fills {src} {dst} {url} {password_file} in a command template.
pub fn expand(template: &str, env: &SutEnv) -> String {
    let (url, pw) = env.daemon.map_or((String::new(), String::new()), |d| {
        (d.url(MODULE), d.password_file.display().to_string())
    });
    template
        .replace("{src}", &env.src.display().to_string())
        .replace("{dst}", &env.replica.display().to_string())
        .replace("{url}", &url)
        .replace("{password_file}", &pw)
}

fn lsyncd_config(delay_s: f64, env: &SutEnv) -> String {
    let (target, password) = match env.daemon {
        Some(d) => (
            d.url(MODULE),
            format!("password_file = \"{}\",", d.password_file.display()),
        ),
        None => (format!("{}/", env.replica.display()), String::new()),
    };
    format!(
        "-- generated by the harness\nsettings {{\n  logfile = \"{log}\",\n  statusFile = \"{status}\",\n  nodaemon = true,\n}}\n\
         sync {{\n  default.rsync,\n  source = \"{src}/\",\n  target = \"{target}\",\n  delay = {delay_s},\n\
         \x20 rsync = {{ archive = true, {password} }},\n}}\n",
        log = env.dir.join("lsyncd.log").display(),
        status = env.dir.join("lsyncd.status").display(),
        src = env.src.display(),
    )
}

impl SutProcess {
    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn signal(&self, tracker: &mut TreeTracker, signal: Signal) {
        for pid in tracker.live_pids() {
            // ESRCH: it exited between listing and signalling.
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// SIGTERM to the whole tree, then SIGKILL after `grace`; reaps.
    pub fn stop(
        &mut self,
        tracker: &mut TreeTracker,
        grace: Duration,
    ) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        tracker.sample();
        self.signal(tracker, Signal::SIGCONT);
        self.signal(tracker, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut status = None;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.signal(tracker, Signal::SIGKILL);
        let status = status.or_else(|| child.wait().ok());
        tracker.reap_orphans();
        status
    }
}

impl Drop for SutProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            let mut tracker = TreeTracker::new(self.pid);
            tracker.sample();
            self.stop(&mut tracker, Duration::from_secs(2));
        }
    }
}
