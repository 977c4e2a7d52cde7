//! CONNECT: answers, tunnels, half-close, pipelining, idle timeout.

use std::time::{Duration, Instant};

use guardnest_core::Policy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test]
async fn tunnel_echoes_both_ways() {
    let echo = echo_server().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let (mut s, status, head) = connect_via(proxy.addr, &echo.to_string()).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.starts_with("HTTP/1.1 200 Connection Established\r\n"), "{head}");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&payload).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let recv = r.read_to_end(&mut back);
    let (_, got) = within("echo", async { tokio::join!(send, recv) }).await;
    got.unwrap();
    assert_eq!(back, payload);
    proxy.stop().await;
}

#[tokio::test]
async fn bytes_pipelined_behind_connect_are_forwarded() {
    let echo = echo_server().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    connect_and_echo(&mut s, &echo.to_string(), b"hello, pipelined").await;
}

/// Sends a CONNECT to an echo upstream with `early` behind its head in the same write, and
/// expects the 200 and then `early` back through the tunnel.
async fn connect_and_echo(s: &mut TcpStream, echo: &str, early: &[u8]) {
    let mut req = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").into_bytes();
    req.extend_from_slice(early);
    s.write_all(&req).await.unwrap();
    let head = read_head(s).await;
    assert_eq!(status_of(&head), 200, "{head}");
    let mut back = vec![0u8; early.len()];
    within("pipelined echo", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, early);
}

#[tokio::test]
async fn refused_upstream_is_502() {
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let (_, status, head) = connect_via(proxy.addr, &closed_port().to_string()).await;
    assert_eq!(status, 502, "{head}");
}

#[tokio::test]
async fn unresolvable_name_is_502() {
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let (mut s, status, head) = connect_via(proxy.addr, "no-such-host.invalid:443").await;
    assert_eq!(status, 502, "{head}");
    let body = read_body(&mut s, &head).await;
    assert!(body.contains("cannot resolve no-such-host.invalid"), "{body}");
}

/// Deterministic 504: the upstream's accept queue is full, so its SYNs go unanswered.
#[tokio::test]
async fn connect_timeout_is_504() {
    let hole = blackhole();
    let mut config = config();
    config.connect_timeout = Duration::from_millis(400);
    let proxy = TestProxy::start(config, Policy::allow_all()).await;
    let started = Instant::now();
    let (_, status, head) = connect_via(proxy.addr, &hole.addr.to_string()).await;
    assert_eq!(status, 504, "{head}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(380) && took < Duration::from_millis(400) + STEP, "{took:?}");
}

#[tokio::test]
async fn malformed_targets_are_400() {
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    for target in ["example.com", "example.com:0", "example.com:65536", ":443", "example.com:http", "ex%61mple.com:443"]
    {
        let (_, status, head) = connect_via(proxy.addr, target).await;
        assert_eq!(status, 400, "{target}: {head}");
    }
    // Still serving.
    let echo = echo_server().await;
    assert_eq!(connect_via(proxy.addr, &echo.to_string()).await.1, 200);
}

#[tokio::test]
async fn connect_to_the_proxy_itself_is_refused() {
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let (_, status, head) = connect_via(proxy.addr, &proxy.addr.to_string()).await;
    assert_eq!(status, 508, "{head}");
    let (_, status, _) = connect_via(proxy.addr, &format!("localhost:{}", proxy.addr.port())).await;
    assert_eq!(status, 508);
}

/// Client half-closes first; the upstream still answers, and the answer reaches the client.
#[tokio::test]
async fn client_half_close_is_passed_on() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap(); // ends only if the FIN was passed on
        s.write_all(format!("got {} bytes", got.len()).as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let (mut s, status, _) = connect_via(proxy.addr, &upstream.to_string()).await;
    assert_eq!(status, 200);
    s.write_all(&[7u8; 1000]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut answer = String::new();
    within("answer after half-close", s.read_to_string(&mut answer)).await.unwrap();
    assert_eq!(answer, "got 1000 bytes");
}

/// Upstream half-closes first; the client keeps sending and the upstream still receives.
#[tokio::test]
async fn upstream_half_close_is_passed_on() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"banner").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        let _ = tx.send(got);
    });
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let (mut s, status, _) = connect_via(proxy.addr, &upstream.to_string()).await;
    assert_eq!(status, 200);
    let mut banner = Vec::new();
    within("upstream EOF reaches client", s.read_to_end(&mut banner)).await.unwrap();
    assert_eq!(banner, b"banner");
    s.write_all(b"still talking").await.unwrap();
    s.shutdown().await.unwrap();
    let got = within("client bytes after upstream FIN", rx).await.unwrap();
    assert_eq!(got, b"still talking");
}

