//! hyper's engine: every request of a connection that did not start with a CONNECT is read
//! by hyper under the same limits (its own timer and header-read timeout) and routed to the
//! CONNECT or the forward stage; hyper's connection also drives the upstream connection its
//! plain-HTTP requests use. The one plain-HTTP engine: GuardNest frames no HTTP message
//! itself.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::conn::connect::Open;
use crate::conn::gate::{self, Ask, Client, ConnCtx, ConnGuard, Local, Pending, Shared};
use crate::conn::head::announces_body;
use crate::conn::idle::Deadline;
use crate::conn::respond::{error_chain, BadRequest, ProxyBody};
use crate::conn::{connect, forward};
use crate::domain::Target;

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
        tracing::debug!(%peer, error = %error_chain(&e), "connection ended with an error");
    }
    // A CONNECT answered 200 (or a plain request answered 101) ended the HTTP stage: the
    // tunnel starts here, in this task, with hyper's state already gone.
    let pending = local.tunnel.lock().take();
    if let Some(pending) = pending {
        if !shared.abort.is_cancelled() {
            start_after_upgrade(pending, &shared, guard, peer).await;
        }
    }
}

/// Takes the client's socket back from hyper and starts the tunnel ([`start_tunnel`]). Runs
/// in the connection task, whose HTTP stage has just ended.
async fn start_after_upgrade(pending: Pending, shared: &Shared, guard: ConnGuard, peer: SocketAddr) {
    let Pending { on_upgrade, upstream, target, early } = pending;
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%peer, %target, error = %error_chain(&e), "client left before the tunnel started");
            return;
        }
    };
    let Ok(parts) = upgraded.downcast::<TokioIo<Rewind>>() else {
        tracing::error!(%peer, %target, "upgraded connection is not a TCP stream");
        return;
    };
    // What hyper read past the head, behind anything it never read of the first bytes.
    let (mut pipelined, client) = parts.io.into_inner().into_parts();
    pipelined.extend_from_slice(&parts.read_buf);
    // Even empty, hyper's bytes may pin its whole read buffer: let it go first.
    drop(parts.read_buf);
    connect::start_tunnel(client, Open { upstream, target, pipelined, early }, shared, guard, peer).await;
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
        credentials: req.headers().get(http::header::PROXY_AUTHORIZATION).map(http::HeaderValue::as_bytes),
    };
    let result = match gate::decide(&ctx.shared, &ctx.local.client, ask).await {
        Err(refusal) => Err(refusal),
        // A CONNECT here came after other requests (a first CONNECT takes the first-head
        // path): its dial and handshake state on the heap, so that the future hyper moves
        // for every plain request stays small.
        Ok(decided) if connect => Box::pin(connect::handle(req, decided, &ctx)).await,
        Ok(decided) => forward::handle(req, decided, &ctx).await,
    };
    result.unwrap_or_else(|refusal| {
        gate::refused(ctx.peer(), &method, &refusal);
        refusal.into_response()
    })
}

/// The client's socket with bytes already read from it in front, for hyper; a write that
/// waits `idle_timeout` for a client that stopped reading fails.
pub(crate) struct Rewind {
    pre: Vec<u8>,
    at: usize,
    io: TcpStream,
    write: Deadline,
}

impl Rewind {
    /// `pre` in front of `io`; writes may wait `idle` for the client to read.
    pub(crate) fn new(pre: Vec<u8>, io: TcpStream, idle: Duration) -> Rewind {
        Rewind { pre, at: 0, io, write: Deadline::new(idle) }
    }

    /// The socket, and what of the bytes in front was never read (nothing, once hyper has
    /// read a head).
    pub(crate) fn into_parts(mut self) -> (Vec<u8>, TcpStream) {
        self.pre.drain(..self.at);
        (self.pre, self.io)
    }
}

impl AsyncRead for Rewind {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.at < self.pre.len() {
            let n = (self.pre.len() - self.at).min(out.remaining());
            let at = self.at;
            out.put_slice(&self.pre[at..at + n]);
            self.at += n;
            if self.at == self.pre.len() {
                self.pre = Vec::new(); // read: let the buffer go
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.io).poll_read(cx, out))?;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.write.check_io(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.write.check_io(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rewind_reads_its_bytes_first_and_gives_back_the_rest() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b" world").await.unwrap();
        let mut io = Rewind::new(b"hello".to_vec(), server, Duration::from_secs(5));
        let mut two = [0u8; 2];
        io.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"he");
        let (left, server) = io.into_parts();
        assert_eq!(left, b"llo");
        let mut io = Rewind::new(left, server, Duration::from_secs(5));
        let mut all = [0u8; 9];
        io.read_exact(&mut all).await.unwrap();
        assert_eq!(&all, b"llo world");
        assert!(io.into_parts().0.is_empty());
    }
}
