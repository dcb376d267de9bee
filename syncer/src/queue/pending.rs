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
//! log while anything is in flight, and that work is re-keyed through them (an exchange's two
//! halves as one swap, as `rename` pairs them). Without this a rescan aimed at `d1` after `d1`
//! became `d2` would check the wrong name and lose `d2`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::ffi::OsString;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use super::pathkey::{PathKey, cmp_paths};
use crate::change::{Mark, Rename, rekey, swap};

/// A subtree to compare, as handed to the applier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescanJob {
    pub subtree: PathBuf,
    pub changed_since_ns: Option<i128>,
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
    /// Holds renames or rescans: no other batch runs beside it.
    pub exclusive: bool,
    /// Per path of `paths`: created since it was last taken, so the replica's copy under that
    /// name, if any, is obsolete.
    pub is_new: Vec<bool>,
    /// When the oldest change among `paths` was marked: work the batch reports back (a
    /// retry, what its compares found) is as old as that, for the sync barrier's sake.
    pub oldest_ns: u64,
    /// Holds work an earlier failure held back: only such a batch going through shows that
    /// the target works again (one that changes nothing can pass while it is still down).
    pub retries: bool,
}

impl Batch {
    pub fn is_new_file(&self, path: &Path) -> bool {
        self.paths
            .binary_search_by(|p| cmp_paths(p, path))
            .is_ok_and(|i| self.is_new.get(i) == Some(&true))
    }
}

/// What the in-flight set keeps of a path.
#[derive(Debug, Clone, Copy)]
struct Flight {
    /// The rescan guard, for in-flight subtree compares.
    rescan: Option<Option<i128>>,
    /// Taken as a new file: a change that arrives before its run ends (the close or attribute
    /// change that follows a create) leaves it new, since the replica's copy is the one being
    /// written now.
    new: bool,
    /// When the change being applied was first marked (see `oldest_unapplied_ns`).
    first_ns: u64,
}

/// Batching and deferral knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// A `Created` mark arrived since the path was last taken.
    created: bool,
    not_before_ns: u64,
    /// Some: the subtree is to be compared (with this ctime guard).
    rescan: Option<Option<i128>>,
    /// Due time of this entry's record in `waiting`, if it has one.
    queued_due_ns: Option<u64>,
    /// Its place in `ready` (arrival order), while it is there.
    ready_seq: Option<u64>,
}

/// The dirty paths, queued renames and in-flight paths of one target.
///
/// Every operation is O(log n) in the number of dirty paths: a storm of 100,000 deferred
/// creates must not make each batch scan them all while the reader waits for the lock.
#[derive(Debug, Default)]
pub struct Pending {
    dirty: BTreeMap<PathKey, Entry>,
    /// Dirty paths due now, oldest first: a batch takes the oldest, so under a storm that
    /// never ends no path waits forever behind paths that sort before it.
    ready: BTreeSet<(u64, PathKey)>,
    ready_counter: u64,
    /// Dirty paths not due yet, by due time; records are checked against `queued_due_ns`
    /// when popped, so stale ones cost nothing but their memory.
    waiting: BinaryHeap<Reverse<(u64, PathKey)>>,
    renames: Vec<Rename>,
    /// Where the last rename put the dirty paths it moved: the same rename reversed right
    /// after it (RENAME_EXCHANGE arrives as a -> b, b -> a) moves only what stood at its
    /// own old name, not these back.
    last_moved: Vec<PathKey>,
    /// Those of `last_moved` that landed on a mark already there (both objects had an entry
    /// of that name): the reversed half must leave a copy at its old name too.
    last_merged: Vec<PathKey>,
    /// The vanished paths the last rename moved, as `last_moved` for marks: the reversed half
    /// leaves them where the first put them.
    last_vanished: Vec<PathBuf>,
    in_flight: BTreeMap<PathKey, Flight>,
    /// Renames seen while something was in flight, numbered; cleared once nothing is.
    rename_log: Vec<(u64, Rename)>,
    rename_seq: u64,
    /// Batches taken and not finished: several appliers may work on one target (rsync
    /// targets overlap runs), each on paths no other in-flight batch holds.
    batches_in_flight: usize,
    /// An exclusive batch (renames, rescans) is in flight: nothing else starts.
    exclusive_in_flight: bool,
    /// Dirty entries that ask for a rescan: they wait for a moment with nothing in flight.
    rescans_dirty: usize,
    /// Paths an applier left alone because a source ancestor was gone, until when they are
    /// kept (see `vanished`).
    vanished: Vec<(PathBuf, u64)>,
    /// Directories a target could not enter (EACCES), compared whole at their next mark:
    /// see `denied`.
    denied: BTreeMap<PathKey, ()>,
    /// Sync barriers (`syncer wait`) not passed yet: their cookie and when they were queued.
    barriers: Vec<(OsString, u64)>,
    timing: Timing,
}

/// How long a vanished path waits for the rename that took its ancestor: the reader reads
/// it moments later, even when it lags behind a storm.
const VANISHED_KEEP_NS: u64 = 5_000_000_000;
/// Most vanished paths kept (an `rm -rf` of a big tree reports every path below it).
const VANISHED_MAX: usize = 4096;

/// Most denied directories kept: each costs a compare of its subtree only when it is marked
/// again, so a tree with many unreadable folders loses nothing but this memory.
const DENIED_MAX: usize = 10_000;

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
fn keys_under<V>(map: &BTreeMap<PathKey, V>, prefix: &Path) -> Vec<PathKey> {
    map.range((Bound::Included(PathKey::from(prefix)), Bound::Unbounded))
        .take_while(|(key, _)| key.path().starts_with(prefix))
        .map(|(key, _)| key.clone())
        .collect()
}

