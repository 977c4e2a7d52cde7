//! The upstream's answer on the relay stage: its head made into the client's (hop-by-hop
//! fields out, `Via` in), its body's framing decided by RFC 9112 §6.3, and the body passed
//! on byte for byte, stopping exactly at its end.

use std::mem::MaybeUninit;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::chunked::ChunkedEnd;
use crate::conn::head::MAX_FIELDS;
use crate::conn::hop;
use crate::respond::{BadResponse, Refusal};
use crate::stats::Stats;

/// Largest response head taken from an upstream (hyper's client reads up to ~400 KiB; no
/// real server sends a head near this).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Bytes read from an upstream at a time while relaying a body.
const READ_SIZE: usize = 16 * 1024;

/// Why an exchange ended without a full answer.
pub(super) enum Failed {
    /// Nothing was sent to the client yet: it gets this refusal.
    Refused(Refusal),
    /// The response was cut off, or the client left: the connection is closed.
    Broken,
}

impl From<Refusal> for Failed {
    fn from(r: Refusal) -> Self {
        Failed::Refused(r)
    }
}

/// A complete response head.
pub(super) enum Head {
    /// A 1xx answer of this many bytes, dropped (as hyper's client does); the final one
    /// follows.
    Informational(usize),
    Final(Answer),
}

/// A final response head, ready for the client.
pub(super) struct Answer {
    /// Length of the upstream's head; the body starts after it.
    pub(super) head_len: usize,
    /// The client's head, without its final CRLF.
    pub(super) head: Vec<u8>,
    pub(super) framing: Framing,
    /// Whether the upstream connection may serve another request after this response.
    pub(super) upstream_keeps: bool,
}

/// How a response body is framed (RFC 9112 §6.3).
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked(ChunkedEnd),
    /// Until the upstream closes; the client connection closes after it.
    Close,
}

/// Parses what an upstream has sent so far; `None` while the head is incomplete. A final
/// head comes back made into the client's: one parse serves both the wait and the answer.
pub(super) fn parse(buf: &[u8], is_head: bool) -> Result<Option<Head>, BadResponse> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, &mut fields);
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
            return Err(BadResponse::TooLarge(MAX_RESPONSE_HEAD))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(BadResponse::Malformed(e)),
    };
    let code = res.code.unwrap_or(0);
    match code {
        101 => return Err(BadResponse::UnaskedSwitch),
        100..=199 => return Ok(Some(Head::Informational(head_len))),
        _ => {}
    }
    let mut upstream_keeps = res.version == Some(1);
    let mut named: Vec<&[u8]> = Vec::new();
    let mut length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    for f in res.headers.iter() {
        if f.name.eq_ignore_ascii_case("connection") {
            upstream_keeps &= !hop::connection_tokens(f.value, &mut named);
        } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding counts; several fields are one list.
            transfer_encoding = Some(f.value);
        } else if f.name.eq_ignore_ascii_case("content-length") {
            for v in f.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                let n = parse_length(v).ok_or(BadResponse::InvalidLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(BadResponse::ConflictingLengths);
                }
                length = Some(n);
            }
        }
    }
    let framing = if is_head || code == 204 || code == 304 {
        Framing::None
    } else if let Some(te) = transfer_encoding {
        // With Transfer-Encoding, a Content-Length is dropped and the connection is not
        // reused (RFC 9112 §6.3, point 3).
        if length.is_some() {
            upstream_keeps = false;
        }
        let last = te.rsplit(|&b| b == b',').next().map(<[u8]>::trim_ascii).unwrap_or_default();
        if last.eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked(ChunkedEnd::default())
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    if matches!(framing, Framing::Close) {
        upstream_keeps = false;
    }
    let mut out = Vec::with_capacity(head_len + 64);
    out.extend_from_slice(b"HTTP/1.1 ");
    // httparse takes exactly three digits.
    out.extend_from_slice(&[b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8]);
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let drop_length = transfer_encoding.is_some() && !matches!(framing, Framing::None);
    for f in res.headers.iter() {
        let name = f.name.as_bytes();
        if !hop::passes(name, &named) || drop_length && f.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        hop::field(&mut out, name, f.value);
    }
    hop::via(&mut out);
    Ok(Some(Head::Final(Answer { head_len, head: out, framing, upstream_keeps })))
}

/// A Content-Length value: digits only (hyper's rule), no overflow.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The body's way from the upstream to the client.
pub(super) struct Body<'a> {
    pub(super) upstream: &'a mut TcpStream,
    pub(super) client: &'a mut TcpStream,
    pub(super) idle: Duration,
    /// Bytes passed on (head and body) are counted in `bytes_down`.
    pub(super) stats: &'a Stats,
}

