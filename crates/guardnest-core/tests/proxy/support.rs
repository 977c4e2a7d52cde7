//! Real sockets on loopback: the proxy under test, upstreams, and raw clients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use guardnest_core::config::{BlocklistConfig, HealthConfig, ProxyConfig, SourceSpec};
use guardnest_core::stats::Stats;
use guardnest_core::{Blocklists, Policy, Proxy};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single step of a test.
pub const STEP: Duration = Duration::from_secs(10);

pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

pub fn config() -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(20),
        shutdown_timeout: Duration::from_secs(2),
        ..ProxyConfig::default()
    }
}

pub struct TestProxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    pub health: Arc<guardnest_core::health::Health>,
    pub blocks: Arc<guardnest_core::events::BlockLog>,
    shutdown: CancellationToken,
    handle: JoinHandle<()>,
}

impl TestProxy {
    pub async fn start(config: ProxyConfig, policy: Policy) -> Self {
        Self::start_with_health(config, HealthConfig::default(), policy).await
    }

    /// A proxy with an `[access]` policy (gateway mode).
    pub async fn start_with_access(
        config: ProxyConfig,
        policy: Policy,
        access: guardnest_core::access::Access,
    ) -> Self {
        let proxy =
            Proxy::bind_with(config, HealthConfig::default(), policy, Arc::default(), Arc::default(), Arc::new(access))
                .await
                .expect("bind");
        Self::run(proxy)
    }

    pub async fn start_with_health(config: ProxyConfig, health: HealthConfig, policy: Policy) -> Self {
        let proxy = Proxy::bind(config, health, policy).await.expect("bind");
        Self::run(proxy)
    }

    fn run(proxy: Proxy) -> Self {
        let addr = proxy.local_addr();
        let stats = proxy.stats();
        let health = proxy.health();
        let blocks = proxy.blocks();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(proxy.run(shutdown.clone()));
        Self { addr, stats, health, blocks, shutdown, handle }
    }

    pub async fn plain(policy: Policy) -> Self {
        Self::start(config(), policy).await
    }

    /// Cancels and waits for `run` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        within("proxy stop", self.handle).await.expect("proxy task");
    }

    pub fn begin_shutdown(&self) -> &JoinHandle<()> {
        self.shutdown.cancel();
        &self.handle
    }

    pub async fn join(self) {
        within("proxy join", self.handle).await.expect("proxy task");
    }
}

/// List files on disk and the policy they load into.
pub struct Lists {
    pub dir: tempfile::TempDir,
    pub blocklists: Blocklists,
}

pub fn lists(block: &[(&str, &str)], allow: &[(&str, &str)]) -> Lists {
    let dir = tempfile::tempdir().unwrap();
    let write = |(name, text): &(&str, &str)| {
        let path: PathBuf = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        SourceSpec::Location(path.display().to_string())
    };
    let config = BlocklistConfig {
        sources: block.iter().map(write).collect(),
        allowlist: allow.iter().map(write).collect(),
        default_lists: false, // tests never leave loopback
        ..BlocklistConfig::default()
    };
    let blocklists = Blocklists::load(&config, None).expect("lists load");
    Lists { dir, blocklists }
}

pub use crate::loopback::echo_server;

/// A port with nothing listening.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A listener whose accept queue is full, so further SYNs are dropped and connects hang:
/// a deterministic connect timeout without leaving loopback.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<std::net::TcpStream>,
}

pub fn blackhole() -> Blackhole {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    assert!(fillers.len() < 16, "accept queue never filled");
    Blackhole { addr, _listener: sock, _fillers: fillers }
}

/// Reads one response head (up to the blank line), byte by byte so nothing after it is consumed.
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match within("read head", s.read(&mut byte)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => head.push(byte[0]),
        }
        assert!(head.len() < 65536, "head too long");
    }
    String::from_utf8_lossy(&head).into_owned()
}

pub fn status_of(head: &str) -> u16 {
    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Sends CONNECT and returns the stream, the status, and the whole head.
pub async fn connect_via(proxy: SocketAddr, target: &str) -> (TcpStream, u16, String) {
    let mut s = within("connect to proxy", TcpStream::connect(proxy)).await.unwrap();
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    (s, status_of(&head), head)
}

/// Sends raw bytes and reads until the proxy closes or a full response has come.
pub async fn raw(proxy: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let _ = s.write_all(bytes).await;
    read_response(&mut s).await
}

/// Reads one response: head, then the body by Content-Length (or until close).
pub async fn read_response(s: &mut TcpStream) -> String {
    let head = read_head(s).await;
    let body = read_body(s, &head).await;
    head + &body
}

/// Reads the body that follows `head`: Content-Length bytes, or until close.
pub async fn read_body(s: &mut TcpStream, head: &str) -> String {
    let len = head.lines().find_map(|l| {
        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
    });
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            within("read body", s.read_exact(&mut body)).await.unwrap();
        }
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut body)).await;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// An HTTP origin that describes each request it gets: method, target, headers, body size.
pub struct Origin {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

pub async fn origin() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let mut text = format!("{} {}\n", req.method(), req.uri());
                    for (k, v) in req.headers() {
                        text.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
                    }
                    let body =
                        req.into_body().collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
                    text.push_str(&format!("body-bytes: {}\n", body.len()));
                    text.push_str(&format!("body-sum: {}\n", body.iter().map(|&b| b as u64).sum::<u64>()));
                    let resp = hyper::Response::builder()
                        .header("x-origin", "yes")
                        .header("connection", "keep-alive, x-hop")
                        .header("x-hop", "secret")
                        .body(Full::new(Bytes::from(text)))
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                    .await;
            });
        }
    });
    Origin { addr, connections }
}

/// A raw origin that answers every request with a fixed byte string and closes.
pub async fn raw_origin(answer: &'static [u8]) -> SocketAddr {
    raw_origin_counting(answer).await.0
}

/// [`raw_origin`], also counting the connections the proxy has closed its end of after the
/// origin closed its own (so a test can wait until the proxy has seen the close).
pub async fn raw_origin_counting(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let counter = closed.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(answer).await;
                let _ = s.shutdown().await;
                // The proxy's end closes once it has seen ours.
                if let Ok(Ok(0)) = tokio::time::timeout(STEP, s.read(&mut buf)).await {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, closed)
}

/// An upstream that reads each request head and answers it with the next of `answers`,
/// keeping the connection open (until the proxy closes it or `STEP` passes).
pub async fn answering(answers: Vec<&'static [u8]>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = vec![0u8; 8192];
                for answer in answers {
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tokio::time::timeout(STEP, s.read(&mut buf)).await {
                            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    seen.drain(..end);
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
                let _ = tokio::time::timeout(STEP, s.read(&mut buf)).await;
            });
        }
    });
    addr
}

/// Reads what arrives within `wait` (or until the proxy closes).
pub async fn read_for(s: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An upstream for one connection: reads the request head (and what came with it), then
/// plays `then`.
pub async fn one_upstream<F, Fut>(then: F) -> SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else { return };
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match tokio::time::timeout(STEP, s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
        then(s).await;
    });
    addr
}

pub fn post(upstream: SocketAddr, length: usize, body: &str) -> String {
    format!("POST http://{upstream}/up HTTP/1.1\r\nHost: {upstream}\r\nContent-Length: {length}\r\n\r\n{body}")
}
