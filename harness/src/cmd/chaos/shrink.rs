//! Shrinking a failing op log: a log and a "does this still fail?" test in, a shorter log
//! that still fails out, by delta debugging (Zeller's ddmin) over the operations. The setup
//! boundary moves with the kept operations, so a shrunk log still builds its tree first.

use super::op::OpLog;

/// The sub-log made of the operations at `keep` (ascending indices into `log.ops`).
pub fn sublog(log: &OpLog, keep: &[usize]) -> OpLog {
    OpLog {
        setup: keep.iter().filter(|&&i| i < log.setup).count(),
        ops: keep.iter().map(|&i| log.ops[i].clone()).collect(),
    }
}

/// Runs ddmin with at most `max_trials` calls of `fails`; returns the smallest failing log
/// found and the number of trials spent.
pub fn shrink(log: &OpLog, max_trials: u32, mut fails: impl FnMut(&OpLog) -> bool) -> (OpLog, u32) {
    let mut current: Vec<usize> = (0..log.ops.len()).collect();
    let mut trials = 0u32;
    let mut n = 2usize;
    'outer: while current.len() >= 2 && trials < max_trials {
        let chunk = current.len().div_ceil(n);
        let parts: Vec<Vec<usize>> = current.chunks(chunk).map(<[usize]>::to_vec).collect();
        // A part alone, then everything but a part.
        for part in &parts {
            if trials >= max_trials {
                break 'outer;
            }
            trials += 1;
            if fails(&sublog(log, part)) {
                current = part.clone();
                n = 2;
                continue 'outer;
            }
        }
        if parts.len() > 2 {
            for skip in 0..parts.len() {
                if trials >= max_trials {
                    break 'outer;
                }
                let rest: Vec<usize> = parts
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .flat_map(|(_, p)| p.iter().copied())
                    .collect();
                trials += 1;
                if fails(&sublog(log, &rest)) {
                    current = rest;
                    n = (n - 1).max(2);
                    continue 'outer;
                }
            }
        }
        if n >= current.len() {
            break;
        }
        n = (n * 2).min(current.len());
    }
    (sublog(log, &current), trials)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::chaos::op::Op;

    fn sleeps(n: u32) -> OpLog {
        OpLog {
            setup: 3,
            ops: (0..n).map(|us| Op::Sleep { us }).collect(),
        }
    }

    #[test]
    fn finds_the_two_operations_that_together_fail() {
        let log = sleeps(40);
        let has = |l: &OpLog, us: u32| l.ops.contains(&Op::Sleep { us });
        let (min, trials) = shrink(&log, 500, |l| has(l, 1) && has(l, 27));
        assert_eq!(min.ops, vec![Op::Sleep { us: 1 }, Op::Sleep { us: 27 }]);
        assert_eq!(min.setup, 1, "op 1 was part of the setup");
        assert!(trials < 100, "{trials} trials");
    }

    #[test]
    fn stops_at_the_trial_budget() {
        let log = sleeps(64);
        let mut calls = 0;
        let (min, trials) = shrink(&log, 5, |_| {
            calls += 1;
            false
        });
        assert_eq!((trials, calls), (5, 5));
        assert_eq!(min, log);
    }
}
