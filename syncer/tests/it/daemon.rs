//! A real `rsync --daemon` for the tests: the seed's classic config (module `[backup]`, auth
//! user `rsync_backup`, a secrets file of mode 600, `hosts allow`, `use chroot = no`) on
//! 127.0.0.1 and a free port, started and stopped by PID.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::wait_until;

pub const USER: &str = "rsync_backup";
pub const PASSWORD: &str = "leesir";

pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    /// The module's directory: the replica.
    pub module: PathBuf,
    /// The client's password file (the password alone, mode 600).
    pub password_file: PathBuf,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

impl Daemon {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, "")
    }

    /// With `module_lines` (rsyncd.conf lines) added to the `[backup]` module.
    pub fn start_with(dir: &Path, module_lines: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        let module = dir.join("backup");
        fs::create_dir_all(&module).unwrap();
        let secrets = dir.join("rsync.password");
        fs::write(&secrets, format!("{USER}:{PASSWORD}\n")).unwrap();
        fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
        let password_file = dir.join("client.password");
        fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600)).unwrap();
        // The seed runs the daemon as user rsync; the tests run as root, so uid/gid are root
        // (a CI machine has no rsync user). Everything else is the seed's config.
        let config = format!(
            "uid = root\ngid = root\nuse chroot = no\nmax connections = 200\ntimeout = 300\n\
             pid file = {d}/rsyncd.pid\nlock file = {d}/rsync.lock\nlog file = {d}/rsyncd.log\n\
             [backup]\npath = {m}/\nignore errors\nread only = false\nlist = false\n\
             hosts allow = 127.0.0.1\nhosts deny = 0.0.0.0/32\nauth users = {USER}\n\
             secrets file = {s}\n{module_lines}",
            d = dir.display(),
            m = module.display(),
            s = secrets.display()
        );
        fs::write(dir.join("rsyncd.conf"), config).unwrap();
        let mut daemon = Self {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
            module,
            password_file,
        };
        daemon.restart();
        daemon
    }

    /// Starts (again) on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let _ = fs::remove_file(self.dir.join("rsyncd.pid"));
        let child = Command::new("rsync")
            .arg("--daemon")
            .arg("--no-detach")
            .arg(format!(
                "--config={}",
                self.dir.join("rsyncd.conf").display()
            ))
            .arg(format!("--port={}", self.port))
            .arg("--address=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsync --daemon (apt-get install rsync)");
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "rsync daemon not listening on {port}"
        );
    }

    /// Kills the daemon (SIGKILL: as abrupt as a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("rsync://{USER}@127.0.0.1:{}/backup/", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
