//! CONNECT stage: decide, dial, and only then answer `200 Connection Established`,
//! handing both raw sockets to the tunnel.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::connection::{ConnCtx, ConnGuard};
use crate::domain::Target;
use crate::respond::{error_chain, ProxyBody, Refusal};
use crate::stats::Stats;
use crate::tunnel::{self, TunnelEnd};

/// Serves one CONNECT request.
pub(crate) async fn handle(req: Request<Incoming>, ctx: &ConnCtx) -> Result<Response<ProxyBody>, Refusal> {
    let target = Target::of_request(req.method(), req.uri()).map_err(|e| Refusal::BadRequest(e.0))?;
    ctx.check_policy(&target.host, false)?;
    let upstream = ctx.dial(&target).await?;

    let shared = ctx.shared.clone();
    let guard = ctx.guard.clone();
    let peer = ctx.peer;
    shared.tracker.clone().spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
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
        // A task of its own for the tunnel, holding only what it needs: this one, with the
        // upgrade's state, ends here, so an idle tunnel costs as little as possible.
        let tracker = shared.tracker.clone();
        tracker.spawn(tunnel(parts.io.into_inner(), upstream, parts.read_buf, shared, guard, peer, target));
    });

    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::OK;
    response.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Connection Established"));
    Ok(response)
}

/// Runs one tunnel to its end and accounts for it. The guard keeps the connection counted
/// and within max_connections until then.
async fn tunnel(
    client: TcpStream,
    upstream: TcpStream,
    pipelined: Bytes,
    shared: Arc<crate::server::Shared>,
    _guard: Arc<ConnGuard>,
    peer: std::net::SocketAddr,
    target: Target,
) {
    Stats::bump(&shared.stats.tunnels_total);
    match start_tunnel(client, upstream, pipelined, &shared).await {
        Ok(report) => {
            shared.stats.bytes_up.fetch_add(report.up, Relaxed);
            shared.stats.bytes_down.fetch_add(report.down, Relaxed);
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

/// Forwards bytes the client pipelined behind the CONNECT head, then runs the tunnel.
async fn start_tunnel(
    client: TcpStream,
    mut upstream: TcpStream,
    pipelined: Bytes,
    shared: &Arc<crate::server::Shared>,
) -> std::io::Result<tunnel::TunnelReport> {
    let early = pipelined.len() as u64;
    if !pipelined.is_empty() {
        upstream.write_all(&pipelined).await?;
    }
    // Even empty, these bytes may pin hyper's whole read buffer: let it go before the tunnel.
    drop(pipelined);
    let mut report = tunnel::run(client, upstream, shared.config.idle_timeout, &shared.abort).await?;
    report.up += early;
    Ok(report)
}
