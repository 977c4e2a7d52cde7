//! Relay stage: a plain-HTTP GET or HEAD without a body, relayed without hyper.
//!
//! Nearly every plain-HTTP request a browser sends through a proxy is a GET or HEAD with no
//! body. hyper serves them correctly, but its server and client connections together cost
//! most of the CPU the proxy spends per request (BENCHMARKS.md, plain HTTP).
//! This stage serves exactly that simple case: HTTP/1.1, an absolute `http://` URL, no
//! `Content-Length`, `Transfer-Encoding`, `Expect` or `Upgrade`. Any other request goes,
//! with the rest of its connection, to hyper ([`crate::conn::forward`]).
//!
//! Heads are parsed by httparse (hyper's parser) under hyper's limits; the request and the
//! response lose their hop-by-hop fields and gain a `Via`, as on hyper's path. The response
//! body is passed on byte for byte and framed by RFC 9112 §6.3 (no body for HEAD, 1xx, 204
//! and 304; else chunked, else `Content-Length`, else until the upstream closes). The
//! upstream connection is kept for the client's next request only when the response ended
//! exactly where its framing said and nothing followed it; a connection handed to the
//! shared pool goes there as a hyper connection, which closes it if stray bytes arrive.

mod answer;

use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use self::answer::{Body, Failed, Framing, Head};
use crate::conn::gate::{self, Ask, Client, Decided, Shared};
use crate::conn::head::{Meta, PlainHead};
use crate::conn::hop;
use crate::dial::DialError;
use crate::domain::Target;
use crate::respond::{BadRequest, BadResponse, Refusal, UpstreamError};
use crate::stats::Stats;
use crate::upstream::Owner;

/// Room for the first read of a response: most responses through a proxy's plain-HTTP
/// path fit whole. Small on purpose: a large buffer per request made glibc trim and
/// re-fault the heap top on every request.
const HEAD_READ: usize = 4096;

