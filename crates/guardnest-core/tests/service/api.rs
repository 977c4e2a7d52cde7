//! The control API: security checks first, then the calls, over real HTTP.

use std::net::SocketAddr;

use guardnest_core::control::ControlServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::support::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

async fn api(env: &Env) -> (SocketAddr, CancellationToken) {
    let server = ControlServer::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(server.run(env.service.clone(), TOKEN.into(), stop.clone()));
    (addr, stop)
}

/// One raw request; returns (status, body).
async fn request(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = String::new();
    within("api answer", s.read_to_string(&mut out)).await.unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

fn req(method: &str, path: &str, host: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n")
}

#[tokio::test]
async fn refuses_before_answering() {
    let env = service(false);
    env.service.enable().await.unwrap();
    let (addr, _stop) = api(&env).await;
    let host = addr.to_string();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    // No token, wrong token: 401 and nothing else.
    let (code, body) = request(addr, &req("GET", "/v1/status", &host, "")).await;
    assert_eq!(code, 401);
    assert!(!body.contains("running"), "{body}");
    let (code, _) = request(addr, &req("GET", "/v1/status", &host, "Authorization: Bearer nope\r\n")).await;
    assert_eq!(code, 401);
    let (code, _) =
        request(addr, &req("POST", "/v1/disable", &host, &format!("Authorization: Bearer {}x\r\n", &TOKEN[1..]))).await;
    assert_eq!(code, 401);
    // DNS rebinding: a foreign Host, even with the right token.
    let (code, _) = request(addr, &req("GET", "/v1/status", "evil.test:3001", &auth)).await;
    assert_eq!(code, 403);
    // CSRF: any browser Origin.
    let (code, _) =
        request(addr, &req("POST", "/v1/disable", &host, &format!("{auth}Origin: http://evil.test\r\n"))).await;
    assert_eq!(code, 403);
    // A page's no-cors include of the PAC file (no Origin, but fetch metadata), from another
    // site or the same site on another port: refused. Fetched directly (the OS, a browser's
    // proxy resolver, a typed URL): answered, and never to be sniffed as a script.
    for site in ["cross-site", "same-site"] {
        let (code, _) = request(
            addr,
            &req(
                "GET",
                "/proxy.pac",
                &host,
                &format!("Sec-Fetch-Site: {site}\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: script\r\n"),
            ),
        )
        .await;
        assert_eq!(code, 403, "{site}");
    }
    let raw_pac = |extra: &'static str| {
        let head = req("GET", "/proxy.pac", &host, extra);
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            let mut out = String::new();
            within("pac", s.read_to_string(&mut out)).await.unwrap();
            out
        }
    };
    for extra in ["", "Sec-Fetch-Site: none\r\n"] {
        let out = raw_pac(extra).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{out}");
    }
    assert!(env.service.status().await.running, "a refused call changed something");
    // The right token from loopback works.
    let (code, body) = request(addr, &req("GET", "/v1/status", &host, &auth)).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["running"], true);
    let (code, body) = request(addr, &req("GET", "/v1/status", &format!("localhost:{}", addr.port()), &auth)).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn calls_metrics_and_pac() {
    let env = service(false);
    let (addr, _stop) = api(&env).await;
    let host = addr.to_string();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let (code, _) = request(addr, &req("GET", "/healthz", &host, "")).await;
    assert_eq!(code, 503, "not running yet");
    let (code, body) = request(addr, &req("POST", "/v1/enable", &host, &auth)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("enabled: listening on"), "{body}");
    let (code, body) = request(addr, &req("GET", "/healthz", &host, "")).await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let proxy = env.service.status().await.listen.unwrap();
    let (_, blocked) = connect(proxy, "a.evil.test:443").await.unwrap();
    assert_eq!(blocked, 403);
    let (code, body) = request(addr, &req("GET", "/v1/stats", &host, &auth)).await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["blocked_total"], 1);
    assert_eq!(v["recent_blocked"][0]["host"], "a.evil.test");
    assert_eq!(v["top_blocked"][0][0], "a.evil.test");
    let (code, body) = request(addr, &req("GET", "/metrics", &host, "")).await;
    assert_eq!(code, 200);
    assert!(body.contains("guardnest_blocked_total 1\n") && body.contains("guardnest_up 1\n"), "{body}");
    assert!(body.contains("guardnest_blocked_by_list_total{list=\"block.txt\"} 1"), "{body}");
    let (code, body) = request(addr, &req("GET", "/proxy.pac", &host, "")).await;
    assert_eq!(code, 200);
    assert!(body.contains(&format!("PROXY {proxy}; DIRECT")), "{body}");
    let (code, body) = request(addr, &req("POST", "/v1/lists/update", &host, &auth)).await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = request(addr, &req("GET", "/v1/enable", &host, &auth)).await;
    assert_eq!(code, 405);
    let (code, body) = request(addr, &req("POST", "/v1/restart", &host, &auth)).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = request(addr, &req("POST", "/v1/disable", &host, &auth)).await;
    assert!(code == 200 && body.contains("disabled"), "{body}");
    let (_, body) = request(addr, &req("GET", "/proxy.pac", &host, "")).await;
    assert!(body.contains("DIRECT") && !body.contains("PROXY"), "a stopped proxy's PAC is direct: {body}");
}

/// Silent and partial clients of the control API are bounded: of 100 silent connections the
/// server holds at most [`MAX_CONNECTIONS`] (each new one takes the place of the one idle
/// longest, which is closed), and a partial head is cut at the head timeout.
#[tokio::test]
async fn silent_and_partial_clients_of_the_control_api_are_bounded() {
    let env = service(false);
    let (addr, _stop) = api(&env).await;
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Accepted in order: all but the newest MAX_CONNECTIONS were let go, each closed.
    let let_go = 100 - guardnest_core::control::MAX_CONNECTIONS;
    for (i, s) in silent.iter_mut().take(let_go).enumerate() {
        let mut b = [0u8; 1];
        let read = within("a let-go connection's end", s.read(&mut b)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "silent connection {i} is still held: {read:?}");
    }
    drop(silent);
    // A partial head, alone, is cut at the head timeout.
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ").await.unwrap();
    let bound = env.service.request_timeout() + std::time::Duration::from_secs(4);
    let mut out = Vec::new();
    let read = tokio::time::timeout(bound, partial.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "a partial head was held past {bound:?}");
}

/// A local process holding many silent connections to the control API (more than it keeps)
/// never keeps the CLI waiting: a new connection takes the place of the one idle longest,
/// and is answered at once, long before a silent one's head timeout could have freed a
/// place.
#[tokio::test]
async fn silent_connections_never_keep_the_cli_waiting() {
    let env = service(false);
    let (addr, _stop) = api(&env).await;
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let started = std::time::Instant::now();
    let (code, body) = request(addr, &req("GET", "/healthz", &addr.to_string(), "")).await;
    let took = started.elapsed();
    assert_eq!(code, 503, "{body}"); // answered (the proxy itself is not enabled here)
    let head_timeout = env.service.request_timeout();
    assert!(
        took < head_timeout / 2,
        "the CLI waited {took:?} behind silent connections (head timeout {head_timeout:?})"
    );
    // The silent connections idle longest were the ones let go: the first nine (eight for
    // the other silent ones past the 32 held, one for the CLI's).
    for (i, s) in silent.iter_mut().take(9).enumerate() {
        let mut b = [0u8; 1];
        let read = within("a let-go connection's end", s.read(&mut b)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "silent connection {i} was not let go: {read:?}");
    }
}
