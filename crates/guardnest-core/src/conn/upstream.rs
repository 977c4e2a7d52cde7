//! Upstream connections of the forward stage, kept where they are used.
//!
//! A client connection drives its upstream HTTP/1.1 connection inside its own task (the
//! [`Slot`]), so a forwarded request costs no hop to another task or through a pool lock:
//! parsing the client's request, writing it upstream, reading the answer and writing it back
//! all happen in one poll. When the client asks for another host, or leaves, an idle upstream
//! connection goes to the shared [`Pool`], where the next client needing that host picks it
//! up and from then on drives it itself. Pooled connections are not polled; [`Pool::sweep`]
//! closes the expired and the ones the server closed, so no socket is left in CLOSE_WAIT.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::conn::hop::MAX_INTERIM;
use crate::conn::idle::{Deadline, IdleBody};
use crate::domain::Target;
use crate::stats::Stats;

/// Idle upstream connections kept per host.
const MAX_IDLE_PER_HOST: usize = 32;
/// Idle upstream connections kept in all.
const MAX_IDLE: usize = 512;

/// A request body sent upstream: the client's, cut if it stalls for `idle_timeout`.
pub(crate) type UpBody = IdleBody<Incoming>;

type Driver = Pin<Box<Connection<TokioIo<UpstreamIo>, UpBody>>>;

/// Whose an upstream connection is. In gateway mode a kept connection is only handed to
/// the same client, its address *and* its user: bytes an origin sends after its own
/// framing can never reach another machine, even one logged in with the same name. A
/// desktop proxy has one user, [`Owner::Anyone`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    Anyone,
    Client {
        /// The real client address (after a PROXY protocol header).
        address: IpAddr,
        /// The proxy user it logged in as, if users are configured.
        user: Option<Arc<str>>,
    },
}

/// Who is on the other end of an upstream connection: the origin itself (requests in origin
/// form), or a parent proxy (requests in absolute form, for any origin). Connections are
/// pooled per peer, so a parent's are shared by every origin behind it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Peer {
    /// The origin server.
    Origin(Target),
    /// A parent proxy.
    Parent(Target),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Origin(t) => write!(f, "{t}"),
            Peer::Parent(t) => write!(f, "parent proxy {t}"),
        }
    }
}

/// The upstream socket under hyper: a write that waits `idle_timeout` for an upstream that
/// stopped reading fails.
pub(crate) struct UpstreamIo {
    io: TcpStream,
    write: Deadline,
}

impl UpstreamIo {
    pub(crate) fn new(io: TcpStream, idle: Duration) -> Self {
        Self { io, write: Deadline::new(idle) }
    }

    pub(crate) fn into_inner(self) -> TcpStream {
        self.io
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for UpstreamIo {
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

/// One upstream HTTP/1.1 connection: the handle requests are sent through, and the future
/// that does its I/O (someone must poll it for anything to happen).
pub(crate) struct Upstream {
    peer: Peer,
    owner: Owner,
    sender: SendRequest<UpBody>,
    driver: Driver,
}

impl Upstream {
    /// Completes the HTTP/1 handshake (nothing is sent) over a connected socket whose writes
    /// may wait at most `idle`.
    pub(crate) async fn over(peer: Peer, owner: Owner, stream: TcpStream, idle: Duration) -> hyper::Result<Self> {
        let io = UpstreamIo { io: stream, write: Deadline::new(idle) };
        let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(io)).await?;
        Ok(Self { peer, owner, sender, driver: Box::pin(conn) })
    }

    /// Whether this connection may carry a request of `owner` to `peer`.
    fn serves(&self, peer: &Peer, owner: &Owner) -> bool {
        self.peer == *peer && self.owner == *owner
    }

    /// Polls the connection's I/O; `true` once it is over (closed by either side or failed).
    fn poll_done(&mut self, cx: &mut Context<'_>) -> bool {
        match self.driver.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %crate::conn::respond::error_chain(&e), "upstream connection failed");
                true
            }
            Poll::Pending => false,
        }
    }

    /// Whether a request can go out now: the last exchange is over and the server has not
    /// closed. Polls the I/O once, so an EOF that already arrived is seen here.
    fn is_reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        !self.poll_done(&mut cx) && self.sender.is_ready() && !self.sender.is_closed()
    }
}

/// The upstream connection a client connection is using, polled by that connection's task.
#[derive(Default)]
pub(crate) struct Slot {
    /// Locked only from the owning task (never contended): the request handler takes and
    /// installs connections, the task's poll drives them.
    current: Mutex<Option<Upstream>>,
}

