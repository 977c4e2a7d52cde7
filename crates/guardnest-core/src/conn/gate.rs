//! What every path of a connection shares, below all of them: the proxy's shared state, the
//! connection's guard and context, the one order of decisions every request passes
//! ([`decide`]: access, target, body, policy; then [`dial`]), and the log line of a refusal.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use hyper::upgrade::OnUpgrade;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::{Access, Denied};
use crate::blocklist::{Policy, Verdict};
use crate::config::ProxyConfig;
use crate::conn::dial::Dialer;
use crate::conn::respond::{BadRequest, Refusal};
use crate::conn::route::{Pinned, Reach, Router};
use crate::conn::upstream::{Owner, Pool, Slot};
use crate::domain::{Host, Target};
use crate::events::BlockLog;
use crate::stats::{ActiveGuard, Stats};
use crate::who::Asker;

/// Everything a connection task needs, shared by all of them.
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) policy: Policy,
    pub(crate) access: Arc<Access>,
    pub(crate) dialer: Dialer,
    /// Where allowed requests go: direct, or through the user's own proxy.
    pub(crate) router: Arc<Router>,
    /// Idle upstream connections of the forward stage, between client connections.
    pub(crate) pool: Arc<Pool>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) blocks: Arc<BlockLog>,
    pub(crate) tracker: TaskTracker,
    /// Cancelled when the shutdown grace is over: tunnels and connections stop at once.
    pub(crate) abort: CancellationToken,
}

impl Shared {
    /// What the route stage needs: where requests go, and how to get there.
    pub(crate) fn reach(&self) -> Reach<'_> {
        Reach {
            router: &self.router,
            dialer: &self.dialer,
            stats: &self.stats,
            connect_timeout: self.config.connect_timeout,
            idle_timeout: self.config.idle_timeout,
            passthrough: !self.access.needs_credentials(),
        }
    }
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

/// Who is on the other end of a connection, and how its logins went.
pub(crate) struct Client {
    /// The TCP peer, or the address a PROXY protocol header named.
    pub(crate) peer: SocketAddr,
    /// Our end of the connection (the listener's address it came in on); `None` when the
    /// client was named by a PROXY protocol header (it is on another machine).
    pub(crate) local: Option<SocketAddr>,
    /// Whether the address passed `[access] allow`.
    pub(crate) address_allowed: bool,
    /// Requests on this connection refused for their credentials.
    failed_logins: AtomicU8,
    /// The program behind the connection, once a block needed it.
    asker: std::sync::OnceLock<Box<Asker>>,
}

impl Client {
    pub(crate) fn new(peer: SocketAddr, local: Option<SocketAddr>, address_allowed: bool) -> Self {
        Self { peer, local, address_allowed, failed_logins: AtomicU8::new(0), asker: std::sync::OnceLock::new() }
    }
}

/// What a request handler knows about its connection.
pub(crate) struct ConnCtx {
    pub(crate) shared: Arc<Shared>,
    /// What the handlers share with the connection task.
    pub(crate) local: Arc<Local>,
}

/// What a connection's request handlers share with its task: the client, the upstream
/// connection its plain-HTTP requests go through, and a CONNECT's tunnel (or a plain
/// request's upgrade) to start once the answer is out.
pub(crate) struct Local {
    pub(crate) client: Client,
    pub(crate) upstream: Slot,
    pub(crate) tunnel: Mutex<Option<Pending>>,
    /// A parent's connection that challenged this client's CONNECT (`407`): its answer goes
    /// out there.
    pub(crate) pinned: Mutex<Option<Pinned>>,
    /// The interim answers of the plain-HTTP request in flight.
    pub(crate) interim: crate::conn::upstream::Interim,
    /// Times the wait for a plain-HTTP request's answer.
    pub(crate) answer_timer: crate::conn::idle::AnswerTimer,
}

impl Local {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            upstream: Slot::default(),
            tunnel: Mutex::new(None),
            pinned: Mutex::new(None),
            interim: crate::conn::upstream::Interim::default(),
            answer_timer: crate::conn::idle::AnswerTimer::default(),
        }
    }
}

impl ConnCtx {
    /// The client's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.local.client.peer
    }
}

/// Failed logins after which a connection is closed: a client guessing passwords must
/// connect again (and a browser's first try without credentials is one of them).
pub(crate) const MAX_FAILED_LOGINS: u8 = 3;

/// How long a client over its budget of credential checks waits for its 429. A guessing
/// script that reconnects at once after each refusal then costs a connection per this
/// delay, instead of as many connections a second as the proxy can answer, which would
/// slow every other client's login.
pub(crate) const THROTTLED_ANSWER_DELAY: Duration = Duration::from_millis(500);

