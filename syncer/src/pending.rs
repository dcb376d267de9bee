//! The dirty set of one target: `Change`s in, `Batch`es out. Pure: no syscalls, no clock (time is
//! an argument), so the ordering rules are unit-tested here.
//!
//! State-based replication: an entry only says "make the replica's path equal to the source's
//! path as it is when applied". Renames are kept in arrival order and applied first in a batch
//! (an ordering barrier); every dirty key is re-keyed through each rename as it arrives, so all
//! keys of a batch name paths in the namespace after its renames.
//!
//! Work reported back by an applier (retries, subtrees to rescan, paths a rescan found) names
//! paths as they were when its batch was taken; renames that arrived meanwhile are kept in a
//! log while anything is in flight, and that work is re-keyed through them. Without this a
//! rescan aimed at `d1` after `d1` became `d2` would check the wrong name and lose `d2`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// How a path became dirty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Created, closed after writing, deleted, attributes changed: apply as soon as possible.
    Changed,
    /// Written but not closed (IN_MODIFY alone, e.g. a growing log): wait for a quiet period or
    /// a maximum age, so a file is not copied on every write.
    Modified,
    /// Compare the whole subtree with the replica (overflow, a directory that had to be
    /// rebuilt); files with a source ctime at or after `changed_since_ns` count as changed.
    Rescan { changed_since_ns: Option<i128> },
}

/// A subtree to compare, as handed to the applier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescanJob {
    pub subtree: PathBuf,
    pub changed_since_ns: Option<i128>,
}

/// A rename paired by the event source (inotify cookie, fanotify FAN_RENAME).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub from: PathBuf,
    pub to: PathBuf,
    pub is_dir: bool,
}

/// Work handed to a target's applier: renames first (in order), then paths in sorted order, so
/// a parent directory comes before its children, then subtrees to compare.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub renames: Vec<Rename>,
    pub paths: Vec<PathBuf>,
    pub rescans: Vec<RescanJob>,
    /// Position in the rename log when the batch was taken.
    pub rename_seq: u64,
}

/// Batching and deferral knobs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A Modified-only path is applied once it has been quiet this long.
    pub quiet_ns: u64,
    /// ... or once it has been dirty this long, whatever the writes.
    pub max_age_ns: u64,
    /// Fixed minimum age of the oldest ready path before a batch is taken (0: adaptive only).
    pub batch_delay_ns: u64,
    /// Most paths in one batch, so the first files of a storm reach the replica early.
    pub max_batch: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            quiet_ns: 200_000_000,
            max_age_ns: 1_000_000_000,
            batch_delay_ns: 0,
            max_batch: 16_384,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    first_ns: u64,
    last_ns: u64,
    modified_only: bool,
    not_before_ns: u64,
    /// Some: the subtree is to be compared (with this ctime guard).
    rescan: Option<Option<i128>>,
}

/// The dirty paths, queued renames and in-flight paths of one target.
#[derive(Debug, Default)]
pub struct Pending {
    dirty: BTreeMap<PathBuf, Entry>,
    renames: Vec<Rename>,
    /// In-flight paths; the value is the rescan guard for in-flight subtree compares.
    in_flight: BTreeMap<PathBuf, Option<Option<i128>>>,
    /// Renames seen while something was in flight, numbered; cleared once nothing is.
    rename_log: Vec<(u64, Rename)>,
    rename_seq: u64,
    timing: Timing,
}

/// The more conservative of two ctime guards (the earlier time re-copies more).
fn merge_guard(a: Option<Option<i128>>, b: Option<Option<i128>>) -> Option<Option<i128>> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) => Some(match (x, y) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }),
    }
}

/// Keys of `map` equal to `prefix` or below it: one contiguous range, because `Path` orders
/// component by component.
fn keys_under<V>(map: &BTreeMap<PathBuf, V>, prefix: &Path) -> Vec<PathBuf> {
    map.range::<Path, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(|(key, _)| key.starts_with(prefix))
        .map(|(key, _)| key.clone())
        .collect()
}

fn rekey(path: &Path, from: &Path, to: &Path) -> PathBuf {
    match path.strip_prefix(from) {
        Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
        Ok(rest) => to.join(rest),
        Err(_) => path.to_path_buf(),
    }
}