impl Slot {
    /// Drives the current upstream connection's I/O (a connection that ends is dropped).
    /// The owning task calls this next to polling its client connection.
    pub(crate) fn drive(&self, cx: &mut Context<'_>) {
        let mut current = self.current.lock();
        if current.as_mut().is_some_and(|u| u.poll_done(cx)) {
            *current = None;
        }
    }

    /// Takes a reusable connection to `peer` for `owner` from this slot or, failing that,
    /// from the pool; a connection to another peer (or of another owner) in the slot goes to
    /// the pool.
    pub(crate) fn take(&self, peer: &Peer, owner: &Owner, pool: &Pool) -> Option<Upstream> {
        let held = self.current.lock().take();
        if let Some(mut up) = held {
            if up.serves(peer, owner) && up.is_reusable() {
                return Some(up);
            }
            pool.put(up);
        }
        pool.take(peer, owner)
    }

    /// Closes the current connection (it misbehaved: it must not serve another request).
    pub(crate) fn discard(&self) {
        *self.current.lock() = None;
    }

    /// Sends `req` over `up`, which this slot then holds and drives until the next request.
    /// The returned future may be polled after `up` is gone; it then fails.
    pub(crate) fn send(
        &self,
        mut up: Upstream,
        req: http::Request<UpBody>,
    ) -> impl Future<Output = Result<http::Response<Incoming>, hyper::client::conn::TrySendError<http::Request<UpBody>>>>
    {
        let response = up.sender.try_send_request(req);
        *self.current.lock() = Some(up);
        response
    }

    /// Gives the connection, if idle and reusable, to the pool (the client connection ends).
    pub(crate) fn release(&self, pool: &Pool) {
        let held = self.current.lock().take();
        if let Some(up) = held {
            pool.put(up);
        }
    }
}

/// How often idle pooled connections are checked while there are any.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Idle upstream connections no client connection is driving.
pub(crate) struct Pool {
    idle_timeout: Duration,
    /// How long a write to an upstream may wait ([`UpstreamIo`]).
    io_idle: Duration,
    idle: Mutex<PoolInner>,
    stats: Arc<Stats>,
    /// Wakes [`sweep`] when the pool stops being empty.
    filled: Notify,
}

#[derive(Default)]
struct PoolInner {
    by_target: HashMap<(Peer, Owner), VecDeque<(Upstream, Instant)>>,
    count: usize,
}

impl Pool {
    /// A pool that closes connections idle for longer than `idle_timeout`, for connections
    /// whose writes may wait `io_idle`.
    pub(crate) fn new(idle_timeout: Duration, io_idle: Duration, stats: Arc<Stats>) -> Self {
        Self { idle_timeout, io_idle, idle: Mutex::default(), stats, filled: Notify::new() }
    }

    /// How long a write to an upstream may wait.
    pub(crate) fn io_idle(&self) -> Duration {
        self.io_idle
    }

    /// Keeps `up` if it is reusable and there is room; otherwise it is closed.
    fn put(&self, mut up: Upstream) {
        if !up.is_reusable() {
            return;
        }
        let mut inner = self.idle.lock();
        if inner.count >= MAX_IDLE {
            return;
        }
        let queue = inner.by_target.entry((up.peer.clone(), up.owner.clone())).or_default();
        if queue.len() >= MAX_IDLE_PER_HOST {
            return;
        }
        queue.push_back((up, Instant::now()));
        inner.count += 1;
        self.counted(inner.count);
        if inner.count == 1 {
            self.filled.notify_one();
        }
    }

    /// The most recently used reusable connection to `peer` of `owner`, if any.
    fn take(&self, peer: &Peer, owner: &Owner) -> Option<Upstream> {
        let mut inner = self.idle.lock();
        let inner = &mut *inner;
        let key = (peer.clone(), owner.clone());
        let queue = inner.by_target.get_mut(&key)?;
        let mut found = None;
        while let Some((mut up, since)) = queue.pop_back() {
            inner.count -= 1;
            if since.elapsed() < self.idle_timeout && up.is_reusable() {
                found = Some(up);
                break;
            }
        }
        if queue.is_empty() {
            inner.by_target.remove(&key);
        }
        self.counted(inner.count);
        found
    }

    /// Closes connections idle too long or closed by their server.
    pub(crate) fn sweep(&self) {
        let mut inner = self.idle.lock();
        let inner = &mut *inner;
        let timeout = self.idle_timeout;
        inner.by_target.retain(|_, queue| {
            queue.retain_mut(|(up, since)| since.elapsed() < timeout && up.is_reusable());
            !queue.is_empty()
        });
        inner.count = inner.by_target.values().map(VecDeque::len).sum();
        self.counted(inner.count);
    }

    fn counted(&self, count: usize) {
        self.stats.upstream_idle.store(count as u64, Relaxed);
    }

