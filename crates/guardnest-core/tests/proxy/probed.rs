//! The holes found by probing the proxy from outside (issue 17), each with the bytes that
//! showed it: misbehaving upstreams written as raw TCP servers on loopback, raw clients.
//! What each test sent and got is printed (`--nocapture`) for the record.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guardnest_core::access::{hash_password, Access, ATTEMPT_BURST, ATTEMPT_EVERY};
use guardnest_core::config::{AccessConfig, UserConfig};
use guardnest_core::Policy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// An upstream that reads each request head and answers it with the next of `answers`,
/// keeping the connection open (until the proxy closes it or `STEP` passes).
async fn answering(answers: Vec<&'static [u8]>) -> SocketAddr {
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
async fn read_for(s: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Hole 1: `Connection` naming `Content-Length` or `Transfer-Encoding` must not unframe a
/// response on the relay; a pipelining client must never read the next origin's answer as
/// this one's body.
#[tokio::test]
async fn a_connection_token_never_removes_a_responses_framing() {
    let bank = answering(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nSECRET-of-/bank!"]).await;
    for first in [
        &b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let first: &'static [u8] = Box::leak(first.to_vec().into_boxed_slice());
        let origin = answering(vec![first]).await;
        let proxy = TestProxy::plain(Policy::allow_all()).await;
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let sent = format!(
            "GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\n\r\nGET http://{bank}/bank HTTP/1.1\r\nHost: {bank}\r\n\r\n"
        );
        s.write_all(sent.as_bytes()).await.unwrap();
        let (got, closed) = read_for(&mut s, Duration::from_secs(2)).await;
        let got = text(&got);
        eprintln!("hole 1: sent {sent:?}\n  upstream answered {:?}\n  client got {got:?} (closed: {closed})", text(first));
        let (head, rest) = got.split_once("\r\n\r\n").expect("a response head");
        let head = head.to_ascii_lowercase();
        let framed = head.contains("content-length: 5") || head.contains("transfer-encoding: chunked");
        assert!(framed || head.contains("connection: close"), "unframed response kept open: {got:?}");
        assert!(rest.contains("hello"), "{got:?}");
        // The next origin's answer is a response of its own, never this one's body.
        if framed {
            let body_end = rest.find("hello").unwrap() + 5;
            let after = rest[body_end..].trim_start_matches("\r\n0\r\n\r\n");
            assert!(after.starts_with("HTTP/1.1 200"), "second answer not on its own: {got:?}");
        } else {
            assert!(closed && !rest.contains("SECRET"), "{got:?}");
        }
        proxy.stop().await;
    }
}

/// An upstream for one connection: reads the request head (and what came with it), then
/// plays `then`.
async fn one_upstream<F, Fut>(then: F) -> SocketAddr
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

fn post(upstream: SocketAddr, length: usize, body: &str) -> String {
    format!("POST http://{upstream}/up HTTP/1.1\r\nHost: {upstream}\r\nContent-Length: {length}\r\n\r\n{body}")
}

/// Hole 2: on hyper's path every body read and write is bounded by `idle_timeout`: an
/// upstream that stops in the middle of its body, a client that stops in the middle of its
/// upload, and a client that never reads a download are all let go.
#[tokio::test]
async fn stalled_bodies_are_cut_at_the_idle_timeout_on_hypers_path() {
    let idle = Duration::from_secs(1);
    let proxy =
        TestProxy::start(guardnest_core::config::ProxyConfig { idle_timeout: idle, ..config() }, Policy::allow_all())
            .await;

    // The upstream promises 1000 bytes, sends 5, then nothing.
    let up = one_upstream(|mut s| async move {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhello").await;
        tokio::time::sleep(STEP).await;
    })
    .await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let sent = post(up, 2, "hi");
    s.write_all(sent.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (got, closed) = read_for(&mut s, Duration::from_secs(6)).await;
    eprintln!(
        "hole 2 (upstream stalls): sent {sent:?}\n  got {:?}, closed {closed} after {:?}",
        text(&got),
        started.elapsed()
    );
    assert!(closed, "a stalled response body held the client past 6 s (idle_timeout 1 s)");

    // The client promises 1000 bytes, sends 5, then nothing; the upstream answered at once.
    let up = one_upstream(|mut s| async move {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let mut buf = [0u8; 1024];
        while let Ok(Ok(n)) = tokio::time::timeout(STEP, s.read(&mut buf)).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let sent = post(up, 1000, "hello");
    s.write_all(sent.as_bytes()).await.unwrap();
    let (got, closed) = read_for(&mut s, Duration::from_secs(6)).await;
    eprintln!("hole 2 (client stalls): sent {sent:?}\n  got {:?}, closed {closed}", text(&got));
    assert!(closed, "a stalled request body held the connection past 6 s (idle_timeout 1 s)");

    // The client never reads a large download: the upstream's connection is let go.
    let freed = Arc::new(AtomicBool::new(false));
    let flag = freed.clone();
    let up = one_upstream(move |mut s| async move {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n").await;
        let chunk = vec![b'x'; 64 * 1024];
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(200), s.write_all(&chunk)).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(_)) => {
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    })
    .await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(post(up, 2, "hi").as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let started = Instant::now();
    while !freed.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "hole 2 (client never reads): upstream connection freed: {} after {:?}",
        freed.load(Ordering::SeqCst),
        started.elapsed()
    );
    assert!(freed.load(Ordering::SeqCst), "a client that never reads held its download past 8 s (idle_timeout 1 s)");
    drop(s);
    proxy.stop().await;
}

/// Hole 5: an upstream that answers `100 Continue` without end gets a 502 after a bounded
/// number of them, on both engines (a POST goes through hyper, a GET through the relay).
#[tokio::test]
async fn endless_interim_answers_end_in_a_502() {
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    for request in ["POST", "GET"] {
        let up = one_upstream(|mut s| async move {
            let deadline = Instant::now() + STEP;
            while Instant::now() < deadline {
                if s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        let sent = match request {
            "POST" => post(up, 2, "hi"),
            _ => format!("GET http://{up}/ HTTP/1.1\r\nHost: {up}\r\n\r\n"),
        };
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(sent.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (got, _) = read_for(&mut s, Duration::from_secs(5)).await;
        let got = text(&got);
        eprintln!(
            "hole 5 ({request}): sent {sent:?}\n  got {:?} after {:?}",
            &got[..got.len().min(300)],
            started.elapsed()
        );
        assert!(got.starts_with("HTTP/1.1 502"), "{request}: no 502 within 5 s: {:?}", &got[..got.len().min(300)]);
    }
    proxy.stop().await;
}

/// Hole 6: `Content-Length` and `Transfer-Encoding: chunked` together from an upstream, on
/// hyper's path: chunked wins (RFC 9112 §6.3), never a stale length.
#[tokio::test]
async fn length_and_chunked_together_never_give_a_stale_length() {
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    for length in [3, 50] {
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let answer: &'static [u8] = Box::leak(answer.into_bytes().into_boxed_slice());
        let up = answering(vec![answer]).await;
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let sent = post(up, 2, "hi");
        s.write_all(sent.as_bytes()).await.unwrap();
        let (got, closed) = read_for(&mut s, Duration::from_secs(2)).await;
        let got = text(&got);
        eprintln!("hole 6: upstream {:?}\n  client got {got:?} (closed: {closed})", text(answer));
        let (head, body) = got.split_once("\r\n\r\n").expect("an answer");
        let head = head.to_ascii_lowercase();
        if head.starts_with("http/1.1 502") {
            continue;
        }
        assert!(head.starts_with("http/1.1 200"), "{got:?}");
        assert!(!head.contains(&format!("content-length: {length}")), "stale length passed on: {got:?}");
        let whole = head.contains("content-length: 5") && body == "hello"
            || head.contains("transfer-encoding: chunked") && body.starts_with("5\r\nhello\r\n0\r\n\r\n");
        assert!(whole, "body not whole: {got:?}");
    }
    proxy.stop().await;
}

fn gateway(users: &[(&str, &str)], allow_destinations: &[&str]) -> Access {
    let mut config = AccessConfig {
        allow: vec!["127.0.0.0/8".into()],
        users: users
            .iter()
            .map(|(n, p)| UserConfig { name: n.to_string(), password_hash: hash_password(p).unwrap() })
            .collect(),
        ..AccessConfig::default()
    };
    config.allow_destinations = allow_destinations.iter().map(ToString::to_string).collect();
    Access::from_config(&config).unwrap()
}

/// Hole 3: in gateway mode a client may not reach the gateway's own services: targets that
/// resolve to loopback (a name or a literal, CONNECT or plain HTTP) get 403 with a reason,
/// and nothing is dialed; `allow_destinations` opens a range again.
#[tokio::test]
async fn gateway_clients_cannot_reach_the_gateways_own_services() {
    let service = origin().await; // stands for the control API on loopback
    let port = service.addr.port();
    let proxy = TestProxy::start_with_access(config(), Policy::allow_all(), gateway(&[], &[])).await;
    for sent in [
        format!("GET http://127.0.0.1:{port}/metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
        format!(
            "POST http://127.0.0.1:{port}/v1/disable HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
        ),
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
        format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n"),
        format!("GET http://localhost:{port}/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        format!("CONNECT [::ffff:127.0.0.2]:{port} HTTP/1.1\r\n\r\n"),
    ] {
        let got = raw(proxy.addr, sent.as_bytes()).await;
        eprintln!("hole 3: sent {sent:?}\n  got {:?}", got.lines().next().unwrap_or(""));
        assert!(got.starts_with("HTTP/1.1 403"), "{sent:?} got {got}");
        assert!(got.contains("gateway"), "no reason: {got}");
    }
    assert_eq!(service.connections.load(Ordering::SeqCst), 0, "the service was reached");
    proxy.stop().await;

    // An administrator may open loopback again.
    let proxy = TestProxy::start_with_access(config(), Policy::allow_all(), gateway(&[], &["127.0.0.0/8"])).await;
    let got =
        raw(proxy.addr, format!("GET http://127.0.0.1:{port}/metrics HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    proxy.stop().await;
    // Desktop mode (no [access]) is as before: loopback is reachable.
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let got =
        raw(proxy.addr, format!("GET http://127.0.0.1:{port}/metrics HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    proxy.stop().await;
}

/// A connection from a chosen loopback source address.
async fn connect_from(source: &str, proxy: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    within("connect", socket.connect(proxy)).await.unwrap()
}

/// Hole 4: wrong passwords are limited per client address (beyond a few, refused without a
/// check), a connection is closed after a few 407s, and a valid login from another address
/// is still let in.
#[tokio::test]
async fn wrong_passwords_are_limited_per_address_and_per_connection() {
    let echo = echo_server().await;
    let proxy =
        TestProxy::start_with_access(config(), Policy::allow_all(), gateway(&[("alice", "s3cret")], &["127.0.0.0/8"]))
            .await;
    let good = "Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"; // alice:s3cret

    // One keep-alive connection guessing: closed after a few 407s.
    let guessing = Instant::now();
    let mut s = connect_from("127.0.0.2", proxy.addr).await;
    let mut answers = Vec::new();
    let mut closed = false;
    for i in 0..6 {
        let wrong = format!("Proxy-Authorization: Basic {}\r\n", b64(&format!("alice:guess{i}")));
        if s.write_all(format!("CONNECT {echo} HTTP/1.1\r\n{wrong}\r\n").as_bytes()).await.is_err() {
            closed = true;
            break;
        }
        let resp = read_response(&mut s).await;
        if resp.is_empty() {
            closed = true;
            break;
        }
        answers.push(resp.lines().next().unwrap_or("").to_string());
    }
    eprintln!("hole 4 (one connection, wrong passwords): answers {answers:?}, closed: {closed}");
    assert!(closed && answers.len() <= 4, "a connection kept guessing: {answers:?}");

    // New connections from the same address: after a few failures, refused without a check.
    let mut statuses = Vec::new();
    let mut held = Duration::ZERO;
    for i in 0..12 {
        let mut s = connect_from("127.0.0.2", proxy.addr).await;
        let wrong = format!("Proxy-Authorization: Basic {}\r\n", b64(&format!("alice:again{i}")));
        let asked = Instant::now();
        s.write_all(format!("CONNECT {echo} HTTP/1.1\r\n{wrong}\r\n").as_bytes()).await.unwrap();
        let status = status_of(&read_response(&mut s).await);
        if status == 429 {
            held = held.max(asked.elapsed());
        }
        statuses.push(status);
    }
    eprintln!("hole 4 (new connections, wrong passwords): statuses {statuses:?}, a 429 held up to {held:?}");
    // Checked: the burst, then one per ATTEMPT_EVERY of the time spent guessing (which is
    // seconds here, more on a slow machine or under Wine); the rest refused unchecked.
    let checked =
        answers.iter().filter(|a| a.contains(" 407")).count() + statuses.iter().filter(|&&s| s == 407).count();
    let earned =
        ATTEMPT_BURST as usize + (guessing.elapsed().as_secs_f64() / ATTEMPT_EVERY.as_secs_f64()).ceil() as usize;
    assert!(checked <= earned, "{checked} guesses checked, {earned} allowed: {answers:?} {statuses:?}");
    assert!(
        statuses.iter().filter(|&&s| s == 429).count() >= 6,
        "guesses from one address never limited: {statuses:?}"
    );
    // A 429 is held back (half a second), so a script that reconnects at once after each
    // refusal cannot make the proxy answer thousands a second.
    assert!(held >= Duration::from_millis(400), "a 429 came after {held:?}");
    // Another address logs in at once.
    let mut s = connect_from("127.0.0.3", proxy.addr).await;
    s.write_all(format!("CONNECT {echo} HTTP/1.1\r\n{good}\r\n").as_bytes()).await.unwrap();
    assert_eq!(status_of(&read_head(&mut s).await), 200);
    proxy.stop().await;
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= c.len() { T[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}

/// A plain-HTTP WebSocket: the `Upgrade` reaches the upstream, its 101 reaches the client,
/// then bytes flow both ways until `idle_timeout` passes without any.
#[tokio::test]
async fn a_plain_http_websocket_is_upgraded_then_tunnelled() {
    let asked = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = asked.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else { return };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match tokio::time::timeout(STEP, s.read(&mut byte)).await {
                Ok(Ok(1)) => head.push(byte[0]),
                _ => return,
            }
        }
        *seen.lock().unwrap() = text(&head);
        let _ = s
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi")
            .await;
        let (mut r, mut w) = s.split();
        let _ = tokio::time::timeout(STEP, tokio::io::copy(&mut r, &mut w)).await;
    });
    let idle = Duration::from_secs(1);
    let proxy =
        TestProxy::start(guardnest_core::config::ProxyConfig { idle_timeout: idle, ..config() }, Policy::allow_all())
            .await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let sent = format!(
        "GET http://{up}/ws HTTP/1.1\r\nHost: {up}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(sent.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    let asked = asked.lock().unwrap().to_ascii_lowercase();
    eprintln!("websocket: upstream got {asked:?}\n  client got {head:?}");
    assert!(asked.contains("upgrade: websocket") && asked.contains("connection: upgrade"), "{asked}");
    assert!(head.starts_with("HTTP/1.1 101") && head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
    let mut early = [0u8; 2];
    within("early bytes", s.read_exact(&mut early)).await.unwrap();
    assert_eq!(&early, b"hi", "what the upstream sent behind its 101");
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    within("echo", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"ping");
    // Then nothing either way: closed at the idle timeout.
    let started = Instant::now();
    let (_, closed) = read_for(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "an idle upgraded connection was held past 5 s (idle_timeout 1 s)");
    eprintln!("websocket: idle tunnel closed after {:?}", started.elapsed());
    proxy.stop().await;
}

/// In gateway mode an upstream connection kept from one client's request is never handed
/// to another client: each client address gets connections of its own.
#[tokio::test]
async fn gateway_upstream_connections_are_kept_per_client() {
    let up = origin().await;
    let proxy = TestProxy::start_with_access(config(), Policy::allow_all(), gateway(&[], &["127.0.0.0/8"])).await;
    let get = |from: &'static str| {
        let addr = proxy.addr;
        let target = up.addr;
        async move {
            let mut s = connect_from(from, addr).await;
            let head = format!("GET http://{target}/x HTTP/1.1\r\nHost: {target}\r\n\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            let resp = read_response(&mut s).await;
            assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        }
    };
    get("127.0.0.2").await;
    tokio::time::sleep(Duration::from_millis(100)).await; // the connection goes to the pool
    get("127.0.0.3").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.connections.load(Ordering::SeqCst), 2, "a second client reused the first one's connection");
    get("127.0.0.2").await;
    assert_eq!(up.connections.load(Ordering::SeqCst), 2, "a client's own kept connection is reused");
    proxy.stop().await;
}

/// Plain HTTP counts its bytes, as tunnels do (the app shows bytes through the proxy).
#[tokio::test]
async fn plain_http_bytes_are_counted() {
    let up = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let target = up.addr;
    // A GET (the relay), then a POST with a body (hyper).
    let resp = raw(proxy.addr, format!("GET http://{target}/x HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let after_get = proxy.stats.snapshot();
    // Both directions: the request head went up, the answer (head and body) came down.
    assert!(after_get.bytes_down > 0 && after_get.bytes_up > 0, "{after_get:?}");
    let resp = raw(proxy.addr, post(target, 5, "hello").as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let after_post = proxy.stats.snapshot();
    assert!(after_post.bytes_up >= after_get.bytes_up + 5 + 20, "the POST's head and body: {after_post:?}");
    assert!(after_post.bytes_down > after_get.bytes_down, "{after_post:?}");
    proxy.stop().await;
}
