//! Respond stage: the one place where a refusal becomes an HTTP answer.
//!
//! Every refusal carries a one-line reason, sent as the body (plain text, or a small HTML
//! page for a blocked plain-HTTP request that a browser will show).

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::conn::dial::DialError;
use crate::conn::idle::IdleBody;
use crate::domain::BadTarget;

/// Body of every response the proxy sends: a forwarded upstream body (whose frames must
/// keep coming within `idle_timeout`) or one of ours.
pub type ProxyBody = Either<IdleBody<Incoming>, Full<Bytes>>;

/// Why a request was not served.
#[derive(Debug)]
pub enum Refusal {
    /// The request cannot be served as written (400).
    BadRequest(BadRequest),
    /// Policy refused the host (403).
    Blocked {
        /// The requested host.
        host: String,
        /// The list whose rule matched.
        list: Arc<str>,
        /// The rule that matched.
        rule: Box<str>,
        /// Answer with an HTML page (plain HTTP) rather than one line (CONNECT).
        html: bool,
    },
    /// The client address is not in `[access] allow` (403).
    ClientDenied(std::net::IpAddr),
    /// The request head is larger than `[proxy] max_header_bytes` allows, or has more header
    /// fields than hyper's 100 (431).
    HeadTooLarge(String),
    /// Proxy credentials missing or wrong (407).
    AuthRequired(&'static str),
    /// Proxy credentials missing or wrong once too often on this connection (407, and the
    /// connection closes: a client guessing must connect again).
    LoginsExhausted(&'static str),
    /// Too many failed logins from this client address: refused without a check (429, the
    /// connection closes).
    LoginsThrottled {
        /// The client address.
        client: std::net::IpAddr,
        /// When it may try again.
        retry_after: std::time::Duration,
    },
    /// Dialing failed (502, 504, or 508 for a loop).
    Dial(DialError),
    /// The upstream failed after the connection was made (502), or did not answer in time
    /// (504).
    Upstream(UpstreamError),
    /// The parent proxy (the user's own) could not be reached or did not answer as a proxy
    /// (502, 504 for a timeout): the reason names the parent, not the site.
    Parent(ParentError),
}

/// A parent proxy that failed, and how.
#[derive(Debug, thiserror::Error)]
#[error("parent proxy {parent} {failure}")]
pub struct ParentError {
    /// `host:port` of the parent.
    pub parent: String,
    /// What went wrong.
    pub failure: ParentFailure,
}

/// How a parent proxy failed.
#[derive(Debug, thiserror::Error)]
pub enum ParentFailure {
    /// It could not be dialed.
    #[error("unreachable: {}", error_chain(.0))]
    Dial(DialError),
    /// Connected, but no answer to our CONNECT in time.
    #[error("did not answer within {}", humantime::format_duration(*.0))]
    Timeout(std::time::Duration),
    /// It closed the connection before answering.
    #[error("closed the connection without answering")]
    Closed,
    /// It answered something that is not HTTP.
    #[error("answered something that is not an HTTP response ({0})")]
    Garbage(String),
    /// Reading or writing failed.
    #[error("failed: {0}")]
    Io(String),
    /// It asks for credentials, and GuardNest has none to give (or its clients' are its own).
    #[error("asks for credentials: set [upstream] user and password")]
    NeedsCredentials,
    /// It refused the credentials of `[upstream]`.
    #[error("refused the credentials of [upstream] user")]
    CredentialsRefused,
}

/// Why a request cannot be served as written (400).
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    /// The head is not HTTP/1.x (httparse's reason).
    #[error("malformed request head: {0}")]
    Malformed(httparse::Error),
    /// The request target names no host the proxy can go to.
    #[error(transparent)]
    Target(#[from] BadTarget),
    /// A CONNECT that announces a body: its bytes would be read as tunnel bytes.
    #[error("a CONNECT request has no body")]
    ConnectBody,
    /// The URL is not a URL.
    #[error("invalid URL: {0}")]
    Url(#[from] http::uri::InvalidUri),
    /// The URL's host cannot be written as a `Host` field.
    #[error("URL host is not a valid header")]
    HostField,
    /// The URL has no origin form to send upstream.
    #[error("URL cannot be forwarded: {0}")]
    OriginForm(#[from] http::uri::InvalidUriParts),
}

/// How an upstream failed after it was dialed (502).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// hyper's client connection failed.
    #[error("{target}: {}", error_chain(source))]
    Http {
        /// The upstream.
        target: String,
        /// hyper's error.
        source: hyper::Error,
    },
    /// The response head cannot be relayed.
    #[error("{target}: {source}")]
    Response {
        /// The upstream.
        target: String,
        /// What is wrong with it.
        source: BadResponse,
    },
    /// Connected, but no response head came within the idle timeout (504: the upstream
    /// answers too slowly, which is not a failure to reach it).
    #[error("{target}: no response within {}", humantime::format_duration(*timeout))]
    ResponseTimeout {
        /// The upstream.
        target: String,
        /// How long it had.
        timeout: std::time::Duration,
    },
    /// The connection's own state could not be reached (a poisoned lock).
    #[error("connection state unavailable")]
    State,
}

/// Why an upstream's response cannot be passed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    /// A protocol switch nobody asked for.
    #[error("101 Switching Protocols to a request without Upgrade")]
    UnaskedSwitch,
    /// Interim (1xx) answers without end.
    #[error("more than {0} interim (1xx) responses")]
    TooManyInterim(usize),
}

impl Refusal {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::Blocked { .. } | Refusal::ClientDenied(_) => StatusCode::FORBIDDEN,
            Refusal::AuthRequired(_) | Refusal::LoginsExhausted(_) => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Refusal::LoginsThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Dial(DialError::Denied { .. } | DialError::OwnUnknown { .. }) => StatusCode::FORBIDDEN,
            Refusal::Dial(DialError::Timeout { .. }) | Refusal::Upstream(UpstreamError::ResponseTimeout { .. }) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Refusal::Dial(DialError::Loop { .. }) => StatusCode::LOOP_DETECTED,
            Refusal::Dial(_) | Refusal::Upstream(_) => StatusCode::BAD_GATEWAY,
            Refusal::Parent(ParentError { failure, .. }) => match failure {
                ParentFailure::Dial(DialError::Denied { .. } | DialError::OwnUnknown { .. }) => StatusCode::FORBIDDEN,
                ParentFailure::Dial(DialError::Timeout { .. }) | ParentFailure::Timeout(_) => {
                    StatusCode::GATEWAY_TIMEOUT
                }
                ParentFailure::Dial(DialError::Loop { .. }) => StatusCode::LOOP_DETECTED,
                _ => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// The one-line reason.
    pub fn reason(&self) -> String {
        match self {
            Refusal::BadRequest(why) => format!("bad request: {why}"),
            Refusal::HeadTooLarge(why) => format!("request head too large: {why}"),
            Refusal::Blocked { host, list, rule, .. } => {
                format!("{host} is blocked by list \"{list}\" (rule {rule})")
            }
            Refusal::ClientDenied(ip) => format!("client address {ip} is not allowed to use this proxy"),
            Refusal::AuthRequired(why) => format!("{why} (this proxy needs a user name and password)"),
            Refusal::LoginsExhausted(why) => {
                format!("{why}; too many failed logins on this connection (this proxy needs a user name and password)")
            }
            Refusal::LoginsThrottled { client, retry_after } => {
                format!("too many failed proxy logins from {client}; try again in {} s", retry_after.as_secs().max(1))
            }
            Refusal::Dial(DialError::Loop { target }) => {
                format!("refused: {target} is this proxy itself (request loop)")
            }
            Refusal::Dial(e) => error_chain(e),
            Refusal::Upstream(why) => format!("upstream error: {why}"),
            Refusal::Parent(why) => why.to_string(),
        }
    }

    /// The response to send.
    pub fn into_response(self) -> Response<ProxyBody> {
        let (content_type, body) = self.body();
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (name, value) in self.fields().into_iter().flatten() {
            headers.insert(name, HeaderValue::from_static(value));
        }
        response
    }

    /// The whole response as bytes, for a connection hyper does not serve (a first CONNECT;
    /// see [`crate::conn::head`]): the same status, fields and body as [`Refusal::into_response`].
    pub(crate) fn encode(&self) -> Vec<u8> {
        let status = self.status();
        let (content_type, body) = self.body();
        let mut out = Vec::with_capacity(256 + body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\ncontent-type: ");
        out.extend_from_slice(content_type.as_bytes());
        for (name, value) in self.fields().into_iter().flatten() {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(b"\r\ncontent-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body.as_bytes());
        out
    }

    /// Whether the connection closes after this answer. After a malformed request the
    /// stream may be out of step; after a refused CONNECT the client has nothing more to
    /// send. A 407 keeps it: the client retries there with credentials.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Refusal::BadRequest(_)
                | Refusal::HeadTooLarge(_)
                | Refusal::Blocked { html: false, .. }
                | Refusal::ClientDenied(_)
                | Refusal::LoginsExhausted(_)
                | Refusal::LoginsThrottled { .. }
        )
    }

    fn body(&self) -> (&'static str, String) {
        match self {
            Refusal::Blocked { host, list, rule, html: true } => {
                ("text/html; charset=utf-8", block_page(host, list, rule))
            }
            _ => ("text/plain; charset=utf-8", self.reason() + "\n"),
        }
    }

    /// The header fields besides the content type and length.
    fn fields(&self) -> [Option<(header::HeaderName, &'static str)>; 3] {
        [
            Some((header::CACHE_CONTROL, "no-store")),
            self.closes_connection().then_some((header::CONNECTION, "close")),
            matches!(self, Refusal::AuthRequired(_) | Refusal::LoginsExhausted(_))
                .then_some((header::PROXY_AUTHENTICATE, "Basic realm=\"GuardNest\", charset=\"UTF-8\"")),
        ]
    }
}

/// `error: cause: cause`, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn block_page(host: &str, list: &str, rule: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Blocked by GuardNest</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}}\
         h1{{color:#b3261e;font-size:1.5em}}code{{background:#eee;padding:.1em .3em}}</style></head>\n\
         <body><h1>Blocked by GuardNest</h1>\n<p><code>{}</code> is on the list <b>{}</b> (rule <code>{}</code>), \
         so GuardNest did not connect to it.</p>\n<p>If you trust this site: open GuardNest (its shield icon is in \
         the tray, near the clock; or start the GuardNest app again), find <b>{}</b> under <i>Recently blocked</i> and \
         click <b>Allow</b>. Then reload this page. (On the command line: <code>guardnest allow {}</code>.)</p>\
         </body></html>\n",
        escape(host),
        escape(list),
        escape(rule),
        escape(host),
        escape(host)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_reasons() {
        let timeout =
            Refusal::Dial(DialError::Timeout { target: "a:1".into(), timeout: std::time::Duration::from_secs(10) });
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        let refused = Refusal::Dial(DialError::Connect {
            target: "a:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        });
        assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
        assert!(!refused.reason().contains('\n'));
        let blocked = Refusal::Blocked { host: "<x>".into(), list: "l".into(), rule: "x".into(), html: true };
        assert_eq!(blocked.status(), StatusCode::FORBIDDEN);
        assert!(block_page("<x>", "l", "x").contains("&lt;x&gt;"));
        // The page says where the Allow button is.
        let page = block_page("evil.test", "l", "evil.test");
        assert!(
            page.contains("in the tray") && page.contains("<i>Recently blocked</i>") && page.contains("<b>Allow</b>")
        );

        let down = Refusal::Parent(ParentError {
            parent: "corp.example:8123".into(),
            failure: ParentFailure::Dial(DialError::Connect {
                target: "corp.example:8123".into(),
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            }),
        });
        assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
        assert!(
            down.reason().starts_with("parent proxy corp.example:8123 unreachable: cannot connect"),
            "{}",
            down.reason()
        );
        assert!(!down.reason().contains('\n'));
    }

    /// The bytes written without hyper say what hyper would: status, fields, body.
    #[test]
    fn encoded_answers_match_the_responses() {
        let refusals = || {
            vec![
                Refusal::BadRequest(BadRequest::ConnectBody),
                Refusal::HeadTooLarge("more than 10 bytes".into()),
                Refusal::Blocked { host: "a.test".into(), list: "l".into(), rule: "a.test".into(), html: false },
                Refusal::Blocked { host: "a.test".into(), list: "l".into(), rule: "a.test".into(), html: true },
                Refusal::ClientDenied("192.0.2.1".parse().unwrap()),
                Refusal::AuthRequired("proxy authentication required"),
                Refusal::LoginsExhausted("unknown user or wrong password"),
                Refusal::LoginsThrottled {
                    client: "192.0.2.1".parse().unwrap(),
                    retry_after: std::time::Duration::from_secs(6),
                },
                Refusal::Dial(DialError::Denied { target: "a:1".into(), addr: "127.0.0.1".parse().unwrap() }),
                Refusal::Dial(DialError::OwnUnknown {
                    target: "a:1".into(),
                    addr: "192.0.2.1".parse().unwrap(),
                    why: "this host's own addresses cannot be read: x".into(),
                }),
                Refusal::Dial(DialError::Timeout { target: "a:1".into(), timeout: std::time::Duration::from_secs(1) }),
                Refusal::Upstream(UpstreamError::ResponseTimeout {
                    target: "a:1".into(),
                    timeout: std::time::Duration::from_secs(30),
                }),
                Refusal::Parent(ParentError { parent: "corp:8123".into(), failure: ParentFailure::Closed }),
            ]
        };
        for (refusal, same) in refusals().into_iter().zip(refusals()) {
            let bytes = refusal.encode();
            let mut fields = [httparse::EMPTY_HEADER; 16];
            let mut parsed = httparse::Response::new(&mut fields);
            let httparse::Status::Complete(head_len) = parsed.parse(&bytes).unwrap() else { panic!("incomplete") };
            let response = same.into_response();
            assert_eq!(parsed.code, Some(response.status().as_u16()));
            assert_eq!(parsed.reason, response.status().canonical_reason());
            let body = &bytes[head_len..];
            let mut expected: Vec<(String, String)> = response
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .chain([("content-length".to_string(), body.len().to_string())])
                .collect();
            let mut got: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| (h.name.to_string(), String::from_utf8(h.value.to_vec()).unwrap()))
                .collect();
            expected.sort();
            got.sort();
            assert_eq!(got, expected, "{:?}", refusal);
            let Either::Right(full) = response.into_body() else { panic!("not our body") };
            let want = futures_body(full);
            assert_eq!(body, &want[..], "{:?}", refusal);
        }
    }

    fn futures_body(full: Full<Bytes>) -> Bytes {
        use http_body_util::BodyExt;
        let collected = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(full.collect());
        collected.unwrap().to_bytes()
    }
}
