//! Upstream answers to plain HTTP: how they are framed for the client (hyper's engine reads
//! each body by its framing and frames it anew), the kept upstream connection, and what
//! happens when an upstream misbehaves.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guardnest_core::Policy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// An upstream that answers the n-th request on each of its connections with `answers[n]`
/// (written in one piece, so bytes after a response arrive with it), keeping the connection
/// open after the last unless `close_after`. Counts the connections it accepts.
async fn scripted(answers: Vec<&'static [u8]>, close_after: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = vec![0u8; 8192];
                for answer in answers {
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    seen.drain(..end);
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
                if close_after {
                    let _ = s.shutdown().await;
                } else {
                    // Hold the connection until the proxy closes it.
                    let _ = tokio::time::timeout(STEP, s.read(&mut buf)).await;
                }
            });
        }
    });
    (addr, connections)
}

/// An upstream for one connection: it reads the request (one read), then hands the socket
/// to `then`, which plays the server's part.
async fn one_connection<F, Fut>(then: F) -> std::net::SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        then(s).await;
    });
    addr
}

fn get(upstream: std::net::SocketAddr, path: &str) -> String {
    format!("GET http://{upstream}{path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

/// Reads exactly `n` bytes.
async fn exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    within("read bytes", s.read_exact(&mut bytes)).await.unwrap();
    bytes
}

/// Reads a chunked body (no trailers) and decodes it.
async fn read_body_chunked(s: &mut TcpStream) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            line.extend_from_slice(&exactly(s, 1).await);
        }
        let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
        let size = usize::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16).unwrap();
        if size == 0 {
            exactly(s, 2).await;
            return body;
        }
        body.extend_from_slice(&exactly(s, size).await);
        exactly(s, 2).await;
    }
}

/// Reads until the proxy closes the connection.
async fn to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    within("read to close", s.read_to_end(&mut bytes)).await.unwrap();
    bytes
}