/// A request as either engine read it, for [`decide`].
pub(crate) struct Ask<'a> {
    /// Where it asks to go, or why that cannot be served.
    pub(crate) target: Result<Target, BadRequest>,
    /// A CONNECT that announces a body ([`crate::conn::head::announces_body`]).
    pub(crate) connect_body: bool,
    /// Plain HTTP (a refusal is an HTML page) rather than CONNECT.
    pub(crate) plain: bool,
    /// The `Proxy-Authorization` value, if sent.
    pub(crate) credentials: Option<&'a [u8]>,
}

/// What [`decide`] let through.
pub(crate) struct Decided {
    pub(crate) target: Target,
    /// Whose upstream connections this request may share (gateway mode).
    pub(crate) owner: Owner,
}

/// The order of decisions for every request on every path (the first-head CONNECT, the
/// relay and hyper's engine): access (the client address, then its credentials), the
/// target, a CONNECT's body, the policy. The dial comes last, by the caller, only for a
/// request that passed all of them.
pub(crate) async fn decide(shared: &Shared, client: &Client, ask: Ask<'_>) -> Result<Decided, Refusal> {
    let owner = admit(shared, client, ask.credentials).await?;
    let target = ask.target.map_err(Refusal::BadRequest)?;
    if ask.connect_body {
        return Err(Refusal::BadRequest(BadRequest::ConnectBody));
    }
    if let Err(refusal) = check_policy(shared, &target.host, ask.plain) {
        if let Refusal::Blocked { host, list, rule, .. } = &refusal {
            // Named before the 403 is written, in a batch with the blocks around it (see `who`).
            let asker = shared.blocks.who().name(client.peer, client.local, &client.asker).await;
            // Recorded before the line is logged: whoever reads the log finds it counted.
            let asked_by = asker.to_string();
            shared.blocks.record(host, list, rule, asker);
            tracing::info!(client = %client.peer, %host, %list, %rule, %asked_by, "blocked");
        }
        return Err(refusal);
    }
    Ok(Decided { target, owner })
}

/// The access check: client address, then proxy credentials. In gateway mode, whose the
/// request is: its address and its user.
async fn admit(shared: &Shared, client: &Client, credentials: Option<&[u8]>) -> Result<Owner, Refusal> {
    let access = &shared.access;
    if !client.address_allowed {
        Stats::bump(&shared.stats.access_denied);
        return Err(Refusal::ClientDenied(client.peer.ip()));
    }
    if !access.is_restricted() {
        return Ok(Owner::Anyone);
    }
    // A password check (its hashing state is large): on the heap, off every request's future.
    Box::pin(log_in(shared, client, credentials)).await
}

/// Proxy credentials, checked.
async fn log_in(shared: &Shared, client: &Client, credentials: Option<&[u8]>) -> Result<Owner, Refusal> {
    let access = &shared.access;
    match access.check_credentials(credentials, client.peer.ip()).await {
        Ok(user) => Ok(Owner::Client { address: client.peer.ip(), user }),
        Err(denied) => {
            Stats::bump(&shared.stats.access_denied);
            let failed = client.failed_logins.fetch_add(1, Relaxed).saturating_add(1);
            Err(match denied {
                Denied::Throttled { client, retry_after } => {
                    tokio::time::sleep(THROTTLED_ANSWER_DELAY.min(retry_after)).await;
                    Refusal::LoginsThrottled { client, retry_after }
                }
                Denied::Credentials(why) if failed >= MAX_FAILED_LOGINS => Refusal::LoginsExhausted(why),
                Denied::Credentials(why) => Refusal::AuthRequired(why),
                Denied::Address(ip) => Refusal::ClientDenied(ip),
            })
        }
    }
}

/// Refuses a blocked host (the caller logs and records it, with who asked).
fn check_policy(shared: &Shared, host: &Host, html: bool) -> Result<(), Refusal> {
    match shared.policy.check(host) {
        Verdict::Blocked(m) => {
            Stats::bump(&shared.stats.blocked_total);
            Err(Refusal::Blocked { host: host.to_string(), list: m.list, rule: m.rule, html })
        }
        Verdict::Exempt(_) | Verdict::Allowed => Ok(()),
    }
}

/// A CONNECT answered 200, or a plain request answered 101: what the connection task needs
/// to start the tunnel once hyper hands the client's socket back (after the answer is
/// written). `early` is what the upstream sent behind its 101, for the client.
pub(crate) struct Pending {
    pub(crate) on_upgrade: OnUpgrade,
    pub(crate) upstream: TcpStream,
    pub(crate) target: Target,
    pub(crate) early: Vec<u8>,
}

/// Logs a refusal at debug (a block was logged at info already).
pub(crate) fn refused(peer: SocketAddr, method: &Method, refusal: &Refusal) {
    if !matches!(refusal, Refusal::Blocked { .. }) {
        tracing::debug!(client = %peer, %method, status = %refusal.status(), reason = %refusal.reason(), "refused");
    }
}
