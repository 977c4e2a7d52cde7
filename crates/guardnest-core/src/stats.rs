//! Counters each stage bumps where the work happens; read by logs, status and the control API.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters of one proxy instance. All relaxed atomics: they are statistics, not locks.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections open now (including tunnels).
    pub connections_active: AtomicU64,
    /// CONNECT tunnels established since start.
    pub tunnels_total: AtomicU64,
    /// Plain HTTP requests forwarded since start.
    pub requests_total: AtomicU64,
    /// Requests refused by policy since start.
    pub blocked_total: AtomicU64,
    /// Upstream dials that failed or timed out.
    pub dial_failures: AtomicU64,
    /// Tunnel bytes client to upstream.
    pub bytes_up: AtomicU64,
    /// Tunnel bytes upstream to client.
    pub bytes_down: AtomicU64,
    /// Accept errors (EMFILE and friends) seen by the listener.
    pub accept_errors: AtomicU64,
    /// Requests or connections refused by `[access]` (address, credentials, untrusted PROXY header).
    pub access_denied: AtomicU64,
    /// Idle upstream connections of the forward stage kept for reuse (a gauge).
    pub upstream_idle: AtomicU64,
    /// Second (since the epoch) of the last heap trim.
    #[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
    last_trim: AtomicU64,
}

/// A plain copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::connections_total`].
    pub connections_total: u64,
    /// See [`Stats::connections_active`].
    pub connections_active: u64,
    /// See [`Stats::tunnels_total`].
    pub tunnels_total: u64,
    /// See [`Stats::requests_total`].
    pub requests_total: u64,
    /// See [`Stats::blocked_total`].
    pub blocked_total: u64,
    /// See [`Stats::dial_failures`].
    pub dial_failures: u64,
    /// See [`Stats::bytes_up`].
    pub bytes_up: u64,
    /// See [`Stats::bytes_down`].
    pub bytes_down: u64,
    /// See [`Stats::accept_errors`].
    pub accept_errors: u64,
    /// See [`Stats::access_denied`].
    pub access_denied: u64,
    /// See [`Stats::upstream_idle`].
    pub upstream_idle: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections_total: self.connections_total.load(Relaxed),
            connections_active: self.connections_active.load(Relaxed),
            tunnels_total: self.tunnels_total.load(Relaxed),
            requests_total: self.requests_total.load(Relaxed),
            blocked_total: self.blocked_total.load(Relaxed),
            dial_failures: self.dial_failures.load(Relaxed),
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            access_denied: self.access_denied.load(Relaxed),
            upstream_idle: self.upstream_idle.load(Relaxed),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// Decrements `connections_active` when the connection's last owner drops it.
pub(crate) struct ActiveGuard(pub(crate) std::sync::Arc<Stats>);

impl ActiveGuard {
    pub(crate) fn new(stats: std::sync::Arc<Stats>) -> Self {
        stats.connections_total.fetch_add(1, Relaxed);
        stats.connections_active.fetch_add(1, Relaxed);
        Self(stats)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.connections_active.fetch_sub(1, Relaxed) == 1 {
            release_free_memory(&self.0);
        }
    }
}

/// When the last connection closes, hands freed heap back to the OS (glibc keeps it
/// otherwise, so RSS would stay at its peak after a burst of tunnels). At most once a second.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory(stats: &Stats) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if stats.last_trim.swap(now, Relaxed) != now {
        // SAFETY: malloc_trim only returns free memory to the OS; it touches no live data.
        unsafe { libc::malloc_trim(0) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory(_: &Stats) {}
