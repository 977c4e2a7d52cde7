//! First-head stage: a connection's heads are read here, before hyper, and every request
//! head the proxy parses itself is parsed here. A CONNECT head (how nearly every connection
//! to a proxy starts) and a simple GET or HEAD are parsed with httparse, the parser hyper
//! itself uses, under the same limits, so the CONNECT and relay stages can answer them
//! without setting up hyper's per-connection state. Anything else goes to hyper together
//! with the bytes already read ([`Rewind`]).

use std::io;
use std::mem::{take, MaybeUninit};
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::conn::hop;
use crate::domain::{BadTarget, Target};
use crate::idle::Deadline;
use crate::respond::{BadRequest, Refusal};

/// How every CONNECT head starts.
const CONNECT: &[u8] = b"CONNECT ";

/// How the heads the relay stage may serve start ([`parse_plain`] decides).
const PLAIN: [&[u8]; 2] = [b"GET ", b"HEAD "];

/// Header fields accepted in one head: hyper's default, so both paths take the same heads.
pub(crate) const MAX_FIELDS: usize = 100;

/// Bytes read from the socket at a time while a head is incomplete. On the stack, and only
/// in a synchronous section, so a connection waiting for its head holds no buffer.
const READ_CHUNK: usize = 2048;

/// What a connection's first bytes turned out to be.
pub(crate) enum Head {
    /// A complete CONNECT head, and what the client sent after it.
    Connect(ConnectHead),
    /// A complete GET or HEAD head for the relay stage, and what the client sent after it.
    Plain(PlainHead),
    /// Neither: hyper serves the connection, starting with these bytes.
    Other(Vec<u8>),
    /// A CONNECT head that cannot be served (400, or 431 when too large); the connection
    /// closes after the answer.
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

/// Reads until `buf` (bytes already read, possibly none) holds a CONNECT head or a head for
/// the relay stage, or is known to be hyper's; the returned head takes the bytes. The
/// caller bounds the wait; if it stops waiting, what was read stays in `buf`. With
/// `all_to_hyper` (tests: both engines run every suite) every head is hyper's.
pub(crate) async fn read(stream: &TcpStream, buf: &mut Vec<u8>, max_head: usize, all_to_hyper: bool) -> Head {
    loop {
        if !buf.is_empty() {
            if all_to_hyper {
                return Head::Other(take(buf));
            }
            match classify(buf) {
                Kind::Unknown => {}
                Kind::Other => return Head::Other(take(buf)),
                Kind::Connect => match parse(buf) {
                    Ok(Some(parsed)) => {
                        let Parsed { head_len, target, announces_body, proxy_authorization } = parsed;
                        let buf = take(buf);
                        return Head::Connect(ConnectHead {
                            target,
                            announces_body,
                            buf,
                            head_len,
                            proxy_authorization,
                        });
                    }
                    Ok(None) if buf.len() >= max_head => {
                        return Head::Bad(Refusal::HeadTooLarge(format!("more than {max_head} bytes")))
                    }
                    Ok(None) => {}
                    Err(refusal) => return Head::Bad(refusal),
                },
                Kind::Plain => match parse_plain(buf) {
                    Parse::Plain(meta) if meta.head_len() <= max_head => {
                        return Head::Plain(PlainHead::new(take(buf), meta))
                    }
                    // Too large, malformed, or not simple: hyper answers it as before.
                    Parse::Plain(_) | Parse::NotMine => return Head::Other(take(buf)),
                    Parse::Partial if buf.len() >= max_head => return Head::Other(take(buf)),
                    Parse::Partial => {}
                },
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
/// drained, and new bytes raise a new event. Without this, the next wait for a head (the
/// next request on a kept connection, or the tunnel's first read) starts with a read that
/// only says "would block": one wasted system call per request.
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

/// What a head is, from its first bytes.
enum Kind {
    Connect,
    Plain,
    Other,
    /// Too few bytes to tell.
    Unknown,
}

fn classify(buf: &[u8]) -> Kind {
    let starts = |prefix: &[u8]| {
        let n = buf.len().min(prefix.len());
        (buf[..n] == prefix[..n]).then_some(n == prefix.len())
    };
    let mut unknown = false;
    for (prefix, kind) in [(CONNECT, Kind::Connect), (PLAIN[0], Kind::Plain), (PLAIN[1], Kind::Plain)] {
        match starts(prefix) {
            Some(true) => return kind,
            Some(false) => unknown = true,
            None => {}
        }
    }
    if unknown {
        Kind::Unknown
    } else {
        Kind::Other
    }
}

/// A CONNECT head's parts.
pub(crate) struct Parsed {
    pub(crate) head_len: usize,
    pub(crate) target: Result<Target, BadTarget>,
    pub(crate) announces_body: bool,
    pub(crate) proxy_authorization: Option<Range<usize>>,
}

/// Parses a complete CONNECT head; `None` while it is incomplete. A head that cannot be
/// parsed at all is refused here; what it asks is decided later, in the one order of
/// decisions ([`crate::conn::gate::decide`]).
pub(crate) fn parse(buf: &[u8]) -> Result<Option<Parsed>, Refusal> {
    // Left uninitialised: filling 100 fields per head cost more than the parse.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::HeadTooLarge(format!("more than {MAX_FIELDS} header fields")))
        }
        Err(e) => return Err(Refusal::BadRequest(BadRequest::Malformed(e))),
    };
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

/// Whether a header field of a CONNECT announces a body ([`BadRequest::ConnectBody`]: its
/// bytes would be read as tunnel bytes); both the first-head path and hyper's apply this
/// one rule.
pub(crate) fn announces_body(name: &str, value: &[u8]) -> bool {
    name.eq_ignore_ascii_case("transfer-encoding") || name.eq_ignore_ascii_case("content-length") && value != b"0"
}

/// Request fields that take a request off the relay stage (bodies, upgrades, 100-continue).
const NOT_RELAYED: [&str; 4] = ["content-length", "transfer-encoding", "expect", "upgrade"];

/// A GET or HEAD head the relay stage serves, and what the client sent behind it.
pub(crate) struct PlainHead {
    buf: Vec<u8>,
    pub(crate) meta: Meta,
}

/// Where the parts of a [`PlainHead`] are in its buffer.
pub(crate) struct Meta {
    pub(crate) head_len: usize,
    pub(crate) is_head: bool,
    pub(crate) target: Range<usize>,
    /// The fields to pass on: not hop-by-hop, not named by `Connection`, not `Host`.
    pub(crate) fields: Vec<(Range<usize>, Range<usize>)>,
    pub(crate) proxy_authorization: Option<Range<usize>>,
    /// The client asked to close the connection after this request.
    pub(crate) close: bool,
}

/// What [`parse_plain`] made of a buffer that starts with `GET ` or `HEAD `.
pub(crate) enum Parse {
    /// The head is not complete yet.
    Partial,
    /// A complete head the relay stage serves.
    Plain(Meta),
    /// Anything else, malformed heads included: hyper serves (and refuses) it.
    NotMine,
}

impl Meta {
    /// The head's length in bytes.
    pub(crate) fn head_len(&self) -> usize {
        self.head_len
    }
}

impl PlainHead {
    pub(crate) fn new(buf: Vec<u8>, meta: Meta) -> Self {
        Self { buf, meta }
    }

    /// The bytes at `r` (a range of [`Meta`]).
    pub(crate) fn bytes(&self, r: &Range<usize>) -> &[u8] {
        &self.buf[r.clone()]
    }

    /// What the client sent behind the head.
    pub(crate) fn into_rest(mut self) -> Vec<u8> {
        self.buf.drain(..self.meta.head_len);
        self.buf
    }
}

/// Parses a request head for the relay stage; the caller has seen that `buf` starts with
/// `GET ` or `HEAD `.
pub(crate) fn parse_plain(buf: &[u8]) -> Parse {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::NotMine,
    };
    let is_head = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Parse::NotMine,
    };
    let (Some(1), Some(path)) = (req.version, req.path) else { return Parse::NotMine };
    if !path.starts_with("http://") {
        return Parse::NotMine;
    }
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    let mut close = false;
    let mut named: Vec<&[u8]> = Vec::new();
    for field in req.headers.iter() {
        if NOT_RELAYED.iter().any(|n| field.name.eq_ignore_ascii_case(n)) {
            return Parse::NotMine;
        }
        if field.name.eq_ignore_ascii_case("connection") {
            close |= hop::connection_tokens(field.value, &mut named);
        }
    }
    let mut meta = Meta {
        head_len,
        is_head,
        target: at(path.as_bytes()),
        fields: Vec::with_capacity(req.headers.len()),
        proxy_authorization: None,
        close,
    };
    for field in req.headers.iter() {
        let name = field.name.as_bytes();
        if field.name.eq_ignore_ascii_case("proxy-authorization") {
            meta.proxy_authorization = Some(at(field.value));
        }
        if !hop::passes(name, &named) || field.name.eq_ignore_ascii_case("host") {
            continue;
        }
        meta.fields.push((at(name), at(field.value)));
    }
    Parse::Plain(meta)
}

/// The client's socket with bytes already read from it in front, for hyper; a write that
/// waits `idle_timeout` for a client that stopped reading fails.
pub(crate) struct Rewind {
    pre: Vec<u8>,
    at: usize,
    io: TcpStream,
    write: Deadline,
}

impl Rewind {
    pub(crate) fn new(pre: Vec<u8>, io: TcpStream, idle: Duration) -> Rewind {
        Rewind { pre, at: 0, io, write: Deadline::new(idle) }
    }

    /// The socket, and what of the bytes in front was never read (nothing, once hyper has
    /// read a head).
    pub(crate) fn into_parts(mut self) -> (Vec<u8>, TcpStream) {
        self.pre.drain(..self.at);
        (self.pre, self.io)
    }
}

impl AsyncRead for Rewind {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.at < self.pre.len() {
            let n = (self.pre.len() - self.at).min(out.remaining());
            let at = self.at;
            out.put_slice(&self.pre[at..at + n]);
            self.at += n;
            if self.at == self.pre.len() {
                self.pre = Vec::new(); // read: let the buffer go
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.write.check_io(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.write.check_io(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
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

    #[tokio::test]
    async fn rewind_reads_its_bytes_first_and_gives_back_the_rest() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b" world").await.unwrap();
        let mut io = Rewind::new(b"hello".to_vec(), server, std::time::Duration::from_secs(5));
        let mut two = [0u8; 2];
        io.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"he");
        let (left, server) = io.into_parts();
        assert_eq!(left, b"llo");
        let mut io = Rewind::new(left, server, std::time::Duration::from_secs(5));
        let mut all = [0u8; 9];
        io.read_exact(&mut all).await.unwrap();
        assert_eq!(&all, b"llo world");
        assert!(io.into_parts().0.is_empty());
    }
}
