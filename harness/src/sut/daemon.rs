//! The rsync daemon target: a replica dir in, a running `rsync --daemon --no-detach` on
//! 127.0.0.1 (or on port 873 inside a network namespace of the harness's own, a replica host
//! for the net faults) out, with the seed blog's classic config (module [backup], read only =
//! false, auth users, a mode-600 secrets file, hosts allow, uid/gid). Stopped by PID on drop;
//! its log stays in the run's workdir.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MODULE: &str = "backup";
pub const FLOOR_MODULE: &str = "floor";
pub const USER: &str = "rsync_backup";
/// The seed blog's password; this daemon only listens on loopback or inside a namespace of
/// the harness's own.
pub const PASSWORD: &str = "leesir";

/// rsync's own port, which a daemon alone in its namespace can have.
const RSYNC_PORT: u16 = 873;

pub struct RsyncDaemon {
    child: Option<Child>,
    pub addr: Ipv4Addr,
    pub port: u16,
    /// The network namespace it runs in (`nsenter --net=`), if not the harness's own.
    netns: Option<PathBuf>,
    pub dir: PathBuf,
    /// The client's password file (password only, mode 600).
    pub password_file: PathBuf,
    pub log_file: PathBuf,
    pub config_file: PathBuf,
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(text.as_bytes())?;
    // rsync refuses secrets and password files other users can read (rsyncd.conf(5)).
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn user_and_group() -> (String, String) {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or(uid.to_string(), |u| u.name);
    let group = nix::unistd::Group::from_gid(gid)
        .ok()
        .flatten()
        .map_or(gid.to_string(), |g| g.name);
    (user, group)
}

/// The classic config (seed blog section 4.1.3), with paths in `dir` and `allow` (loopback, or
/// a namespace's subnet) the only hosts let in.
fn config(dir: &Path, replica: &Path, floor: &Path, secrets: &Path, allow: &str) -> String {
    let (user, group) = user_and_group();
    format!(
        "# rsyncd.conf written by the harness: the seed blog's classic config\n\
         uid = {user}\ngid = {group}\nuse chroot = no\nmax connections = 200\ntimeout = 300\n\
         pid file = {pid}\nlock file = {lock}\nlog file = {log}\n\n\
         [{MODULE}]\npath = {replica}/\nignore errors\nread only = false\nlist = false\n\
         hosts allow = {allow}\nhosts deny = 0.0.0.0/32\nauth users = {USER}\nsecrets file = {secrets}\n\n\
         # The floor copy (one `rsync -a` of the final tree) goes here, same settings.\n\
         [{FLOOR_MODULE}]\npath = {floor}/\nignore errors\nread only = false\nlist = false\n\
         hosts allow = {allow}\nhosts deny = 0.0.0.0/32\nauth users = {USER}\nsecrets file = {secrets}\n",
        pid = dir.join("rsyncd.pid").display(),
        lock = dir.join("rsync.lock").display(),
        log = dir.join("rsyncd.log").display(),
        replica = replica.display(),
        floor = floor.display(),
        secrets = secrets.display(),
    )
}

/// Where a daemon listens.
struct Place {
    addr: Ipv4Addr,
    /// None: a free port, probed.
    port: Option<u16>,
    netns: Option<PathBuf>,
    allow: String,
}

impl RsyncDaemon {
    /// Starts the daemon serving `replica` (and `floor`) on loopback, files kept in `dir`.
    pub fn start(dir: &Path, replica: &Path, floor: &Path) -> std::io::Result<Self> {
        let place = Place {
            addr: Ipv4Addr::LOCALHOST,
            port: None,
            netns: None,
            allow: "127.0.0.1".into(),
        };
        Self::start_at(dir, replica, floor, place)
    }

