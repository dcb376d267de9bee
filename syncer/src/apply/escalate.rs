//! Immediate retries that keep coming back: counted per path across rounds, and after
//! [`AGAIN_LIMIT`] rounds slowed down and widened (see [`escalate_repeated_again`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::replica::Outcome;

/// Rounds in a row a path may come back for an immediate retry (the source changed under
/// a run) before its retry is slowed, reported, and widened to a compare of its parent:
/// a retry that can never succeed must neither spin nor stay silent.
const AGAIN_LIMIT: u32 = 4;

/// A path retried at once round after round is slowed down and widened: its parent
/// directory is compared whole, which settles whatever made the narrow run fail.
/// Counted per path, so a long storm whose rounds each retry different paths (files
/// vanishing under rsync) is not slowed. A path's count ends only when a batch holding it
/// applies it (a batch without it, such as the widened compare, says nothing about it), so
/// a path that keeps failing stays escalated and its backoff keeps growing. Returns
/// whether some path is still escalated, for the applier's backoff.
pub(super) fn escalate_repeated_again(
    batch: &[PathBuf],
    outcome: &mut Outcome,
    again: &mut HashMap<PathBuf, u32>,
) -> bool {
    if outcome.backoff {
        again.clear();
        return false;
    }
    if !again.is_empty() {
        let retried: HashSet<&Path> = outcome.retry.iter().map(PathBuf::as_path).collect();
        for path in batch {
            if !retried.contains(path.as_path()) {
                again.remove(path);
            }
        }
    }
    let mut stuck = Vec::new();
    let mut most = 0;
    for path in &outcome.retry {
        let count = again.entry(path.clone()).or_insert(0);
        *count = count.saturating_add(1);
        if *count >= AGAIN_LIMIT {
            most = most.max(*count);
            stuck.push(widened(path));
        }
    }
    if stuck.is_empty() {
        return again.values().any(|&count| count >= AGAIN_LIMIT);
    }
    stuck.sort();
    stuck.dedup();
    let why = outcome
        .first_error
        .take()
        .unwrap_or_else(|| "the source changed during each run".into());
    outcome.first_error = Some(format!(
        "failed {most} times in a row: {why}; comparing {} directories whole",
        stuck.len()
    ));
    outcome.rescan.extend(stuck);
    outcome.backoff = true;
    true
}

/// What a stuck path's escalation compares whole: its parent, except for a path at the
/// top, whose parent is the whole tree (a full reconcile for one stuck name).
fn widened(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch that came back as `outcome`: just the paths it retries.
    fn batch_of(outcome: &Outcome) -> Vec<PathBuf> {
        outcome.retry.clone()
    }

    fn again_round(paths: &[&str]) -> Outcome {
        Outcome {
            retry: paths.iter().map(PathBuf::from).collect(),
            first_error: Some("rsync: file has vanished".into()),
            ..Outcome::default()
        }
    }

    #[test]
    fn a_path_retried_at_once_round_after_round_is_widened_and_slowed() {
        let mut again = HashMap::new();
        for _ in 1..AGAIN_LIMIT {
            let mut outcome = again_round(&["d/a", "d/b"]);
            escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
            assert!(!outcome.backoff && outcome.rescan.is_empty());
        }
        let mut outcome = again_round(&["d/a", "d/b"]);
        escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
        assert!(outcome.backoff);
        assert_eq!(outcome.rescan, vec![PathBuf::from("d")]);
        assert!(outcome.first_error.unwrap().contains("times in a row"));
    }

    #[test]
    fn a_path_that_keeps_failing_stays_slowed_until_it_stops() {
        let mut again = HashMap::new();
        for round in 1..3 * AGAIN_LIMIT {
            let mut outcome = again_round(&["d/a"]);
            escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
            assert_eq!(outcome.backoff, round >= AGAIN_LIMIT, "round {round}");
        }
        // The widened compare goes through: d/a is still escalated.
        let mut outcome = Outcome::default();
        assert!(escalate_repeated_again(
            &[PathBuf::from("d")],
            &mut outcome,
            &mut again
        ));
        // A batch holding d/a applies it: its count ends.
        let mut outcome = Outcome::default();
        let batch = [PathBuf::from("d/a")];
        assert!(!escalate_repeated_again(&batch, &mut outcome, &mut again));
        assert!(again.is_empty());
    }

    #[test]
    fn a_stuck_path_at_the_top_is_compared_itself_not_the_whole_tree() {
        let mut again = HashMap::new();
        let mut outcome = Outcome::default();
        for _ in 0..AGAIN_LIMIT {
            outcome = again_round(&["top"]);
            escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
        }
        assert_eq!(outcome.rescan, vec![PathBuf::from("top")]);
    }

    #[test]
    fn rounds_retrying_different_paths_are_not_slowed() {
        let mut again = HashMap::new();
        for round in 0..3 * AGAIN_LIMIT {
            let mut outcome = again_round(&[&format!("f{round}")]);
            escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
            assert!(!outcome.backoff && outcome.rescan.is_empty());
        }
    }

    #[test]
    fn a_round_with_backoff_starts_the_count_again() {
        let mut again = HashMap::new();
        for round in 0..3 * AGAIN_LIMIT {
            let mut outcome = again_round(&["a"]);
            outcome.backoff = round % 2 == 1;
            escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
            assert!(outcome.rescan.is_empty());
        }
    }
}
