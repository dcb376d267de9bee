//! The dirty set of one target: `Change`s in, `Batch`es out. Pure: no syscalls, no clock (time is
//! an argument), so the ordering rules are unit-tested here.
//!
//! State-based replication: an entry only says "make the replica's path equal to the source's
//! path as it is when applied". Renames are kept in arrival order and applied first in a batch
//! (an ordering barrier); every dirty key is re-keyed through each rename as it arrives, so all
//! keys of a batch name paths in the namespace after its renames.

use std::collections::{BTreeMap, BTreeSet};
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
}

/// A rename paired by the event source (inotify cookie, fanotify FAN_RENAME).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub from: PathBuf,
    pub to: PathBuf,
    pub is_dir: bool,
}

/// Work handed to a target's applier: renames first (in order), then paths in sorted order, so
/// a parent directory comes before its children.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub renames: Vec<Rename>,
    pub paths: Vec<PathBuf>,
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
}

/// The dirty paths, queued renames and in-flight paths of one target.
#[derive(Debug, Default)]
pub struct Pending {
    dirty: BTreeMap<PathBuf, Entry>,
    renames: Vec<Rename>,
    in_flight: BTreeSet<PathBuf>,
    timing: Timing,
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
        self.dirty
            .entry(path)
            .and_modify(|entry| {
                entry.last_ns = now_ns;
                entry.modified_only &= modified_only;
            })
            .or_insert(Entry {
                first_ns: now_ns,
                last_ns: now_ns,
                modified_only,
                not_before_ns: 0,
            });
    }

    /// Records a paired rename: re-keys dirty paths below `from` to `to`, re-marks in-flight
    /// paths below `from` under their new name (an applier may be about to apply `old/f` as a
    /// delete), queues the rename as a barrier and marks `to` so its final state is checked.
    pub fn rename(&mut self, rename: Rename, now_ns: u64) {
        for old in keys_under(&self.dirty, &rename.from) {
            if let Some(entry) = self.dirty.remove(&old) {
                let new = rekey(&old, &rename.from, &rename.to);
                let mark = if entry.modified_only {
                    Mark::Modified
                } else {
                    Mark::Changed
                };
                self.mark(new, mark, now_ns);
            }
        }
        let flying: Vec<PathBuf> = self
            .in_flight
            .range::<Path, _>((Bound::Included(rename.from.as_path()), Bound::Unbounded))
            .take_while(|path| path.starts_with(&rename.from))
            .map(|path| rekey(path, &rename.from, &rename.to))
            .collect();
        for path in flying {
            self.mark(path, Mark::Changed, now_ns);
        }
        self.mark(rename.to.clone(), Mark::Changed, now_ns);
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
        let paths: Vec<PathBuf> = self
            .dirty
            .iter()
            .filter(|(_, entry)| self.is_ready(entry, now_ns))
            .take(self.timing.max_batch)
            .map(|(path, _)| path.clone())
            .collect();
        if paths.is_empty() && self.renames.is_empty() {
            return None;
        }
        for path in &paths {
            self.dirty.remove(path);
            self.in_flight.insert(path.clone());
        }
        Some(Batch {
            renames: std::mem::take(&mut self.renames),
            paths,
        })
    }

    /// Ends a batch: its paths leave the in-flight set; `retry` paths come back dirty, not
    /// before `retry_at_ns`. Paths marked again while in flight are already dirty again.
    pub fn finish(&mut self, batch: &Batch, retry: &[PathBuf], now_ns: u64, retry_at_ns: u64) {
        for path in &batch.paths {
            self.in_flight.remove(path);
        }
        for path in retry {
            self.mark(path.clone(), Mark::Changed, now_ns);
            if let Some(entry) = self.dirty.get_mut(path) {
                entry.not_before_ns = entry.not_before_ns.max(retry_at_ns);
            }
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
        pending.finish(&batch, &[], 1, 0);
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
        pending.finish(&first, &[], 2, 0);
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
        pending.finish(&flying, &[], 2, 0);
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
        pending.finish(&batch, &[p("f")], 1, 500 * MS);
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
}
