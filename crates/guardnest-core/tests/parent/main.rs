//! GuardNest behind a parent proxy (issue 26), with real parts on loopback: Debian's Squid
//! (with and without Basic authentication), a PAC script served over HTTP, parents of the
//! test's own (one that counts what it reads, hostile ones, one whose two-step handshake is
//! bound to its TCP connection, as NTLM's is), and a parent that is down.
//!
//! Every wait is on a condition, bounded; Squid's tests are skipped (a failure under CI) when
//! Squid is not installed, with the line that installs it.

mod fake;
mod squid;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use guardnest_core::access::Access;
use guardnest_core::config::{
    AccessConfig, BlocklistConfig, HealthConfig, ProxyConfig, Secret, SourceSpec, UpstreamConfig, UpstreamMode,
};
use guardnest_core::{Blocklists, Proxy, Router};
use guardnest_testkit::{passed, platform_limit, skip, Outcome};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

guardnest_testkit::main!(
    squid_is_the_parent_for_https_plain_http_and_list_downloads,
    squid_with_basic_auth_from_the_config_or_from_the_client,
    a_pac_script_sends_some_hosts_to_the_parent_and_others_direct,
    a_parent_that_is_down_is_named_in_the_502_and_in_the_health_check,
    hostile_parents_are_answered_in_time,
    an_ntlm_like_handshake_is_answered_on_the_challenged_connection,
    a_connect_through_a_parent_costs_one_round_trip,
    gateway_deny_rules_apply_to_the_parent,
);

/// Why Squid's tests do not run in the Windows suite.
const SQUID_IS_LINUXS: &str = "Squid is the Linux host's program; the Linux run covers Squid as the parent";

/// Upper bound for any single step.
const STEP: Duration = Duration::from_secs(15);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn config() -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_secs(1),
        ..ProxyConfig::default()
    }
}

fn fixed(parent: SocketAddr) -> UpstreamConfig {
    UpstreamConfig { mode: UpstreamMode::Fixed, proxy: Some(format!("http://{parent}")), ..UpstreamConfig::default() }
}

struct Running {
    addr: SocketAddr,
    health: Arc<guardnest_core::health::Health>,
    router: Arc<Router>,
    _lists: Blocklists,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// GuardNest with `upstream`, a list that blocks `blocked.test`, and `access` (gateway mode).
async fn guardnest(upstream: UpstreamConfig, access: Option<AccessConfig>, proxy: ProxyConfig) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("block.txt");
    std::fs::write(&list, "blocked.test\n").unwrap();
    let lists = Blocklists::load(
        &BlocklistConfig {
            sources: vec![SourceSpec::Location(list.display().to_string())],
            default_lists: false,
            ..BlocklistConfig::default()
        },
        None,
    )
    .unwrap();
    let access = match access {
        Some(a) => Access::from_config(&a).unwrap(),
        None => Access::from_config(&AccessConfig::default()).unwrap(),
    };
    let health = HealthConfig { interval: Duration::from_millis(200) };
    let p =
        Proxy::bind_routed(proxy, health, lists.policy(), Arc::default(), Arc::default(), Arc::new(access), |own| {
            Router::new(&upstream, None, Some(own))
        })
        .await
        .unwrap();
    let (addr, health, router) = (p.local_addr(), p.health(), p.router());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(p.run(shutdown.clone()));
    Running { addr, health, router, _lists: lists, _dir: dir, shutdown, task }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = within("proxy stop", self.task).await;
    }
}

/// Echoes every byte.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// An HTTP origin: `/list.txt` is a block list, `/pac` the `pac` script, anything else says
/// what it got.
async fn origin(pac: Option<String>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pac = Arc::new(pac);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let pac = pac.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let pac = pac.clone();
                    async move {
                        let body = match req.uri().path() {
                            "/list.txt" => "listed-by-download.test\n".to_string(),
                            "/pac" => pac.as_ref().clone().unwrap_or_default(),
                            _ => format!("origin saw {} {}\n", req.method(), req.uri()),
                        };
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                    .await;
            });
        }
    });
    addr
}

