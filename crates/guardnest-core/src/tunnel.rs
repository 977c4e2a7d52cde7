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
//!
//! Speed: on Linux a direction whose read fills the whole buffer is a bulk transfer and
//! switches to splice(2) through a pipe, so its bytes are never copied into the process.

use std::cell::RefCell;
use std::io::{self, Read as _};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::Interest;
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
        let mut read = Read::Nothing;
        let attempt = src.try_io(Interest::READABLE, || {
            READ_BUF.with_borrow_mut(|buf| {
                let n = (&*socket2::SockRef::from(src)).read(buf)?;
                if n == 0 {
                    read = Read::Eof;
                    return Ok(());
                }
                let written = match dst.try_write(&buf[..n]) {
                    Ok(w) => w,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) => return Err(e),
                };
                spill.extend_from_slice(&buf[written..n]);
                read = Read::Bytes(n);
                // A short read drained the socket: say so, and tokio clears the readiness
                // (safely: an event that arrived meanwhile keeps it set), sparing a read
                // that would only return EAGAIN.
                if n < buf.len() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            })
        });
        match attempt {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let n = match read {
            Read::Nothing => continue,
            Read::Eof => break,
            Read::Bytes(n) => n,
        };
        total += n as u64;
        last_activity.store(start.elapsed().as_millis() as u64, Relaxed);
        if !spill.is_empty() {
            // Boxed: rare, and inline it would enlarge every idle tunnel's future.
            Box::pin(drain(dst, &mut spill)).await?;
            last_activity.store(start.elapsed().as_millis() as u64, Relaxed);
            spill = Vec::new(); // give the memory back: the receiver may stay slow or go idle
        } else if n == READ_CHUNK {
            // A full buffer: a bulk transfer. Hand the rest to the kernel (zero copy).
            #[cfg(target_os = "linux")]
            if let Ok(pipe) = splice::Pipe::new() {
                total += Box::pin(splice::until_eof(src, dst, &pipe, start, last_activity)).await?;
                break;
            }
        }
    }
    // Pass the half-close on. The peer may already be gone; that is not our error.
    let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
    Ok(total)
}

/// What one read attempt found.
enum Read {
    Nothing,
    Eof,
    Bytes(usize),
}

/// Zero-copy forwarding for bulk transfers: socket → pipe → socket with splice(2), so the
/// bytes never enter this process. A pipe costs two descriptors, so only directions that
/// proved busy get one, and keep it until they end.
#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use tokio::io::Interest;
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    /// Pipe capacity asked for (the default Linux maximum for unprivileged processes).
    const PIPE_SIZE: usize = 1 << 20;

    pub(super) struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
        size: usize,
    }

    impl Pipe {
        pub(super) fn new() -> io::Result<Pipe> {
            let mut fds = [0 as RawFd; 2];
            // SAFETY: pipe2 fills both descriptors on success; we own them from then on.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fresh descriptors from pipe2, owned by nobody else.
            let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // SAFETY: fcntl on a descriptor we own; failure leaves the default size.
            let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int) };
            let size = if size > 0 { size as usize } else { 64 * 1024 };
            Ok(Pipe { read, write, size })
        }
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: plain descriptors and null offsets (both ends are streams).
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Forwards until `src` ends; returns the bytes moved.
    pub(super) async fn until_eof(
        src: &TcpStream,
        dst: &TcpStream,
        pipe: &Pipe,
        start: Instant,
        last_activity: &AtomicU64,
    ) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            src.readable().await?;
            let n = match src.try_io(Interest::READABLE, || splice(src.as_raw_fd(), pipe.write.as_raw_fd(), pipe.size))
            {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            let mut left = n;
            while left > 0 {
                match dst.try_io(Interest::WRITABLE, || splice(pipe.read.as_raw_fd(), dst.as_raw_fd(), left)) {
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                    Err(e) => return Err(e),
                }
            }
            total += n as u64;
            last_activity.store(start.elapsed().as_millis() as u64, Relaxed);
        }
    }
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
