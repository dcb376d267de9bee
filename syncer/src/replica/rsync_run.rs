//! One rsync client run: arguments and an optional NUL-separated file list in, exit status,
//! stderr and `--stats` counters out. A watchdog thread kills a run whose I/O counters
//! (/proc/PID/io rchar+wchar, which include socket traffic) stop moving: a hung run.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What a run produced.
#[derive(Debug, Default)]
pub struct RunResult {
    /// rsync's exit code (None: killed by a signal).
    pub code: Option<i32>,
    pub stderr: String,
    /// What rsync printed (the stats; itemized changes when asked for).
    pub stdout: String,
    pub files_transferred: u64,
    pub bytes_sent: u64,
    /// Entries the daemon deleted ("Number of deleted files").
    pub files_deleted: u64,
    /// Entries the run's file list held ("Number of files", the top directory included).
    pub files_listed: u64,
    /// The watchdog killed it.
    pub hung: bool,
}

/// How a failed run is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try the same work again later with backoff (daemon down, network, timeouts).
    Transient(String),
    /// Try the whole batch again (files vanished or changed mid-run: normal in a live tree).
    Again(String),
    /// Configuration error that retrying cannot fix (auth, unknown module, bad options).
    Fatal(String),
    /// `--max-delete` stopped deletions (exit 25, or a daemon's notice): the syncer stops,
    /// exit 3, with the target's `DeleteRefused` message.
    Refused(String),
}

/// What rsync's exit codes mean (rsync(1), EXIT VALUES).
pub fn explain(code: i32) -> &'static str {
    match code {
        1 => "syntax or usage error (for a password file: readable by other users?)",
        2 => "protocol incompatibility",
        3 => "errors selecting input/output files or directories",
        4 => "requested action not supported by the daemon's rsync",
        5 => "error starting the client-server protocol (authentication, module name, access)",
        10 => "socket I/O error (daemon down or connection refused?)",
        11 => "file I/O error (the daemon's disk full?)",
        12 => "error in the rsync protocol data stream (connection lost?)",
        14 => "error in IPC code",
        20 => "received SIGUSR1 or SIGINT",
        23 => "partial transfer due to error",
        24 => "some source files vanished before they could be transferred",
        25 => "the --max-delete limit stopped deletions",
        30 => "timeout in data send/receive",
        35 => "timeout waiting for the daemon connection",
        _ => "unknown rsync exit code",
    }
}

/// The daemon's own "@ERROR: ..." line, if any.
pub fn daemon_error(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("@ERROR:").map(str::trim))
}

