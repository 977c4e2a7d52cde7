//! Health stage: the design's periodic self-connect check, so a listener that stopped
//! accepting shows up in logs and status instead of only in users' browsers.
//!
//! The check's connection is not a client's: it comes from an address chosen before it
//! connects ([`Health::is_probe`]), which the accept stage closes uncounted, so the
//! connection counters a window shows are the user's own.
//!
//! When GuardNest chains through a parent proxy named outright, the upstream check connects
//! to each parent, so "parent proxy unreachable" is told apart from "site unreachable".

use parking_lot::Mutex;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;

/// Longest a single self-connect may take before it counts as a failure.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Results of the health checks so far.
#[derive(Debug, Default)]
pub struct Health {
    checks: AtomicU64,
    failures: AtomicU64,
    last_ok: AtomicBool,
    /// Where the current check connects from.
    probe: Mutex<Option<SocketAddr>>,
    /// The last upstream check: `None` before one ran (or with no parent to check), else
    /// each parent's failure (`None`: reachable).
    parents: Mutex<Option<Vec<ParentCheck>>>,
}

/// One parent proxy in the upstream check: `host:port`, and why it is unreachable (`None`:
/// it accepted the connection).
pub type ParentCheck = (String, Option<String>);

impl Health {
    /// Checks run.
    pub fn checks(&self) -> u64 {
        self.checks.load(Relaxed)
    }

    /// Checks that failed.
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// Whether the most recent check passed (false before the first one).
    pub fn last_ok(&self) -> bool {
        self.last_ok.load(Relaxed)
    }

    /// Whether a connection from `peer` is this check's own (the accept stage closes it
    /// without counting it). Once only: the check's port is free again after its
    /// connection, and a client's connection from that port must be served (loopback reuses
    /// ports whose TIME_WAIT is ours).
    pub fn is_probe(&self, peer: SocketAddr) -> bool {
        let mut probe = self.probe.lock();
        let ours = *probe == Some(peer);
        if ours {
            *probe = None;
        }
        ours
    }

    /// The last upstream check: for each parent proxy, why it is unreachable (`None` when it
    /// answered); `None` before the first check, or with no parent named outright.
    pub fn parents(&self) -> Option<Vec<ParentCheck>> {
        self.parents.lock().clone()
    }

    fn record_parents(&self, results: Vec<ParentCheck>) {
        *self.parents.lock() = Some(results);
    }

    fn record(&self, ok: bool) {
        self.checks.fetch_add(1, Relaxed);
        if !ok {
            self.failures.fetch_add(1, Relaxed);
        }
        self.last_ok.store(ok, Relaxed);
    }
}

/// Connects to the listener every `interval` (first check at once) until cancelled.
pub(crate) async fn run(
    listen: SocketAddr,
    parents: Vec<crate::sysproxy::ProxyServer>,
    interval: Duration,
    health: std::sync::Arc<Health>,
    shutdown: CancellationToken,
) {
    let addr = reachable(listen);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match tokio::time::timeout(CHECK_TIMEOUT, probe(addr, &health)).await {
            Ok(Ok(_)) => {
                health.record(true);
                tracing::debug!(%addr, "health check passed");
            }
            Ok(Err(e)) => {
                health.record(false);
                tracing::warn!(%addr, error = %e, failures = health.failures(), "health check failed");
            }
            Err(_) => {
                health.record(false);
                tracing::warn!(%addr, failures = health.failures(), "health check timed out");
            }
        }
        if !parents.is_empty() {
            let mut results = Vec::with_capacity(parents.len());
            for parent in &parents {
                let checked = tokio::time::timeout(
                    CHECK_TIMEOUT,
                    tokio::net::TcpStream::connect((parent.host.as_str(), parent.port)),
                );
                let failure = match checked.await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!("no connection within {}", humantime::format_duration(CHECK_TIMEOUT))),
                };
                if let Some(why) = &failure {
                    tracing::warn!(%parent, error = %why, "parent proxy unreachable");
                }
                results.push((parent.to_string(), failure));
            }
            health.record_parents(results);
        }
    }
}

/// Connects to `addr` from a port chosen first, recorded in `health` before the connection
/// can be accepted.
async fn probe(addr: SocketAddr, health: &Health) -> std::io::Result<tokio::net::TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(addr.ip(), 0))?;
    *health.probe.lock() = Some(socket.local_addr()?);
    socket.connect(addr).await
}

/// A wildcard listen address is checked through loopback.
pub(crate) fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_on_the_checks_old_port_is_served() {
        let health = Health::default();
        let port: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        *health.probe.lock() = Some(port);
        assert!(health.is_probe(port), "the check's own connection");
        assert!(!health.is_probe(port), "the next connection from that port is a client's");
    }
}
