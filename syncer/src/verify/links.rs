//! The link-structure check: names that share an inode in SOURCE must share one in TARGET,
//! and names that share one in TARGET must share one in SOURCE. Only names compared as
//! regular files on both sides take part, so a link to a name outside SOURCE or in an
//! excluded subtree (a plain copy in the replica) is no difference.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Finding;
use crate::links::Ino;

/// One name that is a regular file on both sides, with its inode on each side where that
/// inode has more than one name.
#[derive(Debug, Clone)]
pub struct LinkRow {
    pub path: PathBuf,
    pub src: Option<Ino>,
    pub dst: Option<Ino>,
}

/// The differences in link structure, and how many groups of shared names were checked.
pub fn link_findings(mut rows: Vec<LinkRow>) -> (Vec<Finding>, u64) {
    rows.sort_by(|a, b| a.path.cmp(&b.path));
    let mut findings = Vec::new();
    let mut groups = 0;
    for (side, other, from) in [("SOURCE", "TARGET", true), ("TARGET", "SOURCE", false)] {
        let mut by_inode: BTreeMap<Ino, Vec<&LinkRow>> = BTreeMap::new();
        for row in &rows {
            if let Some(ino) = if from { row.src } else { row.dst } {
                by_inode.entry(ino).or_default().push(row);
            }
        }
        for names in by_inode.values().filter(|names| names.len() > 1) {
            if from {
                groups += 1;
            }
            let there = |row: &LinkRow| if from { row.dst } else { row.src };
            let first = names[0];
            for row in &names[1..] {
                if there(row).is_none() || there(row) != there(first) {
                    findings.push(Finding::Differs(
                        row.path.clone(),
                        vec![format!(
                            "hard link: shares its inode with {:?} in {side}, not in {other}",
                            first.path
                        )],
                    ));
                }
            }
        }
    }
    (findings, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, src: Option<u64>, dst: Option<u64>) -> LinkRow {
        LinkRow {
            path: path.into(),
            src: src.map(|i| (1, i)),
            dst: dst.map(|i| (2, i)),
        }
    }

    #[test]
    fn shared_names_must_be_shared_on_both_sides() {
        let linked = vec![row("a", Some(7), Some(70)), row("b", Some(7), Some(70))];
        assert_eq!(link_findings(linked), (vec![], 1));
        let split = vec![row("a", Some(7), Some(70)), row("b", Some(7), None)];
        let (found, groups) = link_findings(split);
        assert_eq!(groups, 1);
        assert!(
            matches!(&found[..], [Finding::Differs(p, w)] if p == &PathBuf::from("b") && w[0].contains("in SOURCE, not in TARGET"))
        );
        let joined = vec![row("a", None, Some(70)), row("b", None, Some(70))];
        let (found, _) = link_findings(joined);
        assert!(
            matches!(&found[..], [Finding::Differs(_, w)] if w[0].contains("in TARGET, not in SOURCE"))
        );
        // Linked to a name outside the compared tree: one name per side, nothing to check.
        assert_eq!(link_findings(vec![row("o", Some(9), None)]), (vec![], 0));
    }
}
