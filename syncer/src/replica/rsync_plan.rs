//! How one batch of checked paths becomes rsync runs: which kind of run each path goes to,
//! which directories go as `dir/.`, and how runs split into parallel streams. Pure (no
//! syscalls), so the rules are unit-tested here; `rsync` runs the plans.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Below this many present paths one run carries deletions and copies together.
pub const SPLIT_MIN: usize = 64;
/// A directory with at least this many new files, and mostly new files, goes as `dir/.`.
pub const WHOLE_DIR_MIN: usize = 32;

/// The kinds of `--files-from` run. Measured here, 20,000 new empty files into one directory
/// of a fresh ext4 (daemon on loopback): 1.56-1.94 s as a `Changed` list, 1.10-1.40 s as a
/// `New` list, 0.90-0.96 s as `New` with the directory as `dir/.` (a plain recursive
/// `rsync -a --inplace`: 0.75-1.07 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Paths known to have changed: always sent (`--ignore-times`), each written through a
    /// temporary file renamed over the old one (rsync's default, unless `--inplace`), so a
    /// reader of the replica never sees a file half written.
    Changed,
    /// Files created since their last run: whatever the replica holds under their names is
    /// obsolete, so they are written in place (`--inplace`). A directory made mostly of new
    /// files goes as `dir/.`, which rsync lists itself, faster than it reads our list; rsync's
    /// quick check (size and mtime to the nanosecond) then skips entries the replica already
    /// has, so these runs go without `--ignore-times`, and with the exclude patterns.
    New,
    /// Every name of the batch's multi-link files, with `-H` in one run so the daemon links
    /// them (rsync links only names listed in the same run), and names the daemon may hold
    /// linked: always through a temporary file and a rename, even with `--inplace`, since an
    /// in-place write into a linked inode changes its other names too. It runs last, after
    /// the renamed directories' runs, which send their linked files apart.
    Linked,
    /// The other names of linked files whose marked name is gone or another file now: a
    /// change made through that name may have reached only them. Like `Linked`, but with
    /// rsync's quick check (size and mtime to the nanosecond), since most such names are
    /// just the names left by an unlink.
    Siblings,
}

/// The work of one run, and the paths to give back if it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub list: Vec<PathBuf>,
    pub kind: ListKind,
    /// `New` runs: directories sent whole as `dir/.` instead of their files in `list`.
    pub whole_dirs: BTreeSet<PathBuf>,
    pub subtree: Option<PathBuf>,
    /// Directories whose vanished entries the run deletes (`list` then holds those entries,
    /// to give back on failure).
    pub sweep: Vec<PathBuf>,
}

impl RunPlan {
    pub fn list(list: Vec<PathBuf>, kind: ListKind) -> Self {
        Self {
            list,
            kind,
            whole_dirs: BTreeSet::new(),
            subtree: None,
            sweep: Vec::new(),
        }
    }

    /// A `New` run of `files`; those in `whole` directories go as `dir/.`.
    fn new_files(list: Vec<PathBuf>, whole: &BTreeSet<PathBuf>) -> Self {
        let whole_dirs = list
            .iter()
            .map(|f| parent(f).to_path_buf())
            .filter(|d| whole.contains(d))
            .collect();
        Self {
            whole_dirs,
            ..Self::list(list, ListKind::New)
        }
    }

    pub fn subtree(subtree: PathBuf) -> Self {
        Self {
            subtree: Some(subtree),
            ..Self::list(Vec::new(), ListKind::Changed)
        }
    }

    pub fn sweep(list: Vec<PathBuf>, dirs: Vec<PathBuf>) -> Self {
        Self {
            sweep: dirs,
            ..Self::list(list, ListKind::Changed)
        }
    }