#[tokio::test]
async fn chunked_answers_with_extensions_and_trailers_keep_the_upstream_in_step() {
    const CHUNKED: &[u8] = b"4;name=v\r\nwiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\n";
    let mut first = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    first.extend_from_slice(CHUNKED);
    let first: &'static [u8] = first.leak();
    let (upstream, connections) =
        scripted(vec![first, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"], false).await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(get(upstream, "/1").as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert!(head.contains("via: 1.1 guardnest"), "{head}");
    // hyper decodes and encodes the body again (its own chunks, no extension), and reads
    // the upstream's to its very end, trailers included: the next answer is in step.
    assert_eq!(read_body_chunked(&mut s).await, b"wikipedia");
    s.write_all(get(upstream, "/2").as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200") && resp.ends_with("\r\n\r\nsecond"), "{resp}");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one upstream connection for both");
    proxy.stop().await;
}

#[tokio::test]
async fn informational_answers_are_dropped() {
    let (upstream, _) = scripted(
        vec![b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        false,
    )
    .await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let resp = raw(proxy.addr, get(upstream, "/").as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n") && resp.ends_with("ok") && !resp.contains("103"), "{resp}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_body_that_runs_to_the_close_is_framed_for_the_client() {
    let (upstream, _) = scripted(vec![b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"], true).await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(get(upstream, "/").as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    // hyper frames a body that ran to the close (chunked), and keeps the client's connection.
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(read_body_chunked(&mut s).await == b"until the end");
    proxy.stop().await;
}

#[tokio::test]
async fn bytes_past_the_framing_never_reach_the_next_request() {
    // The first answer carries bytes its Content-Length does not cover: the connection is
    // out of step and must not serve the next request.
    let (upstream, connections) = scripted(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"],
        false,
    )
    .await;
    second_answer_over_a_new_connection(upstream, &connections, Duration::ZERO).await;
}

/// Two GETs on one client connection, `pause` apart: both answers must be the clean "ok",
/// the second over a new upstream connection (the first one's was out of step).
async fn second_answer_over_a_new_connection(
    upstream: std::net::SocketAddr,
    connections: &AtomicUsize,
    pause: Duration,
) {
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    for (i, path) in ["/1", "/2"].into_iter().enumerate() {
        if i == 1 {
            tokio::time::sleep(pause).await;
        }
        s.write_all(get(upstream, path).as_bytes()).await.unwrap();
        let resp = read_response(&mut s).await;
        assert!(resp.ends_with("\r\n\r\nok") && !resp.contains("forged"), "{path}: {resp}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2, "a new upstream connection for the second request");
    proxy.stop().await;
}

#[tokio::test]
async fn bytes_arriving_on_an_idle_upstream_connection_are_never_an_answer() {
    // After a clean answer the upstream sends, unasked, what looks like another one.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                if n == 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged").await;
                }
                let _ = tokio::time::timeout(STEP, s.read(&mut buf)).await;
            });
        }
    });
    // The forged answer arrives 100 ms after the first; the second request goes at 300 ms.
    second_answer_over_a_new_connection(upstream, &connections, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_upstream_closing_its_kept_connection_is_closed_at_once() {
    // The upstream answers, then closes; the client stays connected and quiet. The proxy's
    // end must close now (no CLOSE_WAIT), not when the client's head timer runs out.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let upstream = one_connection(|mut s| async move {
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.shutdown().await.unwrap();
        let at = Instant::now();
        let mut buf = [0u8; 64];
        let eof = tokio::time::timeout(STEP, s.read(&mut buf)).await;
        let _ = closed_tx.send((eof.map(Result::ok), at.elapsed()));
    })
    .await;
    let mut config = config();
    config.request_timeout = Duration::from_secs(30);
    let proxy = TestProxy::start(config, Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(get(upstream, "/").as_bytes()).await.unwrap();
    assert!(read_response(&mut s).await.ends_with("ok"));
    let (eof, after) = within("upstream sees the close", closed_rx).await.unwrap();
    assert_eq!(eof.ok().flatten(), Some(0), "the proxy closed its end");
    // At once: long before the client's head timer (30 s) could have closed it.
    assert!(after < Duration::from_secs(20), "closed after {after:?}");
    // The client connection is still served.
    let origin = origin().await;
    s.write_all(get(origin.addr, "/still").as_bytes()).await.unwrap();
    assert!(read_response(&mut s).await.contains("GET /still\n"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_cut_off_body_closes_the_client_connection() {
    let (upstream, _) = scripted(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"], true).await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(get(upstream, "/").as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.to_ascii_lowercase().contains("content-length: 10"), "{head}");
    // The client sees the short body end with the connection, as from the origin itself.
    assert_eq!(to_close(&mut s).await, b"half");
    proxy.stop().await;
}

#[tokio::test]
async fn malformed_answers_are_502_and_the_client_connection_goes_on() {
    let bad: [&'static [u8]; 4] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    ];
    let good = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    for answer in bad {
        let (upstream, _) = scripted(vec![answer], true).await;
        s.write_all(get(upstream, "/").as_bytes()).await.unwrap();
        let resp = read_response(&mut s).await;
        assert_eq!(status_of(&resp), 502, "{resp}");
        assert!(resp.contains("upstream error: "), "{resp}");
        assert_eq!(resp.trim_end().lines().last().unwrap().matches("upstream error").count(), 1, "one line");
    }
    s.write_all(get(good.addr, "/after").as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200") && resp.contains("GET /after\n"), "{resp}");
    proxy.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let origin = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let o = origin.addr;
    let both = format!("{}HEAD http://{o}/2 HTTP/1.1\r\nHost: x\r\n\r\n{}", get(o, "/1"), get(o, "/3"));
    s.write_all(both.as_bytes()).await.unwrap();
    let first = read_response(&mut s).await;
    assert!(first.contains("GET /1\n"), "{first}");
    let second = read_head(&mut s).await;
    assert!(second.starts_with("HTTP/1.1 200") && second.contains("content-length"), "{second}");
    let third = read_response(&mut s).await;
    assert!(third.contains("GET /3\n"), "{third}");
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn large_bodies_arrive_whole_in_both_framings() {
    let mut sized = b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n".to_vec();
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    sized.extend_from_slice(&body);
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(70_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (upstream, connections) = scripted(vec![sized.leak(), chunked.leak()], false).await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(get(upstream, "/sized").as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(exactly(&mut s, body.len()).await == body, "sized body differs");
    s.write_all(get(upstream, "/chunked").as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // hyper encodes the chunks anew: the decoded body is what counts.
    assert!(read_body_chunked(&mut s).await == body, "chunked body differs");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn blocked_heads_get_403_without_a_body_and_the_connection_goes_on() {
    let lists = lists(&[("block.txt", "evil.test\n")], &[]);
    let origin = origin().await;
    let proxy = TestProxy::plain(lists.blocklists.policy()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"HEAD http://www.evil.test/ HTTP/1.1\r\nHost: www.evil.test\r\n\r\n").await.unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 403, "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    // No body follows the head: the next answer comes straight after it.
    s.write_all(get(origin.addr, "/next").as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200") && resp.contains("GET /next\n"), "{resp}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_request_in_flight_is_finished_at_shutdown() {
    // The upstream has the request, and answers only once shutdown has begun.
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let upstream = one_connection(|mut s| async move {
        let _ = got_tx.send(());
        let _ = tokio::time::timeout(STEP, go_rx).await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone").await;
        let _ = tokio::time::timeout(STEP, s.read(&mut [0u8; 64])).await;
    })
    .await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(get(upstream, "/slow").as_bytes()).await.unwrap();
    within("the request reaches the upstream", got_rx).await.unwrap();
    proxy.begin_shutdown();
    let _ = go_tx.send(());
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200") && resp.ends_with("done"), "{resp}");
    // Then the connection closes instead of waiting for another request.
    assert!(to_close(&mut s).await.is_empty());
    proxy.join().await;
}

#[tokio::test]
async fn a_url_without_a_path_reaches_the_origin_as_slash_on_both_paths() {
    let origin = origin().await;
    let proxy = TestProxy::plain(Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let o = origin.addr;
    // The relay (GET) and hyper (POST) alike.
    s.write_all(format!("GET http://{o}?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.contains("GET /?x=1\n"), "{resp}");
    s.write_all(format!("POST http://{o}?y=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.contains("POST /?y=2\n"), "{resp}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_trickled_response_head_is_cut_at_the_idle_timeout() {
    // One byte every 100 ms never completes a head; each byte must not restart the clock.
    let upstream = one_connection(|mut s| async move {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ").await;
        for _ in 0..300 {
            if s.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let mut config = config();
    config.idle_timeout = Duration::from_secs(1);
    let proxy = TestProxy::start(config, Policy::allow_all()).await;
    let started = Instant::now();
    let resp = raw(proxy.addr, get(upstream, "/").as_bytes()).await;
    assert_eq!(status_of(&resp), 504, "{resp}");
    // Cut by the 1 s timeout, not at the end of the 30 s trickle.
    assert!(started.elapsed() < Duration::from_secs(1) + STEP, "took {:?}", started.elapsed());
    proxy.stop().await;
}

/// The wait for an answer is timed by one timer per client connection, left armed at an
/// earlier request's deadline: a later request on the same connection gets its own full
/// `idle_timeout` (the old deadline passing mid-request is not a timeout), and a silent
/// upstream still gets its 504 one `idle_timeout` after its own request.
#[tokio::test]
async fn each_request_on_a_kept_connection_waits_its_own_idle_timeout_for_its_answer() {
    let idle = Duration::from_secs(2);
    let fast = answering(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast"]).await;
    // Answers one second after the request: past the first request's deadline.
    let late = one_upstream(|mut s| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate").await;
        let _ = tokio::time::timeout(STEP, s.read(&mut [0u8; 16])).await;
    })
    .await;
    let silent = one_upstream(|mut s| async move {
        let _ = tokio::time::timeout(STEP, s.read(&mut [0u8; 16])).await;
    })
    .await;
    let mut config = config();
    config.idle_timeout = idle;
    let proxy = TestProxy::start(config, Policy::allow_all()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(format!("GET http://{fast}/ HTTP/1.1\r\nHost: {fast}\r\n\r\n").as_bytes()).await.unwrap();
    let first = read_response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200") && first.ends_with("fast"), "{first}");
    // The next request starts 1.5 s later: the first request's deadline passes while it
    // waits for its answer (at 2 s), which comes at 2.5 s, within its own 2 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(format!("GET http://{late}/ HTTP/1.1\r\nHost: {late}\r\n\r\n").as_bytes()).await.unwrap();
    let second = read_response(&mut s).await;
    assert!(second.starts_with("HTTP/1.1 200") && second.ends_with("late"), "{second}");
    // A silent upstream: 504, one idle_timeout after its request (not sooner).
    let asked = Instant::now();
    s.write_all(format!("GET http://{silent}/ HTTP/1.1\r\nHost: {silent}\r\n\r\n").as_bytes()).await.unwrap();
    let third = read_response(&mut s).await;
    assert_eq!(status_of(&third), 504, "{third}");
    assert!(asked.elapsed() >= idle, "504 after {:?}, before the idle timeout", asked.elapsed());
    proxy.stop().await;
}

/// `Connection` naming `Content-Length` or `Transfer-Encoding` must not unframe a
/// response; a pipelining client must never read the next origin's answer as
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

/// an upstream that answers `100 Continue` without end gets a 502 after a bounded
/// number of them, on every request.
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

/// `Content-Length` and `Transfer-Encoding: chunked` together from an upstream, on
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
