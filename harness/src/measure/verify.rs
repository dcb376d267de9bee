//! The verifier: a source tree and a replica tree in, a `TreeDiff` out (missing, extra and
//! mismatched entries with examples). Equal means same names, type, size, content, mode, mtime
//! in ns for regular files, and symlink target; the same hard-link structure (names that share
//! an inode in the source share one in the replica, and only those); ownership on request;
//! directory mtimes are ignored (every entry a replicator writes changes them). Names are
//! compared as bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

/// How many example paths each list keeps.
pub const EXAMPLES: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TreeDiff {
    pub entries: u64,
    pub missing: u64,
    pub extra: u64,
    pub mismatched: u64,
    pub missing_examples: Vec<String>,
    pub extra_examples: Vec<String>,
    pub mismatched_examples: Vec<String>,
}

impl TreeDiff {
    pub fn is_equal(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.mismatched == 0
    }

    fn merge(mut self, other: TreeDiff) -> TreeDiff {
        self.entries += other.entries;
        self.missing += other.missing;
        self.extra += other.extra;
        self.mismatched += other.mismatched;
        for (mine, theirs) in [
            (&mut self.missing_examples, other.missing_examples),
            (&mut self.extra_examples, other.extra_examples),
            (&mut self.mismatched_examples, other.mismatched_examples),
        ] {
            mine.extend(theirs);
            mine.sort();
            mine.truncate(EXAMPLES);
        }
        self
    }

    /// One line for summaries: counts and the first examples.
    pub fn describe(&self) -> String {
        if self.is_equal() {
            return format!("equal ({} entries)", self.entries);
        }
        let mut parts = Vec::new();
        for (what, n, ex) in [
            ("missing", self.missing, &self.missing_examples),
            ("extra", self.extra, &self.extra_examples),
            ("mismatched", self.mismatched, &self.mismatched_examples),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what} (e.g. {})", ex.join(", ")));
            }
        }
        parts.join("; ")
    }
}

/// Options of the comparison.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompareOptions {
    /// Accept link targets prefixed `/rsyncd-munged/` (rsync daemon `munge symlinks`).
    pub munged_links_ok: bool,
    /// Also compare owner and group (uid, gid) of every entry, symlinks included.
    pub owners: bool,
    /// Do not compare which names share an inode (a replicator that does not keep hard
    /// links).
    pub ignore_links: bool,
}

/// A regular file equal on both sides whose inode has more than one name on either side.
#[derive(Debug, Clone)]
struct Linked {
    path: String,
    src: (u64, u64),
    dst: (u64, u64),
}

/// The names whose link structure differs, each with why: names of one source inode on
/// several replica inodes, or names of several source inodes on one replica inode.
fn link_mismatches(linked: &[Linked]) -> Vec<String> {
    let mut by_src: BTreeMap<(u64, u64), Vec<&Linked>> = BTreeMap::new();
    let mut by_dst: BTreeMap<(u64, u64), Vec<&Linked>> = BTreeMap::new();
    for l in linked {
        by_src.entry(l.src).or_default().push(l);
        by_dst.entry(l.dst).or_default().push(l);
    }
    let mut why: BTreeMap<String, String> = BTreeMap::new();
    let mut report = |group: &[&Linked], side: &str, split: usize| {
        for l in group {
            let others: Vec<&str> = group
                .iter()
                .filter(|o| o.path != l.path)
                .map(|o| o.path.as_str())
                .collect();
            why.entry(l.path.clone()).or_insert_with(|| {
                format!(
                    "{} (hard links: one inode with {} in the {side}, {split} in the other)",
                    l.path,
                    others.join(", ")
                )
            });
        }
    };
    for group in by_src.values() {
        let replicas: BTreeSet<(u64, u64)> = group.iter().map(|l| l.dst).collect();
        if replicas.len() > 1 {
            report(group, "source", replicas.len());
        }
    }
    for group in by_dst.values() {
        let sources: BTreeSet<(u64, u64)> = group.iter().map(|l| l.src).collect();
        if sources.len() > 1 {
            report(group, "replica", sources.len());
        }
    }
    why.into_values().collect()
}

/// Compares `src` and `dst` recursively, directories in parallel.
pub fn compare(src: &Path, dst: &Path, opts: CompareOptions) -> TreeDiff {
    let (mut diff, linked) = compare_dir(src, dst, "", opts);
    if !opts.ignore_links {
        let mismatches = link_mismatches(&linked);
        diff.mismatched += mismatches.len() as u64;
        diff.mismatched_examples.extend(mismatches);
        diff.mismatched_examples.sort();
        diff.mismatched_examples.truncate(EXAMPLES);
    }
    diff
}

