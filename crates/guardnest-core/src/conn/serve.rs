//! The connection task: one per accepted connection. It reads the PROXY protocol header
//! (opt-in), then the connection's first head ([`crate::conn::head`]): a CONNECT is served
//! by the CONNECT stage, which answers it and starts the tunnel; anything else hands the
//! connection to hyper's engine ([`crate::conn::http`]).

use std::net::SocketAddr;
use std::sync::Arc;

use http::Method;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::conn::connect::{self, Served};
use crate::conn::gate::{self, Client, ConnGuard, Shared};
use crate::conn::head::{self, Head};
use crate::conn::http::{serve_http, Rewind};
use crate::stats::Stats;

/// Serves one client connection until it closes, the proxy shuts down, or it is aborted.
pub(crate) async fn serve(
    mut stream: TcpStream,
    tcp_peer: SocketAddr,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let mut guard = ConnGuard::new(permit, shared.stats.clone());
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
    // Our end: the listener's address this client came in on (a wildcard listener has many).
    // A client named by a PROXY header is not this socket's peer: it is on another machine.
    let local = match shared.config.proxy_protocol {
        true => None,
        false => Some(stream.local_addr().unwrap_or(shared.config.listen)),
    };
    shared.blocks.who().note_connection(peer, local);
    let client = Client::new(peer, local, shared.access.check_address(peer.ip()).is_ok());
    let config = &shared.config;
    // A client costs no buffer until its first bytes arrive (head::read reads them into one
    // sized to fit), however many connections wait silently.
    let mut buf = Vec::new();
    // A parent's connection whose 407 the client is answering (see `conn::route`).
    let mut pinned = None;
    loop {
        // Biased, the read first: when the head is already there (the usual case) the
        // cancellation future is never polled, so never registered.
        let read = tokio::time::timeout(config.request_timeout, head::read(&stream, &mut buf, config.max_header_bytes));
        let head = tokio::select! {
            biased;
            r = read => r,
            _ = shutdown.cancelled() => return,
        };
        let Ok(head) = head else {
            tracing::debug!(%peer, "no complete request head in time; closed");
            return;
        };
        let head = match head {
            Head::Closed => return,
            Head::Bad(refusal) => {
                let method = buf.split(|b| *b == b' ').next().and_then(|m| Method::from_bytes(m).ok());
                gate::refused(peer, &method.unwrap_or(Method::CONNECT), &refusal);
                let _ = stream.write_all(&refusal.encode()).await;
                return;
            }
            // Boxed: the HTTP stage's state (kilobytes) is allocated only when it serves.
            Head::Other(pre) => {
                let io = Rewind::new(pre, stream, config.idle_timeout);
                return Box::pin(serve_http(io, client, shared, guard, shutdown)).await;
            }
            Head::Connect(head) => head,
        };
        // Boxed like the HTTP stage: the dial's state is allocated only while it runs. A dial
        // still running when the shutdown grace ends is dropped with the connection.
        let served = Box::pin(connect::serve(stream, head, &shared, &client, guard, pinned.take()));
        let served = tokio::select! {
            biased;
            s = served => s,
            _ = shared.abort.cancelled() => return,
        };
        match served {
            Served::Refused { stream: s, guard: g, rest, pinned: p } => (stream, guard, buf, pinned) = (s, g, rest, p),
            Served::Done => return,
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
            tracing::debug!(peer = %tcp_peer, error = %crate::conn::respond::error_chain(&e), "connection closed");
            None
        }
        Err(_) => {
            tracing::debug!(peer = %tcp_peer, "no PROXY protocol header in time; closed");
            None
        }
    }
}
