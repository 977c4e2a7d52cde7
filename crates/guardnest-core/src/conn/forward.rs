//! Forward stage: plain HTTP requests in absolute form, sent on in origin form over
//! keep-alive upstream connections (see [`crate::upstream`]) with hop-by-hop headers removed
//! and a `Via` added, bodies streamed.

use http::header;
use http::uri::{self, PathAndQuery};
use http::{Request, Response, Uri};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::conn::gate::ConnCtx;
use crate::conn::hop::{host_header, strip_hop_by_hop, VIA};
use crate::dial::DialError;
use crate::domain::Target;
use crate::respond::{BadRequest, ProxyBody, Refusal, UpstreamError};
use crate::stats::Stats;
use crate::upstream::Upstream;

/// Serves one plain-HTTP request.
pub(crate) async fn handle(mut req: Request<Incoming>, ctx: &ConnCtx) -> Result<Response<ProxyBody>, Refusal> {
    let target = Target::of_request(req.method(), req.uri()).map_err(|e| Refusal::BadRequest(e.into()))?;
    ctx.check_policy(&target.host, true)?;

    // The URL decides where the request goes; a disagreeing Host header is replaced.
    let host_header = host_header(&target).ok_or(Refusal::BadRequest(BadRequest::HostField))?;
    let mut origin_form = uri::Parts::default();
    origin_form.path_and_query = Some(req.uri().path_and_query().cloned().unwrap_or(PathAndQuery::from_static("/")));
    *req.uri_mut() = Uri::from_parts(origin_form).map_err(|e| Refusal::BadRequest(e.into()))?;
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

/// Sends the request over a kept connection to the target, or a new one if there is none or
/// the kept one turns out closed before the request left.
async fn exchange(req: Request<Incoming>, target: &Target, ctx: &ConnCtx) -> Result<Response<Incoming>, Refusal> {
    let mut req = req;
    if let Some(kept) = ctx.local.upstream.take(target, &ctx.shared.pool) {
        match ctx.local.upstream.send(kept, req).await {
            Ok(response) => return Ok(response),
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => return Err(upstream_error(e.into_error(), target)),
            },
        }
    }
    let stream = ctx.dial(target).await?;
    let fresh = Upstream::over(target.clone(), stream).await.map_err(|e| upstream_error(e, target))?;
    ctx.local.upstream.send(fresh, req).await.map_err(|e| upstream_error(e.into_error(), target))
}

fn upstream_error(source: hyper::Error, target: &Target) -> Refusal {
    Refusal::Upstream(UpstreamError::Http { target: target.to_string(), source })
}
