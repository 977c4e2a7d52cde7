//! Tunnel stage (the design's tunnel_stream): copy bytes both ways until both are done.
//!
//! Behaves like TCP: when one side shuts down its write half, the other side's write half
//! is shut down and the opposite direction keeps flowing; the tunnel ends when both
//! directions have ended, on an error either way, after `idle_timeout` with no byte in
//! either direction, or when the proxy aborts. Both sockets are dropped when it ends, so
//! nothing is left in CLOSE_WAIT.
//!
//! Memory: the tunnel is one small hand-written state machine polled through socket
//! readiness (no per-direction futures, no buffers while idle). Reads go into one
//! per-thread buffer and are written straight on; only bytes the receiver cannot take yet
//! are kept, in a per-direction spill buffer freed once drained, so a slow reader can make
//! a tunnel hold at most one read ([`READ_CHUNK`]) per direction: back-pressure, not
//! buffering.
//!
//! Speed: on Linux a direction whose read fills the whole buffer is a bulk transfer and
//! switches to splice(2) through a pipe, so its bytes are never copied into the process.
//! A short read tells tokio the socket is drained, sparing a read that would only return
//! EAGAIN.

use std::cell::RefCell;
use std::future::{poll_fn, Future as _};
use std::io::{self, Read as _};
use std::net::Shutdown;
use std::pin::pin;
use std::task::{ready, Context, Poll};
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

/// Bytes moved and how the tunnel ended. The bytes count however it ended: a client that
/// resets the connection after its download still moved it.
#[derive(Debug)]
pub struct TunnelReport {
    /// Client to upstream.
    pub up: u64,
    /// Upstream to client.
    pub down: u64,
    /// Why it ended, or the I/O error that ended it.
    pub end: io::Result<TunnelEnd>,
}

/// One direction's state: a flag, a counter and one pointer while idle (every open tunnel
/// holds two).
#[derive(Default)]
struct Direction {
    done: bool,
    bytes: u64,
    /// Anything beyond plain read-and-write, boxed so an idle direction carries one pointer.
    mode: Option<Box<Mode>>,
}

/// What a direction holds besides its counters.
enum Mode {
    /// Bytes read but not yet accepted by the receiver, and how many of them went out.
    Spill(Vec<u8>, usize),
    /// A bulk direction moved with splice(2).
    #[cfg(target_os = "linux")]
    Splice(splice::Pipe),
}

/// Copies until both directions end; returns the bytes moved and why it stopped.
///
/// An I/O error in either direction ends the tunnel; the report carries it.
///
/// `splice` lets bulk directions move with splice(2) on Linux; without it (and elsewhere)
/// every byte goes through the portable read-and-write path.
#[cfg(test)]
pub async fn run(
    client: TcpStream,
    upstream: TcpStream,
    idle_timeout: Duration,
    splice: bool,
    abort: &CancellationToken,
) -> TunnelReport {
    let mut out = None;
    run_then(client, upstream, idle_timeout, splice, abort.clone(), |r| out = Some(r)).await;
    out.unwrap_or_else(|| TunnelReport { up: 0, down: 0, end: Err(io::Error::other("tunnel ended without a result")) })
}

