//! PROXY protocol stage (opt-in, `proxy.proxy_protocol`): behind a load balancer such as
//! HAProxy, every connection starts with a v1 (text) or v2 (binary) header naming the real
//! client, so the access check and the logs see the client rather than the balancer.
//!
//! The header is framed by hand so that exactly its bytes are consumed and the socket stays
//! a plain `TcpStream` for the tunnel; the bytes are then parsed by the `ppp` crate.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// v1 headers are at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// Longest v2 header accepted (addresses plus TLVs); HAProxy sends well under this.
const V2_MAX: usize = 16 + 1024;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The connection failed or closed before a whole header arrived.
    #[error("reading the PROXY protocol header")]
    Io(#[from] std::io::Error),
    /// The connection does not start with a PROXY protocol header.
    #[error("no PROXY protocol header (proxy.proxy_protocol is on)")]
    Missing,
    /// The header is malformed or too long.
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(String),
}

/// Reads exactly one header from `stream`. Returns the client address it carries, or `None`
/// for a `LOCAL`/`UNKNOWN` header (a health check: the TCP peer is the client).
pub async fn read_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, HeaderError> {
    let mut head = vec![0u8; 8];
    stream.read_exact(&mut head).await?;
    if head[..] == V2_SIGNATURE[..8] {
        head.resize(16, 0);
        stream.read_exact(&mut head[8..]).await?;
        let len = u16::from_be_bytes([head[14], head[15]]) as usize;
        if 16 + len > V2_MAX {
            return Err(HeaderError::Invalid(format!("v2 header of {} bytes is too long", 16 + len)));
        }
        head.resize(16 + len, 0);
        stream.read_exact(&mut head[16..]).await?;
    } else if head.starts_with(b"PROXY ") {
        read_v1_rest(stream, &mut head).await?;
    } else {
        return Err(HeaderError::Missing);
    }
    parse(&head)
}

/// Reads up to and including the CRLF: what is already buffered in one read when it holds
/// the whole line (the usual case), else a byte at a time so nothing past it is consumed.
async fn read_v1_rest(stream: &mut TcpStream, head: &mut Vec<u8>) -> Result<(), HeaderError> {
    let mut peeked = [0u8; V1_MAX];
    let n = stream.peek(&mut peeked[..V1_MAX - head.len()]).await?;
    if let Some(pos) = peeked[..n].iter().position(|&b| b == b'\n') {
        let start = head.len();
        head.resize(start + pos + 1, 0);
        stream.read_exact(&mut head[start..]).await?;
        return Ok(());
    }
    while !head.ends_with(b"\n") {
        if head.len() >= V1_MAX {
            return Err(HeaderError::Invalid("v1 header longer than 107 bytes".into()));
        }
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    Ok(())
}

/// Parses one complete header (v1 or v2) into the client address it names.
pub fn parse(header: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::{v1, v2, HeaderResult};
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => {
            if h.header.len() != header.len() {
                return Err(HeaderError::Invalid("bytes after the v1 header".into()));
            }
            Ok(match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            })
        }
        HeaderResult::V2(Ok(h)) => {
            if h.len() != header.len() {
                return Err(HeaderError::Invalid("bytes after the v2 header".into()));
            }
            if h.command == v2::Command::Local {
                return Ok(None);
            }
            match h.addresses {
                v2::Addresses::IPv4(a) => Ok(Some(SocketAddr::from((a.source_address, a.source_port)))),
                v2::Addresses::IPv6(a) => Ok(Some(SocketAddr::from((a.source_address, a.source_port)))),
                v2::Addresses::Unspecified => Ok(None),
                v2::Addresses::Unix(_) => Err(HeaderError::Invalid("a UNIX socket client has no address".into())),
            }
        }
        HeaderResult::V1(Err(e)) => Err(HeaderError::Invalid(format!("v1: {e}"))),
        HeaderResult::V2(Err(e)) => Err(HeaderError::Invalid(format!("v2: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2() {
        let a = parse(b"PROXY TCP4 192.0.2.7 127.0.0.1 51000 3128\r\n").unwrap();
        assert_eq!(a, Some("192.0.2.7:51000".parse().unwrap()));
        let a = parse(b"PROXY TCP6 2001:db8::1 ::1 51000 3128\r\n").unwrap();
        assert_eq!(a, Some("[2001:db8::1]:51000".parse().unwrap()));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), None);
        assert!(parse(b"PROXY TCP4 192.0.2.7 127.0.0.1 51000\r\n").is_err());
        assert!(parse(b"PROXY TCP4 192.0.2.7 127.0.0.1 51000 3128\r\nGET").is_err());

        let src: SocketAddr = "198.51.100.9:4000".parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:3128".parse().unwrap();
        let v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (src, dst),
        )
        .build()
        .unwrap();
        assert_eq!(parse(&v2).unwrap(), Some(src));
        let local = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(parse(&local).unwrap(), None);
        assert!(parse(&v2[..v2.len() - 1]).is_err());
    }
}
