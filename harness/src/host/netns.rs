//! A network namespace of the harness's own, reached from the host over a veth pair: a replica
//! host for the net faults. A slot in, a namespace with `HOST_ADDR/30` on the host's end and
//! `NS_ADDR/30` on its own out; programs run inside it through `nsenter`, and nftables rules
//! inside it drop packets (a loss rate) or everything (a partition).
//!
//! The namespace is held by a process the harness starts (`unshare --net cat`, reading a pipe
//! only the harness writes to), so it vanishes with the harness: a crash closes the pipe, `cat`
//! exits, the namespace and its veth end go with it. Slots are taken with a lock file, so
//! concurrent cases and concurrent harnesses never share an address or a link name, and a
//! link whose slot nobody holds is a leftover of a killed run: `sweep` deletes it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use nix::fcntl::{Flock, FlockArg};

/// Slots 0..SLOTS: 10.213.0.0/16 cut into /30 subnets, more than any campaign runs at once.
const SLOTS: u16 = 1024;
/// Where the slot locks live (tmpfs on Debian: gone after a reboot, like every namespace).
const LOCK_DIR: &str = "/run/harness-netns";
/// Link names: `hx<slot>h` on the host, `hx<slot>n` in the namespace (15 bytes at most).
const LINK_PREFIX: &str = "hx";

/// What the namespace's firewall does to the replica host's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// Nothing dropped: the table is removed.
    Open,
    /// Each packet in and out dropped with this chance in percent (`numgen random`).
    Loss(u32),
    /// Every packet in and out dropped.
    Partition,
}

/// The nftables table the faults own inside the namespace.
const TABLE: &str = "harness_fault";

pub struct NetNs {
    holder: Child,
    /// Writing end of the holder's stdin: dropping it ends the holder.
    pipe: Option<ChildStdin>,
    pub slot: u16,
    _lock: Flock<File>,
    pub host_addr: Ipv4Addr,
    pub ns_addr: Ipv4Addr,
}

fn lock_path(slot: u16) -> PathBuf {
    Path::new(LOCK_DIR).join(format!("slot-{slot}.lock"))
}

/// The slot's lock, if nobody holds it.
fn try_lock(slot: u16) -> io::Result<Option<Flock<File>>> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(slot))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(io::Error::from(e)),
    }
}

fn host_link(slot: u16) -> String {
    format!("{LINK_PREFIX}{slot}h")
}

fn ns_link(slot: u16) -> String {
    format!("{LINK_PREFIX}{slot}n")
}

/// The slot's two addresses: .1 on the host's end, .2 inside.
fn addrs(slot: u16) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + u32::from(slot) * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// Runs `cmd` to its end; an error names the command and what it printed.
fn run(cmd: &mut Command, input: Option<&str>) -> io::Result<()> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot run {shown} ({e}): install iproute2, util-linux and nftables with scripts/install-deps.sh"),
        )
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn delete_link(name: &str) -> io::Result<()> {
    if !link_exists(name) {
        return Ok(());
    }
    match run(Command::new("ip").args(["link", "del", name]), None) {
        // Gone meanwhile (its namespace ended): what was wanted.
        Err(_) if !link_exists(name) => Ok(()),
        other => other,
    }
}

impl NetNs {
    /// A new namespace on the first free slot, its veth pair up and addressed.
    pub fn create() -> io::Result<NetNs> {
        fs::create_dir_all(LOCK_DIR)?;
        for slot in 0..SLOTS {
            if let Some(lock) = try_lock(slot)? {
                // A link on a slot nobody held is a killed run's leftover.
                delete_link(&host_link(slot))?;
                return Self::on_slot(slot, lock);
            }
        }
        Err(io::Error::other(format!(
            "all {SLOTS} network namespace slots are taken (locks in {LOCK_DIR})"
        )))
    }

