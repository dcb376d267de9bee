//! Faults injected into a chaos case: the `[[fault]]` tables of a chaos scenario file in, fault
//! entries placed at seeded moments among the live operations of an op log out. A fault is an
//! op-log line like any operation (`fault kill9 0`), so a failing case replays and shrinks with
//! its faults where they were; the case (inject.rs) carries them out against the syncer and
//! the daemon, since they act on processes, not on the tree.

use std::fmt;

use serde::Deserialize;

use super::op::{Op, OpLog};
use crate::storm::ops::Rng;

/// One fault, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the syncer, then start it again with the same arguments after `down_ms`
    /// (the storm goes on meanwhile).
    Kill9 { down_ms: u32 },
    /// SIGSTOP the syncer for `stop_ms`, creating `flood` empty files in a folder of their own
    /// meanwhile (enough to overflow a default kernel queue of 16,384 events), then SIGCONT.
    Sigstop { stop_ms: u32, flood: u32 },
    /// Kill the rsync daemon (SIGKILL), start it again on the same port after `down_ms`.
    /// Only for daemon targets: a case into a local directory skips it.
    DaemonRestart { down_ms: u32 },
    /// Fill the replica's filesystem (a small tmpfs of the case's own, written by the syncer
    /// or by the daemon) to the last byte with a ballast file beside the replica, and free it
    /// after `full_ms`.
    DiskFull { full_ms: u32 },
    /// Remount the replica's filesystem read-only (retried while files are open for
    /// writing), and read-write again after `ro_ms`.
    ReadOnly { ro_ms: u32 },
    /// Take every permission from `entries` source entries (files and directories, drawn
    /// with the seed `pick` from the tree as it is then: mode 000) and give them back after
    /// `deny_ms`. The case runs its syncer unprivileged (root reads whatever the mode), and
    /// the storm, as root, goes on changing them meanwhile.
    SourcePerm {
        deny_ms: u32,
        entries: u32,
        pick: u32,
    },
    /// For `rewrite_ms`, rewrite `files` files of `size_kib` KiB in place, one version after
    /// another (same size; every 4 KiB block names its version), while the syncer copies
    /// them; at each quiet moment (0.1 s after a round) the replica's copies are read: each
    /// must be one version whole, never a mix of two.
    RewriteDuringCopy {
        rewrite_ms: u32,
        files: u32,
        size_kib: u32,
    },
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill9 { .. } => "kill9",
            Fault::Sigstop { .. } => "sigstop",
            Fault::DaemonRestart { .. } => "daemon-restart",
            Fault::DiskFull { .. } => "disk-full",
            Fault::ReadOnly { .. } => "read-only",
            Fault::SourcePerm { .. } => "source-perm",
            Fault::RewriteDuringCopy { .. } => "rewrite-during-copy",
        }
    }

    /// The fault acts on the replica's filesystem, so the case puts the replica on one of its
    /// own.
    pub fn needs_replica_fs(&self) -> bool {
        matches!(self, Fault::DiskFull { .. } | Fault::ReadOnly { .. })
    }

    /// The fault only means something to a syncer that file modes bind: the case runs it as
    /// an unprivileged user.
    pub fn needs_unprivileged_syncer(&self) -> bool {
        matches!(self, Fault::SourcePerm { .. })
    }

    /// This placement's own draw, for the kinds that choose what they act on.
    fn with_pick(self, rng: &mut Rng) -> Fault {
        match self {
            Fault::SourcePerm {
                deny_ms, entries, ..
            } => Fault::SourcePerm {
                deny_ms,
                entries,
                pick: rng.below(1 << 31) as u32,
            },
            other => other,
        }
    }

    /// The `[[fault]]` keys of this kind, in the op-log form's order.
    fn keys(&self) -> &'static [&'static str] {
        match self {
            Fault::Kill9 { .. } | Fault::DaemonRestart { .. } => &["down_ms"],
            Fault::Sigstop { .. } => &["stop_ms", "flood"],
            Fault::DiskFull { .. } => &["full_ms"],
            Fault::ReadOnly { .. } => &["ro_ms"],
            Fault::SourcePerm { .. } => &["deny_ms", "entries"],
            Fault::RewriteDuringCopy { .. } => &["rewrite_ms", "files", "size_kib"],
        }
    }

    /// The numbers of the op-log form, in order.
    fn params(&self) -> Vec<u32> {
        match *self {
            Fault::Kill9 { down_ms } | Fault::DaemonRestart { down_ms } => vec![down_ms],
            Fault::DiskFull { full_ms } => vec![full_ms],
            Fault::ReadOnly { ro_ms } => vec![ro_ms],
            Fault::Sigstop { stop_ms, flood } => vec![stop_ms, flood],
            Fault::SourcePerm {
                deny_ms,
                entries,
                pick,
            } => vec![deny_ms, entries, pick],
            Fault::RewriteDuringCopy {
                rewrite_ms,
                files,
                size_kib,
            } => vec![rewrite_ms, files, size_kib],
        }
    }

    /// From the op-log form's kind and numbers; `None` for an unknown kind or a wrong count.
    pub fn from_parts(kind: &str, params: &[u32]) -> Option<Fault> {
        match (kind, params) {
            ("kill9", &[down_ms]) => Some(Fault::Kill9 { down_ms }),
            ("sigstop", &[stop_ms, flood]) => Some(Fault::Sigstop { stop_ms, flood }),
            ("daemon-restart", &[down_ms]) => Some(Fault::DaemonRestart { down_ms }),
            ("disk-full", &[full_ms]) => Some(Fault::DiskFull { full_ms }),
            ("read-only", &[ro_ms]) => Some(Fault::ReadOnly { ro_ms }),
            ("source-perm", &[deny_ms, entries, pick]) => Some(Fault::SourcePerm {
                deny_ms,
                entries,
                pick,
            }),
            ("rewrite-during-copy", &[rewrite_ms, files, size_kib]) => {
                Some(Fault::RewriteDuringCopy {
                    rewrite_ms,
                    files,
                    size_kib,
                })
            }
            _ => None,
        }
    }
}

