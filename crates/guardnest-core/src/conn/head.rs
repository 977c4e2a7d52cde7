//! First-head stage: a connection's first request head is read here, before hyper. A
//! CONNECT head (how nearly every connection to a proxy starts) is parsed with httparse, the
//! parser hyper itself uses, under the same limits, so the CONNECT stage answers it without
//! setting up hyper's per-connection state (its memory per waiting client is in
//! BENCHMARKS.md). Any other head is checked with the same parse and goes to hyper's engine
//! ([`crate::conn::http`]) together with the bytes already read; one that cannot be read is
//! refused here with its reason (400, 431), as a CONNECT's is. Later heads on a connection
//! hyper serves are hyper's to read and refuse.

use std::io;
use std::mem::{take, MaybeUninit};
use std::ops::Range;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::conn::respond::{BadRequest, Refusal};
use crate::domain::{BadTarget, Target};

/// How every CONNECT head starts.
const CONNECT: &[u8] = b"CONNECT ";

/// Header fields accepted in one head: hyper's default, so both paths take the same heads.
pub(crate) const MAX_FIELDS: usize = 100;

/// Bytes read from the socket at a time while a head is incomplete. On the stack, and only
/// in a synchronous section, so a connection waiting for its head holds no buffer.
const READ_CHUNK: usize = 2048;

/// What a connection's first bytes turned out to be.
pub(crate) enum Head {
    /// A complete CONNECT head, and what the client sent after it.
    Connect(ConnectHead),
    /// Another complete, readable head: hyper serves the connection, starting with these
    /// bytes.
    Other(Vec<u8>),
    /// A head that cannot be served (400, or 431 when too large); the connection closes
    /// after the answer.
    Bad(Refusal),
    /// The client left, or sent nothing in time.
    Closed,
}

/// A parsed CONNECT head.
pub(crate) struct ConnectHead {
    /// Where it asks to go, or why that is not a `host:port`.
    pub(crate) target: Result<Target, BadTarget>,
    /// It announces a body ([`announces_body`]): refused, in its turn.
    pub(crate) announces_body: bool,
    /// Everything read: the head, then whatever the client sent behind it.
    buf: Vec<u8>,
    head_len: usize,
    proxy_authorization: Option<Range<usize>>,
}

impl ConnectHead {
    /// The `Proxy-Authorization` value, if the client sent one.
    pub(crate) fn proxy_authorization(&self) -> Option<&[u8]> {
        self.proxy_authorization.clone().map(|r| &self.buf[r])
    }

    /// The bytes the client sent behind the head (a TLS hello, or a next request), kept in
    /// the buffer they arrived in.
    pub(crate) fn into_rest(mut self) -> Vec<u8> {
        self.buf.drain(..self.head_len);
        self.buf
    }
}

/// Reads until `buf` (bytes already read, possibly none) holds a complete head; the
/// returned head takes the bytes. The caller bounds the wait; if it stops waiting, what was
/// read stays in `buf`.
pub(crate) async fn read(stream: &TcpStream, buf: &mut Vec<u8>, max_head: usize) -> Head {
    loop {
        if !buf.is_empty() {
            let parsed = match buf.starts_with(CONNECT) || CONNECT.starts_with(buf) {
                true => parse(buf).map(|p| p.map(Some)),
                false => check_other(buf).map(|done| done.then_some(None)),
            };
            match parsed {
                Ok(Some(Some(Parsed { head_len, target, announces_body, proxy_authorization }))) => {
                    let buf = take(buf);
                    return Head::Connect(ConnectHead { target, announces_body, buf, head_len, proxy_authorization });
                }
                Ok(Some(None)) => return Head::Other(take(buf)),
                Ok(None) if buf.len() >= max_head => {
                    return Head::Bad(Refusal::HeadTooLarge(format!("more than {max_head} bytes")))
                }
                Ok(None) => {}
                Err(refusal) => return Head::Bad(refusal),
            }
        }
        if stream.readable().await.is_err() {
            return Head::Closed;
        }
        let mut chunk = [0u8; READ_CHUNK];
        let want = READ_CHUNK.min(max_head.saturating_sub(buf.len()).max(1));
        match read_draining(stream, &mut chunk[..want]) {
            Ok(0) => return Head::Closed,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Head::Closed,
        }
    }
}

