//! CONNECT stage: decide, dial, and only then answer `200 Connection Established`,
//! handing both raw sockets to the tunnel (which a plain request answered `101` by its
//! upstream also ends in).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::conn::gate::{self, Ask, Client, ConnCtx, ConnGuard, Decided, Pending, Shared};
use crate::conn::head::ConnectHead;
use crate::conn::respond::{BadRequest, ProxyBody, Refusal};
use crate::conn::route::{self, Pinned, Reached};
use crate::conn::tunnel::{self, TunnelEnd};
use crate::domain::Target;
use crate::stats::Stats;

/// Serves one CONNECT request that hyper read: decides and dials, then leaves the tunnel to
/// the connection task (`crate::conn::http`), which goes on to it as soon as the 200 is
/// out.
pub(crate) async fn handle(
    mut req: Request<Incoming>,
    decided: Decided,
    ctx: &ConnCtx,
) -> Result<Response<ProxyBody>, Refusal> {
    let target = decided.target;
    let credentials = req.headers().get(http::header::PROXY_AUTHORIZATION).map(http::HeaderValue::as_bytes);
    let pinned = ctx.local.pinned.lock().take();
    let (upstream, early) = match route::connect(&ctx.shared.reach(), &target, credentials, pinned).await? {
        Reached::Open { upstream, early } => (upstream, early),
        Reached::Answered(mut answer) => {
            if let Some(pin) = answer.pinned.take() {
                *ctx.local.pinned.lock() = Some(pin);
            }
            return Ok(answer.into_response());
        }
    };
    let pending = Pending { on_upgrade: hyper::upgrade::on(&mut req), upstream, target, early };
    *ctx.local.tunnel.lock() = Some(pending);

    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::OK;
    response.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Connection Established"));
    Ok(response)
}

/// A plain request's upgrade the upstream accepted: the tunnel starts once hyper has
/// written the 101 (`crate::conn::http`).
pub(crate) fn upgraded(ctx: &ConnCtx, pending: Pending) -> Result<(), Refusal> {
    *ctx.local.tunnel.lock() = Some(pending);
    Ok(())
}

/// What [`serve`] did with a CONNECT head.
pub(crate) enum Served {
    /// Refused, and the connection stays open for the client's next request, which may
    /// already have begun in `rest`: the socket and the connection's guard come back.
    Refused { stream: TcpStream, guard: ConnGuard, rest: Vec<u8>, pinned: Option<Pinned> },
    /// The tunnel runs (a task of its own), or the connection is over.
    Done,
}

/// A dialed upstream whose 200 (or 101) is out, what the client sent behind its request,
/// and what the upstream sent behind its 101.
pub(crate) struct Open {
    pub(crate) upstream: TcpStream,
    pub(crate) target: Target,
    pub(crate) pipelined: Vec<u8>,
    pub(crate) early: Vec<u8>,
}

/// Serves a CONNECT head read by [`crate::conn::head`], without hyper: the same checks, dial
/// and answers as [`handle`], written to the socket directly, then the tunnel.
pub(crate) async fn serve(
    mut client: TcpStream,
    head: ConnectHead,
    shared: &Shared,
    who: &Client,
    guard: ConnGuard,
    pinned: Option<Pinned>,
) -> Served {
    let peer = who.peer;
    let decided = async {
        let ask = Ask {
            target: head.target.clone().map_err(BadRequest::from),
            connect_body: head.announces_body,
            plain: false,
            credentials: head.proxy_authorization(),
        };
        let target = gate::decide(shared, who, ask).await?.target;
        let reached = route::connect(&shared.reach(), &target, head.proxy_authorization(), pinned).await?;
        Ok::<_, Refusal>((target, reached))
    };
    match decided.await {
        Ok((target, Reached::Open { upstream, early })) => {
            if let Err(e) = client.write_all(ESTABLISHED).await {
                tracing::debug!(%peer, %target, error = %e, "client left before the tunnel started");
                return Served::Done;
            }
            let open = Open { upstream, target, pipelined: head.into_rest(), early };
            start_tunnel(client, open, shared, guard, peer).await;
            Served::Done
        }
        Ok((target, Reached::Answered(mut answer))) => {
            // The parent's own answer (a challenge to authenticate, its refusal): the client
            // may go on on this connection, and a challenged parent connection with it.
            tracing::debug!(%peer, %target, status = %answer.status, "the parent answered the CONNECT");
            let pinned = answer.pinned.take();
            if client.write_all(&answer.encode()).await.is_err() {
                return Served::Done;
            }
            Served::Refused { stream: client, guard, rest: head.into_rest(), pinned }
        }
        Err(refusal) => {
            gate::refused(peer, &http::Method::CONNECT, &refusal);
            if client.write_all(&refusal.encode()).await.is_err() || refusal.closes_connection() {
                return Served::Done;
            }
            Served::Refused { stream: client, guard, rest: head.into_rest(), pinned: None }
        }
    }
}

/// The answer to a CONNECT that was dialed.
const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// Forwards the bytes the client pipelined behind its CONNECT head, then spawns the tunnel
/// as a task of its own holding only the copy state and what its end needs (run in the
/// connection task instead, an idle tunnel would hold that task's future, which is sized
/// for its largest state, the head read; BENCHMARKS.md has the figures).
pub(crate) async fn start_tunnel(
    mut client: TcpStream,
    open: Open,
    shared: &Shared,
    guard: ConnGuard,
    peer: SocketAddr,
) {
    let Open { mut upstream, target, pipelined, early } = open;
    let (up, down) = (pipelined.len() as u64, early.len() as u64);
    let idle = shared.config.idle_timeout;
    for (to, bytes, what) in [(&mut upstream, &pipelined, "upstream"), (&mut client, &early, "client")] {
        if bytes.is_empty() {
            continue;
        }
        if !matches!(tokio::time::timeout(idle, to.write_all(bytes)).await, Ok(Ok(()))) {
            tracing::debug!(%peer, %target, "{what} left before the tunnel started");
            return;
        }
    }
    drop((pipelined, early));
    Stats::bump(&shared.stats.tunnels_total);
    shared.stats.bytes_up.fetch_add(up, Relaxed);
    shared.stats.bytes_down.fetch_add(down, Relaxed);
    let config = &shared.config;
    // The end needs the counters: the guard reaches them, so nothing else is held.
    shared.tracker.spawn(tunnel::run_then(
        client,
        upstream,
        config.idle_timeout,
        config.splice,
        shared.abort.clone(),
        move |result| {
            account(result, guard.stats(), peer, &target);
            drop(guard); // the connection counts, and holds its permit, until here
        },
    ));
}

/// Adds a finished tunnel to the counters and logs how it ended.
fn account(report: tunnel::TunnelReport, stats: &Stats, peer: SocketAddr, target: &Target) {
    let (up, down) = (report.up, report.down);
    stats.bytes_up.fetch_add(up, Relaxed);
    stats.bytes_down.fetch_add(down, Relaxed);
    let end = match report.end {
        Ok(TunnelEnd::Closed) => "closed",
        Ok(TunnelEnd::Idle) => "idle timeout",
        Ok(TunnelEnd::Aborted) => "aborted at shutdown",
        Err(e) => return tracing::debug!(%peer, %target, up, down, error = %e, "tunnel ended with an error"),
    };
    tracing::debug!(%peer, %target, up, down, end, "tunnel done");
}