impl Body<'_> {
    /// Writes `head` and the body (of which `first` was read with the head). `Ok(true)`
    /// when the body ended exactly at its framing's end with nothing behind it, so the
    /// upstream connection can be reused.
    pub(super) async fn relay(mut self, head: Vec<u8>, first: &[u8], framing: Framing) -> Result<bool, Failed> {
        let mut sent = 0;
        let result = self.relay_counted(head, first, framing, &mut sent).await;
        self.stats.bytes_down.fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
        result
    }

    async fn relay_counted(
        &mut self,
        mut head: Vec<u8>,
        first: &[u8],
        framing: Framing,
        sent: &mut u64,
    ) -> Result<bool, Failed> {
        let Body { upstream, client, idle, .. } = self;
        let idle = *idle;
        match framing {
            Framing::None => {
                write(client, &head, idle, sent).await?;
                Ok(first.is_empty())
            }
            Framing::Length(len) => {
                let now = first.len().min(usize::try_from(len).unwrap_or(usize::MAX));
                head.extend_from_slice(&first[..now]);
                write(client, &head, idle, sent).await?;
                let mut left = len - now as u64;
                let extra = first.len() > now;
                let mut buf = Vec::new();
                while left > 0 {
                    let got = read(upstream, &mut buf, idle).await?;
                    if got.is_empty() {
                        return Err(Failed::Broken); // cut off: the client sees a short body and a close
                    }
                    let take = got.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    write(client, &got[..take], idle, sent).await?;
                    left -= take as u64;
                    if take < got.len() {
                        return Ok(false);
                    }
                }
                Ok(!extra)
            }
            Framing::Chunked(mut end) => {
                let mut pending = first;
                let mut buf = Vec::new();
                loop {
                    match end.feed(pending).map_err(|_| Failed::Broken)? {
                        Some(n) => {
                            head.extend_from_slice(&pending[..n]);
                            write(client, &head, idle, sent).await?;
                            return Ok(n == pending.len());
                        }
                        None => {
                            head.extend_from_slice(pending);
                            write(client, &head, idle, sent).await?;
                            head.clear();
                        }
                    }
                    pending = read(upstream, &mut buf, idle).await?;
                    if pending.is_empty() && !end.is_done() {
                        return Err(Failed::Broken);
                    }
                }
            }
            Framing::Close => {
                head.extend_from_slice(first);
                write(client, &head, idle, sent).await?;
                let mut buf = Vec::new();
                loop {
                    let got = read(upstream, &mut buf, idle).await?;
                    if got.is_empty() {
                        let _ = client.shutdown().await;
                        return Ok(false);
                    }
                    write(client, got, idle, sent).await?;
                }
            }
        }
    }
}

/// Reads the next bytes of a body (empty at its end), within the idle timeout.
async fn read<'b>(upstream: &mut TcpStream, buf: &'b mut Vec<u8>, idle: Duration) -> Result<&'b [u8], Failed> {
    buf.clear();
    buf.reserve(READ_SIZE);
    match tokio::time::timeout(idle, upstream.read_buf(buf)).await {
        Ok(Ok(_)) => Ok(&buf[..]),
        Ok(Err(_)) | Err(_) => Err(Failed::Broken),
    }
}

/// Writes to the client within the idle timeout (a client that stops reading is dropped).
async fn write(client: &mut TcpStream, bytes: &[u8], idle: Duration, sent: &mut u64) -> Result<(), Failed> {
    match tokio::time::timeout(idle, client.write_all(bytes)).await {
        Ok(Ok(())) => {
            *sent += bytes.len() as u64;
            Ok(())
        }
        Ok(Err(_)) | Err(_) => Err(Failed::Broken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(head: &str, is_head: bool) -> Result<(String, Framing, bool), BadResponse> {
        match parse(head.as_bytes(), is_head)? {
            Some(Head::Final(a)) => Ok((String::from_utf8(a.head).unwrap(), a.framing, a.upstream_keeps)),
            Some(Head::Informational(_)) => panic!("1xx"),
            None => panic!("incomplete"),
        }
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let (head, framing, keeps) =
            response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: 5\r\nX-A: 1\r\n\r\n", false).unwrap();
        assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nvia: 1.1 guardnest\r\n");
        assert!(matches!(framing, Framing::Length(5)) && keeps);
        // HEAD, 204 and 304 have no body whatever their fields say.
        assert!(matches!(response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap().1, Framing::None));
        assert!(matches!(response("HTTP/1.1 204 No Content\r\n\r\n", false).unwrap().1, Framing::None));
        assert!(matches!(
            response("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false).unwrap().1,
            Framing::None
        ));
        // Chunked wins over Content-Length, which is dropped; the connection is not reused.
        let (head, framing, keeps) =
            response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false)
                .unwrap();
        assert!(!head.contains("Content-Length") && head.contains("Transfer-Encoding: gzip, chunked"));
        assert!(matches!(framing, Framing::Chunked(_)) && !keeps);
        // Neither: the body runs to the close.
        let (_, framing, keeps) = response("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert!(matches!(framing, Framing::Close) && !keeps);
        let (_, framing, keeps) = response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).unwrap();
        assert!(matches!(framing, Framing::Close) && !keeps);
        // The upstream's own close, and HTTP/1.0, end its reuse.
        assert!(!response("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false).unwrap().2);
        assert!(!response("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).unwrap().2);
        // Equal repeated lengths are one; others are refused.
        assert!(matches!(
            response("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n", false).unwrap().1,
            Framing::Length(3)
        ));
        for bad in [
            "Content-Length: 3\r\nContent-Length: 4",
            "Content-Length: +3",
            "Content-Length: 3x",
            "Content-Length: 99999999999999999999",
        ] {
            assert!(response(&format!("HTTP/1.1 200 OK\r\n{bad}\r\n\r\n"), false).is_err(), "{bad}");
        }
    }

    #[test]
    fn informational_incomplete_and_oversized_heads() {
        let early = b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1";
        assert!(matches!(parse(early, false), Ok(Some(Head::Informational(n))) if n == early.len() - 8));
        assert!(parse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false).is_err());
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\nContent-Le", false), Ok(None)));
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.resize(MAX_RESPONSE_HEAD, b'a');
        assert!(parse(&big, false).is_err(), "a head not ended within the limit");
    }
}
