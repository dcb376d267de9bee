//! `--bwlimit`: a token bucket shared by every copy of one target, so their total stays under
//! the rate. Bytes are spent after they are copied and a spender that overdrew sleeps off its
//! debt: chunks are small (a tenth of a second's worth), so the rate holds within a chunk.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// At most this much unspent allowance builds up while idle (a quarter second's worth).
const BURST_SECONDS: f64 = 0.25;

#[derive(Debug)]
pub struct Bandwidth {
    /// 0: no limit. A reload (SIGHUP with `--config`) may change it while copies run.
    bytes_per_sec: AtomicU64,
    /// Allowance left (negative: owed) and when it was last topped up.
    state: Mutex<(f64, Instant)>,
}

impl Bandwidth {
    /// No limit until `set_rate`.
    pub fn unlimited() -> Self {
        Self {
            bytes_per_sec: AtomicU64::new(0),
            state: Mutex::new((0.0, Instant::now())),
        }
    }

    pub fn new(bytes_per_sec: u64) -> Self {
        let bandwidth = Self::unlimited();
        bandwidth.set_rate(Some(bytes_per_sec));
        bandwidth
    }

    /// Puts a new rate in force (None: unlimited), starting from a full burst allowance.
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) {
        let rate = bytes_per_sec.map_or(0, |r| r.max(1));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = (rate as f64 * BURST_SECONDS, Instant::now());
        self.bytes_per_sec.store(rate, Relaxed);
    }

    /// Itself while a rate is set.
    pub fn limited(&self) -> Option<&Self> {
        (self.bytes_per_sec.load(Relaxed) > 0).then_some(self)
    }

    /// Bytes to copy between two `spend`s.
    pub fn chunk(&self) -> usize {
        (self.bytes_per_sec.load(Relaxed) / 10).clamp(4096, 1 << 20) as usize
    }

    /// Takes `bytes` from the allowance, sleeping while it is overdrawn.
    pub fn spend(&self, bytes: u64) {
        let rate = self.bytes_per_sec.load(Relaxed) as f64;
        if rate == 0.0 {
            return;
        }
        let wait = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let (tokens, last) = &mut *state;
            *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate)
                .min(rate * BURST_SECONDS);
            *last = now;
            *tokens -= bytes as f64;
            (*tokens < 0.0).then(|| Duration::from_secs_f64(-*tokens / rate))
        };
        if let Some(wait) = wait {
            std::thread::sleep(wait);
        }
    }
}

/// Parses a `--bwlimit` RATE: a number of KiB per second as rsync takes it, or with a suffix
/// K, M or G (powers of 1024, an optional trailing `B`, `iB` or `/s`).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?}: give bytes per second as a number of KiB (as rsync does) or with K, M or G, e.g. 500K or 10M"
        )
    };
    let trimmed = text.trim().trim_end_matches("/s");
    let trimmed = trimmed.trim_end_matches("iB").trim_end_matches(['B', 'b']);
    let (digits, unit) = match trimmed
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
    {
        Some((at, _)) => trimmed.split_at(at),
        None => (trimmed, "K"),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(bad()),
    };
    let number: f64 = digits.trim().parse().map_err(|_| bad())?;
    let bytes = number * (1u64 << shift) as f64;
    if !(1024.0..1e15).contains(&bytes) {
        return Err(format!("{}: at least 1K", bad()));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_like_rsync_and_with_suffixes() {
        assert_eq!(parse_rate("500"), Ok(500 * 1024));
        assert_eq!(parse_rate("500K"), Ok(500 * 1024));
        assert_eq!(parse_rate("10M"), Ok(10 << 20));
        assert_eq!(parse_rate("1.5MiB/s"), Ok(3 << 19));
        assert_eq!(parse_rate("2g"), Ok(2 << 30));
        assert!(parse_rate("fast").unwrap_err().contains("e.g. 500K"));
        assert!(parse_rate("10T").is_err());
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn spending_past_the_allowance_waits_for_it() {
        let limit = Bandwidth::new(1 << 20);
        let started = Instant::now();
        // The burst (256 KiB) goes at once, the next 256 KiB take a quarter second.
        limit.spend(256 << 10);
        assert!(started.elapsed() < Duration::from_millis(100));
        limit.spend(256 << 10);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(limit.chunk(), 104_857);
    }

    mod prop {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            #![proptest_config(crate::prop::config(256))]

            /// Any text, and text shaped like a rate: a rate of at least 1 KiB/s or the hint.
            #[test]
            fn prop_bwlimit_any_text_never_panics(
                text in prop_oneof![
                    any::<String>(),
                    "[ +-]?[0-9.eE]{0,12}[kKmMgGtTé]?(iB|B|b)?(/s)?",
                ],
            ) {
                match parse_rate(&text) {
                    Ok(bytes) => prop_assert!((1024..1_000_000_000_000_000).contains(&bytes)),
                    Err(message) => prop_assert!(message.contains("e.g. 500K"), "{}", message),
                }
            }
        }
    }
}
