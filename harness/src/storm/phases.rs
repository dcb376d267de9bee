//! The storm: the plan's phases in, one `PhaseRun` per phase out, with a progress bar per
//! phase (live ops/s), the syncer paused (SIGSTOP) for phases that ask for it, and the
//! syncer's process tree sampled meanwhile so short-lived children are seen.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use nix::sys::signal::Signal;

use crate::host::proctree::TreeTracker;
use crate::storm::generator::{self, PhaseRun};
use crate::storm::plan::Plan;
use crate::sut::SutProcess;
use crate::util::clock::Clock;

/// What the storm needs from the run: the plan, its time budget and the Ctrl-C flag.
pub struct Storm<'a> {
    pub plan: &'a Plan,
    /// The storm's deadline, from the start of its first phase (`[timeouts] storm_s`).
    pub storm_s: f64,
    pub stop: &'a AtomicBool,
    /// Draws the phases' bars under a caller's own bar (tune's grid bar); None: plain bars.
    pub bars: Option<&'a indicatif::MultiProgress>,
}

pub fn run_storm(
    storm: &Storm,
    src: &std::path::Path,
    clock: &Clock,
    sut: Option<&SutProcess>,
    tracker: &mut TreeTracker,
) -> Vec<PhaseRun> {
    let storm_deadline = clock.now_ns() + (storm.storm_s * 1e9) as u64;
    let gen_stop = AtomicBool::new(false);
    let mut runs = Vec::new();
    for phase in &storm.plan.phases {
        let gap_end = clock.now_ns() + phase.gap_ms * 1_000_000;
        while clock.now_ns() < gap_end && !storm.stop.load(Ordering::Relaxed) {
            std::thread::sleep(
                Duration::from_millis(5)
                    .min(Duration::from_nanos(gap_end.saturating_sub(clock.now_ns()))),
            );
        }
        let paused = phase.pause_sut && sut.is_some();
        if let (true, Some(p)) = (paused, sut) {
            p.signal(tracker, Signal::SIGSTOP);
        }
        let progress = AtomicU64::new(0);
        let mut bar = ProgressBar::new(phase.ops.len() as u64);
        if let Some(bars) = storm.bars {
            bar = bars.add(bar);
        }
        bar.set_style(
            ProgressStyle::with_template("{prefix:>14} {bar:30} {pos}/{len} {msg}")
                .expect("valid template"),
        );
        bar.set_prefix(phase.name.clone());
        let run = std::thread::scope(|scope| {
            // The worker drops `done_tx` when it ends (or panics): the loop below wakes at once
            // instead of finishing its 50 ms sleep, which added up to 5 s over modify-hot's
            // 100 short rounds and inflated its storm time.
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            let (progress, gen_stop) = (&progress, &gen_stop);
            let worker = scope.spawn(move || {
                let _done = done_tx;
                generator::run_phase(
                    src,
                    storm.plan,
                    &phase.ops,
                    phase.threads,
                    phase.via,
                    clock,
                    progress,
                    gen_stop,
                )
            });
            let start = clock.now_ns();
            let mut ticks = 0u32;
            while done_rx.recv_timeout(Duration::from_millis(50))
                == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            {
                let done = progress.load(Ordering::Relaxed);
                let secs = (clock.now_ns() - start) as f64 / 1e9;
                bar.set_position(done);
                bar.set_message(format!("{:.0} ops/s", done as f64 / secs.max(1e-9)));
                ticks += 1;
                if ticks % 4 == 0 && !paused {
                    tracker.sample();
                }
                if storm.stop.load(Ordering::Relaxed) || clock.now_ns() > storm_deadline {
                    gen_stop.store(true, Ordering::Relaxed);
                }
            }
            worker.join().unwrap_or_else(|_| PhaseRun {
                first_error: Some("generator thread panicked".into()),
                ..PhaseRun::default()
            })
        });
        bar.finish_with_message(format!(
            "{:.0} ops/s",
            run.done_ns.len() as f64 / ((run.end_ns - run.start_ns).max(1) as f64 / 1e9)
        ));
        if let Some(bars) = storm.bars {
            // Under a caller's bar the phase's own bar goes once done; the caller reports.
            bars.remove(&bar);
        }
        if let (true, Some(p)) = (paused, sut) {
            p.signal(tracker, Signal::SIGCONT);
        }
        runs.push(run);
        if gen_stop.load(Ordering::Relaxed) {
            break;
        }
    }
    runs
}