impl Pending {
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            ..Self::default()
        }
    }

    /// Files `key` as ready or waiting according to its entry's due time.
    fn schedule(&mut self, key: &PathKey, now_ns: u64) {
        let Some(entry) = self.dirty.get_mut(key) else {
            return;
        };
        let due = {
            let mut due = entry
                .not_before_ns
                .max(entry.first_ns + self.timing.batch_delay_ns);
            if entry.modified_only {
                let quiet = entry.last_ns + self.timing.quiet_ns;
                let aged = entry.first_ns + self.timing.max_age_ns;
                due = due.max(quiet.min(aged));
            }
            due
        };
        if due <= now_ns {
            if entry.ready_seq.is_none() {
                self.ready_counter += 1;
                entry.ready_seq = Some(self.ready_counter);
                self.ready.insert((self.ready_counter, key.clone()));
            }
            return;
        }
        if let Some(seq) = entry.ready_seq.take() {
            self.ready.remove(&(seq, key.clone()));
        }
        // An earlier record in the heap is re-checked when it pops; only push when this due
        // time is earlier than the one already queued.
        if entry.queued_due_ns.is_none_or(|queued| due < queued) {
            entry.queued_due_ns = Some(due);
            self.waiting.push(Reverse((due, key.clone())));
        }
    }

    /// Takes `key` out of `ready` (it is renamed or taken).
    fn unready(&mut self, key: &PathKey) {
        if let Some(seq) = self.dirty.get_mut(key).and_then(|e| e.ready_seq.take()) {
            self.ready.remove(&(seq, key.clone()));
        }
    }

    /// Moves entries whose due time has come from `waiting` to `ready`.
    fn promote(&mut self, now_ns: u64) {
        while let Some(Reverse((due, _))) = self.waiting.peek() {
            if *due > now_ns {
                return;
            }
            let Some(Reverse((due, key))) = self.waiting.pop() else {
                return;
            };
            if let Some(entry) = self.dirty.get_mut(&key) {
                if entry.queued_due_ns == Some(due) {
                    entry.queued_due_ns = None;
                    self.schedule(&key, now_ns);
                }
            }
        }
    }

    /// Marks `path` dirty at `now_ns`.
    pub fn mark(&mut self, path: PathBuf, mark: Mark, now_ns: u64) {
        self.mark_key(PathKey::from(path), mark, now_ns);
    }

    fn mark_key(&mut self, key: PathKey, mark: Mark, now_ns: u64) {
        if !self.denied.is_empty()
            && !matches!(mark, Mark::Rescan { .. })
            && self.denied.remove(&key).is_some()
        {
            let rescan = Mark::Rescan {
                changed_since_ns: None,
            };
            self.mark_key(key.clone(), rescan, now_ns);
        }
        let modified_only = matches!(
            mark,
            Mark::Modified
                | Mark::Created {
                    wait_for_close: true
                }
        );
        let created = matches!(mark, Mark::Created { .. });
        let rescan = match mark {
            Mark::Rescan { changed_since_ns } => Some(changed_since_ns),
            _ => None,
        };
        match self.dirty.get_mut(&key) {
            Some(entry) => {
                entry.last_ns = now_ns;
                entry.modified_only &= modified_only;
                entry.created |= created;
                if entry.rescan.is_none() && rescan.is_some() {
                    self.rescans_dirty += 1;
                }
                entry.rescan = merge_guard(entry.rescan, rescan);
                // Only a change of readiness needs rescheduling: a ready entry stays ready
                // unless it is a file still being written.
                if entry.ready_seq.is_some() && !entry.modified_only {
                    return;
                }
            }
            None => {
                self.rescans_dirty += usize::from(rescan.is_some());
                // A new entry for a path in flight as a new file stays new (see `Flight`); an
                // existing entry was made after that flight began and looked already.
                let created = created || self.in_flight.get(&key).is_some_and(|f| f.new);
                self.dirty.insert(
                    key.clone(),
                    Entry {
                        first_ns: now_ns,
                        last_ns: now_ns,
                        modified_only,
                        created,
                        not_before_ns: 0,
                        rescan,
                        queued_due_ns: None,
                        ready_seq: None,
                    },
                );
            }
        }
        self.schedule(&key, now_ns);
    }

    fn mark_entry(&mut self, path: PathBuf, entry: &Entry, now_ns: u64) {
        let created = Mark::Created {
            wait_for_close: entry.modified_only,
        };
        let mark = match entry.rescan {
            Some(changed_since_ns) => {
                if entry.created {
                    self.mark(path.clone(), created, now_ns);
                }
                Mark::Rescan { changed_since_ns }
            }
            None if entry.created => created,
            None if entry.modified_only => Mark::Modified,
            None => Mark::Changed,
        };
        self.mark(path, mark, now_ns);
    }

    /// Marks work reported for `batch`: paths named as they were when it was taken, re-keyed
    /// through every rename logged since, each as old as the batch's oldest change; returns
    /// the names used.
    pub fn mark_since(
        &mut self,
        paths: Vec<PathBuf>,
        mark: Mark,
        batch: &Batch,
        now_ns: u64,
    ) -> Vec<PathBuf> {
        let mut marked = Vec::with_capacity(paths.len());
        for path in paths {
            let path = self.renamed_since(path, batch.rename_seq);
            self.mark(path.clone(), mark, now_ns);
            self.date_back(&path, batch.oldest_ns, now_ns);
            marked.push(path);
        }
        marked
    }

    /// Makes the mark at `path` at least as old as `first_ns`: work that comes back from a
    /// batch still stands for the changes that batch applied.
    fn date_back(&mut self, path: &Path, first_ns: u64, now_ns: u64) {
        let key = PathKey::from(path);
        if let Some(entry) = self.dirty.get_mut(&key)
            && entry.first_ns > first_ns
        {
            entry.first_ns = first_ns;
            self.schedule(&key, now_ns);
        }
    }

    /// Queues a sync barrier: it passes once nothing marked before `now_ns` is pending or in
    /// flight.
    pub fn add_barrier(&mut self, cookie: OsString, now_ns: u64) {
        self.barriers.push((cookie, now_ns));
    }

    pub fn has_barriers(&self) -> bool {
        !self.barriers.is_empty()
    }

    /// When the oldest change not applied yet was marked (dirty or in flight); None when
    /// there is none. A walk of every path: only called while a barrier waits.
    fn oldest_unapplied_ns(&self) -> Option<u64> {
        let dirty = self.dirty.values().map(|e| e.first_ns);
        let flying = self.in_flight.values().map(|f| f.first_ns);
        dirty.chain(flying).min()
    }

    /// Takes the barriers passed: queued before the oldest change not applied yet. (A batch
    /// of renames alone holds no path, but the marks a rename makes at both its ends do, and
    /// they cannot be taken before that batch is finished.)
    pub fn passed_barriers(&mut self) -> Vec<OsString> {
        if self.barriers.is_empty() {
            return Vec::new();
        }
        let oldest = self.oldest_unapplied_ns().unwrap_or(u64::MAX);
        let (passed, waiting) = std::mem::take(&mut self.barriers)
            .into_iter()
            .partition(|(_, at)| *at < oldest);
        self.barriers = waiting;
        passed.into_iter().map(|(cookie, _)| cookie).collect()
    }

    /// Holds a dirty path back until `until_ns` (a retry after a failure).
    pub fn defer(&mut self, path: &Path, until_ns: u64) {
        let key = PathKey::from(path);
        if let Some(entry) = self.dirty.get_mut(&key) {
            entry.not_before_ns = entry.not_before_ns.max(until_ns);
            let now = entry.last_ns;
            self.schedule(&key, now);
        }
    }

    /// Makes every path held back by `defer` due now: its target recovered. O(dirty paths),
    /// once per recovery.
    pub fn release_deferred(&mut self, now_ns: u64) {
        let held: Vec<PathKey> = self
            .dirty
            .iter()
            .filter(|(_, entry)| entry.not_before_ns > now_ns)
            .map(|(key, _)| key.clone())
            .collect();
        for key in held {
            if let Some(entry) = self.dirty.get_mut(&key) {
                // Due now, and still known as a retry (`Batch::retries`).
                entry.not_before_ns = now_ns;
            }
            self.schedule(&key, now_ns);
        }
    }

    /// Records a paired rename: re-keys dirty paths below `from` to `to`, re-marks in-flight
    /// paths below `from` under their new name (an applier may be about to apply `old/f` as a
    /// delete), queues the rename as a barrier and marks `to` so its final state is checked.
    pub fn rename(&mut self, rename: Rename, now_ns: u64) {
        let exchange = self
            .renames
            .last()
            .is_some_and(|last| last.from == rename.to && last.to == rename.from);
        let (swapped_in, merged): (HashSet<PathKey>, HashSet<PathKey>) = if exchange {
            (
                std::mem::take(&mut self.last_moved).into_iter().collect(),
                std::mem::take(&mut self.last_merged).into_iter().collect(),
            )
        } else {
            (HashSet::new(), HashSet::new())
        };
        // Counted: a path of each side may have the same name.
        let mut vanished_in: HashMap<PathBuf, usize> = HashMap::new();
        if exchange {
            for path in std::mem::take(&mut self.last_vanished) {
                *vanished_in.entry(path).or_default() += 1;
            }
        }
        let mut moved = Vec::new();
        let mut landed_on_mark = Vec::new();
        for old in keys_under(&self.dirty, &rename.from) {
            if swapped_in.contains(&old) {
                // A mark the first half merged into one already here holds both objects'
                // changes: the one that stood here before moves on as well, as a copy.
                if merged.contains(&old)
                    && let Some(entry) = self.dirty.get(&old).copied()
                {
                    self.mark_entry(rekey(old.path(), &rename.from, &rename.to), &entry, now_ns);
                }
                continue;
            }
            self.unready(&old);
            if let Some(entry) = self.remove_dirty(&old) {
                let new = rekey(old.path(), &rename.from, &rename.to);
                let key = PathKey::from(new.as_path());
                if self.dirty.contains_key(&key) {
                    landed_on_mark.push(key.clone());
                }
                moved.push(key);
                self.mark_entry(new, &entry, now_ns);
            }
        }
        let flying: Vec<(PathBuf, Option<Option<i128>>)> = self
            .in_flight
            .range((
                Bound::Included(PathKey::from(rename.from.as_path())),
                Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.path().starts_with(&rename.from))
            .map(|(key, f)| (rekey(key.path(), &rename.from, &rename.to), f.rescan))
            .collect();
        for (path, rescan) in flying {
            let mark = match rescan {
                Some(changed_since_ns) => Mark::Rescan { changed_since_ns },
                None => Mark::Changed,
            };
            let key = PathKey::from(path.as_path());
            if self.dirty.contains_key(&key) {
                landed_on_mark.push(key.clone());
            }
            moved.push(key);
            self.mark(path, mark, now_ns);
        }
        // Applied after their ancestor was renamed but before the rename was read: the
        // applier found nothing, and the replica's entry moves with the rename unchanged.
        self.vanished.retain(|(_, until)| *until > now_ns);
        let mut found = Vec::new();
        for (path, _) in self.vanished.iter_mut() {
            if !path.starts_with(&rename.from) {
                continue;
            }
            if let Some(count) = vanished_in.get_mut(path.as_path())
                && *count > 0
            {
                *count -= 1;
                continue;
            }
            *path = rekey(path, &rename.from, &rename.to);
            found.push(path.clone());
        }
        self.last_vanished = if exchange { Vec::new() } else { found.clone() };
        for path in found {
            let key = PathKey::from(path.as_path());
            if self.dirty.contains_key(&key) {
                landed_on_mark.push(key.clone());
            }
            moved.push(key);
            self.mark(path, Mark::Changed, now_ns);
        }
        // Denied directories below `from` are known under `to` as well. The old names stay
        // too: an exchange comes as two renames, and a stale name costs at most one compare.
        for old in keys_under(&self.denied, &rename.from) {
            if self.denied.len() >= DENIED_MAX {
                break;
            }
            let new = rekey(old.path(), &rename.from, &rename.to);
            self.denied.insert(PathKey::from(new.as_path()), ());
        }
        self.last_moved = if exchange { Vec::new() } else { moved };
        self.last_merged = if exchange { Vec::new() } else { landed_on_mark };
        self.mark(rename.to.clone(), Mark::Changed, now_ns);
        // The old name is settled by state too: it may hold something again, and a later
        // rename can carry that away. RENAME_EXCHANGE comes as a -> b, b -> a: the second
        // re-keys b's mark to a, and only this mark keeps b (and, after `mv dir_of_b c`,
        // c/b) in the set.
        self.mark(rename.from.clone(), Mark::Changed, now_ns);
        // Counted by batch, not by path: a batch of renames alone holds no path.
        if self.batches_in_flight > 0 {
            self.rename_seq += 1;
            self.rename_log.push((self.rename_seq, rename.clone()));
        }
        self.renames.push(rename);
    }

    fn remove_dirty(&mut self, key: &PathKey) -> Option<Entry> {
        let entry = self.dirty.remove(key)?;
        self.rescans_dirty -= usize::from(entry.rescan.is_some());
        Some(entry)
    }

    /// Takes the next batch: up to `max_batch` ready paths that no in-flight batch holds,
    /// which become in flight until `finish`. Renames and rescans are barriers: they wait
    /// until nothing else is in flight and then run alone. None when nothing can start now.
    pub fn take_batch(&mut self, now_ns: u64) -> Option<Batch> {
        let exclusive = !self.renames.is_empty() || self.rescans_dirty > 0;
        if self.exclusive_in_flight || (exclusive && self.batches_in_flight > 0) {
            return None;
        }
        self.promote(now_ns);
        let in_flight = &self.in_flight;
        let mut taken: Vec<PathKey> = self
            .ready
            .iter()
            .filter(|(_, key)| !in_flight.contains_key(key))
            .take(self.timing.max_batch)
            .map(|(_, key)| key.clone())
            .collect();
        // Applied in path order: parents before children.
        taken.sort();
        if taken.is_empty() && self.renames.is_empty() {
            return None;
        }
        let mut batch = Batch {
            renames: std::mem::take(&mut self.renames),
            rename_seq: self.rename_seq,
            exclusive,
            oldest_ns: now_ns,
            ..Batch::default()
        };
        self.batches_in_flight += 1;
        self.exclusive_in_flight = exclusive;
        for key in taken {
            self.unready(&key);
            let (rescan, created, first_ns) = match self.remove_dirty(&key) {
                Some(e) => {
                    batch.retries |= e.not_before_ns > 0;
                    (e.rescan, e.created, e.first_ns)
                }
                None => (None, false, now_ns),
            };
            batch.oldest_ns = batch.oldest_ns.min(first_ns);
            if let Some(changed_since_ns) = rescan {
                batch.rescans.push(RescanJob {
                    subtree: key.path().to_path_buf(),
                    changed_since_ns,
                });
            }
            // A rescanned path is also applied itself (its own entry may differ).
            batch.paths.push(key.path().to_path_buf());
            batch.is_new.push(created);
            self.in_flight.insert(
                key,
                Flight {
                    rescan,
                    new: created,
                    first_ns,
                },
            );
        }
        Some(batch)
    }

    /// `path` named through every rename logged after `since_seq` (work reported for a
    /// batch names paths as they were when it was taken).
    fn renamed_since(&self, path: PathBuf, since_seq: u64) -> PathBuf {
        let mut log = self
            .rename_log
            .iter()
            .filter(|(seq, _)| *seq > since_seq)
            .map(|(_, rename)| rename)
            .peekable();
        let mut path = path;
        while let Some(rename) = log.next() {
            // RENAME_EXCHANGE arrives as a -> b, b -> a. Folded one after the other, the two
            // halves cancel out: a path below either name is left at its old name, where the
            // other object stands now. A compare in flight during `exchange d0 f; mv f/d3/x c`
            // reported what it found missing below d0 (a file now), the rename of x never
            // matched it, and it was never copied (soak 7 seed 427). The pair is one swap, as
            // `rename` and the targets pair it.
            let exchange = log
                .next_if(|next| next.from == rename.to && next.to == rename.from)
                .is_some();
            path = if exchange {
                swap(&path, &rename.from, &rename.to)
            } else {
                rekey(&path, &rename.from, &rename.to)
            };
        }
        path
    }

    /// Paths of an in-flight `batch` its applier found under a vanished source ancestor
    /// (named as when the batch was taken). The ancestor may have been renamed after their
    /// event was read and before the applier looked: a rename still to come marks them again
    /// under its new name, or the change is lost (the replica's entry moves unchanged).
    pub fn vanished(&mut self, batch: &Batch, paths: Vec<PathBuf>, now_ns: u64) {
        self.vanished.retain(|(_, until)| *until > now_ns);
        for path in paths {
            let path = self.renamed_since(path, batch.rename_seq);
            self.vanished.push((path, now_ns + VANISHED_KEEP_NS));
        }
        if self.vanished.len() > VANISHED_MAX {
            let excess = self.vanished.len() - VANISHED_MAX;
            self.vanished.drain(..excess);
        }
    }

    /// Directories an in-flight `batch`'s applier could not enter (named as when it was
    /// taken). What failed below one waits for no event of its own: the directory's next mark
    /// (the chmod that gives its permissions back raises one) compares it whole. One marked
    /// since the batch was taken may have its permissions back already: compared at once.
    pub fn denied(&mut self, batch: &Batch, dirs: Vec<PathBuf>, now_ns: u64) {
        for dir in dirs {
            let dir = self.renamed_since(dir, batch.rename_seq);
            let key = PathKey::from(dir.as_path());
            if self.dirty.contains_key(&key) {
                let rescan = Mark::Rescan {
                    changed_since_ns: None,
                };
                self.mark_key(key, rescan, now_ns);
            } else if self.denied.len() < DENIED_MAX {
                self.denied.insert(key, ());
            }
        }
    }

    /// Ends a batch: its paths leave the in-flight set; `retry` paths (named as when the batch
    /// was taken) come back dirty, not before `retry_at_ns`. Paths marked again while in
    /// flight are already dirty again.
    pub fn finish(&mut self, batch: &Batch, retry: Vec<PathBuf>, now_ns: u64, retry_at_ns: u64) {
        // Nothing is re-marked before the in-flight set is updated below, so the barrier's
        // age of each retried path is restored from the batch.
        for path in &batch.paths {
            self.in_flight.remove(&PathKey::from(path.as_path()));
        }
        self.batches_in_flight = self.batches_in_flight.saturating_sub(1);
        if batch.exclusive {
            self.exclusive_in_flight = false;
        }
        let mut renamed = Vec::with_capacity(retry.len());
        for path in retry {
            renamed.push(self.renamed_since(path, batch.rename_seq));
        }
        for path in renamed {
            self.mark(path.clone(), Mark::Changed, now_ns);
            self.date_back(&path, batch.oldest_ns, now_ns);
            self.defer(&path, retry_at_ns);
        }
        if self.batches_in_flight == 0 {
            self.rename_log.clear();
        }
    }

    /// When the earliest deferred path may become ready (None: nothing is waiting). May be
    /// early (a stale record): the caller then finds nothing and waits again.
    pub fn next_due_ns(&self, now_ns: u64) -> Option<u64> {
        self.waiting
            .peek()
            .map(|Reverse((due, _))| (*due).max(now_ns))
    }

    /// Paths and renames waiting (not in flight).
    pub fn backlog(&self) -> usize {
        self.dirty.len() + self.renames.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Nothing dirty, queued or in flight: the replica has caught up with every event seen.
    /// In flight is counted by batch: a batch may carry renames and no path (its `to` marks
    /// not due yet under `--batch-delay`, or left behind by `--max-batch`).
    pub fn is_idle(&self) -> bool {
        self.dirty.is_empty() && self.renames.is_empty() && self.batches_in_flight == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn new_files(batch: &Batch) -> Vec<&PathBuf> {
        batch
            .paths
            .iter()
            .zip(&batch.is_new)
            .filter_map(|(p, new)| new.then_some(p))
            .collect()
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
    fn a_directory_that_could_not_be_entered_is_compared_whole_at_its_next_mark() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("d/f"), Mark::Changed, 0);
        let batch = pending.take_batch(0).unwrap();
        pending.denied(&batch, vec![p("d")], MS);
        pending.finish(&batch, vec![], MS, MS);
        assert!(
            pending.take_batch(2 * MS).is_none(),
            "nothing to do until d changes"
        );
        pending.mark(p("d/g"), Mark::Changed, 3 * MS);
        let other = pending.take_batch(3 * MS).unwrap();
        assert!(other.rescans.is_empty(), "only a mark of d itself");
        pending.finish(&other, vec![], 4 * MS, 4 * MS);
        // chmod d: its mark asks for a compare of the whole directory, once.
        pending.mark(p("d"), Mark::Changed, 5 * MS);
        let batch = pending.take_batch(5 * MS).unwrap();
        assert_eq!(batch.rescans.len(), 1);
        assert_eq!(batch.rescans[0].subtree, p("d"));
        pending.finish(&batch, vec![], 6 * MS, 6 * MS);
        pending.mark(p("d"), Mark::Changed, 7 * MS);
        assert!(
            pending.take_batch(7 * MS).unwrap().rescans.is_empty(),
            "once"
        );
    }

    #[test]
    fn a_denied_directory_renamed_is_known_under_its_new_name() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("d/f"), Mark::Changed, 0);
        let batch = pending.take_batch(0).unwrap();
        pending.denied(&batch, vec![p("d/sub")], MS);
        pending.finish(&batch, vec![], MS, MS);
        let rename = Rename {
            from: p("d"),
            to: p("e"),
            is_dir: true,
        };
        pending.rename(rename, 2 * MS);
        let renamed = pending.take_batch(2 * MS).unwrap();
        pending.finish(&renamed, vec![], 3 * MS, 3 * MS);
        pending.mark(p("e/sub"), Mark::Changed, 4 * MS);
        let batch = pending.take_batch(4 * MS).unwrap();
        assert_eq!(batch.rescans.len(), 1);
        assert_eq!(batch.rescans[0].subtree, p("e/sub"));
    }

    #[test]
    fn a_denied_directory_marked_while_its_batch_ran_is_compared_at_once() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("d/f"), Mark::Changed, 0);
        let batch = pending.take_batch(0).unwrap();
        pending.mark(p("d"), Mark::Changed, MS);
        pending.denied(&batch, vec![p("d")], MS);
        pending.finish(&batch, vec![], MS, MS);
        let next = pending.take_batch(2 * MS).unwrap();
        assert_eq!(next.rescans.len(), 1);
        assert_eq!(next.rescans[0].subtree, p("d"));
    }

    #[test]
    fn work_held_back_by_a_failure_goes_at_once_when_the_target_recovers() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("a"), Mark::Changed, 0);
        let batch = pending.take_batch(0).unwrap();
        pending.finish(&batch, vec![p("a")], MS, 10_000 * MS);
        assert!(pending.take_batch(2 * MS).is_none(), "held back");
        pending.release_deferred(3 * MS);
        let retried = pending.take_batch(3 * MS).unwrap();
        assert_eq!(retried.paths, vec![p("a")]);
        assert!(retried.retries, "a released path is still a retry");
        pending.finish(&retried, vec![], 4 * MS, 4 * MS);
        pending.mark(p("b"), Mark::Changed, 5 * MS);
        assert!(!pending.take_batch(5 * MS).unwrap().retries);
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
    fn a_created_file_waits_for_its_close_and_is_new_until_taken() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(
            p("new"),
            Mark::Created {
                wait_for_close: true,
            },
            0,
        );
        pending.mark(p("old"), Mark::Changed, 0);
        // Not closed yet: only the old file is ready.
        let batch = pending.take_batch(1).unwrap();
        assert_eq!(batch.paths, vec![p("old")]);
        assert_eq!(new_files(&batch).len(), 0);
        pending.finish(&batch, vec![], 1, 0);
        pending.mark(p("new"), Mark::Changed, 2);
        pending.mark(p("old"), Mark::Changed, 2);
        let batch = pending.take_batch(3).unwrap();
        assert_eq!(batch.paths, vec![p("new"), p("old")]);
        assert_eq!(new_files(&batch), [&p("new")]);
        assert!(batch.is_new_file(Path::new("new")));
        assert!(!batch.is_new_file(Path::new("old")));
        // Changed again while its run is in flight (the close after a create): still new.
        pending.mark(p("new"), Mark::Changed, 4);
        pending.finish(&batch, vec![], 4, 0);
        let batch = pending.take_batch(5).unwrap();
        assert_eq!(new_files(&batch), [&p("new")]);
        pending.finish(&batch, vec![], 5, 0);
        // Written again after its run ended: the replica's copy is no longer obsolete.
        pending.mark(p("new"), Mark::Changed, 6);
        assert_eq!(new_files(&pending.take_batch(7).unwrap()).len(), 0);
    }

    #[test]
    fn a_created_file_stays_new_under_its_new_name() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(
            p("d/f"),
            Mark::Created {
                wait_for_close: true,
            },
            0,
        );
        pending.mark(p("d/f"), Mark::Changed, 1);
        pending.rename(
            Rename {
                from: p("d"),
                to: p("e"),
                is_dir: true,
            },
            2,
        );
        let batch = pending.take_batch(3).unwrap();
        assert_eq!(new_files(&batch), [&p("e/f")]);
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
            vec![
                p("new"),
                p("new/f"),
                p("new/sub/g"),
                p("old"),
                p("old sibling")
            ]
        );
    }

    /// `echo x >> d/f; mv d e`, the rename read only after the applier found no `d`.
    #[test]
    fn a_vanished_path_is_marked_again_by_the_rename_read_after_it() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("d/f"), Mark::Changed, 0);
        let batch = pending.take_batch(0).unwrap();
        pending.vanished(&batch, vec![p("d/f")], 1);
        pending.finish(&batch, vec![], 1, 0);
        assert!(pending.take_batch(2).is_none());
        let rename = |from: &str, to: &str| Rename {
            from: p(from),
            to: p(to),
            is_dir: true,
        };
        pending.rename(rename("d", "e"), 3);
        let next = pending.take_batch(4).unwrap();
        assert_eq!(next.paths, vec![p("d"), p("e"), p("e/f")]);
        pending.finish(&next, vec![], 5, 0);
        // Forgotten once nothing can still be on its way.
        pending.rename(rename("e", "g"), 6 + VANISHED_KEEP_NS);
        let last = pending.take_batch(7 + VANISHED_KEEP_NS).unwrap();
        assert_eq!(last.paths, vec![p("e"), p("g")]);
    }

    /// RENAME_EXCHANGE of `a` and `b`, both with a dirty `x` (soak seed 427: a walk of the
    /// present tree marked one, an event the other): each side keeps its mark.
    #[test]
    fn an_exchange_keeps_the_marks_both_sides_had_under_one_name() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("a/x"), Mark::Changed, 0);
        pending.mark(p("b/x"), Mark::Changed, 0);
        pending.mark(p("a/only_a"), Mark::Changed, 0);
        let rename = |from: &str, to: &str| Rename {
            from: p(from),
            to: p(to),
            is_dir: true,
        };
        pending.rename(rename("a", "b"), 1);
        pending.rename(rename("b", "a"), 1);
        let mut paths = Vec::new();
        while let Some(batch) = pending.take_batch(u64::MAX / 2) {
            paths.extend(batch.paths.iter().cloned());
            pending.finish(&batch, vec![], 2, 0);
        }
        paths.sort();
        paths.dedup();
        assert_eq!(
            paths,
            vec![p("a"), p("a/x"), p("b"), p("b/only_a"), p("b/x")]
        );
    }

    /// A compare in flight during `exchange d0 f; mv f/d3/x c/lead` (soak 7 seed 427): what
    /// it reports below d0, named as when its batch was taken, is below f after the exchange
    /// and follows x to its new name (folded as two renames, it stayed below d0, now a file).
    #[test]
    fn work_reported_for_a_batch_follows_an_exchange_then_a_rename_below_it() {
        let mut pending = Pending::new(Timing::default());
        let compare = Mark::Rescan {
            changed_since_ns: None,
        };
        pending.mark(p("d0"), compare, 0);
        let batch = pending.take_batch(0).unwrap();
        let rename = |from: &str, to: &str, is_dir: bool| Rename {
            from: p(from),
            to: p(to),
            is_dir,
        };
        pending.rename(rename("d0", "f", true), 1);
        pending.rename(rename("f", "d0", false), 1);
        pending.rename(rename("f/d3/x", "c/lead", true), 1);
        let found = pending.mark_since(vec![p("d0/d3/x/new")], Mark::Changed, &batch, 2);
        assert_eq!(found, vec![p("c/lead/new")]);
        pending.vanished(&batch, vec![p("d0/d3/y")], 2);
        // The file that stood at f is at d0 now.
        pending.finish(&batch, vec![p("d0/d3/x/retry"), p("f")], 2, 0);
        let next = pending.take_batch(3).unwrap();
        for path in ["c/lead/new", "c/lead/retry", "d0"] {
            assert!(next.paths.contains(&p(path)), "{path}: {:?}", next.paths);
        }
        assert!(
            !next
                .paths
                .iter()
                .any(|path| path.starts_with("d0") && path != Path::new("d0")),
            "{:?}",
            next.paths
        );
        pending.finish(&next, vec![], 4, 0);
        // The vanished path follows a later rename of its ancestor from where it is now.
        pending.rename(rename("f/d3", "g", true), 5);
        let last = pending.take_batch(6).unwrap();
        assert!(last.paths.contains(&p("g/y")), "{:?}", last.paths);
    }

    /// A vanished path stays where an exchange's first half put it (the reversed half moved
    /// it back), so a later rename of its new ancestor still finds it.
    #[test]
    fn a_vanished_path_follows_an_exchange_then_a_rename_below_it() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("a/d/f"), Mark::Changed, 0);
        pending.mark(p("b/d/g"), Mark::Changed, 0);
        let batch = pending.take_batch(0).unwrap();
        pending.vanished(&batch, vec![p("a/d/f"), p("b/d/g")], 1);
        pending.finish(&batch, vec![], 1, 0);
        let rename = |from: &str, to: &str| Rename {
            from: p(from),
            to: p(to),
            is_dir: true,
        };
        pending.rename(rename("a", "b"), 2);
        pending.rename(rename("b", "a"), 2);
        let exchanged = pending.take_batch(3).unwrap();
        pending.finish(&exchanged, vec![], 4, 0);
        pending.rename(rename("b/d", "c"), 5);
        pending.rename(rename("a/d", "e"), 5);
        let next = pending.take_batch(6).unwrap();
        for path in ["c/f", "e/g"] {
            assert!(next.paths.contains(&p(path)), "{path}: {:?}", next.paths);
        }
    }

    #[test]
    fn an_exchange_keeps_an_in_flight_mark_that_met_one_on_the_other_side() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("a/x"), Mark::Changed, 0);
        let flying = pending.take_batch(0).unwrap();
        pending.mark(p("b/x"), Mark::Changed, 0);
        let rename = |from: &str, to: &str| Rename {
            from: p(from),
            to: p(to),
            is_dir: true,
        };
        pending.rename(rename("a", "b"), 1);
        pending.rename(rename("b", "a"), 1);
        pending.finish(&flying, vec![], 2, 0);
        let mut paths = Vec::new();
        while let Some(batch) = pending.take_batch(u64::MAX / 2) {
            paths.extend(batch.paths.iter().cloned());
            pending.finish(&batch, vec![], 2, 0);
        }
        paths.sort();
        paths.dedup();
        // b's x, now at a, had a mark of its own when a's in-flight x landed on it.
        assert_eq!(paths, vec![p("a"), p("a/x"), p("b"), p("b/x")]);
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
        assert_eq!(next.paths, vec![p("new"), p("new/f"), p("old")]);
    }

    #[test]
    fn an_exchange_keeps_both_names_through_a_later_rename_of_a_parent() {
        let mut pending = Pending::new(Timing::default());
        let file = |from: &str, to: &str| Rename {
            from: p(from),
            to: p(to),
            is_dir: false,
        };
        // renameat2(RENAME_EXCHANGE) of x/d0 and f1/x, then `mv f1 lead`.
        pending.rename(file("x/d0", "f1/x"), 1);
        pending.rename(file("f1/x", "x/d0"), 1);
        pending.rename(
            Rename {
                from: p("f1"),
                to: p("lead"),
                is_dir: true,
            },
            1,
        );
        let batch = pending.take_batch(2).unwrap();
        assert!(batch.paths.contains(&p("lead/x")), "{:?}", batch.paths);
        assert!(batch.paths.contains(&p("x/d0")), "{:?}", batch.paths);
    }

    #[test]
    fn an_exchange_of_directories_swaps_the_marks_below_them() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("a/x"), Mark::Changed, 0);
        pending.mark(p("b/y"), Mark::Changed, 0);
        let dir = |from: &str, to: &str| Rename {
            from: p(from),
            to: p(to),
            is_dir: true,
        };
        pending.rename(dir("a", "b"), 1);
        pending.rename(dir("b", "a"), 1);
        let batch = pending.take_batch(2).unwrap();
        assert_eq!(batch.paths, vec![p("a"), p("a/y"), p("b"), p("b/x")]);
    }

    #[test]
    fn oldest_ready_paths_go_first_so_none_starves() {
        let timing = Timing {
            max_batch: 2,
            ..Timing::default()
        };
        let mut pending = Pending::new(timing);
        pending.mark(p("z"), Mark::Changed, 0);
        pending.mark(p("y"), Mark::Changed, 0);
        // A storm of paths that sort first keeps arriving.
        for round in 0..5 {
            pending.mark(p(&format!("a{round}")), Mark::Changed, 1);
            pending.mark(p(&format!("b{round}")), Mark::Changed, 1);
            let batch = pending.take_batch(2).unwrap();
            if round == 0 {
                assert_eq!(batch.paths, vec![p("y"), p("z")]);
            }
            pending.finish(&batch, vec![], 3, 0);
        }
    }

    #[test]
    fn concurrent_batches_hold_disjoint_paths_and_barriers_run_alone() {
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("a"), Mark::Changed, 0);
        let first = pending.take_batch(0).unwrap();
        // "a" changes again while the first batch holds it: a second applier takes "b" only.
        pending.mark(p("a"), Mark::Changed, 1);
        pending.mark(p("b"), Mark::Changed, 1);
        let second = pending.take_batch(1).unwrap();
        assert_eq!(second.paths, vec![p("b")]);
        assert!(!first.exclusive && !second.exclusive);
        // A rename waits until both are done, then runs alone.
        pending.rename(
            Rename {
                from: p("x"),
                to: p("y"),
                is_dir: false,
            },
            2,
        );
        assert!(pending.take_batch(2).is_none());
        pending.finish(&first, vec![], 3, 0);
        assert!(pending.take_batch(3).is_none());
        pending.finish(&second, vec![], 3, 0);
        let barrier = pending.take_batch(3).unwrap();
        assert!(barrier.exclusive);
        assert_eq!(barrier.paths, vec![p("a"), p("x"), p("y")]);
        pending.mark(p("c"), Mark::Changed, 4);
        assert!(
            pending.take_batch(4).is_none(),
            "nothing beside an exclusive batch"
        );
        pending.finish(&barrier, vec![], 5, 0);
        assert_eq!(pending.take_batch(5).unwrap().paths, vec![p("c")]);
        assert!(!pending.is_idle());
    }

    /// With `--batch-delay` the rename's `to` mark is not due when the barrier is taken: the
    /// batch holds the rename alone. It counts as in flight until finished, and a rename
    /// arriving meanwhile is logged, so what the batch reports is re-keyed through it.
    #[test]
    fn a_batch_of_renames_alone_is_in_flight_until_finished() {
        let timing = Timing {
            batch_delay_ns: 50 * MS,
            ..Timing::default()
        };
        let mut pending = Pending::new(timing);
        let rename = |from: &str, to: &str| Rename {
            from: p(from),
            to: p(to),
            is_dir: true,
        };
        pending.rename(rename("d1", "d2"), 0);
        let batch = pending.take_batch(1).unwrap();
        assert!(batch.paths.is_empty() && batch.renames.len() == 1);
        assert!(!pending.is_idle(), "renames are being applied");
        assert!(
            pending.take_batch(60 * MS).is_none(),
            "the barrier runs alone"
        );
        pending.rename(rename("d2", "d3"), 2);
        // The applier could not rename d1 and asks for d2 (its name then) to be compared.
        let compare = Mark::Rescan {
            changed_since_ns: None,
        };
        let marked = pending.mark_since(vec![p("d2")], compare, &batch, 3);
        assert_eq!(marked, vec![p("d3")]);
        pending.finish(&batch, vec![p("d2/f")], 3, 0);
        let next = pending.take_batch(100 * MS).unwrap();
        assert_eq!(next.rescans[0].subtree, p("d3"));
        // d1 and d2 are the renames' old names, settled by state.
        assert_eq!(next.paths, vec![p("d1"), p("d2"), p("d3"), p("d3/f")]);
        pending.finish(&next, vec![], 4, 0);
        assert!(pending.is_idle());
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
    fn a_barrier_passes_once_everything_marked_before_it_is_applied() {
        const FAR: u64 = 3_600_000_000_000;
        let mut pending = Pending::new(Timing::default());
        pending.mark(p("a"), Mark::Changed, 1);
        let first = pending.take_batch(1).unwrap();
        // Still in its quiet period when the barrier comes.
        pending.mark(p("b"), Mark::Modified, 2);
        pending.add_barrier("c".into(), 3);
        pending.mark(p("later"), Mark::Changed, 4);
        assert!(pending.passed_barriers().is_empty(), "a in flight, b dirty");
        // `a` failed: its retry still stands for the change made before the barrier.
        pending.finish(&first, vec![p("a")], 5, 6);
        assert!(pending.passed_barriers().is_empty());
        let second = pending.take_batch(FAR).unwrap();
        assert_eq!(second.paths, [p("a"), p("b"), p("later")]);
        // What the batch's compares found is as old as its oldest change.
        pending.mark_since(vec![p("found")], Mark::Changed, &second, 7);
        pending.finish(&second, vec![], 8, 8);
        assert!(
            pending.passed_barriers().is_empty(),
            "found by a batch that held a"
        );
        let third = pending.take_batch(FAR).unwrap();
        pending.finish(&third, vec![], 9, 9);
        assert_eq!(pending.passed_barriers(), [OsString::from("c")]);
        assert!(!pending.has_barriers());
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
        pending.mark_since(vec![p("d1/y")], Mark::Changed, &batch, 2);
        pending.mark_since(
            vec![p("d1/sub")],
            Mark::Rescan {
                changed_since_ns: None,
            },
            &batch,
            2,
        );
        pending.finish(&batch, vec![p("d1/z")], 2, 0);
        let next = pending.take_batch(3).unwrap();
        assert!(next.paths.contains(&p("d3/y")), "{next:?}");
        assert!(next.paths.contains(&p("d3/z")), "{next:?}");
        assert!(next.paths.contains(&p("d3/x")), "{next:?}");
        assert_eq!(next.rescans[0].subtree, p("d3/sub"));
        // Only the renames' old names themselves, settled by state; nothing below them.
        assert!(
            !next
                .paths
                .iter()
                .any(|path| (path.starts_with("d1") || path.starts_with("d2"))
                    && path.components().count() > 1)
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
