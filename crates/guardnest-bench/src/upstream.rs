//! The harness's own loopback upstreams: echo, bulk (source and sink), HTTP origin, and
//! the two half-close peers. Plain threads and blocking sockets where one connection is
//! busy at a time; a small tokio runtime for the many-connection echo and HTTP origin.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;

/// Addresses of every upstream.
#[derive(Clone, Copy, Debug)]
pub struct Upstreams {
    /// Echoes bytes until EOF (many connections; tokio).
    pub echo: SocketAddr,
    /// Echo for the latency test: one thread per connection, blocking.
    pub echo_blocking: SocketAddr,
    /// `U` + u64 length, then that many bytes → replies the count; `D` + u64 length → sends
    /// that many bytes. Lengths up front, so proxies that mishandle half-close still work.
    pub bulk: SocketAddr,
    /// Minimal HTTP/1.1 keep-alive origin.
    pub http: SocketAddr,
    /// Reads to EOF, then answers `got N` and closes.
    pub half_a: SocketAddr,
    /// Sends `banner`, shuts down its write half, then reads to EOF (reported on a channel).
    pub half_b: SocketAddr,
}

/// What `half_b` received after its own FIN, per connection.
pub type HalfBReports = mpsc::Receiver<Vec<u8>>;

pub fn start() -> io::Result<(Upstreams, HalfBReports)> {
    let (tx, rx) = mpsc::channel();
    let (echo, http) = tokio_echo_and_http()?;
    let ups = Upstreams {
        echo,
        echo_blocking: serve_blocking(|mut s| {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        })?,
        bulk: serve_blocking(bulk)?,
        http,
        half_a: serve_blocking(|mut s| {
            let mut got = Vec::new();
            if s.read_to_end(&mut got).is_ok() {
                let _ = s.write_all(format!("got {}", got.len()).as_bytes());
            }
        })?,
        half_b: serve_blocking(move |mut s| {
            let _ = s.write_all(b"banner");
            let _ = s.shutdown(Shutdown::Write);
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            let _ = tx.send(got);
        })?,
    };
    Ok((ups, rx))
}

fn serve_blocking(handler: impl Fn(TcpStream) + Send + Sync + Clone + 'static) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let _ = s.set_nodelay(true);
            let h = handler.clone();
            thread::spawn(move || h(s));
        }
    });
    Ok(addr)
}

fn bulk(mut s: TcpStream) {
    let mut cmd = [0u8; 1];
    if s.read_exact(&mut cmd).is_err() {
        return;
    }
    let mut buf = vec![0u8; 256 * 1024];
    match cmd[0] {
        b'U' => {
            let mut len = [0u8; 8];
            if s.read_exact(&mut len).is_err() {
                return;
            }
            let want = u64::from_be_bytes(len);
            let mut total = 0u64;
            while total < want {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
            let _ = s.write_all(&total.to_be_bytes());
        }
        b'D' => {
            let mut len = [0u8; 8];
            if s.read_exact(&mut len).is_err() {
                return;
            }
            let mut left = u64::from_be_bytes(len);
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
                left -= n as u64;
            }
            let _ = s.shutdown(Shutdown::Write);
            let _ = s.read(&mut cmd);
        }
        _ => {}
    }
}

/// The echo server and HTTP origin share one two-thread runtime on their own threads.
fn tokio_echo_and_http() -> io::Result<(SocketAddr, SocketAddr)> {
    let echo = TcpListener::bind("127.0.0.1:0")?;
    let http = TcpListener::bind("127.0.0.1:0")?;
    let (ea, ha) = (echo.local_addr()?, http.local_addr()?);
    echo.set_nonblocking(true)?;
    http.set_nonblocking(true)?;
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let echo = tokio::net::TcpListener::from_std(echo).expect("echo listener");
            let http = tokio::net::TcpListener::from_std(http).expect("http listener");
            tokio::spawn(async move {
                while let Ok((s, _)) = http.accept().await {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(http_conn(s));
                }
            });
            while let Ok((mut s, _)) = echo.accept().await {
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
    });
    Ok((ea, ha))
}

const HTTP_REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nhello, world\n";

/// Answers every request head (GET, no body) with a fixed 13-byte response, keep-alive.
async fn http_conn(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    loop {
        match s.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        let mut start = 0;
        let mut replies = 0;
        while let Some(end) = buf[start..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            start += end + 4;
            replies += 1;
        }
        for _ in 0..replies {
            if s.write_all(HTTP_REPLY).await.is_err() {
                return;
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == buf.len() {
            return; // a head larger than 16 KiB: not ours
        }
    }
}
