//! Forward stage: plain HTTP requests in absolute form, sent on in origin form over
//! keep-alive upstream connections (see [`crate::upstream`]) with hop-by-hop headers removed
//! and a `Via` added, bodies streamed.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{self, PathAndQuery};
use http::{Request, Response, Uri};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::connection::ConnCtx;
use crate::dial::DialError;
use crate::domain::{Host, Target};
use crate::respond::{error_chain, ProxyBody, Refusal};
use crate::stats::Stats;
use crate::upstream::Upstream;

/// The value this proxy adds to `Via`.
pub(crate) const VIA: HeaderValue = HeaderValue::from_static("1.1 guardnest");

/// Serves one plain-HTTP request.
pub(crate) async fn handle(mut req: Request<Incoming>, ctx: &ConnCtx) -> Result<Response<ProxyBody>, Refusal> {
    let target = Target::of_request(req.method(), req.uri()).map_err(|e| Refusal::BadRequest(e.0))?;
    ctx.check_policy(&target.host, true)?;

    // The URL decides where the request goes; a disagreeing Host header is replaced.
    let host_header =
        host_header(&target).ok_or_else(|| Refusal::BadRequest("URL host is not a valid header".into()))?;
    let mut origin_form = uri::Parts::default();
    origin_form.path_and_query = Some(req.uri().path_and_query().cloned().unwrap_or(PathAndQuery::from_static("/")));
    *req.uri_mut() =
        Uri::from_parts(origin_form).map_err(|e| Refusal::BadRequest(format!("URL cannot be forwarded: {e}")))?;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    headers.insert(header::HOST, host_header);
    headers.append(header::VIA, VIA);
    *req.version_mut() = http::Version::HTTP_11;

    let shared = &ctx.shared;
    Stats::bump(&shared.stats.requests_total);
    // Bound the wait for the response head; a silent upstream must not hold the client forever.
    let response = match tokio::time::timeout(shared.config.idle_timeout, exchange(req, &target, ctx)).await {
        Ok(r) => r?,
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

/// The `Host` header for `target`: its normal form, the port only when not 80. Built by
/// hand: formatting it (an IP literal above all) cost more than the rest of the handler.
pub(crate) fn host_header(target: &Target) -> Option<HeaderValue> {
    let mut text = Vec::with_capacity(64);
    match &target.host {
        Host::Name(name) => text.extend_from_slice(name.as_bytes()),
        Host::Ip(ip) => {
            let ip_text = target.host.ip_text()?;
            let v6 = ip.is_ipv6();
            if v6 {
                text.push(b'[');
            }
            text.extend_from_slice(ip_text.as_str().as_bytes());
            if v6 {
                text.push(b']');
            }
        }
    }
    if target.port != 80 {
        let mut digits = [0u8; 5];
        let (mut n, mut i) = (target.port, digits.len());
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        text.push(b':');
        text.extend_from_slice(&digits[i..]);
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()
}

/// Sends the request over a kept connection to the target, or a new one if there is none or
/// the kept one turns out closed before the request left.
async fn exchange(req: Request<Incoming>, target: &Target, ctx: &ConnCtx) -> Result<Response<Incoming>, Refusal> {
    let mut req = req;
    if let Some(kept) = ctx.local.upstream.take(target, &ctx.shared.pool) {
        match ctx.local.upstream.send(kept, req).await {
            Ok(response) => return Ok(response),
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => return Err(upstream_error(&e.into_error(), target)),
            },
        }
    }
    let stream = ctx.dial(target).await?;
    let fresh = Upstream::over(target.clone(), stream).await.map_err(|e| upstream_error(&e, target))?;
    ctx.local.upstream.send(fresh, req).await.map_err(|e| upstream_error(&e.into_error(), target))
}

fn upstream_error(e: &hyper::Error, target: &Target) -> Refusal {
    Refusal::Upstream(format!("{target}: {}", error_chain(e)))
}

/// Headers that describe one hop only (RFC 9110 §7.6.1), besides those `Connection` names.
pub(crate) const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes headers that describe one hop only (RFC 9110 §7.6.1), including those the
/// `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names instead of a lookup for each.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
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
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_is_the_normal_form_of_the_url_host() {
        let cases = [
            ("example.com", 80, "example.com"),
            ("example.com", 8080, "example.com:8080"),
            ("127.0.0.1", 80, "127.0.0.1"),
            ("10.200.3.45", 1, "10.200.3.45:1"),
            ("[::1]", 65535, "[::1]:65535"),
            ("[2001:db8::7]", 80, "[2001:db8::7]"),
        ];
        for (host, port, want) in cases {
            let target = Target { host: Host::parse(host).unwrap(), port };
            assert_eq!(host_header(&target).unwrap(), want);
            // The same text as the general formatter gives.
            let general = if port == 80 { target.host.to_string() } else { target.to_string() };
            assert_eq!(general, want);
        }
    }

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

        // Each one alone is found too (the fast path must not skip any).
        for name in HOP_BY_HOP {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("x"));
            h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
            strip_hop_by_hop(&mut h);
            assert!(!h.contains_key(&name), "{name} kept");
            assert_eq!(h.len(), 1);
        }
    }
}
