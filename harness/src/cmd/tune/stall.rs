//! Stall checks: a predicted tolerated stall (queue / event rate) in, two storms at the rate
//! with the syncer SIGSTOPped for 0.8x and 1.25x of it out, each as a `StallCheck` (overflow
//! expected only past the prediction). The storm shapes and the verdict are pure.

use std::path::Path;

use crate::capacity::records::{StallBudget, StallCheck};
use crate::cmd::tune::cell::{self, Bench};
use crate::cmd::tune::{TuneError, grid};
use crate::scenario::{OpKind, Phase, Scenario, SutSpec};

/// Paused for this share of the predicted stall: 0.8 must not overflow, 1.25 must.
pub const FACTORS: [f64; 2] = [0.8, 1.25];
/// The lead-in before the pause, so the syncer is reading a steady storm when it stops.
const LEAD_IN_S: f64 = 0.5;

/// Ops issued while the syncer is stopped: factor x stall x rate (open loop, so the count
/// is what fills the queue even if the generator lags the schedule).
pub fn stall_ops(predicted_stall_ns: u64, factor: f64, rate: f64) -> u64 {
    (predicted_stall_ns as f64 / 1e9 * factor * rate).round() as u64
}

/// As predicted: an overflow exactly when paused past the prediction.
pub fn as_predicted(factor: f64, overflowed: bool) -> bool {
    overflowed == (factor > 1.0)
}

/// The stall storm: the scenario's first phase at `rate`, a lead-in with the syncer running,
/// then `ops` more with it SIGSTOPped (SIGCONT when that phase ends), at queue `queue`.
pub fn stall_scenario(
    base: &Scenario,
    queue: u64,
    rate: f64,
    ops: u64,
) -> Result<Scenario, TuneError> {
    let template = base.phases.first().ok_or(TuneError::NoPhaseToPause)?;
    let sequence_of_creates = template.sequence == [OpKind::Create];
    if !template.sequence.is_empty() && !sequence_of_creates {
        return Err(TuneError::StallPhase(base.name.clone()));
    }
    let phase = |name: &str, count: u64, pause: bool| -> Phase {
        let mut p = template.clone();
        p.name = name.into();
        p.rate = rate;
        p.pause_sut = pause;
        p.gap_ms = 0;
        p.duration_ms = 0;
        p.rounds = 1;
        if sequence_of_creates {
            p.files = count.max(1) as u32;
            p.ops = 0;
        } else {
            p.ops = count.max(1);
        }
        p
    };
    let mut s = cell::variant(base, Some(queue), rate)?;
    s.phases = vec![
        phase("lead-in", (rate * LEAD_IN_S).ceil() as u64, false),
        phase("stalled", ops, true),
    ];
    s.description = format!(
        "{} Stall check: the syncer SIGSTOPped for {ops} ops at {rate} ops/s.",
        s.description
    );
    crate::scenario::check::validate(&s)
        .map_err(|(key, why)| TuneError::StallStorm { key, why })?;
    Ok(s)
}

/// Runs both factors for `budget` against `spec`; results under `dir/stall-x<factor>`.
pub fn run_checks(
    bench: &Bench,
    base: &Scenario,
    spec: &SutSpec,
    budget: &StallBudget,
    dir: &Path,
    mut done: impl FnMut(&StallCheck),
) -> Result<Vec<StallCheck>, TuneError> {
    let mut checks = Vec::new();
    for factor in FACTORS {
        if bench.stopped() {
            break;
        }
        let ops = stall_ops(budget.tolerated_stall_ns, factor, budget.rate);
        let s = stall_scenario(base, budget.queue, budget.rate, ops)?;
        let run_dir = format!("stall-q{}-r{}-x{factor}", budget.queue, budget.rate);
        let r = bench.run(&s, spec, &dir.join(&run_dir))?;
        if bench.stopped() {
            break;
        }
        let overflowed = grid::overflows(&r) > 0;
        let check = StallCheck {
            queue: budget.queue,
            rate: budget.rate,
            predicted_stall_ns: budget.tolerated_stall_ns,
            factor,
            paused_ns: r.paused_ns,
            overflowed,
            as_predicted: as_predicted(factor, overflowed),
            run_dir,
        };
        done(&check);
        checks.push(check);
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Scenario {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tune-queue.toml"),
        )
        .expect("tune-queue.toml");
        crate::scenario::parse(&text, "tune-queue.toml").expect("valid")
    }

    #[test]
    fn the_paused_ops_fill_factor_times_the_queue() {
        // Queue 4096 at 2000 ops/s x 3 events per op: 0.6827 s; 0.8x of it is 1092.3 ops,
        // 3277 events (under 4096); 1.25x is 1707 ops, 5120 events (over).
        let stall = grid::tolerated_stall_ns(4096, 6000.0);
        assert_eq!(stall_ops(stall, 0.8, 2000.0), 1092);
        assert_eq!(stall_ops(stall, 1.25, 2000.0), 1707);
        assert!(stall_ops(stall, 0.8, 2000.0) * 3 < 4096);
        assert!(stall_ops(stall, 1.25, 2000.0) * 3 > 4096);
    }

    #[test]
    fn the_verdict_expects_an_overflow_only_past_the_prediction() {
        assert!(as_predicted(0.8, false));
        assert!(!as_predicted(0.8, true));
        assert!(as_predicted(1.25, true));
        assert!(!as_predicted(1.25, false));
    }

    #[test]
    fn the_stall_storm_pauses_only_its_second_phase() {
        let s = stall_scenario(&base(), 4096, 2000.0, 1707).expect("valid");
        assert_eq!(s.kernel.max_queued_events, Some(4096));
        assert_eq!(s.phases.len(), 2);
        assert!(!s.phases[0].pause_sut && s.phases[1].pause_sut);
        let plan = crate::storm::plan::plan(&s);
        assert_eq!(plan.phases[0].ops.len(), 1000);
        assert_eq!(plan.phases[1].ops.len(), 1707);
        assert!(plan.phases.iter().all(|p| p.rate == 2000.0));
    }

    #[test]
    fn a_phase_it_cannot_repeat_is_refused_with_a_way_out() {
        let mut b = base();
        b.phases[0].sequence = vec![OpKind::Create, OpKind::Rename];
        b.phases[0].files = 10;
        b.phases[0].mix.clear();
        let e = stall_scenario(&b, 64, 100.0, 10).expect_err("refused");
        assert!(e.to_string().contains("--no-stall-check"), "{e}");
    }
}
