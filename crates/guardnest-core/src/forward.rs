//! Forward stage: plain HTTP requests in absolute form, sent on over pooled keep-alive
//! connections with hop-by-hop headers removed and a `Via` added, bodies streamed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::connection::ConnCtx;
use crate::dial::{DialError, Dialer};
use crate::domain::Target;
use crate::respond::{error_chain, ProxyBody, Refusal};
use crate::stats::Stats;

/// Pooled HTTP/1.1 client whose connections go through our [`Dialer`].
pub(crate) type UpstreamClient = Client<DialConnector, Incoming>;

/// The value this proxy adds to `Via`.
const VIA: HeaderValue = HeaderValue::from_static("1.1 guardnest");

/// Builds the pooled client.
pub(crate) fn client(dialer: Dialer) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .pool_max_idle_per_host(32)
        .set_host(false)
        .build(DialConnector { dialer })
}

/// Serves one plain-HTTP request.
pub(crate) async fn handle(mut req: Request<Incoming>, ctx: &ConnCtx) -> Result<Response<ProxyBody>, Refusal> {
    let target = Target::of_request(req.method(), req.uri()).map_err(|e| Refusal::BadRequest(e.0))?;
    let uri = req.uri();
    ctx.check_policy(&target.host, true)?;

    // The URL decides where the request goes; a disagreeing Host header is replaced.
    let host_value = match target.port {
        80 => target.host.to_string(),
        _ => target.to_string(),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let new_uri: Uri = format!("http://{host_value}{path}")
        .parse()
        .map_err(|e| Refusal::BadRequest(format!("URL cannot be forwarded: {e}")))?;
    *req.uri_mut() = new_uri;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    let host_header =
        HeaderValue::from_str(&host_value).map_err(|_| Refusal::BadRequest("URL host is not a valid header".into()))?;
    headers.insert(header::HOST, host_header);
    headers.append(header::VIA, VIA);
    *req.version_mut() = http::Version::HTTP_11;

    let shared = &ctx.shared;
    Stats::bump(&shared.stats.requests_total);
    // Bound the wait for the response head; a silent upstream must not hold the client forever.
    let response = match tokio::time::timeout(shared.config.idle_timeout, shared.client.request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(client_error(e, &target)),
        Err(_) => {
            return Err(Refusal::Dial(DialError::Timeout {
                target: target.to_string(),
                timeout: shared.config.idle_timeout,
            }))
        }
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.append(header::VIA, VIA);
    // We speak HTTP/1.1 on this hop whatever the upstream spoke; hyper downgrades for 1.0 clients.
    parts.version = http::Version::HTTP_11;
    Ok(Response::from_parts(parts, Either::Left(body)))
}

fn client_error(e: hyper_util::client::legacy::Error, target: &Target) -> Refusal {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(dial) = s.downcast_ref::<DialError>() {
            return Refusal::Dial(dial.duplicate());
        }
        source = s.source();
    }
    Refusal::Upstream(format!("{target}: {}", error_chain(&e)))
}

/// Removes headers that describe one hop only (RFC 9110 §7.6.1), including those the
/// `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// Connector for the pooled client: dials through the proxy's [`Dialer`].
#[derive(Clone)]
pub(crate) struct DialConnector {
    dialer: Dialer,
}

impl tower_service::Service<Uri> for DialConnector {
    type Response = TokioIo<TcpStream>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.dialer.clone();
        Box::pin(async move {
            let authority = uri.authority().map_or("", |a| a.as_str());
            let target = Target::parse_with_default(authority, Some(80)).map_err(|e| DialError::Connect {
                target: authority.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            })?;
            dialer.dial(&target).await.map(TokioIo::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic eA=="));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }
}
