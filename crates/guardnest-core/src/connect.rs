//! CONNECT stage: decide, dial, and only then answer `200 Connection Established`,
//! handing both raw sockets to the tunnel.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::connection::ConnCtx;
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
        let mut upstream = upstream;
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
        // A task of its own for the tunnel, holding only the copy state and what the end
        // needs: this one, with the upgrade's state, ends here.
        let (idle, splice) = (shared.config.idle_timeout, shared.config.splice);
        let (abort, tracker) = (shared.abort.clone(), shared.tracker.clone());
        drop(shared);
        let client = parts.io.into_inner();
        // The end needs the counters: the guard reaches them, so nothing else is held.
        tracker.spawn(tunnel::run_then(client, upstream, idle, splice, abort, move |result| {
            account(result, guard.stats(), peer, &target);
            drop(guard); // the connection counts, and holds its permit, until here
        }));
    });

    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::OK;
    response.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Connection Established"));
    Ok(response)
}

/// Adds a finished tunnel to the counters and logs how it ended.
fn account(result: std::io::Result<tunnel::TunnelReport>, stats: &Stats, peer: std::net::SocketAddr, target: &Target) {
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
