//! A deliberately minimal proxy, for benchmarks only: the machine's floor.
//!
//! It does the least a CONNECT and plain-HTTP proxy can do (one read for the head, a
//! connect, `200`, `copy_bidirectional`; keep-alive GETs with Content-Length bodies over one
//! upstream connection per client) and nothing a real proxy must: no limits, no timeouts,
//! no header hygiene, no chunked bodies, no request bodies, no name checks beyond one fixed
//! blocked name. Measured next to GuardNest in the same run, it shows how much of a figure
//! is the kernel's and the machine's rather than the proxy's. Never use it for traffic.
//!
//!   floor-proxy 127.0.0.1:13132

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The one name refused (as the anchors' configs do).
const BLOCKED: &str = "blocked.test";

fn main() -> io::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:13132".into());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(&listen).await?;
        loop {
            let Ok((client, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let _ = serve(client).await;
            });
        }
    })
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads until a whole head is in `buf[..*filled]`; `None` at EOF.
async fn read_head(s: &mut TcpStream, buf: &mut [u8], filled: &mut usize) -> io::Result<Option<usize>> {
    loop {
        if let Some(end) = head_end(&buf[..*filled]) {
            return Ok(Some(end));
        }
        if *filled == buf.len() {
            return Err(bad("head too large"));
        }
        let n = s.read(&mut buf[*filled..]).await?;
        if n == 0 {
            return Ok(None);
        }
        *filled += n;
    }
}

async fn serve(mut client: TcpStream) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut buf = vec![0u8; 8192];
    let mut filled = 0;
    let mut upstream: Option<(String, TcpStream)> = None;
    let mut answer = vec![0u8; 16384];
    loop {
        let Some(end) = read_head(&mut client, &mut buf, &mut filled).await? else { return Ok(()) };
        let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("head not UTF-8"))?;
        let (line, fields) = head.split_once("\r\n").ok_or_else(|| bad("no request line"))?;
        let mut words = line.split(' ');
        let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next()) else {
            return Err(bad("bad request line"));
        };
        if method == "CONNECT" {
            if target.split(':').next() == Some(BLOCKED) {
                client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await?;
                return Ok(());
            }
            let mut up = TcpStream::connect(target).await?;
            up.set_nodelay(true)?;
            client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await?;
            if filled > end {
                up.write_all(&buf[end..filled]).await?;
            }
            drop(buf);
            drop(answer);
            tokio::io::copy_bidirectional(&mut client, &mut up).await?;
            return Ok(());
        }
        let rest = target.strip_prefix("http://").ok_or_else(|| bad("not an http:// URL"))?;
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
        let request = format!("{method} {path} {version}\r\n{fields}");
        let up = match upstream.take() {
            Some((a, s)) if a == authority => s,
            _ => {
                let s = TcpStream::connect(&authority).await?;
                s.set_nodelay(true)?;
                s
            }
        };
        let mut up = up;
        up.write_all(request.as_bytes()).await?;
        buf.copy_within(end..filled, 0);
        filled -= end;

        // The answer: head, then exactly Content-Length bytes.
        let mut got = 0;
        let Some(answer_end) = read_head(&mut up, &mut answer, &mut got).await? else { return Ok(()) };
        let answer_head = std::str::from_utf8(&answer[..answer_end]).map_err(|_| bad("answer head not UTF-8"))?;
        let length: usize = answer_head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
            })
            .ok_or_else(|| bad("answer without Content-Length"))?;
        let mut left = (answer_end + length).saturating_sub(got);
        client.write_all(&answer[..got.min(answer_end + length)]).await?;
        while left > 0 {
            let n = up.read(&mut answer[..left.min(16384)]).await?;
            if n == 0 {
                return Ok(());
            }
            client.write_all(&answer[..n]).await?;
            left -= n;
        }
        upstream = Some((authority, up));
    }
}
