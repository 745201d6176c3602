//! Redis command latency and errors, as the node sees them: `bff_redis_command_duration_seconds`
//! (one histogram, every command and pipeline the link sends, a retry included in the one it
//! retries) and `bff_redis_errors_total` (commands that failed for good: the caller got an
//! error, which a request turns into a 503).

use std::sync::LazyLock;
use std::time::Instant;

// Each installs the recorder first: a handle taken before it is installed records nothing, and
// Redis commands start (the key ring, the node cache) before the router is built.
static DURATION: LazyLock<metrics::Histogram> = LazyLock::new(|| {
    let _ = super::handle();
    metrics::histogram!("bff_redis_command_duration_seconds")
});
static ERRORS: LazyLock<metrics::Counter> = LazyLock::new(|| {
    let _ = super::handle();
    metrics::counter!("bff_redis_errors_total")
});

/// Times one command from its creation until it is dropped (answered, failed or cancelled).
pub struct CommandTimer(Instant);

impl CommandTimer {
    pub fn start() -> Self {
        CommandTimer(Instant::now())
    }
}

impl Drop for CommandTimer {
    fn drop(&mut self) {
        DURATION.record(self.0.elapsed().as_secs_f64());
    }
}

/// Counts a command that failed for good.
pub fn failed() {
    ERRORS.increment(1);
}
