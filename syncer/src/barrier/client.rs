//! `syncer wait SOURCE`: the barrier's client. Creates a cookie at SOURCE's root, waits for
//! the running syncer's acknowledgement in the state directory, then removes both (also on
//! SIGINT/SIGTERM). Exit 0: every target has every change made before the call; 1: timed
//! out (the message names the targets still behind, or says no syncer saw the cookie); 2: the
//! cookie could not be made (a SOURCE this user cannot write).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::{Ack, COOKIE_PREFIX, ack_path};
use crate::cli::WaitArgs;
use crate::error::{EXIT_FAILURE, EXIT_OK, Error};

/// How often the acknowledgement file is read.
const POLL: Duration = Duration::from_millis(5);
/// Exit code after SIGINT/SIGTERM (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: i32 = 130;

/// The cookie and its acknowledgement, removed however the wait ends.
struct Cookie {
    path: PathBuf,
    ack: PathBuf,
}

impl Drop for Cookie {
    fn drop(&mut self) {
        // Either may be gone already (the ack is written only once the syncer saw the
        // cookie); a cookie left behind is never replicated and costs nothing.
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.ack);
    }
}

pub fn run(args: WaitArgs) -> Result<i32, Error> {
    let source = args
        .source
        .canonicalize()
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            Error::Usage(format!(
                "SOURCE {} is not a directory; give the directory the syncer replicates",
                args.source.display()
            ))
        })?;
    let state_dir = args.state_dir.unwrap_or_else(crate::state::default_dir);
    // Signals arrive on a descriptor polled between reads, so a Ctrl-C still cleans up.
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(signal);
    }
    let signal_fd = signals
        .thread_block()
        .ok()
        .and_then(|()| SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK).ok());
    let started = Instant::now();
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let name = OsString::from(format!("{COOKIE_PREFIX}{}-{stamp}", std::process::id()));
    let cookie = Cookie {
        path: source.join(&name),
        ack: ack_path(&state_dir, &name),
    };
    if let Err(err) = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&cookie.path)
    {
        std::mem::forget(cookie);
        return Err(Error::Usage(format!(
            "cannot create the barrier's cookie in SOURCE {}: {err}. The barrier needs a file made in SOURCE: run syncer wait as a user that can write there (a SOURCE nobody writes has nothing to wait for)",
            source.display()
        )));
    }
    let deadline = started + Duration::from_secs_f64(args.timeout);
    let mut last: Option<Ack> = None;
    loop {
        if let Some(ack) = read_ack(&cookie.ack) {
            if ack.passed {
                println!("{}", passed_line(&source, &ack, started.elapsed()));
                return Ok(EXIT_OK);
            }
            last = Some(ack);
        }
        if signal_fd
            .as_ref()
            .is_some_and(|fd| matches!(fd.read_signal(), Ok(Some(_))))
        {
            eprintln!("syncer wait: interrupted; the cookie is removed");
            return Ok(EXIT_INTERRUPTED);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "syncer wait: {}",
                timeout_line(&source, &state_dir, last.as_ref(), args.timeout)
            );
            return Ok(EXIT_FAILURE);
        }
        std::thread::sleep(POLL);
    }
}

fn read_ack(path: &Path) -> Option<Ack> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn names(ack: &Ack, passed: bool) -> String {
    let names: Vec<&str> = ack
        .targets
        .iter()
        .filter(|t| t.passed == passed)
        .map(|t| t.name.as_str())
        .collect();
    names.join(", ")
}

fn passed_line(source: &Path, ack: &Ack, took: Duration) -> String {
    let n = ack.targets.len();
    format!(
        "passed: every change made in {} before the wait has reached {n} target{} ({}) in {:.3} s",
        source.display(),
        if n == 1 { "" } else { "s" },
        names(ack, true),
        took.as_secs_f64()
    )
}

fn timeout_line(source: &Path, state_dir: &Path, ack: Option<&Ack>, timeout: f64) -> String {
    match ack {
        None => format!(
            "timed out after {timeout} s: no syncer saw the cookie. Is one running on {} with the state directory {} (--state-dir)? Is it still in its initial sync?",
            source.display(),
            state_dir.display()
        ),
        Some(ack) => {
            let ahead = names(ack, true);
            format!(
                "timed out after {timeout} s: not caught up yet: {}{}",
                names(ack, false),
                if ahead.is_empty() {
                    String::new()
                } else {
                    format!(" (caught up: {ahead})")
                }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::TargetAck;
    use super::*;

    #[test]
    fn messages_name_the_targets() {
        let ack = Ack {
            passed: false,
            targets: vec![
                TargetAck {
                    name: "/a".into(),
                    passed: true,
                },
                TargetAck {
                    name: "rsync://h/m".into(),
                    passed: false,
                },
            ],
        };
        let line = timeout_line(Path::new("/s"), Path::new("/st"), Some(&ack), 2.0);
        assert_eq!(
            line,
            "timed out after 2 s: not caught up yet: rsync://h/m (caught up: /a)"
        );
        let none = timeout_line(Path::new("/s"), Path::new("/st"), None, 2.0);
        assert!(
            none.contains("no syncer saw the cookie") && none.contains("/st"),
            "{none}"
        );
        let all = Ack {
            passed: true,
            targets: vec![TargetAck {
                name: "/a".into(),
                passed: true,
            }],
        };
        assert!(
            passed_line(Path::new("/s"), &all, Duration::from_millis(12))
                .ends_with("reached 1 target (/a) in 0.012 s")
        );
    }

    mod prop {
        use proptest::prelude::*;

        use super::super::super::TargetAck;
        use super::super::*;

        /// Reads `body` as the ack file and writes both messages `syncer wait` may print.
        fn take(body: &[u8]) -> Option<Ack> {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), body).unwrap();
            let ack = read_ack(file.path());
            if let Some(ack) = &ack {
                passed_line(Path::new("/src"), ack, Duration::from_millis(5));
                timeout_line(Path::new("/src"), Path::new("/state"), Some(ack), 1.0);
            }
            ack
        }

        fn ack() -> impl Strategy<Value = Ack> {
            let target = (any::<String>(), any::<bool>())
                .prop_map(|(name, passed)| TargetAck { name, passed });
            (any::<bool>(), proptest::collection::vec(target, 0..4))
                .prop_map(|(passed, targets)| Ack { passed, targets })
        }

        proptest! {
            // Two files a case: fewer cases keep it well under a second.
            #![proptest_config(crate::prop::config(128))]

            #[test]
            fn prop_ack_file_any_bytes_never_panic(
                body in proptest::collection::vec(any::<u8>(), 0..256),
            ) {
                take(&body);
            }

            /// What the syncer writes, `syncer wait` reads; cut short, it is no ack yet.
            #[test]
            fn prop_ack_file_round_trips_and_a_torn_one_is_none(
                ack in ack(),
                cut in any::<proptest::sample::Index>(),
            ) {
                let body = serde_json::to_vec(&ack).unwrap();
                prop_assert_eq!(take(&body), Some(ack));
                let at = cut.index(body.len());
                prop_assert_eq!(take(&body[..at]), None);
            }
        }
    }
}