fn list(dir: &Path) -> BTreeMap<OsString, Metadata> {
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        if let Ok(meta) = entry.metadata() {
            out.insert(entry.file_name(), meta);
        }
    }
    out
}

/// A name for reports: exact where it is printable UTF-8, escaped (`\n`, `\xff`) otherwise.
fn shown(name: &std::ffi::OsStr) -> String {
    shown_bytes(name.as_bytes())
}

/// `shown` for any byte path ('/' kept), so other reports name paths the same way.
pub fn shown_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn example(list: &mut Vec<String>, text: String) {
    if list.len() < EXAMPLES {
        list.push(text);
    }
}

/// One directory and everything below it: the differences, and the equal files with more
/// than one name on either side (their link structure is compared once the walk is done).
fn compare_dir(src: &Path, dst: &Path, rel: &str, opts: CompareOptions) -> (TreeDiff, Vec<Linked>) {
    let (a, b) = (list(src), list(dst));
    let mut diff = TreeDiff::default();
    let mut linked = Vec::new();
    let mut subdirs = Vec::new();
    for (name, sm) in &a {
        let path = if rel.is_empty() {
            shown(name)
        } else {
            format!("{rel}/{}", shown(name))
        };
        diff.entries += 1;
        let Some(dm) = b.get(name) else {
            diff.missing += 1;
            example(&mut diff.missing_examples, path);
            continue;
        };
        match entry_mismatch(&src.join(name), sm, &dst.join(name), dm, opts) {
            Some(why) => {
                diff.mismatched += 1;
                example(&mut diff.mismatched_examples, format!("{path} ({why})"));
            }
            None if sm.is_dir() => subdirs.push((name.clone(), path)),
            None if sm.is_file() && (sm.nlink() > 1 || dm.nlink() > 1) => linked.push(Linked {
                path,
                src: (sm.dev(), sm.ino()),
                dst: (dm.dev(), dm.ino()),
            }),
            None => {}
        }
    }
    for name in b.keys().filter(|n| !a.contains_key(*n)) {
        let path = if rel.is_empty() {
            shown(name)
        } else {
            format!("{rel}/{}", shown(name))
        };
        diff.extra += 1;
        example(&mut diff.extra_examples, path);
    }
    let (below, mut below_linked) = subdirs
        .par_iter()
        .map(|(name, path)| compare_dir(&src.join(name), &dst.join(name), path, opts))
        .reduce(
            || (TreeDiff::default(), Vec::new()),
            |(a, mut la), (b, lb)| {
                la.extend(lb);
                (a.merge(b), la)
            },
        );
    below_linked.append(&mut linked);
    (below.merge(diff), below_linked)
}

