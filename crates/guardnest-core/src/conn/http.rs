//! hyper's engine: every request of a connection the first-head stage did not keep (a body,
//! an upgrade, a non-simple head) is read by hyper under the same limits and routed to the
//! CONNECT or the forward stage; hyper's connection also drives the upstream connection its
//! plain-HTTP requests use.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

use crate::conn::gate::{self, Ask, Client, ConnCtx, ConnGuard, Local, Shared};
use crate::conn::head::{announces_body, Rewind};
use crate::conn::{connect, forward};
use crate::domain::Target;
use crate::respond::{BadRequest, ProxyBody};

/// Serves request heads with hyper until the connection closes or is upgraded to a tunnel.
pub(crate) async fn serve_http(
    stream: Rewind,
    client: Client,
    shared: Arc<Shared>,
    guard: ConnGuard,
    shutdown: CancellationToken,
) {
    let peer = client.peer;
    let abort = shared.abort.clone();
    let config = &shared.config;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.request_timeout)
        .max_header_size(config.max_header_bytes)
        .max_buf_size(config.max_header_bytes.max(8192) + 8192)
        .keep_alive(true);
    let local = Arc::new(Local::new(client));
    let service_shared = shared.clone();
    let service_local = local.clone();
    let service = service_fn(move |req| {
        let ctx = ConnCtx { shared: service_shared.clone(), local: service_local.clone() };
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
    // A CONNECT answered 200 (or a plain request answered 101) ended the HTTP stage: the
    // tunnel starts here, in this task, with hyper's state already gone.
    let pending = local.tunnel.lock().ok().and_then(|mut t| t.take());
    if let Some(pending) = pending {
        if !shared.abort.is_cancelled() {
            connect::start(pending, &shared, guard, peer).await;
        }
    }
}

/// One request as hyper read it: the same order of decisions as the first-head stage's
/// ([`gate::decide`]), then the CONNECT or the forward stage.
async fn route(req: Request<Incoming>, ctx: ConnCtx) -> Response<ProxyBody> {
    let method = req.method().clone();
    let connect = method == Method::CONNECT;
    let ask = Ask {
        target: Target::of_request(&method, req.uri()).map_err(BadRequest::from),
        connect_body: connect && req.headers().iter().any(|(n, v)| announces_body(n.as_str(), v.as_bytes())),
        plain: !connect,
        credentials: req.headers().get(http::header::PROXY_AUTHORIZATION).map(|v| v.as_bytes()),
    };
    let result = match gate::decide(&ctx.shared, &ctx.local.client, ask).await {
        Err(refusal) => Err(refusal),
        Ok(decided) if connect => connect::handle(req, decided, &ctx).await,
        Ok(decided) => forward::handle(req, decided, &ctx).await,
    };
    result.unwrap_or_else(|refusal| {
        gate::refused(ctx.peer(), &method, &refusal);
        refusal.into_response()
    })
}
