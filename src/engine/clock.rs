//! Where the engine gets the time, so tests can run hours of soaks and backoffs in
//! milliseconds under `tokio::time::pause`.

use std::time::SystemTime;

/// Wall-clock time for event stamps and freeze windows.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// Wall time that advances with tokio's clock: real in production, paused and
/// auto-advanced in tests, so timestamps stay consistent with sleeps either way.
pub struct TokioClock {
    base: SystemTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Starts at the real current time.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// Starts at a fixed time (deterministic tests).
    pub fn starting_at(base: SystemTime) -> Self {
        TokioClock {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base + self.start.elapsed()
    }
}