/// The response-head parse, for the fuzz targets: `Ok(Some((head_len, None)))` for an
/// interim answer, else the head made for the client, the framing's name and whether the
/// upstream connection may be kept.
#[cfg(fuzzing)]
#[allow(clippy::type_complexity)]
pub(crate) fn fuzz_response(
    buf: &[u8],
    is_head: bool,
) -> Result<Option<(usize, Option<(Vec<u8>, &'static str, bool)>)>, BadResponse> {
    Ok(answer::parse(buf, is_head)?.map(|head| match head {
        Head::Informational(n) => (n, None),
        Head::Final(a) => {
            let framing = match a.framing {
                Framing::None => "none",
                Framing::Length(_) => "length",
                Framing::Chunked(_) => "chunked",
                Framing::Close => "close",
            };
            (a.head_len, Some((a.head, framing, a.upstream_keeps)))
        }
    }))
}

/// An upstream connection a client connection keeps between its relayed requests.
pub(crate) struct Kept {
    target: Target,
    owner: Owner,
    stream: TcpStream,
}

impl Kept {
    /// Whether nothing has arrived on the connection since its last response: no stray
    /// bytes (they would be read as the next response) and no close. Costs a system call
    /// only when the runtime has seen it readable, which a clean idle connection is not.
    pub(crate) fn is_clean(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut byte = [0u8; 1];
                matches!(self.stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Resolves when the connection, if any, becomes readable: a close or stray bytes (or a
    /// stale readiness, which [`Kept::is_clean`] tells apart). Never resolves without one.
    pub(crate) async fn closed(kept: Option<&Kept>) {
        match kept {
            Some(k) => {
                let _ = k.stream.readable().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Hands the connection to the shared pool (the client connection ends, or goes on
    /// to hyper or a tunnel).
    pub(crate) async fn release(self, shared: &Shared) {
        shared.pool.put_stream(self.target, self.owner, self.stream).await;
    }
}

/// What [`relay`] left of the client connection.
pub(crate) enum Relayed {
    /// Answered; the connection stays open for the next request, which may already have
    /// begun in `rest`.
    Next { rest: Vec<u8> },
    /// Answered and closed, or the client left.
    Closed,
}

/// Serves one GET or HEAD read by [`crate::conn::head`]: the same order of decisions as
/// hyper's path ([`gate::decide`]), then the exchange over `kept` (or a pooled or new
/// upstream connection).
pub(crate) async fn relay(
    client: &mut TcpStream,
    head: PlainHead,
    kept: &mut Option<Kept>,
    shared: &Shared,
    who: &Client,
) -> Relayed {
    let peer = who.peer;
    let method = if head.meta.is_head { Method::HEAD } else { Method::GET };
    let decided = async {
        let parsed = http::Uri::try_from(head.bytes(&head.meta.target)).map_err(BadRequest::from).and_then(|uri| {
            let target = Target::of_request(&method, &uri)?;
            Ok((target, uri))
        });
        let (target, uri) = match parsed {
            Ok((target, uri)) => (Ok(target), Some(uri)),
            Err(e) => (Err(e), None),
        };
        let ask = Ask {
            target,
            connect_body: false,
            plain: true,
            credentials: head.meta.proxy_authorization.as_ref().map(|r| head.bytes(r)),
        };
        let decided = gate::decide(shared, who, ask).await?;
        let uri = uri.ok_or(Refusal::BadRequest(BadRequest::HostField))?;
        let request = upstream_request(&head, &uri, &decided.target)?;
        Ok::<_, Refusal>((decided, request))
    };
    let outcome = match decided.await {
        Ok((decided, request)) => {
            Stats::bump(&shared.stats.requests_total);
            exchange(client, &request, &decided, &head.meta, kept, shared).await
        }
        Err(refusal) => Err(Failed::Refused(refusal)),
    };
    match outcome {
        Ok(true) if !head.meta.close => Relayed::Next { rest: head.into_rest() },
        Ok(_) => Relayed::Closed,
        Err(Failed::Refused(refusal)) => {
            gate::refused(peer, &method, &refusal);
            let mut answer = refusal.encode();
            if head.meta.is_head {
                // The same head, without the body a HEAD answer never has.
                if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                    answer.truncate(end + 4);
                }
            }
            if client.write_all(&answer).await.is_err() || refusal.closes_connection() || head.meta.close {
                return Relayed::Closed;
            }
            Relayed::Next { rest: head.into_rest() }
        }
        Err(Failed::Broken) => Relayed::Closed,
    }
}

/// The request head sent upstream: origin form, `Host` from the URL, the client's other
/// end-to-end fields, `Via`.
fn upstream_request(head: &PlainHead, uri: &http::Uri, target: &Target) -> Result<Vec<u8>, Refusal> {
    let host = hop::host_header(target).ok_or(Refusal::BadRequest(BadRequest::HostField))?;
    let mut out = Vec::with_capacity(head.meta.head_len + 64);
    out.extend_from_slice(if head.meta.is_head { b"HEAD " } else { b"GET " });
    // `path()` is "/" for an empty path (`PathAndQuery::as_str` would give "?q" for
    // `http://host?q`, not a valid origin form).
    out.extend_from_slice(uri.path().as_bytes());
    if let Some(query) = uri.query() {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &head.meta.fields {
        hop::field(&mut out, head.bytes(name), head.bytes(value));
    }
    hop::via(&mut out);
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Sends the request upstream and relays the response. `Ok(keep_client)` once the whole
/// response is out; whether the client connection can serve another request.
async fn exchange(
    client: &mut TcpStream,
    request: &[u8],
    decided: &Decided,
    meta: &Meta,
    kept: &mut Option<Kept>,
    shared: &Shared,
) -> Result<bool, Failed> {
    let Decided { target, owner } = decided;
    let idle = shared.config.idle_timeout;
    let mut reused = true;
    let mut upstream = match kept.take() {
        Some(k) if k.target == *target && k.owner == *owner && k.is_clean() => k.stream,
        other => {
            if let Some(k) = other {
                k.release(shared).await;
            }
            match shared.pool.take_stream(target, owner) {
                Some(stream) => stream,
                None => {
                    reused = false;
                    gate::dial(shared, target).await?
                }
            }
        }
    };
    let response = loop {
        match send(&mut upstream, request, meta.is_head, idle).await {
            Ok(response) => break response,
            // A kept connection the server closed while it was idle: the request (a GET or
            // HEAD without a body, safe to repeat) goes again over a new one.
            Err(Sent::Stale) if reused => {
                reused = false;
                upstream = gate::dial(shared, target).await?;
            }
            Err(Sent::Stale) => {
                return Err(Refusal::Upstream(UpstreamError::Closed { target: target.to_string() }).into())
            }
            Err(Sent::Failed(why)) => return Err(Refusal::Upstream(why.at(target)).into()),
            Err(Sent::TimedOut) => {
                return Err(Refusal::Dial(DialError::Timeout { target: target.to_string(), timeout: idle }).into())
            }
        }
    };
    // The request as sent upstream counts as bytes up (a GET or HEAD has no body).
    shared.stats.bytes_up.fetch_add(request.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let (answer, buf) = response;
    let client_keeps = !meta.close && !matches!(answer.framing, Framing::Close);
    let mut out = answer.head;
    if !client_keeps {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let body = Body { upstream: &mut upstream, client, idle, stats: &shared.stats };
    let clean = body.relay(out, &buf[answer.head_len..], answer.framing).await?;
    if clean && answer.upstream_keeps {
        *kept = Some(Kept { target: target.clone(), owner: owner.clone(), stream: upstream });
    }
    Ok(client_keeps)
}

/// How sending a request and reading the response head went.
enum Sent {
    /// The connection was closed or reset before any byte of a response came.
    Stale,
    Failed(Why),
    TimedOut,
}

/// Why a response head could not be read, before the target is known to the message.
enum Why {
    Response(BadResponse),
    ClosedInHead,
    Io(std::io::Error),
}

impl Why {
    fn at(self, target: &Target) -> UpstreamError {
        let target = target.to_string();
        match self {
            Why::Response(source) => UpstreamError::Response { target, source },
            Why::ClosedInHead => UpstreamError::ClosedInHead { target },
            Why::Io(source) => UpstreamError::Io { target, source },
        }
    }
}

/// Writes the request and reads a final (not 1xx) response head within `idle`; 1xx heads
/// are dropped, as hyper's client does. The head, and the buffer it was read into (the
/// body's first bytes follow it there).
async fn send(
    upstream: &mut TcpStream,
    request: &[u8],
    is_head: bool,
    idle: Duration,
) -> Result<(answer::Answer, Vec<u8>), Sent> {
    if upstream.write_all(request).await.is_err() {
        return Err(Sent::Stale);
    }
    let mut buf = Vec::with_capacity(HEAD_READ);
    let mut received = false;
    let mut interim = 0;
    // One bound for the whole head, as on hyper's path: trickled bytes do not extend it.
    let deadline = tokio::time::Instant::now() + idle;
    loop {
        match answer::parse(&buf, is_head) {
            Ok(Some(Head::Informational(len))) => {
                interim += 1;
                if interim > hop::MAX_INTERIM {
                    return Err(Sent::Failed(Why::Response(BadResponse::TooManyInterim(hop::MAX_INTERIM))));
                }
                buf.drain(..len);
                continue;
            }
            Ok(Some(Head::Final(answer))) => return Ok((answer, buf)),
            Ok(None) => {}
            Err(why) => return Err(Sent::Failed(Why::Response(why))),
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(HEAD_READ);
        }
        match tokio::time::timeout_at(deadline, upstream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) if !received => return Err(Sent::Stale),
            Ok(Ok(0)) => return Err(Sent::Failed(Why::ClosedInHead)),
            Ok(Ok(_)) => received = true,
            Ok(Err(e)) => return Err(Sent::Failed(Why::Io(e))),
            Err(_) => return Err(Sent::TimedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::head::{parse_plain as parse, Parse, MAX_FIELDS};

    fn meta(head: &str) -> Option<Meta> {
        match parse(head.as_bytes()) {
            Parse::Plain(m) => Some(m),
            Parse::Partial => panic!("partial: {head:?}"),
            Parse::NotMine => None,
        }
    }

    #[test]
    fn simple_gets_and_heads_are_relayed_and_the_rest_is_hypers() {
        let head = "GET http://a.test/x?y HTTP/1.1\r\nHost: b.test\r\nAccept: */*\r\nConnection: keep-alive, X-Hop\r\n\
                    X-Hop: 1\r\nProxy-Authorization: Basic eA==\r\nKeep-Alive: 5\r\n\r\nnext";
        let m = meta(head).unwrap();
        let plain = PlainHead::new(head.as_bytes().to_vec(), m);
        assert!(!plain.meta.is_head && !plain.meta.close);
        assert_eq!(plain.bytes(&plain.meta.target), b"http://a.test/x?y");
        assert_eq!(plain.bytes(plain.meta.proxy_authorization.as_ref().unwrap()), b"Basic eA==");
        let passed: Vec<_> = plain.meta.fields.iter().map(|(n, _)| plain.bytes(n).to_vec()).collect();
        assert_eq!(passed, vec![b"Accept".to_vec()]);
        let uri = http::Uri::try_from("http://a.test/x?y").unwrap();
        let target = Target::parse_with_default("a.test", Some(80)).unwrap();
        let request = upstream_request(&plain, &uri, &target).unwrap();
        assert_eq!(
            String::from_utf8(request).unwrap(),
            "GET /x?y HTTP/1.1\r\nhost: a.test\r\nAccept: */*\r\nvia: 1.1 guardnest\r\n\r\n"
        );
        assert_eq!(plain.into_rest(), b"next");

        // Origin forms: an empty path is "/", the query kept, a fragment dropped.
        for (url, line) in [
            ("http://a.test?x=1", "GET /?x=1 HTTP/1.1\r\n"),
            ("http://a.test", "GET / HTTP/1.1\r\n"),
            ("http://a.test/p#frag", "GET /p HTTP/1.1\r\n"),
            ("http://a.test:8080/p/q?r=s&t", "GET /p/q?r=s&t HTTP/1.1\r\n"),
        ] {
            let head = format!("GET {url} HTTP/1.1\r\n\r\n");
            let plain = PlainHead::new(head.as_bytes().to_vec(), meta(&head).unwrap());
            let uri = http::Uri::try_from(url).unwrap();
            let target = Target::of_request(&Method::GET, &uri).unwrap();
            let request = String::from_utf8(upstream_request(&plain, &uri, &target).unwrap()).unwrap();
            assert!(request.starts_with(line), "{url}: {request}");
        }

        assert!(meta("HEAD http://a.test HTTP/1.1\r\nConnection: close\r\n\r\n").is_some_and(|m| m.is_head && m.close));
        for not_mine in [
            "GET http://a.test/ HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            "GET https://a.test/ HTTP/1.1\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nBad Field\r\n\r\n",
            "GETX http://a.test/ HTTP/1.1\r\n\r\n",
        ] {
            assert!(meta(not_mine).is_none(), "{not_mine:?} relayed");
        }
        assert!(matches!(parse(b"GET http://a.test/ HTTP/1.1\r\nHost: a"), Parse::Partial));
        let many: String = (0..=MAX_FIELDS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert!(meta(&format!("GET http://a.test/ HTTP/1.1\r\n{many}\r\n")).is_none(), "too many fields: hyper's 431");
    }
}