    /// Starts the daemon inside `ns` on port 873 of its address, letting in only the
    /// namespace's subnet (the host's end of its veth pair).
    pub fn start_in(
        ns: &crate::host::netns::NetNs,
        dir: &Path,
        replica: &Path,
        floor: &Path,
    ) -> std::io::Result<Self> {
        let place = Place {
            addr: ns.ns_addr,
            port: Some(RSYNC_PORT),
            netns: Some(ns.path()),
            allow: ns.subnet(),
        };
        Self::start_at(dir, replica, floor, place)
    }

    fn start_at(dir: &Path, replica: &Path, floor: &Path, place: Place) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let secrets = dir.join("rsync.secrets");
        write_private(&secrets, &format!("{USER}:{PASSWORD}\n"))?;
        let password_file = dir.join("rsync.password");
        write_private(&password_file, &format!("{PASSWORD}\n"))?;
        let config_file = dir.join("rsyncd.conf");
        fs::write(
            &config_file,
            config(dir, replica, floor, &secrets, &place.allow),
        )?;
        let log_file = dir.join("rsyncd.log");
        let mut last_err = None;
        // The free port may be taken between probing and binding: try a few.
        for _ in 0..5 {
            let mut daemon = Self {
                child: None,
                addr: place.addr,
                port: match place.port {
                    Some(port) => port,
                    None => free_port()?,
                },
                netns: place.netns.clone(),
                dir: replica.to_path_buf(),
                password_file: password_file.clone(),
                log_file: log_file.clone(),
                config_file: config_file.clone(),
            };
            match daemon.spawn(dir) {
                Ok(()) => return Ok(daemon),
                Err(e) => last_err = Some(e),
            }
            daemon.stop();
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("rsync daemon did not start")))
    }

    /// Starts `rsync --daemon` on `self.port` with the config in `dir`, and waits until it
    /// listens.
    fn spawn(&mut self, dir: &Path) -> std::io::Result<()> {
        let mut cmd = match &self.netns {
            None => Command::new("rsync"),
            Some(ns) => {
                // nsenter execs (no fork without --pid), so the child is the daemon itself;
                // setpriv gives it a parent-death signal, so it cannot outlive the harness.
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", ns.display())).args([
                    "--",
                    "setpriv",
                    "--pdeathsig",
                    "KILL",
                    "--",
                    "rsync",
                ]);
                cmd
            }
        };
        let child = cmd
            .args(["--daemon", "--no-detach"])
            .arg(format!("--address={}", self.addr))
            .arg(format!("--port={}", self.port))
            .arg(format!("--config={}", self.config_file.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("rsyncd.stderr"))?,
            ))
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start rsync --daemon ({e}): install it with scripts/install-deps.sh (apt-get install rsync)")))?;
        self.child = Some(child);
        self.wait_listening(Duration::from_secs(10))
    }

    /// A crash: SIGKILL by PID and reap. Connections already accepted live on in their own
    /// processes until their client is done, as after a real crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only when it is gone already; wait reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same port and config (after `kill`).
    pub fn restart(&mut self) -> std::io::Result<()> {
        let dir = self
            .config_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        // The old listener's port can stay busy for a moment: retry for a few seconds.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn(&dir) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {
                    self.kill();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn wait_listening(&mut self, timeout: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + timeout;
        let addr = SocketAddr::from((self.addr, self.port));
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(std::io::Error::other(format!(
                    "rsync daemon exited with {status}; see {}",
                    self.log_file.display()
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::other(format!(
            "rsync daemon not listening on port {} after {timeout:?}",
            self.port
        )))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `rsync://USER@ADDR:PORT/MODULE/`
    pub fn url(&self, module: &str) -> String {
        format!("rsync://{USER}@{}:{}/{module}/", self.addr, self.port)
    }

    /// Where it listens.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((self.addr, self.port))
    }

    /// Connections the daemon logged (one per client rsync run).
    pub fn connections(&self) -> u64 {
        fs::read_to_string(&self.log_file).map_or(0, |log| {
            log.lines().filter(|l| l.contains("connect from")).count() as u64
        })
    }

    /// SIGTERM by PID, then SIGKILL after 3 s; always reaps.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::host::proctree::stop_child(child, Duration::from_secs(3));
        }
    }
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}
