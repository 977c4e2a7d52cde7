//! The connection task: one per accepted connection. It reads the PROXY protocol header
//! (opt-in), then the connection's heads ([`crate::conn::head`]): CONNECT heads go to the
//! CONNECT stage, simple GET and HEAD heads to the relay stage, and anything else hands the
//! rest of the connection to hyper's engine ([`crate::conn::http`]).

use std::net::SocketAddr;
use std::sync::Arc;

use http::Method;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::conn::connect::{self, Answered};
use crate::conn::gate::{self, Client, ConnGuard, Shared};
use crate::conn::head::{self, Head, Rewind};
use crate::conn::http::serve_http;
use crate::conn::relay::{self, Kept, Relayed};
use crate::stats::Stats;

/// Serves one client connection until it closes, the proxy shuts down, or it is aborted.
pub(crate) async fn serve(
    mut stream: TcpStream,
    tcp_peer: SocketAddr,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let guard = ConnGuard::new(permit, shared.stats.clone());
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
    let client = Client::new(peer, shared.access.check_address(peer.ip()).is_ok());
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
            let read = tokio::time::timeout_at(
                deadline,
                head::read(&stream, &mut buf, config.max_header_bytes, config.all_to_hyper),
            );
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
                gate::refused(peer, &Method::CONNECT, &refusal);
                let _ = stream.write_all(&refusal.encode()).await;
                break;
            }
            // Boxed: the HTTP stage's state (kilobytes) is allocated only when it serves.
            Head::Other(pre) => {
                if let Some(k) = kept.take() {
                    k.release(&shared).await;
                }
                let io = Rewind::new(pre, stream, config.idle_timeout);
                return Box::pin(serve_http(io, client, shared, guard, shutdown)).await;
            }
            Head::Plain(plain) => {
                // Boxed, as the CONNECT answer below.
                let relay = Box::pin(relay::relay(&mut stream, plain, &mut kept, &shared, &client));
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
        let answer = Box::pin(connect::answer(&mut stream, head, &shared, &client));
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
                return connect::start_tunnel(stream, open, &shared, guard, peer).await;
            }
            Answered::Refused { rest } => buf = rest,
            Answered::Closed => break,
        }
    }
    if let Some(k) = kept {
        k.release(&shared).await;
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
