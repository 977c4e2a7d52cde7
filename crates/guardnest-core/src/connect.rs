//! CONNECT stage: decide, dial, and only then answer `200 Connection Established`,
//! handing both raw sockets to the tunnel.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::connection::{ConnCtx, ConnGuard};
use crate::domain::Target;
use crate::respond::{error_chain, ProxyBody, Refusal};
use crate::server::Shared;
use crate::stats::Stats;
use crate::tunnel::{self, TunnelEnd};

/// A CONNECT answered 200: what the connection task needs to start the tunnel once hyper
/// hands the client's socket back (after the 200 is written).
pub(crate) struct Pending {
    on_upgrade: OnUpgrade,
    upstream: TcpStream,
    target: Target,
}

/// Serves one CONNECT request: decides and dials, then leaves the tunnel to the connection
/// task ([`start`]), which goes on to it as soon as the 200 is out.
pub(crate) async fn handle(mut req: Request<Incoming>, ctx: &ConnCtx) -> Result<Response<ProxyBody>, Refusal> {
    let target = Target::of_request(req.method(), req.uri()).map_err(|e| Refusal::BadRequest(e.0))?;
    ctx.check_policy(&target.host, false)?;
    let upstream = ctx.dial(&target).await?;
    let pending = Pending { on_upgrade: hyper::upgrade::on(&mut req), upstream, target };
    match ctx.local.tunnel.lock() {
        Ok(mut slot) => *slot = Some(pending),
        Err(_) => return Err(Refusal::Upstream("connection state unavailable".into())),
    }

    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::OK;
    response.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Connection Established"));
    Ok(response)
}

/// Takes the client's socket back from hyper, forwards any bytes it pipelined behind the
/// CONNECT head, and spawns the tunnel as a task of its own holding only the copy state and
/// what its end needs. Runs in the connection task, whose HTTP stage has just ended.
pub(crate) async fn start(pending: Pending, shared: &Shared, guard: Arc<ConnGuard>, peer: SocketAddr) {
    let Pending { on_upgrade, mut upstream, target } = pending;
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%peer, %target, error = %error_chain(&e), "client left before the tunnel started");
            return;
        }
    };
    let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(p) => p,
        Err(_) => {
            tracing::error!(%peer, %target, "upgraded connection is not a TCP stream");
            return;
        }
    };
    let pipelined = parts.read_buf;
    let early = pipelined.len() as u64;
    if !pipelined.is_empty() {
        if let Err(e) = upstream.write_all(&pipelined).await {
            tracing::debug!(%peer, %target, error = %e, "upstream left before the tunnel started");
            return;
        }
    }
    // Even empty, these bytes may pin hyper's whole read buffer: let it go first.
    drop(pipelined);
    Stats::bump(&shared.stats.tunnels_total);
    shared.stats.bytes_up.fetch_add(early, Relaxed);
    let config = &shared.config;
    let client = parts.io.into_inner();
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
fn account(result: std::io::Result<tunnel::TunnelReport>, stats: &Stats, peer: SocketAddr, target: &Target) {
    match result {
        Ok(report) => {
            stats.bytes_up.fetch_add(report.up, Relaxed);
            stats.bytes_down.fetch_add(report.down, Relaxed);
            let end = match report.end {
                TunnelEnd::Closed => "closed",
                TunnelEnd::Idle => "idle timeout",
                TunnelEnd::Aborted => "aborted at shutdown",
            };
            tracing::debug!(%peer, %target, up = report.up, down = report.down, end, "tunnel done");
        }
        Err(e) => tracing::debug!(%peer, %target, error = %e, "tunnel ended with an error"),
    }
}
