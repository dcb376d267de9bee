//! `--max-delete N`: at most N replica entries removed per target within any 60 s (a file, a
//! symlink and a directory are one entry each, so removing one directory path with 500
//! entries below it spends 501). Past the cap nothing more is deleted: the syncer stops with
//! exit 3 and says so, as for a lost SOURCE. A sliding window, not a count since start: a
//! steady trickle of deletes over a day is normal, a burst of them is what `rm -rf` of the
//! wrong directory (or a bad deploy) looks like.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);

const NO_LIMIT: u64 = u64::MAX;

pub struct DeleteBudget {
    /// `NO_LIMIT`: no cap. A reload (SIGHUP with `--config`) may change it.
    limit: AtomicU64,
    /// Deletes in the window, oldest first.
    spent: Mutex<VecDeque<(Instant, u64)>>,
}

/// The cap was reached: one more entry would have exceeded `limit` within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRefused {
    pub limit: u64,
    pub target: String,
}

impl fmt::Display for DeleteRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: --max-delete {} reached: more than {} entries would have been deleted within \
             {} s; no more deletes were applied. If SOURCE lost them by mistake, restore it \
             and start again; if the deletes are intended, start with a higher --max-delete \
             (or without it)",
            self.target,
            self.limit,
            self.limit,
            WINDOW.as_secs()
        )
    }
}

impl std::error::Error for DeleteRefused {}

impl DeleteBudget {
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            limit: AtomicU64::new(limit.unwrap_or(NO_LIMIT)),
            spent: Mutex::new(VecDeque::new()),
        }
    }

    pub fn limit(&self) -> Option<u64> {
        let limit = self.limit.load(Relaxed);
        (limit != NO_LIMIT).then_some(limit)
    }

    /// Puts another cap in force; what was spent within the window stays spent.
    pub fn set_limit(&self, limit: Option<u64>) {
        self.limit.store(limit.unwrap_or(NO_LIMIT), Relaxed);
    }

    fn spent_since(&self, now: Instant) -> std::sync::MutexGuard<'_, VecDeque<(Instant, u64)>> {
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        while spent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= WINDOW)
        {
            spent.pop_front();
        }
        spent
    }

    /// Entries that may still be deleted now (None: no cap).
    pub fn remaining_at(&self, now: Instant) -> Option<u64> {
        let limit = self.limit()?;
        let used: u64 = self.spent_since(now).iter().map(|(_, n)| n).sum();
        Some(limit.saturating_sub(used))
    }

    pub fn remaining(&self) -> Option<u64> {
        self.remaining_at(Instant::now())
    }

    /// Takes `n` entries, or refuses (taking none) when fewer remain.
    pub fn take_at(&self, n: u64, now: Instant, target: &str) -> Result<(), DeleteRefused> {
        let Some(limit) = self.limit() else {
            return Ok(());
        };
        let mut spent = self.spent_since(now);
        let used: u64 = spent.iter().map(|(_, n)| n).sum();
        if used + n > limit {
            return Err(DeleteRefused {
                limit,
                target: target.to_string(),
            });
        }
        spent.push_back((now, n));
        Ok(())
    }

    pub fn take(&self, n: u64, target: &str) -> Result<(), DeleteRefused> {
        self.take_at(n, Instant::now(), target)
    }

    /// Records `n` entries another process already deleted (an rsync run under its own
    /// `--max-delete`).
    pub fn spent(&self, n: u64) {
        if self.limit().is_some() && n > 0 {
            let now = Instant::now();
            self.spent_since(now).push_back((now, n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cap_takes_anything() {
        let budget = DeleteBudget::new(None);
        assert_eq!(budget.take(1_000_000, "t"), Ok(()));
        assert_eq!(budget.remaining(), None);
    }

    #[test]
    fn the_cap_holds_within_the_window_and_frees_after_it() {
        let budget = DeleteBudget::new(Some(3));
        let t0 = Instant::now();
        assert_eq!(budget.take_at(2, t0, "t"), Ok(()));
        assert_eq!(budget.remaining_at(t0), Some(1));
        let refused = budget
            .take_at(2, t0 + Duration::from_secs(1), "t")
            .unwrap_err();
        assert!(
            refused.to_string().contains("--max-delete 3 reached"),
            "{refused}"
        );
        assert!(refused.to_string().contains("no more deletes were applied"));
        assert_eq!(budget.take_at(1, t0 + Duration::from_secs(59), "t"), Ok(()));
        assert_eq!(budget.remaining_at(t0 + Duration::from_secs(59)), Some(0));
        // The first two leave the window 60 s after they were spent.
        assert_eq!(budget.remaining_at(t0 + WINDOW), Some(2));
        assert_eq!(budget.take_at(2, t0 + WINDOW, "t"), Ok(()));
    }
}