impl Pending {
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            ..Self::default()
        }
    }

    /// Marks `path` dirty at `now_ns`.
    pub fn mark(&mut self, path: PathBuf, mark: Mark, now_ns: u64) {
        let modified_only = mark == Mark::Modified;
        let rescan = match mark {
            Mark::Rescan { changed_since_ns } => Some(changed_since_ns),
            _ => None,
        };
        self.dirty
            .entry(path)
            .and_modify(|entry| {
                entry.last_ns = now_ns;
                entry.modified_only &= modified_only;
                entry.rescan = merge_guard(entry.rescan, rescan);
            })
            .or_insert(Entry {
                first_ns: now_ns,
                last_ns: now_ns,
                modified_only,
                not_before_ns: 0,
                rescan,
            });
    }

    fn mark_entry(&mut self, path: PathBuf, entry: &Entry, now_ns: u64) {
        let mark = match entry.rescan {
            Some(changed_since_ns) => Mark::Rescan { changed_since_ns },
            None if entry.modified_only => Mark::Modified,
            None => Mark::Changed,
        };
        self.mark(path, mark, now_ns);
    }

    /// Marks paths named as they were at rename-log position `since_seq` (work reported for
    /// a batch), re-keyed through every rename logged after it; returns the names used.
    pub fn mark_since(
        &mut self,
        paths: Vec<PathBuf>,
        mark: Mark,
        since_seq: u64,
        now_ns: u64,
    ) -> Vec<PathBuf> {
        let mut marked = Vec::with_capacity(paths.len());
        for mut path in paths {
            for (_, rename) in self.rename_log.iter().filter(|(seq, _)| *seq > since_seq) {
                path = rekey(&path, &rename.from, &rename.to);
            }
            self.mark(path.clone(), mark, now_ns);
            marked.push(path);
        }
        marked
    }

    /// Holds a dirty path back until `until_ns` (a retry after a failure).
    pub fn defer(&mut self, path: &Path, until_ns: u64) {
        if let Some(entry) = self.dirty.get_mut(path) {
            entry.not_before_ns = entry.not_before_ns.max(until_ns);
        }
    }

    /// Records a paired rename: re-keys dirty paths below `from` to `to`, re-marks in-flight
    /// paths below `from` under their new name (an applier may be about to apply `old/f` as a
    /// delete), queues the rename as a barrier and marks `to` so its final state is checked.
    pub fn rename(&mut self, rename: Rename, now_ns: u64) {
        for old in keys_under(&self.dirty, &rename.from) {
            if let Some(entry) = self.dirty.remove(&old) {
                let new = rekey(&old, &rename.from, &rename.to);
                self.mark_entry(new, &entry, now_ns);
            }
        }
        let flying: Vec<(PathBuf, Option<Option<i128>>)> = self
            .in_flight
            .range::<Path, _>((Bound::Included(rename.from.as_path()), Bound::Unbounded))
            .take_while(|(path, _)| path.starts_with(&rename.from))
            .map(|(path, rescan)| (rekey(path, &rename.from, &rename.to), *rescan))
            .collect();
        for (path, rescan) in flying {
            let mark = match rescan {
                Some(changed_since_ns) => Mark::Rescan { changed_since_ns },
                None => Mark::Changed,
            };
            self.mark(path, mark, now_ns);
        }
        self.mark(rename.to.clone(), Mark::Changed, now_ns);
        if !self.in_flight.is_empty() {
            self.rename_seq += 1;
            self.rename_log.push((self.rename_seq, rename.clone()));
        }
        self.renames.push(rename);
    }

    fn is_ready(&self, entry: &Entry, now_ns: u64) -> bool {
        if entry.not_before_ns > now_ns {
            return false;
        }
        !entry.modified_only
            || now_ns.saturating_sub(entry.last_ns) >= self.timing.quiet_ns
            || now_ns.saturating_sub(entry.first_ns) >= self.timing.max_age_ns
    }

    /// Takes the next batch: every queued rename and up to `max_batch` ready paths, which
    /// become in flight until `finish`. None when nothing is ready yet.
    pub fn take_batch(&mut self, now_ns: u64) -> Option<Batch> {
        if self.timing.batch_delay_ns > 0 {
            let oldest = self
                .dirty
                .values()
                .filter(|entry| self.is_ready(entry, now_ns))
                .map(|entry| entry.first_ns)
                .min();
            let delayed =
                oldest.is_some_and(|t| now_ns - t.min(now_ns) < self.timing.batch_delay_ns);
            if delayed || (oldest.is_none() && self.renames.is_empty()) {
                return None;
            }
        }
        let taken: Vec<(PathBuf, Option<Option<i128>>)> = self
            .dirty
            .iter()
            .filter(|(_, entry)| self.is_ready(entry, now_ns))
            .take(self.timing.max_batch)
            .map(|(path, entry)| (path.clone(), entry.rescan))
            .collect();
        if taken.is_empty() && self.renames.is_empty() {
            return None;
        }
        let mut batch = Batch {
            renames: std::mem::take(&mut self.renames),
            rename_seq: self.rename_seq,
            ..Batch::default()
        };
        for (path, rescan) in taken {
            self.dirty.remove(&path);
            self.in_flight.insert(path.clone(), rescan);
            if let Some(changed_since_ns) = rescan {
                batch.rescans.push(RescanJob {
                    subtree: path.clone(),
                    changed_since_ns,
                });
            }
            // A rescanned path is also applied itself (its own entry may differ).
            batch.paths.push(path);
        }
        Some(batch)
    }

    /// Ends a batch: its paths leave the in-flight set; `retry` paths (named as when the batch
    /// was taken) come back dirty, not before `retry_at_ns`. Paths marked again while in
    /// flight are already dirty again.
    pub fn finish(&mut self, batch: &Batch, retry: Vec<PathBuf>, now_ns: u64, retry_at_ns: u64) {
        for path in &batch.paths {
            self.in_flight.remove(path);
        }
        let mut renamed = Vec::with_capacity(retry.len());
        for mut path in retry {
            for (_, rename) in self
                .rename_log
                .iter()
                .filter(|(seq, _)| *seq > batch.rename_seq)
            {
                path = rekey(&path, &rename.from, &rename.to);
            }
            renamed.push(path);
        }
        for path in renamed {
            self.mark(path.clone(), Mark::Changed, now_ns);
            self.defer(&path, retry_at_ns);
        }
        if self.in_flight.is_empty() {
            self.rename_log.clear();
        }
    }

    /// When the earliest deferred path becomes ready (None: nothing is waiting).
    pub fn next_due_ns(&self, now_ns: u64) -> Option<u64> {
        self.dirty
            .values()
            .map(|entry| {
                let mut due = entry.not_before_ns;
                if entry.modified_only {
                    let quiet = entry.last_ns + self.timing.quiet_ns;
                    let aged = entry.first_ns + self.timing.max_age_ns;
                    due = due.max(quiet.min(aged));
                }
                due.max(entry.first_ns + self.timing.batch_delay_ns)
            })
            .min()
            .map(|due| due.max(now_ns))
    }

    /// Paths and renames waiting (not in flight).
    pub fn backlog(&self) -> usize {
        self.dirty.len() + self.renames.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Nothing dirty, queued or in flight: the replica has caught up with every event seen.
    pub fn is_idle(&self) -> bool {
        self.dirty.is_empty() && self.renames.is_empty() && self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn idle_set_hands_out_a_change_at_once() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("a"), Mark::Changed, 0);
        let batch = pending.take_batch(0).unwrap();
        assert_eq!(batch.paths, vec![p("a")]);
        assert!(!pending.is_idle());
        pending.finish(&batch, vec![], 1, 0);
        assert!(pending.is_idle());
    }

    #[test]
    fn modified_only_waits_for_quiet_or_max_age() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("log"), Mark::Modified, 0);
        assert!(pending.take_batch(100 * MS).is_none());
        assert_eq!(pending.next_due_ns(100 * MS), Some(200 * MS));
        // Writes every 100 ms keep it quiet-less; the max age of 1 s still releases it.
        for t in 1..10 {
            pending.mark(p("log"), Mark::Modified, t * 100 * MS);
            assert!(pending.take_batch(t * 100 * MS + 50 * MS).is_none());
        }
        assert!(pending.take_batch(1000 * MS).is_some());
    }

    #[test]
    fn close_after_modify_releases_at_once() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("f"), Mark::Modified, 0);
        pending.mark(p("f"), Mark::Changed, 1);
        assert!(pending.take_batch(2).is_some());
    }

    #[test]
    fn marked_again_in_flight_is_applied_again() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("f"), Mark::Changed, 0);
        let first = pending.take_batch(0).unwrap();
        pending.mark(p("f"), Mark::Changed, 1);
        pending.finish(&first, vec![], 2, 0);
        assert_eq!(pending.take_batch(3).unwrap().paths, vec![p("f")]);
    }

    #[test]
    fn rename_rekeys_dirty_paths_below_and_is_a_barrier() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("old/f"), Mark::Changed, 0);
        pending.mark(p("old/sub/g"), Mark::Changed, 0);
        pending.mark(p("old sibling"), Mark::Changed, 0);
        let rename = Rename {
            from: p("old"),
            to: p("new"),
            is_dir: true,
        };
        pending.rename(rename.clone(), 1);
        let batch = pending.take_batch(2).unwrap();
        assert_eq!(batch.renames, vec![rename]);
        assert_eq!(
            batch.paths,
            vec![p("new"), p("new/f"), p("new/sub/g"), p("old sibling")]
        );
    }

    #[test]
    fn rename_remarks_in_flight_paths_under_the_new_name() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("old/f"), Mark::Changed, 0);
        let flying = pending.take_batch(0).unwrap();
        pending.rename(
            Rename {
                from: p("old"),
                to: p("new"),
                is_dir: true,
            },
            1,
        );
        pending.finish(&flying, vec![], 2, 0);
        let next = pending.take_batch(3).unwrap();
        assert_eq!(next.paths, vec![p("new"), p("new/f")]);
    }

    #[test]
    fn parents_sort_before_children() {
        let mut pending = Pending::new(Timing::default());
        for path in ["a/b/c", "a", "a/b", "a b", "a/b/c/d"] {
            pending.mark(p(path), Mark::Changed, 0);
        }
        let batch = pending.take_batch(0).unwrap();
        assert_eq!(
            batch.paths,
            vec![p("a"), p("a/b"), p("a/b/c"), p("a/b/c/d"), p("a b")]
        );
    }

    #[test]
    fn retries_wait_for_their_time() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("f"), Mark::Changed, 0);
        let batch = pending.take_batch(0).unwrap();
        pending.finish(&batch, vec![p("f")], 1, 500 * MS);
        assert!(pending.take_batch(100 * MS).is_none());
        assert_eq!(pending.next_due_ns(100 * MS), Some(500 * MS));
        assert!(pending.take_batch(500 * MS).is_some());
    }

    #[test]
    fn batches_are_bounded_and_fixed_delay_holds_them() {
        let timing = Timing {
            max_batch: 2,
            batch_delay_ns: 50 * MS,
            ..Timing::default()
        };
        let mut pending = Pending::new(timing);
        for name in ["a", "b", "c"] {
            pending.mark(p(name), Mark::Changed, 0);
        }
        assert!(pending.take_batch(10 * MS).is_none());
        assert_eq!(pending.take_batch(50 * MS).unwrap().paths.len(), 2);
        assert_eq!(pending.backlog(), 1);
    }

    #[test]
    fn rescans_follow_renames_while_queued_and_in_flight() {
        let mut pending = Pending::new(Timing::default());
        let guard = Mark::Rescan {
            changed_since_ns: Some(5),
        };
        pending.mark(p("d1"), guard, 0);
        pending.rename(
            Rename {
                from: p("d1"),
                to: p("d2"),
                is_dir: true,
            },
            1,
        );
        let batch = pending.take_batch(2).unwrap();
        assert_eq!(
            batch.rescans,
            vec![RescanJob {
                subtree: p("d2"),
                changed_since_ns: Some(5)
            }]
        );
        // While d2 is being compared it becomes d3: the compare is redone under d3.
        pending.rename(
            Rename {
                from: p("d2"),
                to: p("d3"),
                is_dir: true,
            },
            3,
        );
        pending.finish(&batch, vec![], 4, 0);
        let next = pending.take_batch(5).unwrap();
        assert_eq!(
            next.rescans,
            vec![RescanJob {
                subtree: p("d3"),
                changed_since_ns: Some(5)
            }]
        );
    }

    #[test]
    fn work_reported_for_a_batch_is_rekeyed_through_later_renames() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("d1/x"), Mark::Changed, 0);
        let batch = pending.take_batch(0).unwrap();
        pending.rename(
            Rename {
                from: p("d1"),
                to: p("d2"),
                is_dir: true,
            },
            1,
        );
        pending.rename(
            Rename {
                from: p("d2"),
                to: p("d3"),
                is_dir: true,
            },
            1,
        );
        // The applier found d1/y and d1/sub to rescan, named as when it took the batch.
        pending.mark_since(vec![p("d1/y")], Mark::Changed, batch.rename_seq, 2);
        pending.mark_since(
            vec![p("d1/sub")],
            Mark::Rescan {
                changed_since_ns: None,
            },
            batch.rename_seq,
            2,
        );
        pending.finish(&batch, vec![p("d1/z")], 2, 0);
        let next = pending.take_batch(3).unwrap();
        assert!(next.paths.contains(&p("d3/y")), "{next:?}");
        assert!(next.paths.contains(&p("d3/z")), "{next:?}");
        assert!(next.paths.contains(&p("d3/x")), "{next:?}");
        assert_eq!(next.rescans[0].subtree, p("d3/sub"));
        assert!(
            !next
                .paths
                .iter()
                .any(|path| path.starts_with("d1") || path.starts_with("d2"))
        );
    }

    #[test]
    fn guards_merge_to_the_earlier_time() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(
            p(""),
            Mark::Rescan {
                changed_since_ns: Some(10),
            },
            0,
        );
        pending.mark(
            p(""),
            Mark::Rescan {
                changed_since_ns: Some(3),
            },
            0,
        );
        pending.mark(p(""), Mark::Changed, 0);
        let batch = pending.take_batch(0).unwrap();
        assert_eq!(batch.rescans[0].changed_since_ns, Some(3));
    }
}
