//! `--metrics ADDR`: the status counters at `http://ADDR/metrics` in the Prometheus text
//! format, served by a small HTTP server (tiny_http) on its own thread. The JSON status file
//! (`--status`) stays; both read the same atomics.
//!
//! The address is bound before anything else starts, so one in use is a start-up error that
//! changes nothing in any replica.

mod text;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use text::{Family, Kind};

use crate::error::Error;
use crate::queue::shared::TargetQueue;
use crate::stats::{Stats, TargetStats, max_rss_kib, unix_ns};

/// A bound, not yet serving, metrics endpoint.
pub struct Endpoint {
    server: tiny_http::Server,
    addr: String,
}

/// Binds ADDR.
pub fn bind(addr: &str) -> Result<Endpoint, Error> {
    let server = tiny_http::Server::http(addr).map_err(|err| {
        Error::Usage(format!(
            "--metrics {addr}: cannot listen there ({err}); give a free address, e.g. 127.0.0.1:9185"
        ))
    })?;
    Ok(Endpoint {
        server,
        addr: addr.to_string(),
    })
}

impl Endpoint {
    /// Answers `GET /metrics` until the process exits.
    pub fn serve(self, stats: Arc<Stats>, queues: Vec<Arc<TargetQueue>>) -> std::io::Result<()> {
        crate::info!("metrics at http://{}/metrics", self.addr);
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for request in self.server.incoming_requests() {
                    let response = if request.url() == "/metrics" {
                        let page = text::render(&families(&stats, &queues));
                        let kind = "text/plain; version=0.0.4; charset=utf-8";
                        let header = tiny_http::Header::from_bytes("Content-Type", kind)
                            .expect("a valid header");
                        tiny_http::Response::from_string(page).with_header(header)
                    } else {
                        tiny_http::Response::from_string("only /metrics is served here\n")
                            .with_status_code(404)
                    };
                    // A scraper that hung up early gets nothing more.
                    let _ = request.respond(response);
                }
            })
            .map(drop)
    }
}

/// Seconds since the target last had nothing pending; 0 while it has caught up.
fn lag_seconds(stats: &TargetStats, queue: &TargetQueue, started_unix_ns: u64) -> f64 {
    if stats.backlog.load(Relaxed) + stats.in_flight.load(Relaxed) == 0 {
        return 0.0;
    }
    let since = queue.caught_up_unix_ns.load(Relaxed).max(started_unix_ns);
    unix_ns(SystemTime::now()).saturating_sub(since) as f64 / 1e9
}

fn families(stats: &Stats, queues: &[Arc<TargetQueue>]) -> Vec<Family> {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let count = |v: &std::sync::atomic::AtomicU64| v.load(Relaxed) as f64;
    let per = |f: &dyn Fn(&TargetStats, &TargetQueue) -> f64| {
        stats
            .targets
            .iter()
            .zip(queues)
            .map(|(t, q)| (t.name.clone(), f(t, q)))
            .collect::<Vec<_>>()
            .into_iter()
    };
    use Kind::{Counter, Gauge};
    vec![
        Family::one(
            "syncer_ready",
            "1 once the initial sync is applied.",
            Gauge,
            flag(stats.ready_ns.load(Relaxed) > 0),
        ),
        Family::one(
            "syncer_events_total",
            "Kernel events read.",
            Counter,
            count(&stats.events),
        ),
        Family::one(
            "syncer_overflows_total",
            "Kernel event queue overflows (each costs a reconcile).",
            Counter,
            count(&stats.overflows),
        ),
        Family::one(
            "syncer_reconciles_total",
            "Subtree compares run.",
            Counter,
            count(&stats.reconciles),
        ),
        Family::one(
            "syncer_errors_total",
            "Errors outside the targets.",
            Counter,
            count(&stats.errors),
        ),
        Family::one(
            "syncer_watches",
            "Directories watched (inotify).",
            Gauge,
            count(&stats.dirs_watched),
        ),
        Family::one(
            "syncer_watch_limit_hit",
            "1 when the inotify watch limit was hit.",
            Gauge,
            flag(stats.watch_limit_hit.load(Relaxed)),
        ),
        Family::one(
            "syncer_peak_rss_bytes",
            "Peak resident memory (VmHWM).",
            Gauge,
            (max_rss_kib() * 1024) as f64,
        ),
        Family::per_target(
            "syncer_target_backlog",
            "Paths and renames waiting.",
            Gauge,
            per(&|t, _| count(&t.backlog)),
        ),
        Family::per_target(
            "syncer_target_in_flight",
            "Paths being applied.",
            Gauge,
            per(&|t, _| count(&t.in_flight)),
        ),
        Family::per_target(
            "syncer_target_lag_seconds",
            "Seconds since the target last had nothing pending (0: caught up).",
            Gauge,
            per(&|t, q| lag_seconds(t, q, stats.started_unix_ns)),
        ),
        Family::per_target(
            "syncer_target_last_success_timestamp_seconds",
            "When a batch last went through (Unix time; 0: never).",
            Gauge,
            per(&|t, _| count(&t.last_success_unix_ns) / 1e9),
        ),
        Family::per_target(
            "syncer_target_errors_total",
            "Failed attempts.",
            Counter,
            per(&|t, _| count(&t.errors)),
        ),
        Family::per_target(
            "syncer_target_retries_total",
            "Work put back for a retry.",
            Counter,
            per(&|t, _| count(&t.retries)),
        ),
        Family::per_target(
            "syncer_target_batches_total",
            "Batches applied.",
            Counter,
            per(&|t, _| count(&t.batches)),
        ),
        Family::per_target(
            "syncer_target_files_sent_total",
            "Files written (local copies, or files rsync sent).",
            Counter,
            per(&|t, _| count(&t.ops.copy) + count(&t.files_sent)),
        ),
        Family::per_target(
            "syncer_target_bytes_sent_total",
            "Bytes written (local copies, or bytes rsync sent).",
            Counter,
            per(&|t, _| count(&t.bytes_copied) + count(&t.bytes_sent)),
        ),
        Family::per_target(
            "syncer_target_deletes_total",
            "Replica entries removed (local targets).",
            Counter,
            per(&|t, _| count(&t.ops.delete)),
        ),
        Family::per_target(
            "syncer_target_rsync_runs_total",
            "rsync client runs (rsync targets).",
            Counter,
            per(&|t, _| count(&t.rsync_runs)),
        ),
    ]
}