    /// Idle connections held (for tests and metrics).
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().count
    }

    /// Closes every idle connection.
    pub(crate) fn clear(&self) {
        *self.idle.lock() = PoolInner::default();
        self.counted(0);
    }
}

/// Sweeps the pool every few seconds while it holds connections, and sleeps while it is
/// empty (an idle proxy does no work); empties it at shutdown.
pub(crate) async fn sweep(pool: Arc<Pool>, shutdown: CancellationToken) {
    loop {
        let wait = async {
            if pool.idle_count() == 0 {
                pool.filled.notified().await;
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        };
        tokio::select! {
            () = wait => pool.sweep(),
            () = shutdown.cancelled() => break,
        }
    }
    pool.clear();
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn connected(listener: &TcpListener, target: &Peer) -> (Upstream, TcpStream) {
        let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let up = Upstream::over(target.clone(), Owner::Anyone, stream, Duration::from_secs(5)).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        (up, server_side)
    }

    /// Sweeps until the pool holds `n` connections; the server's FIN takes a moment to arrive.
    async fn swept_to(pool: &Pool, n: usize) {
        for _ in 0..200 {
            pool.sweep();
            if pool.idle_count() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("pool holds {} idle connections, expected {n}", pool.idle_count());
    }

    #[tokio::test]
    async fn pool_drops_what_the_server_closed_and_what_expired() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Peer::Origin(Target::parse_authority(&listener.local_addr().unwrap().to_string()).unwrap());
        let stats = Arc::new(Stats::default());
        let pool = Pool::new(Duration::from_millis(300), Duration::from_secs(5), stats.clone());
        let (a, mut server_a) = connected(&listener, &target).await;
        let (b, server_b) = connected(&listener, &target).await;
        pool.put(a);
        pool.put(b);
        assert_eq!(stats.upstream_idle.load(Relaxed), 2);

        // The server closes one: the sweep closes our end too (no CLOSE_WAIT left behind).
        drop(server_b);
        swept_to(&pool, 1).await;
        assert_eq!(stats.upstream_idle.load(Relaxed), 1);

        // The other expires: the server sees our FIN.
        tokio::time::sleep(Duration::from_millis(350)).await;
        pool.sweep();
        assert_eq!(pool.idle_count(), 0);
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), server_a.read(&mut byte)).await.unwrap().unwrap();
        assert_eq!(n, 0, "expired connection closed");
        assert_eq!(stats.upstream_idle.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn pool_hands_out_live_connections_for_the_right_host_only() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Peer::Origin(Target::parse_authority(&listener.local_addr().unwrap().to_string()).unwrap());
        let other_target = Peer::Origin(Target::parse_authority(&other.local_addr().unwrap().to_string()).unwrap());
        let as_parent = match &target {
            Peer::Origin(t) => Peer::Parent(t.clone()),
            Peer::Parent(_) => unreachable!(),
        };
        let pool = Pool::new(Duration::from_secs(60), Duration::from_secs(5), Arc::default());
        let (dead, server_dead) = connected(&listener, &target).await;
        let (live, _server_live) = connected(&listener, &target).await;
        pool.put(live);
        pool.put(dead);
        assert!(pool.take(&other_target, &Owner::Anyone).is_none());
        assert!(pool.take(&as_parent, &Owner::Anyone).is_none(), "an origin's connection handed out as a parent's");
        let someone = Owner::Client { address: "127.0.0.9".parse().unwrap(), user: Some("alice".into()) };
        assert!(pool.take(&target, &someone).is_none(), "another owner's connection handed out");
        // The server closes the most recent one; its FIN is in our socket right after.
        drop(server_dead);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let taken = pool.take(&target, &Owner::Anyone).expect("the live connection is handed out");
        assert_eq!(pool.idle_count(), 0, "the closed one was dropped on the way");
        assert_eq!(taken.peer, target);
        assert!(pool.take(&target, &Owner::Anyone).is_none());
    }
}

/// Interim (1xx) answers seen for the plain-HTTP request in flight on a client connection;
/// past [`MAX_INTERIM`] the request fails. One per connection, counted again for each request
/// (a connection has one request in flight at a time; the forward stage counts them).
#[derive(Default)]
pub(crate) struct Interim {
    pub(crate) seen: AtomicUsize,
    pub(crate) exceeded: Notify,
}

impl Interim {
    /// Once this request's interim answers passed the limit (a wake-up left by an earlier
    /// request's is not taken for it).
    pub(crate) async fn exceeded(&self) {
        loop {
            self.exceeded.notified().await;
            if self.seen.load(Relaxed) > MAX_INTERIM {
                return;
            }
        }
    }
}
