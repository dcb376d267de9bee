//! The run's monotonic clock: one `Instant` in, nanoseconds since it out. Generator, probe
//! and the waits stamp with the same clock, so their times compare.

use std::time::{Duration, Instant};

/// The run's monotonic clock: nanoseconds since one `Instant`, shared by generator and probe.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    pub fn sleep_until_ns(&self, t_ns: u64) {
        let now = self.now_ns();
        if t_ns > now {
            std::thread::sleep(Duration::from_nanos(t_ns - now));
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
