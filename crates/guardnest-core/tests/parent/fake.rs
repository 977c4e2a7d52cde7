//! Parent proxies of the test's own: one that tunnels and counts what it reads, hostile ones
//! (silent, garbage, closing mid-handshake), and one whose authentication is a two-step
//! handshake bound to its TCP connection, as NTLM's is.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a fake parent behaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Answers a CONNECT with 200 and tunnels to the address it names.
    Tunnel,
    /// Reads the CONNECT and never answers.
    Silent,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Sends half a status line, then closes.
    CloseMidHandshake,
    /// NTLM-like: no credentials → 407 `Proxy-Authenticate: Pair`; `Pair hello` → 407
    /// `Pair challenge-N` (N this TCP connection's number); `Pair answer-N` → 200, but only on
    /// connection N; anything else → 407 and the connection closed.
    Pair,
}

/// What a fake parent saw.
#[derive(Default)]
pub struct Seen {
    /// Connections accepted (the health check's upstream check among them).
    pub connections: AtomicUsize,
    /// For each request: the connection it came on, how many reads its head took, and the
    /// bytes read before answering.
    pub heads: Mutex<Vec<(usize, usize, Vec<u8>)>>,
    /// The `Proxy-Authorization` values received, with the connection they came on.
    pub auth: Mutex<Vec<(usize, String)>>,
    /// Tunnels opened.
    pub tunnels: AtomicUsize,
}

impl Seen {
    /// Connections that carried at least one request.
    pub fn used_connections(&self) -> usize {
        let mut conns: Vec<usize> = self.heads.lock().iter().map(|(c, _, _)| *c).collect();
        conns.dedup();
        conns.len()
    }
}

pub struct FakeParent {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

pub async fn start(mode: Mode) -> FakeParent {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let n = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(serve(s, n, mode, shared.clone()));
        }
    });
    FakeParent { addr, seen }
}

/// Reads one request head; returns it, the reads it took, and what came after it.
async fn read_head(s: &mut TcpStream) -> Option<(String, usize, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut reads = 0;
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        reads += 1;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((String::from_utf8_lossy(&buf).into_owned(), reads, rest));
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn serve(mut s: TcpStream, conn: usize, mode: Mode, seen: Arc<Seen>) {
    loop {
        let Some((head, reads, rest)) = read_head(&mut s).await else { return };
        seen.heads.lock().push((conn, reads, head.clone().into_bytes()));
        if let Some(auth) = header(&head, "proxy-authorization") {
            seen.auth.lock().push((conn, auth.to_string()));
        }
        let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
        match mode {
            Mode::Silent => {
                let mut sink = [0u8; 64];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Mode::Garbage => {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02\r\n\r\n").await;
                return;
            }
            Mode::CloseMidHandshake => {
                let _ = s.write_all(b"HTTP/1.1 20").await;
                return;
            }
            Mode::Tunnel => return tunnel(s, &target, rest, &seen).await,
            Mode::Pair => {
                let challenge = |text: &str| {
                    format!(
                        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: {text}\r\n\
                         Content-Type: text/plain\r\nContent-Length: 9\r\n\r\nwho are u"
                    )
                };
                match header(&head, "proxy-authorization") {
                    None => {
                        let _ = s.write_all(challenge("Pair").as_bytes()).await;
                    }
                    Some("Pair hello") => {
                        let _ = s.write_all(challenge(&format!("Pair challenge-{conn}")).as_bytes()).await;
                    }
                    Some(answer) if answer == format!("Pair answer-{conn}") => {
                        return tunnel(s, &target, rest, &seen).await;
                    }
                    Some(_) => {
                        // An answer to another connection's challenge: refused, closed.
                        let refused = "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Pair\r\n\
                                       Connection: close\r\nContent-Length: 0\r\n\r\n";
                        let _ = s.write_all(refused.as_bytes()).await;
                        return;
                    }
                }
            }
        }
    }
}

async fn tunnel(mut s: TcpStream, target: &str, rest: Vec<u8>, seen: &Seen) {
    let Ok(mut origin) = TcpStream::connect(target).await else {
        let _ = s.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
        return;
    };
    seen.tunnels.fetch_add(1, Ordering::SeqCst);
    if s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
        return;
    }
    if !rest.is_empty() && origin.write_all(&rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut s, &mut origin).await;
}