/// Sorts a finished run into success or a kind of failure; messages name the target.
pub fn classify(result: &RunResult, target: &str) -> Result<(), Failure> {
    let detail = || {
        let first = result
            .stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        if first.is_empty() {
            String::new()
        } else {
            format!(": {first}")
        }
    };
    // A daemon receiver that hit the cap says so and still exits 0; a local one exits 25.
    if result.code == Some(25)
        || result
            .stderr
            .contains("Deletions stopped due to --max-delete")
    {
        return Err(Failure::Refused(format!(
            "{target}: --max-delete reached: rsync stopped deleting"
        )));
    }
    match result.code {
        Some(0) => Ok(()),
        _ if result.hung => Err(Failure::Transient(format!(
            "{target}: rsync made no progress and was killed"
        ))),
        None => Err(Failure::Transient(format!(
            "{target}: rsync was killed by a signal"
        ))),
        Some(5) => match daemon_error(&result.stderr) {
            // "max connections" is the one refusal that passes by itself.
            Some(why) if why.contains("max connections") => {
                Err(Failure::Transient(format!("{target}: daemon busy: {why}")))
            }
            Some(why) => Err(Failure::Fatal(format!(
                "{target}: the daemon refused the session: {why} (check the module name, the user and --password-file / RSYNC_PASSWORD)"
            ))),
            // No refusal from the daemon: the connection broke while the session started, as
            // when the daemon is killed or restarted then (fault campaign, daemon-restart seed
            // 4: taken as a refusal, it made the syncer exit 1 after it had recovered).
            None => Err(Failure::Transient(format!(
                "{target}: rsync exit 5, the session broke off before it started (daemon restarting?){}",
                detail()
            ))),
        },
        // The source moved on under the run (see `source_moved_on`): plan the work again.
        Some(2) if source_moved_on(&result.stderr) => Err(Failure::Again(format!(
            "{target}: rsync exit 2, the source changed under the run{}",
            detail()
        ))),
        Some(code @ (1 | 2 | 4)) => Err(Failure::Fatal(format!(
            "{target}: rsync exit {code}, {}{}{}",
            explain(code),
            detail(),
            where_it_stopped(&result.stderr)
        ))),
        // Files the receiver could not write for lack of room or a read-only filesystem: it
        // lasts until someone frees space or remounts, so retrying at once would spin.
        Some(23) if receiver_storage_error(&result.stderr) => Err(Failure::Transient(format!(
            "{target}: rsync exit 23, the daemon's filesystem refused writes{}",
            storage_detail(&result.stderr)
        ))),
        Some(code @ (23 | 24)) => Err(Failure::Again(format!(
            "{target}: rsync exit {code}, {}{}",
            explain(code),
            detail()
        ))),
        Some(code) => Err(Failure::Transient(format!(
            "{target}: rsync exit {code}, {}{}",
            explain(code),
            detail()
        ))),
    }
}

/// rsync's closing "rsync error: ... at file.c(line)" line, which names the code path that
/// gave up (the first line is often only a warning that came before it).
fn where_it_stopped(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("rsync error:"))
        .map(|l| format!(" [{}]", l.trim()))
        .unwrap_or_default()
}

/// Exit 2 (protocol error) from a source changing under the run, not from the daemon: the
/// receiver of rsync 3.4 and later aborts a file list that reaches a path through a symlink
/// ("invalid path from sender": a listed directory became a symlink), and the sender gives
/// up on a listed path whose parent became a file (`link_stat ... Not a directory`), which
/// `--delete-missing-args` does not cover (it takes only ENOENT). The receiver, too, gives
/// up on a basis file that changed under it.
///
/// rsync 3.5's sender also ends a run with exit 2 at its final goodbye ("at main.c(937)")
/// after it reported a source file it could not send: one that vanished, whose parent
/// became a file, or that shrank while it was read ("read errors mapping ... No data
/// available"). Those reports are the sender's own, about SOURCE, so they count as the
/// source moving on too. A real protocol mismatch fails before any file is sent.
fn source_moved_on(stderr: &str) -> bool {
    stderr.contains("invalid path from sender")
        // The receiver's basis file changed between its checksums and the delta: a file the
        // run updates was replaced meanwhile (a rename or another run on the same path).
        || stderr.contains("got a block match with no basis file")
        || stderr.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("file has vanished: ") || l.starts_with("rsync: [sender] ")
        })
}

/// errno values, as rsync prints them at the end of a message ("... failed: No space left on
/// device (28)"), that mean the receiving filesystem cannot take writes for now: ENOSPC,
/// EROFS, EDQUOT, EIO. The number, not the text, since the daemon's locale words the text.
const STORAGE_ERRNOS: [&str; 4] = ["(28)", "(30)", "(122)", "(5)"];

/// A `[receiver]` line of rsync's stderr that ends in one of `STORAGE_ERRNOS`.
fn storage_line(stderr: &str) -> Option<&str> {
    stderr.lines().map(str::trim).find(|l| {
        l.starts_with("rsync: [receiver] ") && STORAGE_ERRNOS.iter().any(|e| l.ends_with(e))
    })
}

fn receiver_storage_error(stderr: &str) -> bool {
    storage_line(stderr).is_some()
}

fn storage_detail(stderr: &str) -> String {
    storage_line(stderr)
        .map(|l| format!(": {l}"))
        .unwrap_or_default()
}