    /// For the log: what kind of run this is.
    pub fn describe(&self) -> String {
        match (&self.subtree, self.sweep.is_empty()) {
            (Some(subtree), _) => format!("subtree run {subtree:?}"),
            (None, false) => format!("sweep of {} directories", self.sweep.len()),
            (None, true) if self.whole_dirs.is_empty() => format!("{:?} run", self.kind),
            (None, true) => format!(
                "{:?} run with {} whole directories",
                self.kind,
                self.whole_dirs.len()
            ),
        }
    }

    /// What the run hands rsync: the listed paths, with `dir/.` (the directory's entries, one
    /// level: rsync --dirs semantics) once in place of the files of each whole directory.
    pub fn entries(&self) -> Vec<PathBuf> {
        let mut entries: Vec<PathBuf> = self
            .list
            .iter()
            .filter(|f| !self.whole_dirs.contains(parent(f)))
            .cloned()
            .collect();
        entries.extend(self.whole_dirs.iter().map(|d| contents_of(d)));
        entries
    }
}

/// `dir/.` for a `--files-from` list: the directory's entries, one level deep (rsync --dirs
/// semantics); `./.` for the root.
pub fn contents_of(dir: &Path) -> PathBuf {
    if dir.as_os_str().is_empty() {
        PathBuf::from("./.")
    } else {
        dir.join(".")
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// What the check of an ancestor of a missing path found in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ancestor {
    Dir,
    /// A symlink, a file or a special file.
    NotDir,
    Missing,
    /// Not reachable without a symlink, or not readable.
    Unknown,
}

/// How a path gone from the source is settled on the daemon.
#[derive(Debug, PartialEq, Eq)]
pub enum Settle {
    /// Delete this path: the missing one or its highest ancestor missing from the source too.
    Delete(PathBuf),
    /// Send this ancestor, now a symlink or a file: `--force` replaces the daemon's directory
    /// under its name, and everything below it with it.
    Send(PathBuf),
}

/// What settles `path`, which the source no longer has, given the check of its ancestors
/// (asked for the parent first, then from the top down). Listed below a vanished ancestor,
/// `path` makes rsync send that ancestor as an implied directory, find it gone (exit 24) and
/// fail the same way on every retry, so the highest missing ancestor is deleted instead.
/// Listed below an ancestor that is now a symlink or a file, `path` makes rsync send the
/// ancestor as an implied directory, and that wins over the ancestor's own entry in the same
/// list: the daemon kept a directory where the source has a symlink (chaos soak 6, seed 100:
/// the symlink appeared between the checks of the two names). The ancestor is sent instead.
pub fn settle_missing(path: PathBuf, mut ancestor: impl FnMut(&Path) -> Ancestor) -> Settle {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Settle::Delete(path);
    };
    // A directory reached without symlinks: every ancestor is one too.
    if ancestor(parent) == Ancestor::Dir {
        return Settle::Delete(path);
    }
    let mut at = PathBuf::new();
    for part in parent.components() {
        at.push(part);
        match ancestor(&at) {
            Ancestor::Dir => {}
            Ancestor::NotDir => return Settle::Send(at),
            Ancestor::Missing => return Settle::Delete(at),
            Ancestor::Unknown => break,
        }
    }
    Settle::Delete(path)
}

/// A batch's paths after their check.
#[derive(Debug, Default)]
pub struct Paths {
    /// Gone from the source: the daemon deletes them.
    pub missing: Vec<PathBuf>,
    /// Regular files that existed before: rewritten through a temporary file, never skipped.
    pub changed: Vec<PathBuf>,
    /// Directories, symlinks and special files: rsync compares and updates them the same way
    /// in either kind of run, so they ride with whichever there is.
    pub other: Vec<PathBuf>,
    /// Files created since their last run.
    pub new: Vec<PathBuf>,
    /// Renamed directories: an `-r` run each.
    pub subtrees: Vec<PathBuf>,
    /// Names for the `Linked` run (see `ListKind::Linked`).
    pub linked: Vec<PathBuf>,
    /// Names for the `Siblings` run (see `ListKind::Siblings`).
    pub siblings: Vec<PathBuf>,
}

