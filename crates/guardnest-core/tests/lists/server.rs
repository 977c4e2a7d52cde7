//! A real HTTP list server on loopback whose answers each test scripts.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers on one path.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this body and ETag; 304 when If-None-Match matches.
    List { body: Vec<u8>, etag: String, gzip: bool },
    /// A bare status with a short body.
    Status(u16),
    /// Waits this long before answering anything.
    Slow(Duration),
    /// Streams `bytes` of list lines, chunked (no Content-Length) or with a length.
    Huge { bytes: usize, chunked: bool },
    /// 302 to another path.
    Redirect(String),
    /// Closes the connection without an answer.
    Reset,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    /// (path, If-None-Match) of every request.
    log: Vec<(String, Option<String>)>,
}

#[derive(Clone)]
pub struct ListServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: tokio_util::sync::CancellationToken,
}

impl ListServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (st, stop2) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop2.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((s, _)) = accepted else { continue };
                tokio::spawn(serve(s, st.clone()));
            }
        });
        Self { addr, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, path: &str, reply: Reply) {
        self.state.lock().routes.insert(path.to_string(), reply);
    }

    pub fn list(&self, path: &str, body: &str, etag: &str) {
        self.set(path, Reply::List { body: body.as_bytes().to_vec(), etag: etag.to_string(), gzip: false });
    }

    /// Requests seen for `path`, with their If-None-Match.
    pub fn requests(&self, path: &str) -> Vec<Option<String>> {
        self.state.lock().log.iter().filter(|(p, _)| p == path).map(|(_, v)| v.clone()).collect()
    }

    /// Stops accepting: from now on connections are refused.
    pub fn shut_down(&self) {
        self.stop.cancel();
    }
}

async fn serve(mut s: TcpStream, state: Arc<Mutex<State>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let inm = head.lines().find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("if-none-match")).map(|(_, v)| v.trim().to_string())
    });
    let reply = {
        let mut st = state.lock();
        st.log.push((path.clone(), inm.clone()));
        st.routes.get(&path).cloned().unwrap_or(Reply::Status(404))
    };
    let _ = answer(&mut s, reply, inm).await;
}

async fn answer(s: &mut TcpStream, reply: Reply, inm: Option<String>) -> std::io::Result<()> {
    match reply {
        Reply::List { body, etag, gzip } => {
            if inm.as_deref() == Some(etag.as_str()) {
                return s
                    .write_all(
                        format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n").as_bytes(),
                    )
                    .await;
            }
            let (body, encoding) = match gzip {
                true => {
                    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    enc.write_all(&body).unwrap();
                    (enc.finish().unwrap(), "Content-Encoding: gzip\r\n")
                }
                false => (body, ""),
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nETag: {etag}\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).await?;
            s.write_all(&body).await
        }
        Reply::Status(code) => {
            let body = format!("status {code}\n");
            let head =
                format!("HTTP/1.1 {code} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            s.write_all((head + &body).as_bytes()).await
        }
        Reply::Slow(d) => {
            tokio::time::sleep(d).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nslow.example\r\n").await
        }
        Reply::Huge { bytes, chunked } => {
            let line = b"0.0.0.0 huge-list-entry.example\n";
            let chunk: Vec<u8> = line.iter().copied().cycle().take(64 * 1024).collect();
            let head = match chunked {
                true => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_string(),
                false => format!("HTTP/1.1 200 OK\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n"),
            };
            s.write_all(head.as_bytes()).await?;
            let mut sent = 0;
            while sent < bytes {
                let n = chunk.len().min(bytes - sent);
                if chunked {
                    s.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                    s.write_all(&chunk[..n]).await?;
                    s.write_all(b"\r\n").await?;
                } else {
                    s.write_all(&chunk[..n]).await?;
                }
                sent += n;
            }
            if chunked {
                s.write_all(b"0\r\n\r\n").await?;
            }
            Ok(())
        }
        Reply::Redirect(to) => {
            s.write_all(
                format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
        }
        Reply::Reset => {
            let sock = socket2::SockRef::from(&*s);
            sock.set_linger(Some(Duration::ZERO))?;
            Ok(())
        }
    }
}