fn stat_number(stdout: &str, label: &str) -> u64 {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or("")
                .replace(',', "")
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// rchar + wchar of a process: moves with every read and write, sockets included.
fn io_progress(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(field("rchar:") + field("wchar:"))
}

/// An rsync client already started: with a file list still to come on stdin, it connects
/// and authenticates meanwhile, which is most of a run's time on loopback (measured here:
/// 51 ms cold, 3 ms from list to exit once warm).
pub struct Started {
    child: Child,
    pub spawned: Instant,
}

impl Started {
    /// Still waiting for its list (not exited, e.g. after an auth failure or a daemon restart).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        // An unused warm client: nothing to send; reap it so no zombie is left.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The rsync command: never with systemd's notification variables, which would let the
/// child speak for the syncer; with an empty RSYNC_PASSWORD when `no_password`.
fn command(no_password: bool) -> Command {
    let mut command = Command::new("rsync");
    for var in crate::notify::ENV_VARS {
        command.env_remove(var);
    }
    if no_password {
        command.env("RSYNC_PASSWORD", "");
    }
    command
}

/// Starts `rsync args...` in `cwd`; `with_list`: stdin is a pipe for the file list, else
/// /dev/null. `no_password`: set RSYNC_PASSWORD empty, so a module that wants a password fails
/// with "auth failed" instead of rsync asking on the terminal.
pub fn spawn(
    args: &[OsString],
    with_list: bool,
    cwd: &Path,
    no_password: bool,
) -> io::Result<Started> {
    let child = command(no_password)
        .args(args)
        .current_dir(cwd)
        // A group of its own: a restarted syncer can stop an orphaned run whole
        // (`rsync_leftovers`), and a terminal's Ctrl-C reaches only the syncer, which drains.
        .process_group(0)
        .stdin(if with_list {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot run rsync: {err} (install it: apt-get install rsync)"),
            )
        })?;
    Ok(Started {
        child,
        spawned: Instant::now(),
    })
}

/// Feeds `list` to a started run (or closes its stdin) and waits for it, killing it when it
/// makes no I/O progress for `stall`.
pub fn finish(
    mut started: Started,
    list: Option<Vec<u8>>,
    stall: Duration,
) -> io::Result<RunResult> {
    let pid = started.child.id();
    let stdin = started.child.stdin.take();
    let writer = match (list, stdin) {
        (Some(list), Some(mut stdin)) => Some(std::thread::spawn(move || {
            // A broken pipe means rsync exited early; its exit status tells why.
            let _ = stdin.write_all(&list);
        })),
        _ => None,
    };
    let hung = Arc::new(AtomicBool::new(false));
    // Dropping `done` wakes the watchdog at once, so a finished run never waits for it.
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = {
        let hung = hung.clone();
        std::thread::spawn(move || {
            let mut last = io_progress(pid);
            let mut since = Instant::now();
            while let Err(RecvTimeoutError::Timeout) =
                finished.recv_timeout(Duration::from_millis(200))
            {
                let now = io_progress(pid);
                if now != last {
                    last = now;
                    since = Instant::now();
                } else if since.elapsed() >= stall {
                    hung.store(true, SeqCst);
                    // The pid is our child and not reaped yet, so it cannot have been reused.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    return;
                }
            }
        })
    };
    let stdout = started.child.stdout.take();
    let stderr = started.child.stderr.take();
    let output = collect(&mut started.child, stdout, stderr);
    drop(done);
    // Both threads only report through `hung` and the exit status; a panic in either leaves
    // nothing to recover.
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let _ = watchdog.join();
    let (status, stdout, stderr) = output?;
    let stdout = String::from_utf8_lossy(&stdout);
    Ok(RunResult {
        code: status.code(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        files_transferred: stat_number(&stdout, "Number of regular files transferred:"),
        bytes_sent: stat_number(&stdout, "Total bytes sent:"),
        files_listed: stat_number(&stdout, "Number of files:"),
        files_deleted: stat_number(&stdout, "Number of deleted files:"),
        hung: hung.load(SeqCst),
        stdout: stdout.into_owned(),
    })
}

/// Reads stdout and stderr to their ends (stderr on a thread, so neither pipe fills up) and
/// reaps the child.
fn collect(
    child: &mut Child,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
) -> io::Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>)> {
    let err_reader = stderr.map(|mut e| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            // Whatever stderr held until an error is all there is to report.
            let _ = e.read_to_end(&mut buf);
            buf
        })
    });
    let mut out = Vec::new();
    if let Some(mut o) = stdout {
        o.read_to_end(&mut out)?;
    }
    let err = err_reader
        .map(|t| t.join().unwrap_or_default())
        .unwrap_or_default();
    let status = child.wait()?;
    Ok((status, out, err))
}