#[tokio::test]
async fn idle_tunnel_is_closed() {
    let echo = echo_server().await;
    let mut config = config();
    config.idle_timeout = Duration::from_millis(300);
    let proxy = TestProxy::start(config, Policy::allow_all()).await;
    let (mut s, status, _) = connect_via(proxy.addr, &echo.to_string()).await;
    assert_eq!(status, 200);
    // Activity keeps it open past one idle period.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        within("echo while active", s.read_exact(&mut b)).await.unwrap();
    }
    let started = Instant::now();
    let mut rest = Vec::new();
    within("idle close", s.read_to_end(&mut rest)).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(300) + STEP, "{took:?}");
    proxy.stop().await;
}

/// After a tunnel ends, no socket of the proxy's is left in CLOSE_WAIT.
#[cfg(any(target_os = "linux", windows))]
#[tokio::test]
async fn no_close_wait_after_tunnels_end() {
    let echo = echo_server().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    for _ in 0..20 {
        let (mut s, status, _) = connect_via(proxy.addr, &echo.to_string()).await;
        assert_eq!(status, 200);
        s.write_all(b"ping").await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        within("echo", s.read_to_end(&mut back)).await.unwrap();
    }
    let port = proxy.addr.port();
    let mut stuck = usize::MAX;
    for _ in 0..50 {
        stuck = close_wait_sockets(port, echo.port());
        if stuck == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stuck, 0, "sockets in CLOSE_WAIT");
}

/// Counts IPv4 CLOSE_WAIT sockets with `a` as the local or `b` as the remote port.
#[cfg(any(target_os = "linux", windows))]
fn close_wait_sockets(a: u16, b: u16) -> usize {
    tcp4_sockets().into_iter().filter(|&(local, remote, close_wait)| close_wait && (local == a || remote == b)).count()
}

/// (local port, remote port, in CLOSE_WAIT) of every IPv4 TCP socket, from /proc/net/tcp.
#[cfg(target_os = "linux")]
fn tcp4_sockets() -> Vec<(u16, u16, bool)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = |field: Option<&&str>| {
        field.and_then(|x| x.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok()).unwrap_or(0)
    };
    table
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (port(f.get(1)), port(f.get(2)), f.get(3) == Some(&"08"))
        })
        .collect()
}

/// The same from Windows' TCP table (GetTcpTable; ports in network byte order).
#[cfg(windows)]
fn tcp4_sockets() -> Vec<(u16, u16, bool)> {
    use windows_sys::Win32::NetworkManagement::IpHelper::{GetTcpTable, MIB_TCPTABLE, MIB_TCP_STATE_CLOSE_WAIT};
    const ERROR_INSUFFICIENT_BUFFER: u32 = 122;
    let mut size = 0u32;
    // SAFETY: a size query with a null table.
    unsafe { GetTcpTable(std::ptr::null_mut(), &mut size, 0) };
    // The table grows between the size query and the read while other tests open sockets:
    // ask again with room to spare, a bounded number of times.
    let mut buf;
    let mut tries = 0;
    let table = loop {
        size += 64 * 24;
        buf = vec![0u64; size as usize / 8 + 1];
        let table = buf.as_mut_ptr() as *mut MIB_TCPTABLE;
        // SAFETY: `buf` holds at least `size` bytes, 8-aligned.
        let rc = unsafe { GetTcpTable(table, &mut size, 0) };
        tries += 1;
        if rc == ERROR_INSUFFICIENT_BUFFER && tries < 10 {
            continue;
        }
        assert_eq!(rc, 0, "GetTcpTable failed: {rc}");
        break table;
    };
    // SAFETY: GetTcpTable filled dwNumEntries rows after the count.
    let rows = unsafe { std::slice::from_raw_parts((*table).table.as_ptr(), (*table).dwNumEntries as usize) };
    let port = |p: u32| u16::from_be(p as u16);
    rows.iter()
        .map(|r| {
            // SAFETY: both union fields are the same u32.
            let state = unsafe { r.Anonymous.State };
            (port(r.dwLocalPort), port(r.dwRemotePort), state == MIB_TCP_STATE_CLOSE_WAIT)
        })
        .collect()
}

