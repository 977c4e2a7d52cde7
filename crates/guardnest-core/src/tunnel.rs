//! Tunnel stage (the design's tunnel_stream): copy bytes both ways until both are done.
//!
//! Behaves like TCP: when one side shuts down its write half, the other side's write half
//! is shut down and the opposite direction keeps flowing; the tunnel ends when both
//! directions have ended, on an error either way, after `idle_timeout` with no byte in
//! either direction, or when the proxy aborts. Both sockets are dropped when it ends, so
//! nothing is left in CLOSE_WAIT.
//!
//! Memory: reads go into one per-thread buffer and are written straight on; only bytes the
//! receiver cannot take yet are copied into a per-direction spill buffer, which is freed
//! once drained. An idle tunnel holds no buffer, and a slow reader can make a tunnel hold
//! at most one read ([`READ_CHUNK`]) per direction: back-pressure, not buffering.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest single read, and so the most a direction can hold for a slow receiver.
pub const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both sides closed their write halves.
    Closed,
    /// No bytes either way for the idle timeout.
    Idle,
    /// The proxy was shutting down and the grace period ran out.
    Aborted,
}

/// Bytes moved and how the tunnel ended.
#[derive(Debug, Clone, Copy)]
pub struct TunnelReport {
    /// Client to upstream.
    pub up: u64,
    /// Upstream to client.
    pub down: u64,
    /// Why it ended.
    pub end: TunnelEnd,
}

/// Copies until both directions end; returns the bytes moved and why it stopped.
///
/// An I/O error in either direction ends the tunnel with that error.
pub async fn run(
    client: TcpStream,
    upstream: TcpStream,
    idle_timeout: Duration,
    abort: &CancellationToken,
) -> io::Result<TunnelReport> {
    let start = Instant::now();
    let last_activity = AtomicU64::new(0); // millis since `start`
    let up = pump(&client, &upstream, start, &last_activity);
    let down = pump(&upstream, &client, start, &last_activity);
    tokio::pin!(up, down);
    let (mut up_bytes, mut down_bytes) = (None, None);
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let end = loop {
        tokio::select! {
            r = &mut up, if up_bytes.is_none() => up_bytes = Some(r?),
            r = &mut down, if down_bytes.is_none() => down_bytes = Some(r?),
            _ = &mut idle => {
                let deadline = start + Duration::from_millis(last_activity.load(Relaxed)) + idle_timeout;
                if Instant::now() >= deadline {
                    break TunnelEnd::Idle;
                }
                idle.as_mut().reset(deadline);
            }
            _ = abort.cancelled() => break TunnelEnd::Aborted,
        }
        if up_bytes.is_some() && down_bytes.is_some() {
            break TunnelEnd::Closed;
        }
    };
    Ok(TunnelReport { up: up_bytes.unwrap_or(0), down: down_bytes.unwrap_or(0), end })
}

/// Moves bytes from `src` to `dst` until `src` ends, then shuts down `dst`'s write half.
async fn pump(src: &TcpStream, dst: &TcpStream, start: Instant, last_activity: &AtomicU64) -> io::Result<u64> {
    let mut total = 0u64;
    let mut spill: Vec<u8> = Vec::new();
    loop {
        src.readable().await?;
        let read = READ_BUF.with_borrow_mut(|buf| -> io::Result<Option<usize>> {
            let n = match src.try_read(buf) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(0)),
                Err(e) => return Err(e),
            };
            let written = match dst.try_write(&buf[..n]) {
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            spill.extend_from_slice(&buf[written..n]);
            Ok(Some(n))
        })?;
        let Some(n) = read else { break };
        if n == 0 {
            continue;
        }
        total += n as u64;
        last_activity.store(start.elapsed().as_millis() as u64, Relaxed);
        if !spill.is_empty() {
            drain(dst, &mut spill).await?;
            last_activity.store(start.elapsed().as_millis() as u64, Relaxed);
            spill = Vec::new(); // give the memory back: the receiver may stay slow or go idle
        }
    }
    // Pass the half-close on. The peer may already be gone; that is not our error.
    let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
    Ok(total)
}

async fn drain(dst: &TcpStream, spill: &mut Vec<u8>) -> io::Result<()> {
    let mut offset = 0;
    while offset < spill.len() {
        dst.writable().await?;
        match dst.try_write(&spill[offset..]) {
            Ok(w) => offset += w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    spill.clear();
    Ok(())
}