/// Reads one response head, byte by byte (nothing after it is consumed).
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match within("read head", s.read(&mut byte)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => head.push(byte[0]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// One response: head and a Content-Length body.
async fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    let head = read_head(s).await;
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    within("read body", s.read_exact(&mut body)).await.unwrap();
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

async fn request(s: &mut TcpStream, text: &str) -> (u16, String, String) {
    within("write", s.write_all(text.as_bytes())).await.unwrap();
    read_response(s).await
}

async fn connect_via(proxy: SocketAddr, target: &str, extra: &str) -> (TcpStream, u16, String, String) {
    let mut s = within("connect", TcpStream::connect(proxy)).await.unwrap();
    let (status, head, body) =
        request(&mut s, &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n")).await;
    (s, status, head, body)
}

async fn echoes(s: &mut TcpStream) {
    within("write", s.write_all(b"ping through the tunnel")).await.unwrap();
    let mut back = [0u8; 23];
    within("echo", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"ping through the tunnel");
}

async fn get_via(proxy: SocketAddr, url: &str, extra: &str) -> (u16, String, String) {
    let mut s = within("connect", TcpStream::connect(proxy)).await.unwrap();
    request(&mut s, &format!("GET {url} HTTP/1.1\r\nHost: x\r\n{extra}\r\n")).await
}

/// Squid is the parent: a CONNECT and a plain request reach names only Squid can resolve
/// (its hosts file), its access log shows both, a blocked name never reaches it, and a list
/// download goes through it too.
fn squid_is_the_parent_for_https_plain_http_and_list_downloads() -> Outcome {
    if cfg!(windows) {
        return platform_limit(SQUID_IS_LINUXS);
    }
    if let Some(why) = squid::missing() {
        return skip(why);
    }
    let squid = squid::Squid::start(None);
    runtime().block_on(async {
        let (echo, web) = (echo().await, origin(None).await);
        let gn = guardnest(fixed(squid.addr), None, config()).await;
        assert!(gn.router.describe().contains(&format!("parent proxy {}", squid.addr)), "{}", gn.router.describe());

        let (mut tunnel, status, head, _) = connect_via(gn.addr, &format!("origin.test:{}", echo.port()), "").await;
        assert_eq!(status, 200, "{head}");
        echoes(&mut tunnel).await;
        drop(tunnel);

        let (status, _, body) = get_via(gn.addr, &format!("http://origin.test:{}/page?q=1", web.port()), "").await;
        assert_eq!(status, 200);
        assert_eq!(body, "origin saw GET /page?q=1\n");
        // Squid logs URLs without their query (strip_query_terms).
        let line = squid.wait_for_access(&[&format!("GET http://origin.test:{}/page", web.port())]);
        println!("squid access.log: {line}");

        let (_, status, _, body) = connect_via(gn.addr, "blocked.test:443", "").await;
        assert_eq!(status, 403, "{body}");
        let (status, _, _) = get_via(gn.addr, "http://www.blocked.test/", "").await;
        assert_eq!(status, 403);

        // A list download: origin.test resolves only at Squid, so it went through Squid.
        let dir = tempfile::tempdir().unwrap();
        let lists = Blocklists::load(
            &BlocklistConfig {
                sources: vec![SourceSpec::Location(format!("http://origin.test:{}/list.txt", web.port()))],
                default_lists: false,
                ..BlocklistConfig::default()
            },
            Some(dir.path()),
        )
        .unwrap();
        lists.set_upstream(gn.router.clone());
        within("list update", lists.update(&())).await;
        let listed = lists.policy().check(&guardnest_core::domain::Host::parse("listed-by-download.test").unwrap());
        assert!(matches!(listed, guardnest_core::Verdict::Blocked(_)), "the downloaded list is not loaded");
        squid.wait_for_access(&[&format!("GET http://origin.test:{}/list.txt", web.port())]);
        // Squid logs a tunnel when it ends: GuardNest's stop closes it.
        gn.stop().await;
        let line = squid.wait_for_access(&[&format!("CONNECT origin.test:{}", echo.port())]);
        println!("squid access.log: {line}");
        assert!(!squid.log("access.log").contains("blocked.test"), "a blocked name reached the parent");
    });
    passed()
}

/// Squid asks for Basic credentials: the parent's 407 is passed to a client (whose own
/// credentials then reach Squid), and `[upstream] user` and `password` answer it for every
/// client.
fn squid_with_basic_auth_from_the_config_or_from_the_client() -> Outcome {
    if cfg!(windows) {
        return platform_limit(SQUID_IS_LINUXS);
    }
    if let Some(why) = squid::missing() {
        return skip(why);
    }
    let squid = squid::Squid::start(Some(("alice", "s3cret pw")));
    runtime().block_on(async {
        let (echo, web) = (echo().await, origin(None).await);
        let target = format!("origin.test:{}", echo.port());
        let gn = guardnest(fixed(squid.addr), None, config()).await;
        let (mut s, status, head, _) = connect_via(gn.addr, &target, "").await;
        assert_eq!(status, 407, "{head}");
        assert!(head.to_ascii_lowercase().contains("proxy-authenticate: basic"), "{head}");
        // The client answers on the same connection with its own credentials.
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:s3cret pw");
        let (status, head, _) =
            request(&mut s, &format!("CONNECT {target} HTTP/1.1\r\nProxy-Authorization: Basic {basic}\r\n\r\n")).await;
        assert_eq!(status, 200, "{head}");
        echoes(&mut s).await;
        drop(s);
        gn.stop().await;

        let mut with_user = fixed(squid.addr);
        with_user.user = Some("alice".into());
        with_user.password = Some(Secret("s3cret pw".into()));
        let gn = guardnest(with_user, None, config()).await;
        assert!(!gn.router.describe().contains("s3cret"));
        let (mut s, status, head, _) = connect_via(gn.addr, &target, "").await;
        assert_eq!(status, 200, "{head}");
        echoes(&mut s).await;
        drop(s);
        let (status, _, body) = get_via(gn.addr, &format!("http://origin.test:{}/authed", web.port()), "").await;
        assert_eq!((status, body.as_str()), (200, "origin saw GET /authed\n"));
        let line = squid.wait_for_access(&["GET http://origin.test", "/authed", "alice"]);
        println!("squid access.log: {line}");
        gn.stop().await;

        let mut wrong = fixed(squid.addr);
        wrong.user = Some("alice".into());
        wrong.password = Some(Secret("wrong".into()));
        let gn = guardnest(wrong, None, config()).await;
        let (_, status, _, body) = connect_via(gn.addr, &target, "").await;
        assert_eq!(status, 502, "{body}");
        assert!(body.contains(&format!("parent proxy {} refused the credentials", squid.addr)), "{body}");
        gn.stop().await;
    });
    passed()
}

/// A PAC script served over HTTP sends one port to the parent and another direct; an answer
/// with several entries falls back past a dead parent; a script that fails means direct.
fn a_pac_script_sends_some_hosts_to_the_parent_and_others_direct() -> Outcome {
    runtime().block_on(async {
        let parent = fake::start(fake::Mode::Tunnel).await;
        let (proxied, direct, fallback) = (echo().await, echo().await, echo().await);
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let script = format!(
            "function FindProxyForURL(url, host) {{\n\
               if (shExpMatch(url, \"*:{}/*\")) return \"PROXY {}\";\n\
               if (shExpMatch(url, \"*:{}/*\")) return \"PROXY {dead}; PROXY {}; DIRECT\";\n\
               if (isPlainHostName(host) || dnsDomainIs(host, \".corp.test\")) return \"DIRECT\";\n\
               return \"DIRECT\";\n\
             }}\n",
            proxied.port(),
            parent.addr,
            fallback.port(),
            parent.addr
        );
        let server = origin(Some(script)).await;
        let upstream = UpstreamConfig {
            mode: UpstreamMode::Fixed,
            pac: Some(format!("http://{server}/pac")),
            ..UpstreamConfig::default()
        };
        let gn = guardnest(upstream, None, config()).await;
        assert!(gn.router.describe().contains("PAC script"), "{}", gn.router.describe());

        let (mut s, status, head, _) = connect_via(gn.addr, &proxied.to_string(), "").await;
        assert_eq!(status, 200, "{head}");
        echoes(&mut s).await;
        assert_eq!(parent.seen.tunnels.load(Ordering::SeqCst), 1, "through the parent");

        let (mut s, status, _, _) = connect_via(gn.addr, &direct.to_string(), "").await;
        assert_eq!(status, 200);
        echoes(&mut s).await;
        assert_eq!(parent.seen.tunnels.load(Ordering::SeqCst), 1, "DIRECT did not use the parent");

        let (mut s, status, head, _) = connect_via(gn.addr, &fallback.to_string(), "").await;
        assert_eq!(status, 200, "{head}");
        echoes(&mut s).await;
        assert_eq!(parent.seen.tunnels.load(Ordering::SeqCst), 2, "past the dead parent, to the next");
        gn.stop().await;

        // A script that cannot be fetched: direct, as browsers do.
        let gone = UpstreamConfig {
            mode: UpstreamMode::Fixed,
            pac: Some(format!("http://{dead}/pac")),
            ..UpstreamConfig::default()
        };
        let gn = guardnest(gone, None, config()).await;
        let (mut s, status, _, _) = connect_via(gn.addr, &direct.to_string(), "").await;
        assert_eq!(status, 200);
        echoes(&mut s).await;
        gn.stop().await;
    });
    passed()
}

/// The parent is down: both a CONNECT and a plain request get a 502 whose one line names the
/// parent (not the site), and the health check's upstream check says it is unreachable.
fn a_parent_that_is_down_is_named_in_the_502_and_in_the_health_check() -> Outcome {
    runtime().block_on(async {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (echo, web) = (echo().await, origin(None).await);
        let gn = guardnest(fixed(dead), None, config()).await;
        let (_, status, _, body) = connect_via(gn.addr, &echo.to_string(), "").await;
        assert_eq!(status, 502);
        assert!(body.starts_with(&format!("parent proxy {dead} unreachable: cannot connect to {dead}")), "{body}");
        assert_eq!(body.trim_end().lines().count(), 1);
        let (status, _, body) = get_via(gn.addr, &format!("http://{web}/"), "").await;
        assert_eq!(status, 502);
        assert!(body.starts_with(&format!("parent proxy {dead} unreachable")), "{body}");
        let deadline = Instant::now() + STEP;
        let parents = loop {
            if let Some(p) = gn.health.parents() {
                break p;
            }
            assert!(Instant::now() < deadline, "no upstream check ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(parents.len(), 1);
        assert_eq!(parents[0].0, dead.to_string());
        assert!(parents[0].1.is_some(), "the dead parent was reachable?");
        assert!(gn.health.last_ok(), "the listener itself is healthy");
        gn.stop().await;
    });
    passed()
}

/// A parent that never answers, one that answers garbage, one that closes mid-answer: each
/// is answered in bounded time with a reason that names the parent, for a CONNECT and for a
/// plain request.
fn hostile_parents_are_answered_in_time() -> Outcome {
    runtime().block_on(async {
        let echo = echo().await;
        let web = origin(None).await;
        let cases = [
            (fake::Mode::Silent, 504, "did not answer within 1s"),
            (fake::Mode::Garbage, 502, "answered something that is not an HTTP response"),
            (fake::Mode::CloseMidHandshake, 502, "closed the connection without answering"),
        ];
        for (mode, want, reason) in cases {
            let parent = fake::start(mode).await;
            let proxy = ProxyConfig { connect_timeout: Duration::from_secs(1), ..config() };
            let gn = guardnest(fixed(parent.addr), None, proxy).await;
            let started = Instant::now();
            let (_, status, _, body) = connect_via(gn.addr, &echo.to_string(), "").await;
            assert_eq!(status, want, "{mode:?}: {body}");
            assert!(
                body.contains(&format!("parent proxy {}", parent.addr)) && body.contains(reason),
                "{mode:?}: {body}"
            );
            assert!(started.elapsed() < Duration::from_secs(5), "{mode:?} took {:?}", started.elapsed());
            gn.stop().await;
        }
        let plain = [
            (fake::Mode::Silent, 504, "no response within 1s"),
            (fake::Mode::Garbage, 502, "invalid HTTP"),
            (fake::Mode::CloseMidHandshake, 502, "upstream error"),
        ];
        for (mode, want, reason) in plain {
            let parent = fake::start(mode).await;
            let proxy = ProxyConfig { idle_timeout: Duration::from_secs(1), ..config() };
            let gn = guardnest(fixed(parent.addr), None, proxy).await;
            let started = Instant::now();
            let (status, _, body) = get_via(gn.addr, &format!("http://{web}/"), "").await;
            assert_eq!(status, want, "plain {mode:?}: {body}");
            assert!(
                body.contains(&format!("parent proxy {}", parent.addr)) && body.contains(reason),
                "plain {mode:?}: {body}"
            );
            assert!(started.elapsed() < Duration::from_secs(5), "plain {mode:?} took {:?}", started.elapsed());
            gn.stop().await;
        }
    });
    passed()
}

/// The test parent's handshake is bound to its TCP connection: it accepts the final answer
/// only on the connection that got the challenge (shown first, talking to it directly).
/// Through GuardNest, on both CONNECT paths (a connection's first head, and hyper's engine
/// after a plain request), the client's three CONNECTs reach the parent on one connection.
fn an_ntlm_like_handshake_is_answered_on_the_challenged_connection() -> Outcome {
    runtime().block_on(async {
        let echo = echo().await;
        let target = echo.to_string();
        let parent = fake::start(fake::Mode::Pair).await;

        // Directly: the answer on another connection is refused.
        let (mut a, status, _, _) = connect_via(parent.addr, &target, "Proxy-Authorization: Pair hello\r\n").await;
        assert_eq!(status, 407);
        let (mut b, _, _, _) = connect_via(parent.addr, &target, "Proxy-Authorization: Pair hello\r\n").await;
        let _ = &mut a;
        let (status, _, _) =
            request(&mut b, &format!("CONNECT {target} HTTP/1.1\r\nProxy-Authorization: Pair answer-1\r\n\r\n")).await;
        assert_eq!(status, 407, "the parent accepted an answer on another connection");

        let gn = guardnest(fixed(parent.addr), None, config()).await;
        for first in ["", "GET http://blocked.test/ HTTP/1.1\r\nHost: blocked.test\r\n\r\n"] {
            let before = parent.seen.used_connections();
            let mut s = within("connect", TcpStream::connect(gn.addr)).await.unwrap();
            if !first.is_empty() {
                // A plain request first (blocked: its page keeps the connection): the CONNECTs
                // after it are read by hyper's engine.
                let (status, _, _) = request(&mut s, first).await;
                assert_eq!(status, 403);
            }
            let connect = |auth: &str| format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n");
            let (status, head, body) = request(&mut s, &connect("")).await;
            assert_eq!(status, 407, "{head}");
            assert!(head.contains("Proxy-Authenticate: Pair") || head.contains("proxy-authenticate: Pair"), "{head}");
            assert_eq!(body, "who are u");
            let (status, head, _) = request(&mut s, &connect("Proxy-Authorization: Pair hello\r\n")).await;
            assert_eq!(status, 407);
            let challenge = head
                .lines()
                .find_map(|l| l.split_once("Pair challenge-").map(|(_, n)| n.trim().to_string()))
                .unwrap_or_else(|| panic!("no challenge in {head}"));
            let (status, head, _) =
                request(&mut s, &connect(&format!("Proxy-Authorization: Pair answer-{challenge}\r\n"))).await;
            assert_eq!(status, 200, "the answer did not reach the challenged connection: {head}");
            echoes(&mut s).await;
            let after = parent.seen.used_connections();
            assert_eq!(after - before, 1, "GuardNest opened {} parent connections for one client", after - before);
            let auth = parent.seen.auth.lock().clone();
            let on: Vec<usize> = auth.iter().rev().take(2).map(|(c, _)| *c).collect();
            assert_eq!(on[0], on[1], "hello and answer on different parent connections: {auth:?}");
            println!("pair handshake through GuardNest: {:?}", &auth[auth.len() - 2..]);
        }
        gn.stop().await;
    });
    passed()
}

/// A CONNECT through a parent is one more round trip, no more: the parent reads one CONNECT
/// head, in one read, with nothing before or after it, and answers it; the client's bytes
/// flow at once.
fn a_connect_through_a_parent_costs_one_round_trip() -> Outcome {
    runtime().block_on(async {
        let echo = echo().await;
        let parent = fake::start(fake::Mode::Tunnel).await;
        let gn = guardnest(fixed(parent.addr), None, config()).await;
        let (mut s, status, _, _) = connect_via(gn.addr, &echo.to_string(), "").await;
        assert_eq!(status, 200);
        echoes(&mut s).await;
        let heads = parent.seen.heads.lock().clone();
        assert_eq!(heads.len(), 1, "one request to the parent");
        let (_, reads, head) = &heads[0];
        assert_eq!(*reads, 1, "the CONNECT reached the parent in one piece");
        let head = String::from_utf8_lossy(head);
        assert!(head.starts_with(&format!("CONNECT {echo} HTTP/1.1\r\n")), "{head}");
        assert_eq!(parent.seen.used_connections(), 1);
        gn.stop().await;
    });
    passed()
}

/// In gateway mode the deny rules are checked on the address GuardNest dials: the parent's.
/// A parent on loopback is refused by the default rules, naming the parent, until
/// `allow_destinations` lets it through; GuardNest's own users' credentials are never passed
/// on, so a parent's challenge is GuardNest's 502.
fn gateway_deny_rules_apply_to_the_parent() -> Outcome {
    runtime().block_on(async {
        let echo = echo().await;
        let parent = fake::start(fake::Mode::Tunnel).await;
        let gateway = AccessConfig { allow: vec!["127.0.0.0/8".into()], ..AccessConfig::default() };
        let gn = guardnest(fixed(parent.addr), Some(gateway.clone()), config()).await;
        let (_, status, _, body) = connect_via(gn.addr, &echo.to_string(), "").await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains(&format!("parent proxy {}", parent.addr)) && body.contains("deny_destinations"),
            "{body}"
        );
        assert_eq!(parent.seen.used_connections(), 0);
        gn.stop().await;

        let open = AccessConfig { allow_destinations: vec![format!("{}/32", parent.addr.ip())], ..gateway.clone() };
        let gn = guardnest(fixed(parent.addr), Some(open.clone()), config()).await;
        let (mut s, status, _, body) = connect_via(gn.addr, &echo.to_string(), "").await;
        assert_eq!(status, 200, "{body}");
        echoes(&mut s).await;
        gn.stop().await;

        let pair = fake::start(fake::Mode::Pair).await;
        let hash = guardnest_core::access::hash_password("pw").unwrap();
        let users = AccessConfig {
            users: vec![guardnest_core::config::UserConfig { name: "u".into(), password_hash: hash }],
            allow_destinations: vec![format!("{}/32", pair.addr.ip())],
            ..gateway
        };
        let gn = guardnest(fixed(pair.addr), Some(users), config()).await;
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("u:pw");
        let (_, status, head, body) =
            connect_via(gn.addr, &echo.to_string(), &format!("Proxy-Authorization: Basic {basic}\r\n")).await;
        assert_eq!(status, 502, "{head}{body}");
        assert!(body.contains("asks for credentials: set [upstream] user and password"), "{body}");
        assert!(pair.seen.auth.lock().is_empty(), "GuardNest's own credentials reached the parent");
        gn.stop().await;
    });
    passed()
}