/// Starts and finishes one run (no warm client).
pub fn run(
    args: &[OsString],
    list: Option<Vec<u8>>,
    cwd: &Path,
    stall: Duration,
    no_password: bool,
) -> io::Result<RunResult> {
    let started = spawn(args, list.is_some(), cwd, no_password)?;
    finish(started, list, stall)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i32, stderr: &str) -> RunResult {
        RunResult {
            code: Some(code),
            stderr: stderr.into(),
            ..RunResult::default()
        }
    }

    #[test]
    fn rsync_children_never_get_the_notification_socket() {
        let cmd = command(true);
        let envs: Vec<_> = cmd.get_envs().collect();
        for var in crate::notify::ENV_VARS {
            assert!(
                envs.contains(&(std::ffi::OsStr::new(var), None)),
                "{var} not removed"
            );
        }
        assert!(envs.contains(&(
            std::ffi::OsStr::new("RSYNC_PASSWORD"),
            Some(std::ffi::OsStr::new(""))
        )));
    }

    #[test]
    fn a_daemon_that_cannot_write_is_retried_with_backoff_not_at_once() {
        // rsync 3.5's words for a full and a read-only daemon-side filesystem.
        for line in [
            r#"rsync: [receiver] mkstemp "d/.s8.Bhyjph" (in backup) failed: No space left on device (28)"#,
            r#"rsync: [receiver] mkstemp "d/.s9.FfsR3v" (in backup) failed: Read-only file system (30)"#,
            r#"rsync: [receiver] recv_generator: mkdir "e" (in backup) failed: Disk quota exceeded (122)"#,
        ] {
            let stderr = format!(
                "{line}\nrsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1394) [sender=3.5.0]"
            );
            let failure = classify(&result(23, &stderr), "t");
            assert!(
                matches!(&failure, Err(Failure::Transient(m)) if m.contains("refused writes") && m.contains(line)),
                "{failure:?}"
            );
        }
        // A source file that vanished, or a sender's own read error, is retried at once.
        let vanished = "rsync: [sender] send_files failed to open \"/s/f\": No such file or directory (2)\nrsync error: ... (code 23)";
        assert!(matches!(
            classify(&result(23, vanished), "t"),
            Err(Failure::Again(_))
        ));
    }

    #[test]
    fn exit_codes_become_actions() {
        assert_eq!(classify(&result(0, ""), "t"), Ok(()));
        let auth = classify(
            &result(5, "@ERROR: auth failed on module backup\nrsync error: ..."),
            "t",
        );
        assert!(
            matches!(&auth, Err(Failure::Fatal(m)) if m.contains("auth failed on module backup")),
            "{auth:?}"
        );
        let busy = classify(
            &result(
                5,
                "@ERROR: max connections (200) reached -- try again later",
            ),
            "t",
        );
        assert!(matches!(busy, Err(Failure::Transient(_))));
        let cut = classify(
            &result(
                5,
                "rsync: did not see server greeting\nrsync error: error starting client-server protocol (code 5)",
            ),
            "t",
        );
        assert!(
            matches!(&cut, Err(Failure::Transient(m)) if m.contains("did not see server greeting")),
            "{cut:?}"
        );
        assert!(
            matches!(classify(&result(10, "Connection refused"), "t"), Err(Failure::Transient(m)) if m.contains("socket I/O"))
        );
        assert!(matches!(
            classify(&result(24, ""), "t"),
            Err(Failure::Again(_))
        ));
        assert!(matches!(
            classify(&result(23, ""), "t"),
            Err(Failure::Again(_))
        ));
        assert!(
            matches!(classify(&result(25, "Deletions stopped due to --max-delete limit (3 skipped)"), "t"), Err(Failure::Refused(m)) if m.contains("--max-delete"))
        );
        // What a daemon's receiver does: the same line, exit 0.
        assert!(matches!(
            classify(
                &result(0, "Deletions stopped due to --max-delete limit (1 skipped)"),
                "t"
            ),
            Err(Failure::Refused(_))
        ));
        assert!(
            matches!(classify(&result(1, "ERROR: password file must not be other-accessible"), "t"), Err(Failure::Fatal(m)) if m.contains("other-accessible"))
        );
        let swapped = "ABORTING due to invalid path from sender: new\\#012line/f1/a b\nrsync error: protocol incompatibility (code 2)";
        assert!(matches!(
            classify(&result(2, swapped), "t"),
            Err(Failure::Again(_))
        ));
        let parent_now_a_file =
            "rsync: [sender] link_stat \"/s/caf/ lead\" failed: Not a directory (20)";
        assert!(matches!(
            classify(&result(2, parent_now_a_file), "t"),
            Err(Failure::Again(_))
        ));
        let basis_gone =
            "rsync: got a block match with no basis file for \"current/d3\" (in backup) [receiver]";
        assert!(matches!(
            classify(&result(2, basis_gone), "t"),
            Err(Failure::Again(_))
        ));
        // rsync 3.5's sender after a source file went away mid-run (seen in soak 4).
        for sender_gave_up in [
            "file has vanished: \"/s/x.tmp/current/.hidden\"\nrsync error: protocol incompatibility (code 2) at main.c(937) [sender=3.5.0]",
            "rsync: [sender] send_files failed to open \"/s/f5/caf/d1/f1\": Not a directory (20)\nrsync error: protocol incompatibility (code 2) at main.c(937) [sender=3.5.0]",
            "rsync: [sender] read errors mapping \"/s/f2\": No data available (61)\nrsync error: protocol incompatibility (code 2) at main.c(937) [sender=3.5.0]",
        ] {
            assert!(
                matches!(
                    classify(&result(2, sender_gave_up), "t"),
                    Err(Failure::Again(_))
                ),
                "{sender_gave_up}"
            );
        }
        assert!(matches!(
            classify(&result(2, "protocol version mismatch"), "t"),
            Err(Failure::Fatal(_))
        ));
        let fatal = classify(
            &result(
                2,
                "protocol version mismatch -- is your shell clean?\nrsync error: protocol incompatibility (code 2) at compat.c(600) [sender=3.5.0]",
            ),
            "t",
        );
        assert!(
            matches!(&fatal, Err(Failure::Fatal(m)) if m.contains("compat.c(600)")),
            "the message names where rsync stopped: {fatal:?}"
        );
        let hung = RunResult {
            code: None,
            hung: true,
            ..RunResult::default()
        };
        assert!(
            matches!(classify(&hung, "t"), Err(Failure::Transient(m)) if m.contains("no progress"))
        );
    }

    #[test]
    fn stats_numbers_parse_with_separators() {
        let out = "Number of files: 3\nNumber of regular files transferred: 1,234\nTotal bytes sent: 56,789\n";
        assert_eq!(
            stat_number(out, "Number of regular files transferred:"),
            1234
        );
        assert_eq!(stat_number(out, "Total bytes sent:"), 56789);
        assert_eq!(stat_number(out, "Missing:"), 0);
    }
}