/// The tunnel as a whole task: `done` gets the result (`run`, in the tests, awaits it). The copy state lives in this one
/// future, so an idle tunnel's task is no bigger than that state (a task awaiting [`run`]
/// would hold its arguments a second time).
///
/// Not an `async fn`: an async block uses its captures in place, where an `async fn` would
/// keep a second copy of its arguments in every tunnel's task.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn run_then<F>(
    client: TcpStream,
    upstream: TcpStream,
    idle_timeout: Duration,
    splice: bool,
    abort: CancellationToken,
    done: F,
) -> impl std::future::Future<Output = ()>
where
    F: FnOnce(TunnelReport),
{
    async move {
        let mut up = Direction::default();
        let mut down = Direction::default();
        let mut last_activity = Instant::now();
        let mut idle = pin!(tokio::time::sleep(idle_timeout));
        let mut aborted = pin!(abort.cancelled());
        let end = poll_fn(|cx| {
            if aborted.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok::<_, io::Error>(TunnelEnd::Aborted));
            }
            let before = up.bytes + down.bytes;
            let up_done = step(cx, &client, &upstream, &mut up, down.done, splice)?.is_ready();
            let down_done = step(cx, &upstream, &client, &mut down, up.done, splice)?.is_ready();
            if up_done && down_done {
                return Poll::Ready(Ok(TunnelEnd::Closed));
            }
            if up.bytes + down.bytes != before {
                last_activity = Instant::now();
            }
            // The timer is reset only when it fires, not on every byte.
            while idle.as_mut().poll(cx).is_ready() {
                let deadline = last_activity + idle_timeout;
                if Instant::now() >= deadline {
                    return Poll::Ready(Ok(TunnelEnd::Idle));
                }
                idle.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await;
        done(TunnelReport { up: up.bytes, down: down.bytes, end });
    }
}

/// Moves what can be moved from `src` to `dst` now; `Ready` once `src` has ended and the
/// half-close was passed on.
fn step(
    cx: &mut Context<'_>,
    src: &TcpStream,
    dst: &TcpStream,
    d: &mut Direction,
    other_done: bool,
    splice: bool,
) -> Poll<io::Result<()>> {
    #[cfg(not(target_os = "linux"))]
    let _ = splice;
    loop {
        if d.done {
            return Poll::Ready(Ok(()));
        }
        match d.mode.as_deref_mut() {
            #[cfg(target_os = "linux")]
            Some(Mode::Splice(pipe)) => match ready!(splice::step(cx, src, dst, pipe))? {
                0 => return finish(dst, d, other_done),
                n => {
                    d.bytes += n as u64;
                    continue;
                }
            },
            Some(Mode::Spill(bytes, sent)) => {
                ready!(dst.poll_write_ready(cx))?;
                match dst.try_write(&bytes[*sent..]) {
                    Ok(n) => *sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
                if *sent == bytes.len() {
                    d.mode = None; // give the memory back: the receiver may stay slow or go idle
                }
                continue;
            }
            None => {}
        }
        ready!(src.poll_read_ready(cx))?;
        match read_and_forward(src, dst, d)? {
            Read::Nothing => continue,
            Read::Eof => return finish(dst, d, other_done),
            Read::Bytes(n) => {
                d.bytes += n as u64;
                #[cfg(target_os = "linux")]
                if splice && n == READ_CHUNK && d.mode.is_none() {
                    // A full buffer: a bulk transfer. Hand the rest to the kernel (zero copy).
                    d.mode = splice::Pipe::new().ok().map(|p| Box::new(Mode::Splice(p)));
                }
            }
        }
    }
}

/// Passes the half-close on. The peer may already be gone; that is not our error. When the
/// other direction has ended too, the tunnel is over and closing both sockets sends the FIN,
/// so the `shutdown` call is skipped (one syscall less per tunnel; nothing is left unread
/// on `dst`, whose own EOF ended the other direction, so the close is a FIN, not a reset).
fn finish(dst: &TcpStream, d: &mut Direction, other_done: bool) -> Poll<io::Result<()>> {
    if !other_done {
        let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
    }
    d.done = true;
    d.mode = None;
    Poll::Ready(Ok(()))
}

/// What one read attempt found.
enum Read {
    Nothing,
    Eof,
    Bytes(usize),
}

/// One read into the per-thread buffer, written straight on; what the receiver does not
/// take goes to the spill buffer.
fn read_and_forward(src: &TcpStream, dst: &TcpStream, d: &mut Direction) -> io::Result<Read> {
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
            if written < n {
                d.mode = Some(Box::new(Mode::Spill(buf[written..n].to_vec(), 0)));
            }
            read = Read::Bytes(n);
            // A short read drained the socket: say so, and tokio clears the readiness
            // (safely: an event that arrived meanwhile keeps it set).
            if n < buf.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        })
    });
    match attempt {
        Ok(()) => Ok(read),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(read),
        Err(e) => Err(e),
    }
}

/// Zero-copy forwarding for bulk transfers: socket → pipe → socket with splice(2), so the
/// bytes never enter this process. A pipe costs two descriptors, so only directions that
/// proved busy get one, and keep it until they end.
#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::task::{ready, Context, Poll};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Pipe capacity asked for (the default Linux maximum for unprivileged processes).
    const PIPE_SIZE: usize = 1 << 20;

    pub(super) struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
        size: usize,
        /// Bytes in the pipe, not yet written to the destination.
        held: usize,
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
            Ok(Pipe { read, write, size, held: 0 })
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

    /// Moves one batch through the pipe; `Ready(0)` at end of stream.
    pub(super) fn step(
        cx: &mut Context<'_>,
        src: &TcpStream,
        dst: &TcpStream,
        p: &mut Pipe,
    ) -> Poll<io::Result<usize>> {
        loop {
            if p.held > 0 {
                ready!(dst.poll_write_ready(cx))?;
                match dst.try_io(Interest::WRITABLE, || splice(p.read.as_raw_fd(), dst.as_raw_fd(), p.held)) {
                    Ok(m) => p.held -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            ready!(src.poll_read_ready(cx))?;
            match src.try_io(Interest::READABLE, || splice(src.as_raw_fd(), p.write.as_raw_fd(), p.size)) {
                Ok(n) => {
                    p.held = n;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle tunnel holds this future; keep it small (memory per idle tunnel is one of the
    /// targets in BENCHMARKS.md).
    #[tokio::test]
    async fn an_idle_tunnel_is_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        let abort = CancellationToken::new();
        let f = run_then(a, b, Duration::from_secs(1), true, abort, |_| {});
        eprintln!("tunnel future: {} bytes", size_of_val(&f));
        assert!(size_of_val(&f) <= 480, "tunnel future is {} bytes", size_of_val(&f));
    }

    /// A tunnel that ends in an error (the client resets it) still reports what it moved.
    #[tokio::test]
    async fn bytes_count_when_a_tunnel_ends_in_an_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (client_side, _) = l.accept().await.unwrap();
        let mut origin = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (origin_side, _) = l.accept().await.unwrap();
        let abort = CancellationToken::new();
        let tunnel =
            tokio::spawn(async move { run(client_side, origin_side, Duration::from_secs(5), true, &abort).await });
        client.write_all(&[1u8; 100_000]).await.unwrap();
        let mut got = vec![0u8; 100_000];
        origin.read_exact(&mut got).await.unwrap();
        origin.write_all(&[2u8; 300_000]).await.unwrap();
        let mut back = vec![0u8; 300_000];
        client.read_exact(&mut back).await.unwrap();
        // More comes while the client closes without reading it: a reset.
        origin.write_all(&[3u8; 1000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
        drop(client);
        let _ = origin.write_all(&[4u8; 1000]).await;
        let report = tokio::time::timeout(Duration::from_secs(5), tunnel).await.unwrap().unwrap();
        assert!(report.end.is_err(), "{report:?}");
        assert_eq!(report.up, 100_000, "{report:?}");
        assert!(report.down >= 300_000, "{report:?}");
    }
}