/// A bulk transfer (which switches to splice on Linux) arrives intact, in order, both ways,
/// and still ends with a proper half-close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_transfer_is_intact_both_ways() {
    bulk_transfer(TestProxy::plain(Policy::allow_all()).await).await;
}

/// The same through the portable path (`splice = false`, and every system but Linux).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_transfer_is_intact_both_ways_without_splice() {
    let mut config = config();
    config.splice = false;
    bulk_transfer(TestProxy::start(config, Policy::allow_all()).await).await;
}

async fn bulk_transfer(proxy: TestProxy) {
    let echo = echo_server().await;
    let (s, status, _) = connect_via(proxy.addr, &echo.to_string()).await;
    assert_eq!(status, 200);
    let payload: Vec<u8> = (0..24u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let (mut r, mut w) = s.into_split();
    let expected = payload.clone();
    let send = tokio::spawn(async move {
        w.write_all(&payload).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(expected.len());
    within("bulk echo", r.read_to_end(&mut back)).await.unwrap();
    send.await.unwrap();
    assert_eq!(back.len(), expected.len());
    assert!(back == expected, "bytes corrupted or reordered");
    let stats = proxy.stats.clone();
    proxy.stop().await;
    assert_eq!(stats.snapshot().bytes_up, 24 << 20);
    assert_eq!(stats.snapshot().bytes_down, 24 << 20);
}

// A connection's first CONNECT is read by GuardNest itself (httparse), not by hyper: the
// tests below hold that path to hyper's answers and limits.

/// Writes `parts` with pauses between them, so the proxy reads each separately.
async fn write_in_parts(s: &mut TcpStream, parts: &[&[u8]]) {
    for part in parts {
        s.write_all(part).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

#[tokio::test]
async fn heads_split_across_reads_are_served() {
    let echo = echo_server().await;
    let origin = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;

    // A CONNECT arriving in pieces, the first shorter than "CONNECT ", the head ending in the
    // same read as pipelined bytes.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let rest = format!("NECT {echo} HTTP/1.1\r\nHo");
    write_in_parts(&mut s, &[b"CON", rest.as_bytes(), b"st: x\r\n\r\nping"]).await;
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 200, "{head}");
    let mut buf = [0u8; 4];
    within("pipelined echo", s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"ping");

    // First bytes that begin like CONNECT but are another method go to hyper whole.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let rest = format!("PY http://{}/moved HTTP/1.1\r\nHost: x\r\n\r\n", origin.addr);
    write_in_parts(&mut s, &[b"CO", rest.as_bytes()]).await;
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("COPY /moved\n"), "{resp}");
    proxy.stop().await;
}

#[tokio::test]
async fn oversized_connect_heads_get_431() {
    let echo = echo_server().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let start = format!("CONNECT {echo} HTTP/1.1\r\n");
    // Too many bytes (the limit is 64 KiB by default), then too many fields (hyper's 100).
    let big: String = (0..200).map(|i| format!("X-Filler-{i}: {}\r\n", "a".repeat(1000))).collect();
    let many: String = (0..150).map(|i| format!("X-{i}: a\r\n")).collect();
    // The same one-line reason from both engines.
    for (fields, why) in [(big, "more than 65536 bytes"), (many, "more than 100 header fields")] {
        let resp = raw(proxy.addr, format!("{start}{fields}\r\n").as_bytes()).await;
        assert!(resp.starts_with("HTTP/1.1 431"), "{}", &resp[..resp.len().min(200)]);
        assert!(resp.ends_with(&format!("\r\n\r\nrequest head too large: {why}\n")), "{resp}");
        assert!(resp.contains("connection: close"), "{resp}");
    }
    assert_eq!(connect_via(proxy.addr, &echo.to_string()).await.1, 200);
}

#[tokio::test]
async fn connect_with_a_body_is_400() {
    let echo = echo_server().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    for field in ["Content-Length: 5", "Transfer-Encoding: chunked"] {
        let resp = raw(proxy.addr, format!("CONNECT {echo} HTTP/1.1\r\n{field}\r\n\r\nhello").as_bytes()).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{field}: {resp}");
        assert!(resp.contains("a CONNECT request has no body"), "{resp}");
        assert!(resp.contains("connection: close"), "{resp}");
    }
    let resp = raw(proxy.addr, format!("CONNECT {echo} HTTP/1.1\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // The same answer from hyper, for a CONNECT after a plain request on one connection.
    let origin = origin().await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(format!("GET http://{}/ HTTP/1.1\r\nHost: x\r\n\r\n", origin.addr).as_bytes()).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    s.write_all(format!("CONNECT {echo} HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("a CONNECT request has no body"), "{resp}");
}

#[tokio::test]
async fn a_failed_connect_leaves_the_connection_open_for_the_next() {
    let echo = echo_server().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let dead = closed_port();
    s.write_all(format!("CONNECT {dead} HTTP/1.1\r\n\r\n").as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(resp.contains("content-type: text/plain; charset=utf-8\r\n"), "{resp}");
    assert!(resp.contains("cache-control: no-store\r\n"), "{resp}");
    assert!(!resp.contains("connection: close"), "{resp}");
    connect_and_echo(&mut s, &echo.to_string(), b"again").await;
}

/// A CONNECT after a plain-HTTP request on one connection is hyper's; its tunnel works the same.
#[tokio::test]
async fn connect_after_a_plain_request_on_one_connection() {
    let echo = echo_server().await;
    let origin = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(format!("GET http://{}/first HTTP/1.1\r\nHost: x\r\n\r\n", origin.addr).as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.contains("GET /first\n"), "{resp}");
    connect_and_echo(&mut s, &echo.to_string(), b"after").await;
    s.write_all(b" and more").await.unwrap();
    let mut buf = [0u8; 9];
    within("echo after a GET", s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b" and more");
}

/// A CONNECT after a plain request on the same connection is read by hyper's engine, not the
/// first-head stage: the same decisions and answers (403 with the list, 502 naming the
/// upstream, 400 for a body), and a tunnel that carries the bytes pipelined behind its head.
#[tokio::test]
async fn a_connect_after_a_plain_request_is_served_by_hyper_alike() {
    let origin = origin().await;
    let echo = echo_server().await;
    let lists = lists(&[("block.txt", "evil.test\n")], &[]);
    let proxy = TestProxy::plain(lists.blocklists.policy()).await;
    let get = format!("GET http://{}/first HTTP/1.1\r\nHost: x\r\n\r\n", origin.addr);
    // Opens a connection on hyper's engine (a plain request first), then sends `then`.
    let on_hyper = |then: String| {
        let get = get.clone();
        async move {
            let mut s = TcpStream::connect(proxy.addr).await.unwrap();
            s.write_all(get.as_bytes()).await.unwrap();
            let first = read_response(&mut s).await;
            assert!(first.starts_with("HTTP/1.1 200"), "{first}");
            s.write_all(then.as_bytes()).await.unwrap();
            s
        }
    };
    let mut s = on_hyper(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\nping behind the head")).await;
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200 Connection Established\r\n"), "{head}");
    let mut back = [0u8; 20];
    within("echo of the pipelined bytes", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"ping behind the head");

    let mut s = on_hyper("CONNECT www.evil.test:443 HTTP/1.1\r\nHost: www.evil.test:443\r\n\r\n".into()).await;
    let resp = read_response(&mut s).await;
    assert!(
        resp.starts_with("HTTP/1.1 403") && resp.contains("www.evil.test is blocked by list \"block.txt\""),
        "{resp}"
    );

    let closed = closed_port();
    let mut s = on_hyper(format!("CONNECT {closed} HTTP/1.1\r\nHost: {closed}\r\n\r\n")).await;
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 502") && resp.contains(&closed.to_string()), "{resp}");

    let mut s = on_hyper(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\nContent-Length: 3\r\n\r\nabc")).await;
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 400") && resp.contains("a CONNECT request has no body"), "{resp}");
    proxy.stop().await;
}