/// The op-log form after the `fault` verb: `kill9 0`, `sigstop 1500 20000`.
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind())?;
        for n in self.params() {
            write!(f, " {n}")?;
        }
        Ok(())
    }
}

/// A `[[fault]]` table of a chaos scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFile {
    pub kind: String,
    /// Times per case, at seeded moments of the live storm.
    #[serde(default = "one")]
    pub count: u32,
    pub down_ms: Option<u32>,
    pub stop_ms: Option<u32>,
    pub flood: Option<u32>,
    pub full_ms: Option<u32>,
    pub ro_ms: Option<u32>,
    pub deny_ms: Option<u32>,
    pub entries: Option<u32>,
    pub rewrite_ms: Option<u32>,
    pub files: Option<u32>,
    pub size_kib: Option<u32>,
}

fn one() -> u32 {
    1
}

/// What is wrong with a `[[fault]]` table.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(
        "[[fault]] {index}: unknown kind {kind:?}: give one of kill9, sigstop, daemon-restart, disk-full, read-only, source-perm, rewrite-during-copy"
    )]
    UnknownKind { index: usize, kind: String },
    #[error("[[fault]] {index} ({kind}): {key} does not apply to this kind (it takes {takes})")]
    Foreign {
        index: usize,
        kind: &'static str,
        key: &'static str,
        takes: String,
    },
    #[error("[[fault]] {index}: count 0 injects nothing: give at least 1, or drop the table")]
    NoCount { index: usize },
}

/// The faults to place in every case, each with its count.
pub fn parse(tables: &[FaultFile]) -> Result<Vec<(Fault, u32)>, FaultError> {
    tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let index = i + 1;
            if t.count == 0 {
                return Err(FaultError::NoCount { index });
            }
            let fault = match t.kind.as_str() {
                "kill9" => Fault::Kill9 {
                    down_ms: t.down_ms.unwrap_or(0),
                },
                "daemon-restart" => Fault::DaemonRestart {
                    down_ms: t.down_ms.unwrap_or(0),
                },
                "sigstop" => Fault::Sigstop {
                    stop_ms: t.stop_ms.unwrap_or(1000),
                    flood: t.flood.unwrap_or(20_000),
                },
                "disk-full" => Fault::DiskFull {
                    full_ms: t.full_ms.unwrap_or(1000),
                },
                "read-only" => Fault::ReadOnly {
                    ro_ms: t.ro_ms.unwrap_or(1000),
                },
                // `pick` is drawn for each fault where it is placed.
                "source-perm" => Fault::SourcePerm {
                    deny_ms: t.deny_ms.unwrap_or(1000),
                    entries: t.entries.unwrap_or(3),
                    pick: 0,
                },
                "rewrite-during-copy" => Fault::RewriteDuringCopy {
                    rewrite_ms: t.rewrite_ms.unwrap_or(1000),
                    files: t.files.unwrap_or(4),
                    size_kib: t.size_kib.unwrap_or(4096),
                },
                other => {
                    return Err(FaultError::UnknownKind {
                        index,
                        kind: other.to_string(),
                    });
                }
            };
            // A key of another kind is refused by name rather than ignored.
            let given = [
                ("down_ms", t.down_ms.is_some()),
                ("stop_ms", t.stop_ms.is_some()),
                ("flood", t.flood.is_some()),
                ("full_ms", t.full_ms.is_some()),
                ("ro_ms", t.ro_ms.is_some()),
                ("deny_ms", t.deny_ms.is_some()),
                ("entries", t.entries.is_some()),
                ("rewrite_ms", t.rewrite_ms.is_some()),
                ("files", t.files.is_some()),
                ("size_kib", t.size_kib.is_some()),
            ];
            let takes = fault.keys();
            if let Some(&(key, _)) = given.iter().find(|(k, set)| *set && !takes.contains(k)) {
                return Err(FaultError::Foreign {
                    index,
                    kind: fault.kind(),
                    key,
                    takes: takes.join(" and "),
                });
            }
            Ok((fault, t.count))
        })
        .collect()
}

