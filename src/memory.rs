//! The process's memory: what it holds (`/proc/self/status`), and giving back what the
//! allocator keeps.
//!
//! glibc's malloc gives each thread that allocates an arena of its own (up to 8 per core), and
//! keeps what is freed in them for reuse instead of returning it to the system. After a burst
//! of requests (thousands of settles in flight, their bodies, receipts and database rows) the
//! resident set stays at the burst's peak although the live heap is back to its idle size.
//! `memory.arena_max` caps the arenas (less memory held per thread, a little more lock
//! contention), and `memory.trim_interval_secs` returns free pages every few seconds
//! (`malloc_trim`). On other C libraries both are no-ops.

use std::time::Duration;

/// This process's resident set and its peak (`VmRSS`, `VmHWM`), bytes; `None` where `/proc`
/// is missing.
pub fn resident() -> Option<(u64, u64)> {
    resident_at("/proc/self/status")
}

/// The same of another process (e.g. a child `x402-bench` started).
pub fn resident_of(pid: u32) -> Option<(u64, u64)> {
    resident_at(&format!("/proc/{pid}/status"))
}

fn resident_at(status_path: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(status_path).ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    Some((kib("VmRSS:")? * 1024, kib("VmHWM:")? * 1024))
}

/// Cap glibc's malloc arenas at `n` (0 = glibc's default). Call before any thread starts:
/// arenas already made stay.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn limit_arenas(n: u32) {
    if n == 0 {
        return;
    }
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes any positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, n);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas(_n: u32) {}

/// Return the allocator's free pages to the system (every arena). True when some were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes the arenas' locks itself and only releases free memory.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

/// Trim every `every` on the current runtime, on a blocking thread (a trim walks every arena:
/// milliseconds with a large heap, not to be spent on a worker that serves requests).
pub fn spawn_trimmer(every: Duration) {
    if every.is_zero() {
        return;
    }
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            // `/proc` is read only for the debug line.
            let debug = tracing::enabled!(tracing::Level::DEBUG);
            let before = debug.then(resident).flatten().map(|r| r.0);
            let released = actix_web::rt::task::spawn_blocking(trim)
                .await
                .unwrap_or(false);
            if released && debug {
                if let (Some(b), Some((a, _))) = (before, resident()) {
                    tracing::debug!(
                        before_mb = b / (1 << 20),
                        after_mb = a / (1 << 20),
                        "returned free memory to the system"
                    );
                }
            }
        }
    });
}
