//! The proxy as a whole: bind, report the bound address, serve
//! until cancelled, then drain open connections for at most `shutdown_timeout`.
//!
//! Lifecycle state is owned: a [`CancellationToken`] stops accepting and asks connections to
//! finish, a [`TaskTracker`] knows every task still running, and a second token aborts what
//! is left when the grace period ends. Nothing global.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::Access;
use crate::blocklist::Policy;
use crate::config::{HealthConfig, ProxyConfig};
use crate::conn::dial::Dialer;
use crate::conn::gate::Shared;
use crate::conn::listener;
use crate::conn::route::Router;
use crate::conn::upstream::{self, Pool};
use crate::events::BlockLog;
use crate::health::{self, Health};
use crate::stats::Stats;

/// Listen backlog: room for bursts of connects while the accept loop catches up.
const BACKLOG: u32 = 1024;
/// How long an upstream connection of the forward stage stays open unused.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Errors starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener would be an open proxy (see [`crate::access::Access::check_listen`]).
    #[error(transparent)]
    Access(#[from] crate::config::ConfigError),
    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}{}", in_use(source))]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A bound proxy, ready to serve.
pub struct Proxy {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    health_config: HealthConfig,
    health: Arc<Health>,
    stopped_accepting: CancellationToken,
}

impl Proxy {
    /// Binds the listen address; port 0 picks a free port ([`Proxy::local_addr`] tells which).
    /// Without an access policy only a loopback listener is allowed.
    pub async fn bind(config: ProxyConfig, health_config: HealthConfig, policy: Policy) -> Result<Self, ServeError> {
        Self::bind_with(config, health_config, policy, Arc::default(), Arc::default(), Arc::default()).await
    }

    /// [`Proxy::bind`] with counters and a block log that outlive this listener (so a
    /// restart does not reset them), and the access policy of `[access]`.
    pub async fn bind_with(
        config: ProxyConfig,
        health_config: HealthConfig,
        policy: Policy,
        stats: Arc<Stats>,
        blocks: Arc<BlockLog>,
        access: Arc<Access>,
    ) -> Result<Self, ServeError> {
        Self::bind_routed(config, health_config, policy, stats, blocks, access, |_| Router::default()).await
    }

    /// [`Proxy::bind_with`], sending allowed requests where `router` says (direct, or
    /// through a parent proxy); `router` is given the bound address, which must never be a
    /// parent.
    pub async fn bind_routed(
        config: ProxyConfig,
        health_config: HealthConfig,
        policy: Policy,
        stats: Arc<Stats>,
        blocks: Arc<BlockLog>,
        access: Arc<Access>,
        router: impl FnOnce(SocketAddr) -> Router,
    ) -> Result<Self, ServeError> {
        access.check_listen(config.listen, config.proxy_protocol)?;
        let listener = bind(config.listen).map_err(|source| ServeError::Bind { addr: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: config.listen, source })?;
        let mut dialer = Dialer::new(config.connect_timeout, Some(local_addr));
        if let Some(destinations) = access.destinations() {
            dialer = dialer.with_destinations(destinations);
        }
        let router = Arc::new(router(local_addr));
        tracing::info!(upstream = %router.describe(), "where allowed traffic goes");
        let shared = Arc::new(Shared {
            router,
            pool: Arc::new(Pool::new(UPSTREAM_IDLE_TIMEOUT, config.idle_timeout, stats.clone())),
            dialer,
            policy,
            access,
            stats,
            blocks,
            tracker: TaskTracker::new(),
            abort: CancellationToken::new(),
            config,
        });
        Ok(Self {
            listener,
            local_addr,
            shared,
            health_config,
            health: Arc::new(Health::default()),
            stopped_accepting: CancellationToken::new(),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// What was blocked, and the programs behind client connections.
    pub fn blocks(&self) -> Arc<BlockLog> {
        self.shared.blocks.clone()
    }

    /// Where allowed traffic goes.
    pub fn router(&self) -> Arc<Router> {
        self.shared.router.clone()
    }

    /// Health check results.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Cancelled once the listener is closed (the port is free again), while open
    /// connections may still be draining.
    pub fn stopped_accepting(&self) -> CancellationToken {
        self.stopped_accepting.clone()
    }

    /// Serves until `shutdown` is cancelled, then gives open connections up to the
    /// configured `shutdown_timeout` before closing them. Returns once every task is done.
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = self.shared;
        let tracker = shared.tracker.clone();
        let parents = shared.router.fixed_parents();
        tracker.spawn(health::run(
            self.local_addr,
            parents,
            self.health_config.interval,
            self.health.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(upstream::sweep(shared.pool.clone(), shutdown.clone()));
        tracker.spawn(crate::who::run(shared.blocks.who().clone(), shutdown.clone()));
        listener::accept_loop(self.listener, shared.clone(), self.health, shutdown.clone()).await;
        self.stopped_accepting.cancel();

        tracker.close();
        let grace = shared.config.shutdown_timeout;
        let open = shared.stats.connections_active.load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(open_connections = open, grace = ?grace, "stopped accepting; draining");
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            let left = shared.stats.connections_active.load(std::sync::atomic::Ordering::Relaxed);
            tracing::info!(connections = left, "grace period over; closing the rest");
            shared.abort.cancel();
            // Aborted tasks end at their next poll; this bound only guards against a bug.
            if tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await.is_err() {
                tracing::warn!("some connection tasks did not stop after abort");
            }
        }
        tracing::info!("proxy stopped");
    }
}

/// Says "address already in use" where the OS's own text does not: Windows says "Only one
/// usage of each socket address ... is normally permitted", and Wine 8 has no text at all.
fn in_use(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse if !e.to_string().contains("in use") => ": address already in use",
        _ => "",
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // Restarting right after a stop must not fail on connections still in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one setsockopt per
    // connection saved (elsewhere the accept loop sets it on each connection).
    #[cfg(target_os = "linux")]
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