/// A batch's runs, in the order they go: `first` (alone), then `second` (in parallel), then
/// `last`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Runs {
    pub first: Vec<RunPlan>,
    pub second: Vec<RunPlan>,
    pub last: Vec<RunPlan>,
}

/// Splits the checked paths into runs: `first` (deletions, alone when the batch is big, so no
/// stream copies below a directory another stream deletes), then `second`: the present paths
/// in up to `streams` runs per kind that share no parent directory, then one run per renamed
/// directory, and `last` the `Linked` run. A small batch is one `Changed` run: there latency
/// counts, not the daemon's cost per file, and one kind of run keeps one kind of warm client
/// ready (measured on seq-200: a `New` run beside the `Changed` ones raised p99 from 61 to
/// 83 ms); its linked names ride in it too unless `in_place` (the `Changed` runs write in
/// place) or a renamed directory's run would follow them. `mostly_new` names the directories
/// whose new files go as `dir/.`; it is asked only for big batches (it may cost a syscall per
/// directory).
pub fn plan(
    paths: Paths,
    streams: usize,
    in_place: bool,
    mostly_new: impl FnOnce(&[PathBuf]) -> BTreeSet<PathBuf>,
) -> Runs {
    let Paths {
        missing,
        mut changed,
        other,
        mut new,
        subtrees,
        mut linked,
        mut siblings,
    } = paths;
    let mut first = Vec::new();
    let mut second = Vec::new();
    let small = changed.len() + other.len() + new.len() + linked.len() < SPLIT_MIN || streams <= 1;
    if small {
        let mut list = missing;
        list.extend(changed);
        list.extend(other);
        list.extend(new);
        if !in_place && subtrees.is_empty() {
            list.append(&mut linked);
        }
        list.sort();
        if !list.is_empty() {
            first.push(RunPlan::list(list, ListKind::Changed));
        }
    } else {
        if changed.is_empty() {
            new.extend(other);
        } else {
            changed.extend(other);
        }
        if !missing.is_empty() {
            first.push(RunPlan::list(missing, ListKind::Changed));
        }
        for list in split_by_directory(changed, streams) {
            second.push(RunPlan::list(list, ListKind::Changed));
        }
        let whole = mostly_new(&new);
        for list in split_by_directory(new, streams) {
            second.push(RunPlan::new_files(list, &whole));
        }
    }
    second.extend(subtrees.into_iter().map(RunPlan::subtree));
    let mut last = Vec::new();
    if !linked.is_empty() {
        linked.sort();
        linked.dedup();
        last.push(RunPlan::list(linked, ListKind::Linked));
    }
    if !siblings.is_empty() {
        siblings.sort();
        siblings.dedup();
        last.push(RunPlan::list(siblings, ListKind::Siblings));
    }
    Runs {
        first,
        second,
        last,
    }
}

