//! Read-head stage (the design's handle_client): one task per accepted connection. A
//! connection that starts with CONNECT heads is answered from [`crate::head`]'s parse; any
//! other is served by hyper under the same limits, each request routed to the CONNECT or
//! the forward stage.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::blocklist::Verdict;
use crate::connect::Answered;
use crate::dial::DialError;
use crate::domain::{Host, Target};
use crate::head::{Head, Rewind};
use crate::relay::{Kept, Relayed};
use crate::respond::{ProxyBody, Refusal};
use crate::server::Shared;
use crate::stats::{ActiveGuard, Stats};
use crate::upstream::Slot;

/// Held for as long as any part of a connection (its HTTP stage or its tunnel) lives.
pub(crate) struct ConnGuard {
    _permit: OwnedSemaphorePermit,
    active: ActiveGuard,
}

impl ConnGuard {
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
    pub(crate) tunnel: Mutex<Option<crate::connect::Pending>>,
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

/// Serves one client connection until it closes, the proxy shuts down, or it is aborted.
pub(crate) async fn serve(
    mut stream: TcpStream,
    tcp_peer: SocketAddr,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let guard = ConnGuard { _permit: permit, active: ActiveGuard::new(shared.stats.clone()) };
    tracing::debug!(peer = %tcp_peer, "connection accepted");
    let peer = if shared.config.proxy_protocol {
        // Boxed: opt-in, so it does not size every connection's task.
        match Box::pin(real_client(&mut stream, tcp_peer, &shared)).await {
            Some(client) => client,
            None => return,
        }
    } else {
        tcp_peer
    };
    let address_allowed = shared.access.check_address(peer.ip()).is_ok();
    let config = &shared.config;
    let mut buf = Vec::new();
    // The upstream connection this client's relayed requests use; to the pool when done.
    let mut kept: Option<Kept> = None;
    // A client costs no buffer until its first bytes arrive (head::read reads them into one
    // sized to fit), however many connections wait silently.
    loop {
        // Biased, the read first: when the head is already there (the usual case) the
        // cancellation futures are never polled, so never registered.
        let deadline = tokio::time::Instant::now() + config.request_timeout;
        let head = loop {
            let read = tokio::time::timeout_at(deadline, crate::head::read(&stream, &mut buf, config.max_header_bytes));
            tokio::select! {
                biased;
                r = read => break r,
                // The kept upstream connection closed (or spoke out of turn) while this client
                // was quiet: closed now, not left in CLOSE_WAIT until the client's next request.
                () = Kept::closed(kept.as_ref()) => {
                    if kept.as_ref().is_some_and(|k| !k.is_clean()) {
                        kept = None;
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        };
        let head = match head {
            Ok(head) => head,
            Err(_) => {
                tracing::debug!(%peer, "no complete request head in time; closed");
                break;
            }
        };
        let head = match head {
            Head::Closed => break,
            Head::Bad(refusal) => {
                refused(peer, &Method::CONNECT, &refusal);
                let _ = stream.write_all(&refusal.encode()).await;
                break;
            }
            // Boxed: the HTTP stage's state (kilobytes) is allocated only when it serves.
            Head::Other(pre) => {
                if let Some(k) = kept.take() {
                    k.release(&shared).await;
                }
                let io = Rewind::new(pre, stream);
                return Box::pin(serve_http(io, peer, shared, guard, shutdown, address_allowed)).await;
            }
            Head::Plain(plain) => {
                // Boxed, as the CONNECT answer below.
                let relay =
                    Box::pin(crate::relay::relay(&mut stream, plain, &mut kept, &shared, peer, address_allowed));
                let relayed = tokio::select! {
                    biased;
                    r = relay => r,
                    _ = shared.abort.cancelled() => return,
                };
                match relayed {
                    // At shutdown the request in flight is finished, then the connection closes.
                    Relayed::Next { rest } if !shutdown.is_cancelled() => buf = rest,
                    Relayed::Next { .. } | Relayed::Closed => break,
                }
                continue;
            }
            Head::Connect(head) => head,
        };
        // Boxed like the HTTP stage: the dial's state is allocated only while it runs. A dial
        // still running when the shutdown grace ends is dropped with the connection.
        let answer = Box::pin(crate::connect::answer(&mut stream, head, &shared, peer, address_allowed));
        let answered = tokio::select! {
            biased;
            a = answer => a,
            _ = shared.abort.cancelled() => return,
        };
        match answered {
            Answered::Tunnel(open) => {
                if let Some(k) = kept.take() {
                    k.release(&shared).await;
                }
                return crate::connect::start_tunnel(stream, open, &shared, guard, peer).await;
            }
            Answered::Refused { rest } => buf = rest,
            Answered::Closed => break,
        }
    }
    if let Some(k) = kept {
        k.release(&shared).await;
    }
}

/// Serves request heads with hyper until the connection closes or is upgraded to a tunnel.
async fn serve_http(
    stream: Rewind,
    peer: SocketAddr,
    shared: Arc<Shared>,
    guard: ConnGuard,
    shutdown: CancellationToken,
    address_allowed: bool,
) {
    let abort = shared.abort.clone();
    let config = &shared.config;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.request_timeout)
        .max_header_size(config.max_header_bytes)
        .max_buf_size(config.max_header_bytes.max(8192) + 8192)
        .keep_alive(true);
    let local = Arc::new(Local::default());
    let service_shared = shared.clone();
    let service_local = local.clone();
    let service = service_fn(move |req| {
        let ctx = ConnCtx { shared: service_shared.clone(), peer, address_allowed, local: service_local.clone() };
        async move { Ok::<_, Infallible>(route(req, ctx).await) }
    });
    let result = {
        let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let mut conn = pin!(conn);
        let mut shutdown = pin!(shutdown.cancelled());
        let mut abort = pin!(abort.cancelled());
        let mut draining = false;
        let slot = &local.upstream;
        // One poll serves the client connection and drives its upstream connection: the
        // upstream first (what it read is then consumed), again after the client side (a
        // request just sent must reach the socket and register for its answer in this round).
        poll_fn(|cx| {
            if !draining && shutdown.as_mut().poll(cx).is_ready() {
                // Finish the request in flight, then close; idle keep-alive connections close now.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            if draining && abort.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            slot.drive(cx);
            let served = conn.as_mut().poll(cx);
            if served.is_pending() {
                slot.drive(cx);
            }
            served
        })
        .await
    };
    local.upstream.release(&shared.pool);
    if let Err(e) = result {
        tracing::debug!(%peer, error = %crate::respond::error_chain(&e), "connection ended with an error");
    }
    // A CONNECT answered 200 ended the HTTP stage: the tunnel starts here, in this task, with
    // hyper's state already gone.
    let pending = local.tunnel.lock().ok().and_then(|mut t| t.take());
    if let Some(pending) = pending {
        if !shared.abort.is_cancelled() {
            crate::connect::start(pending, &shared, guard, peer).await;
        }
    }
}

/// Reads the PROXY protocol header of a connection from a trusted load balancer; `None`
/// (connection dropped) for anyone else, a bad header, or a timeout.
async fn real_client(stream: &mut TcpStream, tcp_peer: SocketAddr, shared: &Shared) -> Option<SocketAddr> {
    if !shared.access.is_trusted_proxy(tcp_peer.ip()) {
        Stats::bump(&shared.stats.access_denied);
        tracing::warn!(peer = %tcp_peer, "PROXY protocol header from a peer not in [access] trusted_proxies; closed");
        return None;
    }
    let read = crate::proxy_protocol::read_header(stream);
    match tokio::time::timeout(shared.config.request_timeout, read).await {
        Ok(Ok(client)) => Some(client.unwrap_or(tcp_peer)),
        Ok(Err(e)) => {
            tracing::debug!(peer = %tcp_peer, error = %crate::respond::error_chain(&e), "connection closed");
            None
        }
        Err(_) => {
            tracing::debug!(peer = %tcp_peer, "no PROXY protocol header in time; closed");
            None
        }
    }
}

async fn route(req: Request<Incoming>, ctx: ConnCtx) -> Response<ProxyBody> {
    let method = req.method().clone();
    let credentials = req.headers().get(http::header::PROXY_AUTHORIZATION).map(|v| v.as_bytes());
    let result = match admit(&ctx.shared, ctx.peer, ctx.address_allowed, credentials).await {
        Err(refusal) => Err(refusal),
        Ok(()) if method == Method::CONNECT => crate::connect::handle(req, &ctx).await,
        Ok(()) => crate::forward::handle(req, &ctx).await,
    };
    result.unwrap_or_else(|refusal| {
        refused(ctx.peer, &method, &refusal);
        refusal.into_response()
    })
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