/// Why two entries differ, or None when equal.
fn entry_mismatch(
    sp: &Path,
    s: &Metadata,
    dp: &Path,
    d: &Metadata,
    opts: CompareOptions,
) -> Option<String> {
    let (st, dt) = (s.file_type(), d.file_type());
    if st.is_dir() != dt.is_dir()
        || st.is_file() != dt.is_file()
        || st.is_symlink() != dt.is_symlink()
    {
        return Some("type differs".into());
    }
    if opts.owners && (s.uid(), s.gid()) != (d.uid(), d.gid()) {
        return Some(format!(
            "owner {}:{} != {}:{}",
            d.uid(),
            d.gid(),
            s.uid(),
            s.gid()
        ));
    }
    if st.is_symlink() {
        let (a, b) = (fs::read_link(sp).ok()?, fs::read_link(dp).ok()?);
        // Bytes, not path components: "/rsyncd-munged//etc/x" is the munged "/etc/x".
        let munged = opts.munged_links_ok
            && b.as_os_str().as_bytes().strip_prefix(b"/rsyncd-munged/")
                == Some(a.as_os_str().as_bytes());
        return (a != b && !munged)
            .then(|| format!("link target {} != {}", b.display(), a.display()));
    }
    if s.permissions().mode() & 0o7777 != d.permissions().mode() & 0o7777 {
        return Some(format!(
            "mode {:o} != {:o}",
            d.permissions().mode() & 0o7777,
            s.permissions().mode() & 0o7777
        ));
    }
    if !st.is_file() {
        return None;
    }
    if s.len() != d.len() {
        return Some(format!("size {} != {}", d.len(), s.len()));
    }
    if (s.mtime(), s.mtime_nsec()) != (d.mtime(), d.mtime_nsec()) {
        return Some(format!(
            "mtime {}.{:09} != {}.{:09}",
            d.mtime(),
            d.mtime_nsec(),
            s.mtime(),
            s.mtime_nsec()
        ));
    }
    match (fs::read(sp), fs::read(dp)) {
        (Ok(a), Ok(b)) if a == b => None,
        (Ok(_), Ok(_)) => Some("content differs".into()),
        (Err(e), _) | (_, Err(e)) => Some(format!("unreadable: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
        fs::write(&p, body).expect("write");
    }

    fn copy_tree(src: &Path, dst: &Path) {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", src.display()))
            .arg(dst)
            .status()
            .expect("cp runs");
        assert!(status.success());
    }

    #[test]
    fn equal_trees_compare_equal_and_broken_replica_is_caught() {
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        write(src.path(), "a/b/one", "one");
        write(src.path(), "a/two", "two");
        write(src.path(), "three", "three");
        std::os::unix::fs::symlink("three", src.path().join("link")).expect("symlink");
        copy_tree(src.path(), dst.path());
        let equal = compare(src.path(), dst.path(), CompareOptions::default());
        assert!(equal.is_equal(), "{}", equal.describe());
        assert_eq!(equal.entries, 6);

        // Break the replica: one changed (same size, same mtime), one missing, one extra.
        let changed = dst.path().join("a/two");
        let mtime = fs::metadata(&changed)
            .expect("meta")
            .modified()
            .expect("mtime");
        fs::write(&changed, "TWO").expect("write");
        fs::File::options()
            .write(true)
            .open(&changed)
            .expect("open")
            .set_modified(mtime)
            .expect("set mtime");
        fs::remove_file(dst.path().join("a/b/one")).expect("rm");
        write(dst.path(), "stray", "x");
        let diff = compare(src.path(), dst.path(), CompareOptions::default());
        assert_eq!(
            (diff.missing, diff.extra, diff.mismatched),
            (1, 1, 1),
            "{}",
            diff.describe()
        );
        assert_eq!(diff.missing_examples, vec!["a/b/one".to_string()]);
        assert_eq!(diff.extra_examples, vec!["stray".to_string()]);
        assert_eq!(
            diff.mismatched_examples,
            vec!["a/two (content differs)".to_string()]
        );
    }

    #[test]
    fn hard_link_structure_is_compared_both_ways() {
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        write(src.path(), "a", "x");
        fs::hard_link(src.path().join("a"), src.path().join("b")).expect("ln");
        write(src.path(), "c", "x");
        let mtime = fs::metadata(src.path().join("a"))
            .unwrap()
            .modified()
            .unwrap();
        let set_mtime = |path: &Path| {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(mtime)
                .unwrap()
        };
        set_mtime(&src.path().join("c"));
        for name in ["a", "b", "c"] {
            write(dst.path(), name, "x");
            set_mtime(&dst.path().join(name));
        }
        let split = compare(src.path(), dst.path(), CompareOptions::default());
        assert_eq!(split.mismatched, 2, "{}", split.describe());
        assert!(
            split.mismatched_examples[0].contains("one inode with b in the source"),
            "{:?}",
            split.mismatched_examples
        );
        let ignored = CompareOptions {
            ignore_links: true,
            ..CompareOptions::default()
        };
        assert!(compare(src.path(), dst.path(), ignored).is_equal());
        // Linked in the replica as in the source: equal. Then c joins them in the replica.
        fs::remove_file(dst.path().join("b")).unwrap();
        fs::hard_link(dst.path().join("a"), dst.path().join("b")).unwrap();
        let equal = compare(src.path(), dst.path(), CompareOptions::default());
        assert!(equal.is_equal(), "{}", equal.describe());
        fs::remove_file(dst.path().join("c")).unwrap();
        fs::hard_link(dst.path().join("a"), dst.path().join("c")).unwrap();
        let joined = compare(src.path(), dst.path(), CompareOptions::default());
        assert_eq!(joined.mismatched, 3, "{}", joined.describe());
    }

    #[test]
    fn mode_and_munged_links_are_handled() {
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        write(src.path(), "f", "x");
        std::os::unix::fs::symlink("../t", src.path().join("l")).expect("symlink");
        copy_tree(src.path(), dst.path());
        fs::set_permissions(dst.path().join("f"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        fs::remove_file(dst.path().join("l")).expect("rm link");
        std::os::unix::fs::symlink("/rsyncd-munged/../t", dst.path().join("l")).expect("symlink");
        std::os::unix::fs::symlink("/etc/x", src.path().join("abs")).expect("symlink");
        std::os::unix::fs::symlink("/rsyncd-munged//etc/x", dst.path().join("abs"))
            .expect("symlink");
        let strict = compare(src.path(), dst.path(), CompareOptions::default());
        assert_eq!(strict.mismatched, 3, "{}", strict.describe());
        let lenient = compare(
            src.path(),
            dst.path(),
            CompareOptions {
                munged_links_ok: true,
                ..CompareOptions::default()
            },
        );
        assert_eq!(lenient.mismatched, 1, "{}", lenient.describe());
    }
}