/// Deals `paths` into at most `streams` lists such that no directory's entries are split
/// across two lists, the largest directories first, each to the least loaded list. Two
/// receivers creating files in one directory spin on its lock: measured here, 20,000 new files
/// in one directory took 9.4 s over two streams and 1.6 s over one.
pub fn split_by_directory(paths: Vec<PathBuf>, streams: usize) -> Vec<Vec<PathBuf>> {
    let mut by_parent: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for path in paths {
        by_parent
            .entry(parent(&path).to_path_buf())
            .or_default()
            .push(path);
    }
    let mut groups: Vec<Vec<PathBuf>> = by_parent.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    let mut lists: Vec<Vec<PathBuf>> = vec![Vec::new(); streams.max(1).min(groups.len())];
    for group in groups {
        let lightest = lists
            .iter_mut()
            .min_by_key(|list| list.len())
            .expect("at least one list");
        lightest.extend(group);
    }
    for list in &mut lists {
        list.sort();
    }
    lists
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ancestors' states as a table; any other path is a directory.
    fn settle(path: &str, table: &[(&str, Ancestor)]) -> Settle {
        settle_missing(PathBuf::from(path), |at| {
            table
                .iter()
                .find(|(p, _)| Path::new(p) == at)
                .map_or(Ancestor::Dir, |&(_, a)| a)
        })
    }

    #[test]
    fn a_missing_path_below_a_directory_is_deleted_itself() {
        assert_eq!(settle("d/e/f", &[]), Settle::Delete("d/e/f".into()));
        assert_eq!(settle("f", &[]), Settle::Delete("f".into()));
    }

    #[test]
    fn a_missing_path_below_a_vanished_directory_deletes_the_highest_one_gone() {
        let table = [("d/e", Ancestor::Missing), ("d", Ancestor::Missing)];
        assert_eq!(settle("d/e/f", &table), Settle::Delete("d".into()));
        assert_eq!(
            settle("d/e/f", &[("d/e", Ancestor::Missing)]),
            Settle::Delete("d/e".into())
        );
    }

    #[test]
    fn a_missing_path_below_a_symlink_or_file_sends_that_entry_instead() {
        // Soak 6 seed 100: f5 a directory on the daemon, a symlink in the source by the time
        // the plan was made; listing f5/f0 beside f5 kept the daemon's directory.
        let table = [("f5/f0", Ancestor::Unknown), ("f5", Ancestor::NotDir)];
        assert_eq!(settle("f5/f0/a", &table), Settle::Send("f5".into()));
        assert_eq!(
            settle("f5/f0", &[("f5", Ancestor::NotDir)]),
            Settle::Send("f5".into())
        );
    }

    #[test]
    fn an_unreachable_ancestor_leaves_the_path_itself() {
        assert_eq!(
            settle(
                "d/e/f",
                &[("d/e", Ancestor::Unknown), ("d", Ancestor::Unknown)]
            ),
            Settle::Delete("d/e/f".into())
        );
    }

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn one_directory_stays_on_one_stream() {
        let lists = split_by_directory(paths(&["a/1", "a/2", "a/3"]), 2);
        assert_eq!(lists, vec![paths(&["a/1", "a/2", "a/3"])]);
    }

    #[test]
    fn directories_are_dealt_largest_first_and_never_split() {
        let lists = split_by_directory(
            paths(&["a/1", "a/2", "a/3", "b/1", "b/2", "c/1", "top", "a/b/deep"]),
            2,
        );
        assert_eq!(lists.len(), 2);
        let [one, two] = [&lists[0], &lists[1]];
        for dir in ["a", "b", "c", "", "a/b"] {
            let here = |list: &Vec<PathBuf>| list.iter().any(|p| parent(p) == Path::new(dir));
            assert!(!(here(one) && here(two)), "{dir:?} split across streams");
        }
        assert_eq!(one.len() + two.len(), 8);
        assert!(one.len().abs_diff(two.len()) <= 1, "{lists:?}");
        assert!(one.is_sorted() && two.is_sorted());
    }

    fn many(dir: &'static str, n: usize) -> impl Iterator<Item = PathBuf> {
        (0..n).map(move |i| PathBuf::from(format!("{dir}/{i}")))
    }

    #[test]
    fn a_small_batch_is_one_changed_run() {
        let Runs {
            first,
            second,
            last,
        } = plan(
            Paths {
                missing: paths(&["gone"]),
                changed: paths(&["old"]),
                other: paths(&["link"]),
                new: paths(&["n1", "n2"]),
                linked: paths(&["h1", "d/h2"]),
                ..Paths::default()
            },
            2,
            false,
            |_| panic!("a small batch never looks for whole directories"),
        );
        assert!(second.is_empty() && last.is_empty());
        assert_eq!(
            first,
            vec![RunPlan::list(
                paths(&["d/h2", "gone", "h1", "link", "n1", "n2", "old"]),
                ListKind::Changed
            )]
        );
    }

    #[test]
    fn linked_names_go_last_past_in_place_writes_and_renamed_directories() {
        let linked = || paths(&["h1", "d/h2", "h1"]);
        let in_place = plan(
            Paths {
                changed: paths(&["old"]),
                linked: linked(),
                ..Paths::default()
            },
            2,
            true,
            |_| BTreeSet::new(),
        );
        assert_eq!(
            in_place.first,
            vec![RunPlan::list(paths(&["old"]), ListKind::Changed)]
        );
        assert_eq!(
            in_place.last,
            vec![RunPlan::list(paths(&["d/h2", "h1"]), ListKind::Linked)]
        );
        let renamed = plan(
            Paths {
                subtrees: paths(&["moved"]),
                linked: linked(),
                ..Paths::default()
            },
            2,
            false,
            |_| BTreeSet::new(),
        );
        assert!(renamed.first.is_empty());
        assert_eq!(renamed.second[0].subtree, Some(PathBuf::from("moved")));
        assert_eq!(renamed.last[0].kind, ListKind::Linked);
        let big = plan(
            Paths {
                new: many("n", 70).collect(),
                linked: linked(),
                ..Paths::default()
            },
            2,
            false,
            |_| BTreeSet::new(),
        );
        assert!(big.second.iter().all(|p| p.kind == ListKind::New));
        assert_eq!(big.last[0].list, paths(&["d/h2", "h1"]));
    }

    #[test]
    fn directories_and_symlinks_ride_with_new_files_when_no_file_changed() {
        let Runs { first, second, .. } = plan(
            Paths {
                other: paths(&["", "link"]),
                new: many("n", 70).collect(),
                ..Paths::default()
            },
            2,
            false,
            |_| BTreeSet::new(),
        );
        assert!(first.is_empty());
        assert!(second.iter().all(|p| p.kind == ListKind::New));
        assert_eq!(second.iter().map(|p| p.list.len()).sum::<usize>(), 72);
        let Runs { second, .. } = plan(
            Paths {
                changed: paths(&["old"]),
                other: paths(&["link"]),
                new: many("n", 70).collect(),
                ..Paths::default()
            },
            2,
            false,
            |_| BTreeSet::new(),
        );
        let changed: Vec<&RunPlan> = second
            .iter()
            .filter(|p| p.kind == ListKind::Changed)
            .collect();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].list, paths(&["link", "old"]));
    }

    #[test]
    fn new_files_of_a_whole_directory_go_as_its_listing() {
        let whole: BTreeSet<PathBuf> = paths(&["", "burst"]).into_iter().collect();
        let plan = RunPlan::new_files(paths(&["burst/a", "burst/b", "other/c", "top"]), &whole);
        assert_eq!(plan.entries(), paths(&["other/c", "./.", "burst/."]));
        // All the files are given back if the run fails.
        assert_eq!(plan.list.len(), 4);
    }

    #[test]
    fn a_big_batch_deletes_first_and_splits_each_kind_by_directory() {
        let Runs { first, second, .. } = plan(
            Paths {
                missing: paths(&["x/gone"]),
                changed: many("p", 40).chain(many("q", 40)).collect(),
                new: many("n", 40).collect(),
                subtrees: paths(&["moved"]),
                ..Paths::default()
            },
            2,
            false,
            |new| {
                assert_eq!(new.len(), 40, "asked about the new files only");
                paths(&["n"]).into_iter().collect()
            },
        );
        assert_eq!(
            first,
            vec![RunPlan::list(paths(&["x/gone"]), ListKind::Changed)]
        );
        let kinds: Vec<ListKind> = second.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [
                ListKind::Changed,
                ListKind::Changed,
                ListKind::New,
                ListKind::Changed
            ]
        );
        assert_eq!(second[2].entries(), paths(&["n/."]));
        assert_eq!(second[3].subtree, Some(PathBuf::from("moved")));
    }
}
