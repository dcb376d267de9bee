//! `--exclude GLOB` patterns: a relative path in, excluded or not out.
//!
//! A pattern is matched against the path relative to SOURCE (`*` does not cross `/`, `**`
//! does). A leading `/` anchors a pattern at SOURCE. A pattern without `/` matches the last component anywhere (so `*.tmp` or
//! `.git` work as people expect from rsync). An excluded directory is neither watched nor
//! entered, so everything below it is excluded too.

use std::path::Path;
use std::sync::{Arc, RwLock};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, Clone)]
pub struct Excludes {
    patterns: Vec<String>,
    whole_path: GlobSet,
    last_component: GlobSet,
    empty: bool,
}

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut whole = GlobSetBuilder::new();
        let mut last = GlobSetBuilder::new();
        for pattern in patterns {
            let trimmed = pattern.trim_start_matches('/').trim_end_matches('/');
            let glob: Glob = GlobBuilder::new(trimmed)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|err| format!("--exclude {pattern:?}: {err}"))?;
            if trimmed.contains('/') || pattern.starts_with('/') {
                whole.add(glob);
            } else {
                last.add(glob);
            }
        }
        let build = |builder: GlobSetBuilder| builder.build().map_err(|err| err.to_string());
        Ok(Self {
            patterns: patterns.to_vec(),
            whole_path: build(whole)?,
            last_component: build(last)?,
            empty: patterns.is_empty(),
        })
    }

    pub fn none() -> Self {
        Self::new(&[]).expect("no patterns always build")
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// These patterns and `more` (a target's own on top of the global ones).
    pub fn with(&self, more: &[String]) -> Result<Self, String> {
        let mut all = self.patterns.clone();
        all.extend(more.iter().filter(|p| !self.patterns.contains(p)).cloned());
        Self::new(&all)
    }

    /// True when `rel` itself matches (its ancestors were checked when they were entered).
    /// The barrier's cookies (`syncer wait`) are always excluded.
    pub fn is_excluded(&self, rel: &Path) -> bool {
        if crate::barrier::is_cookie(rel) {
            return true;
        }
        if self.empty || rel.as_os_str().is_empty() {
            return false;
        }
        if self.whole_path.is_match(rel) {
            return true;
        }
        rel.file_name()
            .is_some_and(|name| self.last_component.is_match(Path::new(name)))
    }

    /// The same patterns in rsync's `--exclude` dialect, where a pattern with an inner `/` is
    /// matched against the end of the path unless anchored: ours are anchored, so add the `/`.
    pub fn rsync_patterns(&self) -> Vec<String> {
        let cookies = format!("/{}*", crate::barrier::COOKIE_PREFIX);
        std::iter::once(cookies)
            .chain(self.patterns.iter().map(|p| {
                let inner = p.trim_start_matches('/').trim_end_matches('/');
                if p.starts_with('/') || inner.contains('/') {
                    format!("/{inner}")
                } else {
                    inner.to_string()
                }
            }))
            .collect()
    }

    /// True when `rel` or any ancestor matches (for paths that did not come from a walk).
    pub fn covers(&self, rel: &Path) -> bool {
        let top = rel.components().next().map(|c| Path::new(c.as_os_str()));
        top.is_some_and(crate::barrier::is_cookie)
            || (!self.empty && rel.ancestors().any(|ancestor| self.is_excluded(ancestor)))
    }
}

/// Excludes that a reload (SIGHUP with `--config`) can replace while every thread reads
/// them. Reads take a read lock for one match; a reload holds the write lock only to swap.
#[derive(Debug)]
pub struct ExcludeSet(RwLock<Arc<Excludes>>);

impl ExcludeSet {
    pub fn new(excludes: Excludes) -> Self {
        Self(RwLock::new(Arc::new(excludes)))
    }

    /// The patterns in force now (a walk takes them once, so it sees one set throughout).
    pub fn get(&self) -> Arc<Excludes> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `excludes` in force and returns the ones they replace.
    pub fn replace(&self, excludes: Excludes) -> Arc<Excludes> {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *slot, Arc::new(excludes))
    }

    pub fn is_excluded(&self, rel: &Path) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_excluded(rel)
    }

    pub fn covers(&self, rel: &Path) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).covers(rel)
    }

    pub fn rsync_patterns(&self) -> Vec<String> {
        self.get().rsync_patterns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_relative_paths_and_names() {
        let ex = Excludes::new(&["*.tmp".into(), "cache/**".into(), "/build".into()]).unwrap();
        assert!(ex.is_excluded(Path::new("x.tmp")));
        assert!(ex.is_excluded(Path::new("deep/dir/x.tmp")));
        assert!(ex.is_excluded(Path::new("cache/a/b")));
        assert!(ex.is_excluded(Path::new("build")));
        assert!(!ex.is_excluded(Path::new("src/build.rs")));
        assert!(!ex.is_excluded(Path::new("src/build")));
        assert!(!ex.is_excluded(Path::new("tmp")));
        assert!(ex.covers(Path::new("build/out/file")));
        assert!(!ex.covers(Path::new("src/file")));
    }

    #[test]
    fn rsync_patterns_keep_the_anchoring() {
        let ex = Excludes::new(&["*.tmp".into(), "cache/**".into(), "/build/".into()]).unwrap();
        let cookies = format!("/{}*", crate::barrier::COOKIE_PREFIX);
        assert_eq!(
            ex.rsync_patterns(),
            vec![&cookies, "*.tmp", "/cache/**", "/build"]
        );
    }

    #[test]
    fn bad_pattern_names_itself() {
        let err = Excludes::new(&["a[".into()]).unwrap_err();
        assert!(err.contains("a["), "{err}");
    }
}
