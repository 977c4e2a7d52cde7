//! Reaching an upstream through a target: directly, or with CONNECT through its proxy.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::Target;

/// A blocking stream to `upstream`, through the target's proxy if any.
pub fn open(t: &Target, upstream: SocketAddr) -> io::Result<TcpStream> {
    let Some(proxy) = t.proxy else {
        let s = TcpStream::connect(upstream)?;
        s.set_nodelay(true)?;
        return Ok(s);
    };
    let mut s = TcpStream::connect(proxy)?;
    s.set_nodelay(true)?;
    write!(s, "CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\n\r\n")?;
    let head = read_head_blocking(&mut s)?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(io::Error::other(format!("CONNECT refused: {}", head.lines().next().unwrap_or(""))));
    }
    Ok(s)
}

fn read_head_blocking(s: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(128);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

pub async fn open_async(t: &Target, upstream: SocketAddr) -> io::Result<tokio::net::TcpStream> {
    let Some(proxy) = t.proxy else {
        let s = tokio::net::TcpStream::connect(upstream).await?;
        s.set_nodelay(true)?;
        return Ok(s);
    };
    let mut s = tokio::net::TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    s.write_all(format!("CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\n\r\n").as_bytes()).await?;
    let head = read_head_async(&mut s).await?;
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        return Err(io::Error::other("CONNECT refused"));
    }
    Ok(s)
}

/// Reads one response head; CONNECT answers carry nothing after it we could over-read.
pub async fn read_head_async(s: &mut tokio::net::TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    loop {
        let n = s.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let take = match buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            Some(p) => p + 4,
            None => n,
        };
        s.read_exact(&mut buf[..take]).await?;
        head.extend_from_slice(&buf[..take]);
        if head.ends_with(b"\r\n\r\n") {
            return Ok(head);
        }
    }
}
