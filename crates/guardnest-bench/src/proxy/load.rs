//! The load: client loops on one current-thread runtime (the harness keeps to one core),
//! each timing its operations, and the rate, latency and target CPU they add up to.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{percentile, sorted, with_cpu, Target};
use crate::through::{open_async, read_head_async};

pub(super) struct Rate {
    pub(super) per_sec: f64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    pub(super) cpu_us_per_op: Option<f64>,
    pub(super) errors: usize,
}

/// Runs `concurrency` copies of `op` in a loop for `duration` on a current-thread runtime
/// (the harness keeps to one core).
pub(super) fn rate<F, Fut>(t: &Target, concurrency: usize, duration: Duration, op: F) -> Rate
where
    F: Fn(Target) -> Fut + 'static,
    Fut: std::future::Future<Output = io::Result<()>> + 'static,
{
    let op = std::rc::Rc::new(op);
    let deadline = Instant::now() + duration;
    let clients = (0..concurrency).map(|_| {
        let (t, op) = (t.clone(), op.clone());
        async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let s = Instant::now();
                match op(t.clone()).await {
                    Ok(()) => lat.push(s.elapsed().as_secs_f64() * 1e6),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }
    });
    run_clients(t, duration, clients.collect())
}

/// Runs client loops concurrently on one thread; each returns its latencies (µs) and
/// error count. Measures the target's CPU over the run.
pub(super) fn run_clients<Fut>(t: &Target, duration: Duration, clients: Vec<Fut>) -> Rate
where
    Fut: std::future::Future<Output = (Vec<f64>, usize)> + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let ((lat, errors), cpu) = with_cpu(t, || {
        let local = tokio::task::LocalSet::new();
        let handles: Vec<_> = clients.into_iter().map(|f| local.spawn_local(f)).collect();
        rt.block_on(local.run_until(async {
            let mut all = Vec::new();
            let mut errors = 0;
            for h in handles {
                if let Ok((l, e)) = h.await {
                    all.extend(l);
                    errors += e;
                }
            }
            (all, errors)
        }))
    });
    let n = lat.len();
    let lat = sorted(lat);
    Rate {
        per_sec: n as f64 / duration.as_secs_f64(),
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        cpu_us_per_op: cpu.map(|c| c * 1e6 / n.max(1) as f64),
        errors,
    }
}

pub(super) async fn tunnel_op(t: Target, echo: SocketAddr) -> io::Result<()> {
    let mut s = open_async(&t, echo).await?;
    let msg = [0x42u8; 32];
    s.write_all(&msg).await?;
    let mut back = [0u8; 32];
    s.read_exact(&mut back).await?;
    Ok(())
}

pub(super) async fn blocked_op(t: Target) -> io::Result<()> {
    let proxy = t.proxy.ok_or_else(|| io::Error::other("no proxy"))?;
    let mut s = tokio::net::TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    s.write_all(b"CONNECT blocked.test:443 HTTP/1.1\r\nHost: blocked.test:443\r\n\r\n").await?;
    let head = read_head_async(&mut s).await?;
    if !head.starts_with(b"HTTP/1.1 403") && !head.starts_with(b"HTTP/1.0 403") {
        return Err(io::Error::other("not 403"));
    }
    Ok(())
}

/// One connection doing keep-alive GETs until the deadline (reconnecting when the proxy
/// closes, as tinyproxy does after each response).
pub(super) async fn http_client(t: Target, origin: SocketAddr, deadline: Instant) -> (Vec<f64>, usize) {
    let mut lat = Vec::new();
    let mut errors = 0;
    let (target, req) = match t.proxy {
        Some(p) => (p, format!("GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\n\r\n")),
        None => (origin, format!("GET / HTTP/1.1\r\nHost: {origin}\r\n\r\n")),
    };
    let mut conn: Option<tokio::net::TcpStream> = None;
    let mut buf = vec![0u8; 8192];
    while Instant::now() < deadline {
        let start = Instant::now();
        if conn.is_none() {
            match tokio::net::TcpStream::connect(target).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    conn = Some(s);
                }
                Err(_) => {
                    errors += 1;
                    continue;
                }
            }
        }
        let s = conn.as_mut().expect("connected above");
        let ok = async {
            s.write_all(req.as_bytes()).await?;
            let mut filled = 0;
            loop {
                let n = s.read(&mut buf[filled..]).await?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                filled += n;
                if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while filled < end + 4 + len {
                        let n = s.read(&mut buf[filled..]).await?;
                        if n == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        filled += n;
                    }
                    let close = head.contains("connection: close") || head.starts_with("http/1.0");
                    return Ok(close);
                }
            }
        }
        .await;
        match ok {
            Ok(close) => {
                lat.push(start.elapsed().as_secs_f64() * 1e6);
                if close {
                    conn = None;
                }
            }
            Err(_) => {
                errors += 1;
                conn = None;
            }
        }
    }
    (lat, errors)
}

pub(super) fn http_rate(t: &Target, origin: SocketAddr, connections: usize, duration: Duration) -> Rate {
    let deadline = Instant::now() + duration;
    run_clients(t, duration, (0..connections).map(|_| http_client(t.clone(), origin, deadline)).collect())
}
