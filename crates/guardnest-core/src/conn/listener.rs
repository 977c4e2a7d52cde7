//! Accept stage: take a connection permit, then accept, then hand off.
//!
//! The permit comes first so that at `max_connections` new clients wait in the kernel's
//! backlog instead of being accepted and starved. Accept errors that concern the whole
//! process (EMFILE, ENFILE, ENOBUFS) back off exponentially up to a second and retry:
//! never spin, never exit.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::conn::gate::Shared;
use crate::conn::serve::serve;
use crate::health::Health;
use crate::stats::Stats;

const BACKOFF_START: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts until `shutdown` is cancelled. The health check's own connections are closed at
/// once, uncounted: they are not clients.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut backoff = BACKOFF_START;
    loop {
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // the semaphore is never closed
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((_, peer)) if health.is_probe(peer) => backoff = BACKOFF_START,
            Ok((stream, peer)) => {
                backoff = BACKOFF_START;
                #[cfg(not(target_os = "linux"))] // inherited from the listener on Linux
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                let task = serve(stream, peer, shared.clone(), permit, shutdown.clone());
                shared.tracker.spawn(task);
            }
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                Stats::bump(&shared.stats.accept_errors);
                tracing::warn!(error = %e, retry_in = ?backoff, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Errors that concern one connection that went away before it was accepted.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
}