/// `try_read`, except that a read shorter than `chunk` also clears tokio's readiness, as
/// tokio's own `poll_read` does where the OS reports readiness by edge: the socket is
/// drained, and new bytes raise a new event. Without this, the next wait (the tunnel's
/// first read) starts with a read that only says "would block": one wasted system call.
fn read_draining(stream: &TcpStream, chunk: &mut [u8]) -> io::Result<usize> {
    let want = chunk.len();
    let mut got = 0;
    let result = stream.try_io(Interest::READABLE, || {
        got = stream.try_read(chunk)?;
        if cfg!(not(windows)) && got > 0 && got < want {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(got)
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

/// A CONNECT head's parts.
pub(crate) struct Parsed {
    pub(crate) head_len: usize,
    pub(crate) target: Result<Target, BadTarget>,
    pub(crate) announces_body: bool,
    pub(crate) proxy_authorization: Option<Range<usize>>,
}

/// How httparse's verdict on a head becomes ours: complete (its length), incomplete, or
/// refused with the reason a client is told.
fn verdict(parsed: httparse::Result<usize>) -> Result<Option<usize>, Refusal> {
    match parsed {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            Err(Refusal::HeadTooLarge(format!("more than {MAX_FIELDS} header fields")))
        }
        Err(e) => Err(Refusal::BadRequest(BadRequest::Malformed(e))),
    }
}

/// Parses a complete CONNECT head; `None` while it is incomplete. A head that cannot be
/// parsed at all is refused here; what it asks is decided later, in the one order of
/// decisions ([`crate::conn::gate::decide`]).
pub(crate) fn parse(buf: &[u8]) -> Result<Option<Parsed>, Refusal> {
    // Left uninitialised: filling 100 fields per head cost more than the parse.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let Some(head_len) = verdict(req.parse_with_uninit_headers(buf, &mut fields))? else { return Ok(None) };
    let mut proxy_authorization = None;
    let mut body = false;
    for field in req.headers.iter() {
        body |= announces_body(field.name, field.value);
        if field.name.eq_ignore_ascii_case("proxy-authorization") {
            let start = field.value.as_ptr() as usize - buf.as_ptr() as usize;
            proxy_authorization = Some(start..start + field.value.len());
        }
    }
    let target = Target::of_connect(req.path.unwrap_or(""));
    Ok(Some(Parsed { head_len, target, announces_body: body, proxy_authorization }))
}

/// Whether a head that is not a CONNECT is complete (`Ok(false)`: not yet), by the same
/// parse and limits; a head that cannot be read is refused with its reason.
pub(crate) fn check_other(buf: &[u8]) -> Result<bool, Refusal> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    verdict(req.parse_with_uninit_headers(buf, &mut fields)).map(|done| done.is_some())
}

/// Whether a header field of a CONNECT announces a body ([`BadRequest::ConnectBody`]: its
/// bytes would be read as tunnel bytes); both the first-head path and hyper's apply this
/// one rule.
pub(crate) fn announces_body(name: &str, value: &[u8]) -> bool {
    name.eq_ignore_ascii_case("transfer-encoding") || name.eq_ignore_ascii_case("content-length") && value != b"0"
}

#[cfg(test)]
mod tests {
    use super::*;

    type Three = (usize, Result<Target, BadTarget>, Option<Range<usize>>);

    fn parsed(head: &str) -> Result<Option<Three>, Refusal> {
        parse(head.as_bytes()).map(|p| p.map(|p| (p.head_len, p.target, p.proxy_authorization)))
    }

    #[test]
    fn connect_heads() {
        let (len, target, auth) =
            parsed("CONNECT a.test:443 HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\n\r\nrest").unwrap().unwrap();
        assert_eq!(len, "CONNECT a.test:443 HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\n\r\n".len());
        assert_eq!(target.unwrap().to_string(), "a.test:443");
        let head = ConnectHead {
            target: Target::of_connect("a.test:443"),
            announces_body: false,
            buf: b"CONNECT a.test:443 HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\n\r\nrest".to_vec(),
            head_len: len,
            proxy_authorization: auth,
        };
        assert_eq!(head.proxy_authorization(), Some(&b"Basic eA=="[..]));
        assert_eq!(head.into_rest(), b"rest");
        // Incomplete, then refused forms.
        assert!(parsed("CONNECT a.test:443 HTTP/1.1\r\nHost: a").unwrap().is_none());
        assert!(matches!(parsed("CONNECT a.test:443 HTTP/1.1\r\nBad Field\r\n\r\n"), Err(Refusal::BadRequest(_))));
        assert!(matches!(parsed("CONNECT a b HTTP/1.1\r\n\r\n"), Err(Refusal::BadRequest(_))));
        for target in ["/path", "http://a.test:443/", "a.test:443/x", "a.test:443?q", "", "a.test"] {
            let head = format!("CONNECT {target} HTTP/1.1\r\n\r\n");
            match parsed(&head) {
                Ok(Some((_, Err(_), _))) | Err(Refusal::BadRequest(_)) => {}
                _ => panic!("{target:?} accepted"),
            }
        }
        assert_eq!(
            parsed("CONNECT [::1]:8443 HTTP/1.0\r\n\r\n").unwrap().unwrap().1.unwrap(),
            Target::parse_authority("[::1]:8443").unwrap()
        );
        // A body is noted, and refused in its turn (after access), not here.
        for (fields, body) in
            [("Content-Length: 5", true), ("Transfer-Encoding: chunked", true), ("Content-Length: 0", false)]
        {
            let head = format!("CONNECT a.test:443 HTTP/1.1\r\n{fields}\r\n\r\n");
            assert_eq!(parse(head.as_bytes()).unwrap().unwrap().announces_body, body, "{fields}");
        }
    }

    #[test]
    fn other_heads_are_checked_by_the_same_parse() {
        assert_eq!(check_other(b"GET http://a.test/ HTTP/1.1\r\nHost: a").ok(), Some(false));
        assert_eq!(check_other(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\nbody").ok(), Some(true));
        assert!(matches!(
            check_other(b"GET http://a.test/ HTTP/1.1\r\nBad Field\r\n\r\n"),
            Err(Refusal::BadRequest(_))
        ));
        let many: String = (0..=MAX_FIELDS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let head = format!("GET http://a.test/ HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(check_other(head.as_bytes()), Err(Refusal::HeadTooLarge(_))));
    }
}
