//! Plain HTTP forwarding: keep-alive, bodies, header hygiene, errors.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guardnest_core::Policy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

#[tokio::test]
async fn keep_alive_on_both_sides() {
    let origin = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    for i in 0..5 {
        let req = format!("GET http://{}/n/{i} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.addr, origin.addr);
        s.write_all(req.as_bytes()).await.unwrap();
        let resp = read_response(&mut s).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        // The upstream gets origin-form, never the absolute URL.
        assert!(resp.contains(&format!("GET /n/{i}\n")), "{resp}");
    }
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1, "upstream connection reused");
    proxy.stop().await;
}

#[tokio::test]
async fn request_bodies_stream_through() {
    let origin = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 256) as u8).collect();
    let sum: u64 = body.iter().map(|&b| b as u64).sum();
    let head =
        format!("POST http://{}/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", origin.addr, body.len());
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.contains("body-bytes: 300000\n") && resp.contains(&format!("body-sum: {sum}\n")), "{resp}");

    // Chunked on the same connection.
    let head = format!("PUT http://{}/chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", origin.addr);
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("PUT /chunks\n") && resp.contains("body-bytes: 11\n"), "{resp}");
}

#[tokio::test]
async fn chunked_response_streams_back() {
    let upstream =
        raw_origin(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n")
            .await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let req = format!("GET http://{upstream}/ HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    let mut rest = vec![0u8; b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n".len()];
    within("chunked body", AsyncReadExt::read_exact(&mut s, &mut rest)).await.unwrap();
    assert_eq!(rest, b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_via_added() {
    let origin = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let req = format!(
        "GET http://{}/h HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\n\
         Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic dXNlcjpwdw==\r\nKeep-Alive: timeout=5\r\n\
         TE: trailers\r\nUpgrade: websocket\r\nX-End-To-End: kept\r\n\r\n",
        origin.addr, origin.addr
    );
    let resp = raw(proxy.addr, req.as_bytes()).await;
    let lower = resp.to_ascii_lowercase();
    assert!(lower.contains("x-end-to-end: kept"), "{resp}");
    for gone in ["x-private:", "proxy-connection:", "proxy-authorization:", "keep-alive: timeout", "\nte:", "upgrade:"]
    {
        assert!(!lower.contains(gone), "{gone} forwarded: {resp}");
    }
    assert!(lower.contains("\nvia: 1.1 guardnest\n"), "no Via upstream: {resp}");
    // Response side: the origin's Connection-named header is removed, Via added.
    let (head, _) = resp.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.contains("via: 1.1 guardnest"), "{head}");
    assert!(head.contains("x-origin: yes") && !head.contains("x-hop"), "{head}");
}

#[tokio::test]
async fn non_proxy_requests_are_400() {
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let resp = raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("forward proxy"), "{resp}");
    let resp = raw(proxy.addr, b"GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400") && resp.contains("CONNECT"), "{resp}");
    let resp = raw(proxy.addr, b"GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[tokio::test]
async fn upstream_errors_are_502_and_504() {
    let hole = blackhole();
    let mut config = config();
    config.connect_timeout = Duration::from_millis(300);
    let proxy = TestProxy::start(config, Policy::allow_all()).await;
    let req = format!("GET http://{}/ HTTP/1.1\r\nHost: x\r\n\r\n", closed_port());
    let resp = raw(proxy.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    let req = format!("GET http://{}/ HTTP/1.1\r\nHost: x\r\n\r\n", hole.addr);
    let resp = raw(proxy.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 504"), "{resp}");
    // A request to the proxy itself is a loop.
    let req = format!("GET http://{}/ HTTP/1.1\r\nHost: x\r\n\r\n", proxy.addr);
    let resp = raw(proxy.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 508"), "{resp}");
}

#[tokio::test]
async fn http_1_0_clients_are_served() {
    let origin = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let req = format!("GET http://{}/old HTTP/1.0\r\n\r\n", origin.addr);
    let resp = raw(proxy.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.0 200"), "{resp}");
    assert!(resp.contains("GET /old\n"), "{resp}");
}

/// Waits (bounded) until the proxy keeps `n` idle upstream connections.
async fn idle_upstreams(proxy: &TestProxy, n: u64) {
    for _ in 0..200 {
        if proxy.stats.snapshot().upstream_idle == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("proxy keeps {} idle upstream connections, expected {n}", proxy.stats.snapshot().upstream_idle);
}

#[tokio::test]
async fn upstream_connections_outlive_client_connections() {
    let origin = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    for i in 0..3 {
        // One request per client connection, as clients without keep-alive do.
        let req = format!("GET http://{}/c/{i} HTTP/1.1\r\nHost: x\r\n\r\n", origin.addr);
        let resp = raw(proxy.addr, req.as_bytes()).await;
        assert!(resp.starts_with("HTTP/1.1 200") && resp.contains(&format!("GET /c/{i}\n")), "{resp}");
        idle_upstreams(&proxy, 1).await;
    }
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1, "one upstream connection served three clients");
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_alternating_hosts_reuses_both_connections() {
    let (a, b) = (origin().await, origin().await);
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    for i in 0..6 {
        let origin = if i % 2 == 0 { &a } else { &b };
        let req = format!("GET http://{}/alt/{i} HTTP/1.1\r\nHost: x\r\n\r\n", origin.addr);
        s.write_all(req.as_bytes()).await.unwrap();
        let resp = read_response(&mut s).await;
        assert!(resp.starts_with("HTTP/1.1 200") && resp.contains(&format!("GET /alt/{i}\n")), "{resp}");
    }
    assert_eq!(a.connections.load(Ordering::SeqCst), 1);
    assert_eq!(b.connections.load(Ordering::SeqCst), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn an_upstream_that_closed_its_connection_is_replaced_not_reported() {
    // Answers as if keeping the connection, then closes it.
    let (upstream, closed) = raw_origin_counting(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let req = format!("GET http://{upstream}/ HTTP/1.1\r\nHost: x\r\n\r\n");
    // The next request goes out once the proxy has seen the upstream's close (it closed its
    // own end): the connection it kept is closed, not one it still believes in.
    let seen_close = |n: usize| {
        let closed = closed.clone();
        within("the proxy sees the upstream's close", async move {
            while closed.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Held by the client's own connection...
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    for i in 1..=3 {
        s.write_all(req.as_bytes()).await.unwrap();
        let resp = read_response(&mut s).await;
        assert!(resp.starts_with("HTTP/1.1 200") && resp.ends_with("ok"), "{resp}");
        seen_close(i).await;
    }
    drop(s);
    // ...and between client connections.
    for i in 4..=6 {
        let resp = raw(proxy.addr, req.as_bytes()).await;
        assert!(resp.starts_with("HTTP/1.1 200") && resp.ends_with("ok"), "{resp}");
        seen_close(i).await;
    }
    idle_upstreams(&proxy, 0).await;
    proxy.stop().await;
}

#[tokio::test]
async fn an_idle_client_connection_gives_its_upstream_back() {
    let origin = origin().await;
    let mut config = config();
    config.request_timeout = Duration::from_millis(300);
    let proxy = TestProxy::start(config, Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let req = format!("GET http://{}/idle HTTP/1.1\r\nHost: x\r\n\r\n", origin.addr);
    s.write_all(req.as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // A keep-alive client that sends nothing more is closed after request_timeout, and the
    // upstream connection it held goes to the pool for the next client.
    let mut rest = Vec::new();
    within("idle client closed", AsyncReadExt::read_to_end(&mut s, &mut rest)).await.unwrap();
    idle_upstreams(&proxy, 1).await;
    let resp = raw(proxy.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn head_and_bodies_keep_the_upstream_connection_in_step() {
    let origin = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let o = origin.addr;
    // A HEAD answer has a Content-Length but no body: the next answer must not be read as it.
    s.write_all(format!("HEAD http://{o}/h HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(format!("GET http://{o}/after-head HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.contains("GET /after-head\n"), "{resp}");
    s.write_all(format!("POST http://{o}/p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").as_bytes())
        .await
        .unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.contains("POST /p\n") && resp.contains("body-bytes: 5\n"), "{resp}");
    s.write_all(format!("GET http://{o}/after-body HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.contains("GET /after-body\n") && resp.contains("body-bytes: 0\n"), "{resp}");
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1, "one upstream connection throughout");
    proxy.stop().await;
}

/// A plain-HTTP WebSocket: the `Upgrade` reaches the upstream, its 101 reaches the client,
/// then bytes flow both ways until `idle_timeout` passes without any.
#[tokio::test]
async fn a_plain_http_websocket_is_upgraded_then_tunnelled() {
    let asked = Arc::new(parking_lot::Mutex::new(String::new()));
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
        *seen.lock() = text(&head);
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
    let asked = asked.lock().to_ascii_lowercase();
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

/// Plain HTTP counts its bytes both ways, as tunnels do (the app shows bytes through the
/// proxy): the request's head and body up, the answer's head and body down.
#[tokio::test]
async fn plain_http_bytes_are_counted_both_ways() {
    let up = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let target = up.addr;
    // A GET (no body: its head is what goes up), then a POST with a body.
    let resp = raw(proxy.addr, format!("GET http://{target}/x HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let after_get = proxy.stats.snapshot();
    assert!(after_get.bytes_down > 0 && after_get.bytes_up > 0, "{after_get:?}");
    let resp = raw(proxy.addr, post(target, 5, "hello").as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let after_post = proxy.stats.snapshot();
    assert!(after_post.bytes_up >= after_get.bytes_up + 5 + 20, "the POST's head and body: {after_post:?}");
    assert!(after_post.bytes_down > after_get.bytes_down, "{after_post:?}");
    proxy.stop().await;
}
