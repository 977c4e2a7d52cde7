//! Respond stage: the one place where a refusal becomes an HTTP answer.
//!
//! Every refusal carries a one-line reason, sent as the body (plain text, or a small HTML
//! page for a blocked plain-HTTP request that a browser will show).

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::dial::DialError;

/// Body of every response the proxy sends: a forwarded upstream body or one of ours.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Why a request was not served.
#[derive(Debug)]
pub enum Refusal {
    /// The request cannot be served as written (400).
    BadRequest(String),
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
    /// Proxy credentials missing or wrong (407).
    AuthRequired(&'static str),
    /// Dialing failed (502, 504, or 508 for a loop).
    Dial(DialError),
    /// The upstream failed after the connection was made (502).
    Upstream(String),
}

impl Refusal {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Blocked { .. } | Refusal::ClientDenied(_) => StatusCode::FORBIDDEN,
            Refusal::AuthRequired(_) => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Refusal::Dial(DialError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Dial(DialError::Loop { .. }) => StatusCode::LOOP_DETECTED,
            Refusal::Dial(_) | Refusal::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The one-line reason.
    pub fn reason(&self) -> String {
        match self {
            Refusal::BadRequest(why) => format!("bad request: {why}"),
            Refusal::Blocked { host, list, rule, .. } => {
                format!("{host} is blocked by list \"{list}\" (rule {rule})")
            }
            Refusal::ClientDenied(ip) => format!("client address {ip} is not allowed to use this proxy"),
            Refusal::AuthRequired(why) => format!("{why} (this proxy needs a user name and password)"),
            Refusal::Dial(DialError::Loop { target }) => {
                format!("refused: {target} is this proxy itself (request loop)")
            }
            Refusal::Dial(e) => error_chain(e),
            Refusal::Upstream(why) => format!("upstream error: {why}"),
        }
    }

    /// The response to send.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let (content_type, body) = match &self {
            Refusal::Blocked { host, list, rule, html: true } => {
                ("text/html; charset=utf-8", block_page(host, list, rule))
            }
            _ => ("text/plain; charset=utf-8", self.reason() + "\n"),
        };
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // After a malformed request the stream may be out of step; after a refused CONNECT
        // the client has nothing more to send. Either way, close instead of waiting.
        if matches!(self, Refusal::BadRequest(_) | Refusal::Blocked { html: false, .. } | Refusal::ClientDenied(_)) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, Refusal::AuthRequired(_)) {
            headers.insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"GuardNest\", charset=\"UTF-8\""),
            );
        }
        response
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
         so GuardNest did not connect to it.</p>\n<p>If you trust this site, add it to your allowlist.</p></body></html>\n",
        escape(host),
        escape(list),
        escape(rule)
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
    }
}