    fn on_slot(slot: u16, lock: Flock<File>) -> io::Result<NetNs> {
        let mut holder = Command::new("unshare")
            .args(["--net", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start `unshare --net cat` ({e}): install util-linux"),
                )
            })?;
        let pipe = holder.stdin.take();
        let (host_addr, ns_addr) = addrs(slot);
        let mut ns = NetNs {
            holder,
            pipe,
            slot,
            _lock: lock,
            host_addr,
            ns_addr,
        };
        ns.wait_unshared()?;
        ns.wire()?;
        Ok(ns)
    }

    /// Waits until the holder is inside its own namespace (unshare runs before it execs cat).
    fn wait_unshared(&mut self) -> io::Result<()> {
        let own = fs::read_link("/proc/self/ns/net")?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(status) = self.holder.try_wait()? {
                return Err(io::Error::other(format!(
                    "`unshare --net cat` exited with {status} (network namespaces need root)"
                )));
            }
            if fs::read_link(self.path()).is_ok_and(|ns| ns != own) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(io::Error::other(
                    "`unshare --net` did not unshare within 5 s",
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// The veth pair: one end here, one inside, both up, and the namespace's loopback.
    fn wire(&self) -> io::Result<()> {
        let (host, inner) = (host_link(self.slot), ns_link(self.slot));
        let pid = self.holder.id().to_string();
        run(
            Command::new("ip").args([
                "link", "add", &host, "type", "veth", "peer", "name", &inner, "netns", &pid,
            ]),
            None,
        )?;
        let host_cidr = format!("{}/30", self.host_addr);
        run(
            Command::new("ip").args(["addr", "add", &host_cidr, "dev", &host]),
            None,
        )?;
        run(Command::new("ip").args(["link", "set", &host, "up"]), None)?;
        let ns_cidr = format!("{}/30", self.ns_addr);
        run(
            self.command("ip")
                .args(["addr", "add", &ns_cidr, "dev", &inner]),
            None,
        )?;
        run(self.command("ip").args(["link", "set", &inner, "up"]), None)?;
        run(self.command("ip").args(["link", "set", "lo", "up"]), None)
    }

    /// The namespace, for `nsenter --net=`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }

    /// The subnet both ends share, for the daemon's `hosts allow`.
    pub fn subnet(&self) -> String {
        format!("{}/30", Ipv4Addr::from(u32::from(self.host_addr) - 1))
    }

    /// `program` to run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Sets what the namespace's firewall drops, replacing the rules before.
    pub fn set_rules(&self, rules: Rules) -> io::Result<()> {
        let verdict = match rules {
            Rules::Open => None,
            Rules::Loss(pct) => Some(format!("numgen random mod 100 < {pct} drop")),
            Rules::Partition => Some("drop".to_string()),
        };
        // Created first so that the delete always has a table to remove.
        let mut script = format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n");
        if let Some(verdict) = verdict {
            script.push_str(&format!(
                "table inet {TABLE} {{\n\
                 \tchain in {{ type filter hook input priority 0; policy accept; {verdict}; }}\n\
                 \tchain out {{ type filter hook output priority 0; policy accept; {verdict}; }}\n\
                 }}\n"
            ));
        }
        run(self.command("nft").args(["-f", "-"]), Some(&script))
    }

    /// Ends the namespace and checks that nothing of it is left: its holder reaped, its link
    /// gone. Every rule inside goes with it.
    pub fn close(mut self) -> io::Result<()> {
        self.end();
        if link_exists(&host_link(self.slot)) {
            return Err(io::Error::other(format!(
                "the link {} outlived its namespace",
                host_link(self.slot)
            )));
        }
        Ok(())
    }

    fn end(&mut self) {
        // Deleting our end deletes the peer inside; a failure leaves it to the namespace's end.
        if let Err(e) = delete_link(&host_link(self.slot)) {
            eprintln!("harness: {e}");
        }
        self.pipe.take();
        // Our own child, by PID; it may have exited at the pipe's close already.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if self.pipe.is_some() {
            self.end();
        }
    }
}

/// Deletes the links of slots nobody holds: leftovers of a harness killed before its cleanup
/// (a namespace it held can outlive it while a process inside does). Returns how many.
pub fn sweep() -> io::Result<u32> {
    let Ok(dir) = fs::read_dir("/sys/class/net") else {
        return Ok(0);
    };
    fs::create_dir_all(LOCK_DIR)?;
    let mut swept = 0;
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(slot) = name
            .strip_prefix(LINK_PREFIX)
            .and_then(|rest| rest.strip_suffix('h'))
            .and_then(|n| n.parse::<u16>().ok())
        else {
            continue;
        };
        if let Some(_lock) = try_lock(slot)? {
            delete_link(&name)?;
            swept += 1;
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_get_their_own_subnets() {
        assert_eq!(
            addrs(0),
            (Ipv4Addr::new(10, 213, 0, 1), Ipv4Addr::new(10, 213, 0, 2))
        );
        assert_eq!(
            addrs(SLOTS - 1),
            (
                Ipv4Addr::new(10, 213, 15, 253),
                Ipv4Addr::new(10, 213, 15, 254)
            )
        );
        assert!(host_link(SLOTS - 1).len() <= 15);
    }
}
