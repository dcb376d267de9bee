//! How long failed work waits before it is tried again. The delay follows the length of the
//! outage so far (from 0.2 s to 10 s), not the number of failed batches: one outage fails
//! every batch in flight, and counting each of them would push the next attempt far past the
//! moment the target came back (a 1 s daemon restart took 6 s to recover that way).

/// The first retry's delay, and the shortest.
const FIRST_NS: u64 = 200_000_000;
const MAX_NS: u64 = 10_000_000_000;
/// A failure that goes on is reported again this often.
const REPORT_EVERY_NS: u64 = 10_000_000_000;

/// A spell whose last failure is this old is over, even if no retry was seen to go through
/// (its held-back work was settled another way, by a newer change of the same path, say): a
/// new failure starts a new spell from the shortest delay.
const SPELL_GAP_NS: u64 = 2 * MAX_NS;

/// One applier's spell of failed batches.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    failures: u32,
    /// When the first batch of this spell failed.
    since_ns: u64,
    last_failed_ns: u64,
    reported_ns: u64,
}

/// What a failed batch does next.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Retry {
    /// When its work may be tried again, from now.
    pub delay_ns: u64,
    /// Report it: the spell's first failure, or the first after a long silence.
    pub report: bool,
}

impl Backoff {
    /// A batch failed at `now_ns`: retrying its work waits as long as the outage has lasted
    /// so far (within bounds), so the next attempt comes at most twice the outage's length
    /// after it began.
    pub fn failed(&mut self, now_ns: u64) -> Retry {
        if self.failures > 0 && now_ns >= self.last_failed_ns + SPELL_GAP_NS {
            self.failures = 0;
        }
        if self.failures == 0 {
            self.since_ns = now_ns;
        }
        self.failures += 1;
        self.last_failed_ns = now_ns;
        let report = self.failures == 1 || now_ns >= self.reported_ns + REPORT_EVERY_NS;
        if report {
            self.reported_ns = now_ns;
        }
        Retry {
            delay_ns: now_ns.saturating_sub(self.since_ns).clamp(FIRST_NS, MAX_NS),
            report,
        }
    }

    /// A batch went through: the failed batches of the spell it ends, if any (their work,
    /// still held back, may go at once: the target works again).
    pub fn succeeded(&mut self) -> Option<u32> {
        let failures = std::mem::take(&mut self.failures);
        (failures > 0).then_some(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_delay_follows_the_outage_not_the_number_of_failed_batches() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.failed(10 * S).delay_ns, FIRST_NS);
        // Three batches failing at once (every batch in flight) do not push the next try out.
        for _ in 0..3 {
            assert_eq!(backoff.failed(10 * S).delay_ns, FIRST_NS);
        }
        assert_eq!(backoff.failed(10 * S + S / 2).delay_ns, S / 2);
        assert_eq!(backoff.failed(13 * S).delay_ns, 3 * S);
        assert_eq!(backoff.failed(29 * S).delay_ns, MAX_NS);
        assert_eq!(backoff.succeeded(), Some(7));
        assert_eq!(backoff.succeeded(), None);
        // A new spell starts from the shortest delay again.
        assert_eq!(backoff.failed(200 * S).delay_ns, FIRST_NS);
    }

    #[test]
    fn a_failure_long_after_the_last_one_starts_a_new_spell() {
        let mut backoff = Backoff::default();
        backoff.failed(0);
        assert_eq!(backoff.failed(5 * S).delay_ns, 5 * S);
        let late = backoff.failed(5 * S + SPELL_GAP_NS);
        assert_eq!(
            late,
            Retry {
                delay_ns: FIRST_NS,
                report: true
            }
        );
    }

    #[test]
    fn a_spell_is_reported_once_then_every_ten_seconds() {
        let mut backoff = Backoff::default();
        let reports: Vec<bool> = [0, 1, 5, 9, 10, 11, 25]
            .iter()
            .map(|&t| backoff.failed(t * S).report)
            .collect();
        assert_eq!(reports, [true, false, false, false, true, false, true]);
        backoff.succeeded();
        assert!(backoff.failed(26 * S).report, "a new spell is reported");
    }
}