/// Inserts `faults` at seeded moments of `log`'s live part: before live operations drawn
/// uniformly from the second tenth on (the syncer has settled in by then), never two at one
/// moment. The tree the operations build is unchanged, so the generator's model still holds.
pub fn place(log: &mut OpLog, faults: &[(Fault, u32)], seed: u64) {
    let live: Vec<usize> = (log.setup..log.ops.len())
        .filter(|&i| !matches!(log.ops[i], Op::Sleep { .. }))
        .collect();
    if live.is_empty() || faults.is_empty() {
        return;
    }
    let mut rng = Rng::new(seed ^ 0xFA17_FA17);
    let first = live.len() / 10;
    let mut at: Vec<(usize, Fault)> = Vec::new();
    for &(fault, count) in faults {
        for _ in 0..count {
            // Bounded retries for a free moment; a crowded log takes what it can.
            for _ in 0..16 {
                let k = first + rng.below((live.len() - first) as u64) as usize;
                if !at.iter().any(|&(i, _)| i == live[k]) {
                    at.push((live[k], fault.with_pick(&mut rng)));
                    break;
                }
            }
        }
    }
    // From the back, so earlier indices stay valid.
    at.sort_by_key(|&(i, _)| std::cmp::Reverse(i));
    for (i, fault) in at {
        log.ops.insert(i, Op::Fault(fault));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(kind: &str) -> FaultFile {
        FaultFile {
            kind: kind.into(),
            count: 1,
            down_ms: None,
            stop_ms: None,
            flood: None,
            full_ms: None,
            ro_ms: None,
            deny_ms: None,
            entries: None,
            rewrite_ms: None,
            files: None,
            size_kib: None,
        }
    }

    #[test]
    fn tables_parse_with_defaults_and_refuse_what_does_not_fit() {
        let faults = parse(&[
            FaultFile {
                count: 5,
                ..table("kill9")
            },
            table("sigstop"),
        ])
        .unwrap();
        assert_eq!(
            faults,
            vec![
                (Fault::Kill9 { down_ms: 0 }, 5),
                (
                    Fault::Sigstop {
                        stop_ms: 1000,
                        flood: 20_000
                    },
                    1
                )
            ]
        );
        let err = parse(&[table("reboot")]).unwrap_err().to_string();
        assert!(err.contains("kill9, sigstop"), "{err}");
        let err = parse(&[FaultFile {
            flood: Some(3),
            ..table("kill9")
        }])
        .unwrap_err()
        .to_string();
        assert!(err.contains("flood does not apply"), "{err}");
        let err = parse(&[FaultFile {
            count: 0,
            ..table("kill9")
        }])
        .unwrap_err()
        .to_string();
        assert!(err.contains("count 0"), "{err}");
    }

    #[test]
    fn faults_land_among_live_operations_seeded_and_round_trip() {
        let ops: Vec<Op> = (0..50)
            .map(|i| Op::Mkdir {
                path: format!("d{i}").into_bytes(),
            })
            .collect();
        let base = OpLog { setup: 10, ops };
        let faults = [
            (Fault::Kill9 { down_ms: 0 }, 5),
            (Fault::DaemonRestart { down_ms: 300 }, 1),
            (
                Fault::SourcePerm {
                    deny_ms: 1500,
                    entries: 3,
                    pick: 0,
                },
                2,
            ),
        ];
        let mut one = base.clone();
        place(&mut one, &faults, 7);
        let mut two = base.clone();
        place(&mut two, &faults, 7);
        assert_eq!(one, two, "seeded");
        let placed: Vec<usize> = one
            .ops
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op, Op::Fault(_)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(placed.len(), 8);
        // Each source-perm fault draws its own pick where it is placed.
        let picks: Vec<u32> = one
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Fault(Fault::SourcePerm { pick, .. }) => Some(*pick),
                _ => None,
            })
            .collect();
        assert!(picks.len() == 2 && picks[0] != picks[1], "{picks:?}");
        assert!(placed.iter().all(|&i| i > one.setup), "{placed:?}");
        let text = one.render("test");
        assert!(text.contains("fault kill9 0\n") && text.contains("fault daemon-restart 300\n"));
        assert!(text.contains("fault source-perm 1500 3 "), "{text}");
        assert_eq!(OpLog::parse(&text).unwrap(), one);
    }
}
