//! Memory of this process and of the children it starts (`--binary`); a child's is read after
//! its run once its resident set has stopped falling.

use std::time::Duration;

pub use x402_facilitator::memory::{resident, resident_of};

/// Wait for another process's resident set to stop falling after a burst (its connections
/// closing, its trimmer returning free pages: `memory.trim_interval_secs`, 5 s by default) and
/// return it, bytes. Sampled every 0.5 s; settled once 8 s (more than a trim interval) pass
/// without a fall of 1% or more; read after 30 s at most. `None` once the process is gone.
pub async fn settle(pid: u32) -> Option<u64> {
    const EVERY: Duration = Duration::from_millis(500);
    const QUIET: Duration = Duration::from_secs(8);
    const AT_MOST: Duration = Duration::from_secs(30);
    let start = tokio::time::Instant::now();
    let mut low = resident_of(pid)?.0;
    let mut since = start;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let now = resident_of(pid)?.0;
        if now < low - low / 100 {
            since = tokio::time::Instant::now();
        }
        low = low.min(now);
        if since.elapsed() >= QUIET || start.elapsed() >= AT_MOST {
            return Some(now);
        }
    }
}
