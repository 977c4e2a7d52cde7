//! What every path of a connection shares, below all of them: the proxy's shared state, the
//! connection's guard and context, and the checks every request passes in the same order
//! (access, then policy, then dial), with the log line of a refusal.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::Method;
use hyper::upgrade::OnUpgrade;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::Access;
use crate::blocklist::{Policy, Verdict};
use crate::config::ProxyConfig;
use crate::dial::{DialError, Dialer};
use crate::domain::{Host, Target};
use crate::events::BlockLog;
use crate::respond::Refusal;
use crate::stats::{ActiveGuard, Stats};
use crate::upstream::{Pool, Slot};

/// Everything a connection task needs, shared by all of them.
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) policy: Policy,
    pub(crate) access: Arc<Access>,
    pub(crate) dialer: Dialer,
    /// Idle upstream connections of the forward stage, between client connections.
    pub(crate) pool: Arc<Pool>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) blocks: Arc<BlockLog>,
    pub(crate) tracker: TaskTracker,
    /// Cancelled when the shutdown grace is over: tunnels and connections stop at once.
    pub(crate) abort: CancellationToken,
}

/// Held for as long as any part of a connection (its HTTP stage or its tunnel) lives.
pub(crate) struct ConnGuard {
    _permit: OwnedSemaphorePermit,
    active: ActiveGuard,
}

impl ConnGuard {
    /// Counts the connection as open, holding its permit.
    pub(crate) fn new(permit: OwnedSemaphorePermit, stats: Arc<Stats>) -> Self {
        Self { _permit: permit, active: ActiveGuard::new(stats) }
    }

    /// The proxy's counters (a tunnel needs nothing else from the shared state).
    pub(crate) fn stats(&self) -> &Stats {
        &self.active.0
    }
}

/// What a request handler knows about its connection.
pub(crate) struct ConnCtx {
    pub(crate) shared: Arc<Shared>,
    /// The client: the TCP peer, or the address a PROXY protocol header named.
    pub(crate) peer: SocketAddr,
    /// Whether the client address passed `[access] allow`.
    pub(crate) address_allowed: bool,
    /// What the handlers leave for the connection task.
    pub(crate) local: Arc<Local>,
}

/// What a connection's request handlers leave for its task: the upstream connection its
/// plain-HTTP requests go through, and a CONNECT's tunnel to start once the 200 is out.
#[derive(Default)]
pub(crate) struct Local {
    pub(crate) upstream: Slot,
    pub(crate) tunnel: Mutex<Option<Pending>>,
}

impl ConnCtx {
    /// Refuses a blocked host, logging it once at info.
    pub(crate) fn check_policy(&self, host: &Host, html: bool) -> Result<(), Refusal> {
        check_policy(&self.shared, self.peer, host, html)
    }

    /// Dials an upstream, counting failures.
    pub(crate) async fn dial(&self, target: &Target) -> Result<TcpStream, Refusal> {
        dial(&self.shared, target).await
    }
}

/// Refuses a blocked host, logging it once at info.
pub(crate) fn check_policy(shared: &Shared, peer: SocketAddr, host: &Host, html: bool) -> Result<(), Refusal> {
    match shared.policy.check(host) {
        Verdict::Blocked(m) => {
            Stats::bump(&shared.stats.blocked_total);
            let host_text = host.to_string();
            shared.blocks.record(&host_text, &m.list, &m.rule);
            tracing::info!(client = %peer, %host, list = %m.list, rule = %m.rule, "blocked");
            Err(Refusal::Blocked { host: host_text, list: m.list, rule: m.rule, html })
        }
        Verdict::Exempt(_) | Verdict::Allowed => Ok(()),
    }
}

/// Dials an upstream, counting failures.
pub(crate) async fn dial(shared: &Shared, target: &Target) -> Result<TcpStream, Refusal> {
    shared.dialer.dial(target).await.map_err(|e| {
        if !matches!(e, DialError::Loop { .. }) {
            Stats::bump(&shared.stats.dial_failures);
        }
        Refusal::Dial(e)
    })
}

/// A CONNECT answered 200: what the connection task needs to start the tunnel once hyper
/// hands the client's socket back (after the 200 is written).
pub(crate) struct Pending {
    pub(crate) on_upgrade: OnUpgrade,
    pub(crate) upstream: TcpStream,
    pub(crate) target: Target,
}

/// Logs a refusal at debug (a block was logged at info already).
pub(crate) fn refused(peer: SocketAddr, method: &Method, refusal: &Refusal) {
    if !matches!(refusal, Refusal::Blocked { .. }) {
        tracing::debug!(client = %peer, %method, status = %refusal.status(), reason = %refusal.reason(), "refused");
    }
}

/// The access check: client address, then proxy credentials (the `Proxy-Authorization`
/// value, if sent).
pub(crate) async fn admit(
    shared: &Shared,
    peer: SocketAddr,
    address_allowed: bool,
    credentials: Option<&[u8]>,
) -> Result<(), Refusal> {
    let access = &shared.access;
    if !address_allowed {
        Stats::bump(&shared.stats.access_denied);
        return Err(Refusal::ClientDenied(peer.ip()));
    }
    if access.needs_credentials() {
        if let Err(crate::access::Denied::Credentials(why)) = access.check_credentials(credentials).await {
            Stats::bump(&shared.stats.access_denied);
            return Err(Refusal::AuthRequired(why));
        }
    }
    Ok(())
}
