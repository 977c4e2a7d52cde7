//! Forward stage: plain HTTP requests in absolute form, sent on in origin form over
//! keep-alive upstream connections (see [`crate::conn::upstream`]) with hop-by-hop headers removed
//! and a `Via` added, bodies streamed.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{self, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::conn::connect;
use crate::conn::gate::{ConnCtx, Decided, Local, Pending};
use crate::conn::hop::{head_size, host_header, strip_hop_by_hop, MAX_INTERIM, VIA};
use crate::conn::idle::IdleBody;
use crate::conn::respond::{BadRequest, BadResponse, ParentError, ParentFailure, ProxyBody, Refusal, UpstreamError};
use crate::conn::route::{self, Hop, Parent};
use crate::conn::upstream::{Owner, Peer, UpBody, Upstream, UpstreamIo};
use crate::domain::Target;
use crate::stats::Stats;

/// Serves one plain-HTTP request that passed [`crate::conn::gate::decide`].
pub(crate) async fn handle(
    req: Request<Incoming>,
    decided: Decided,
    ctx: &ConnCtx,
) -> Result<Response<ProxyBody>, Refusal> {
    let Outgoing { req, target, owner, via, on_client_upgrade, passthrough } = outgoing(req, decided, ctx)?;
    let interim = &ctx.local.interim;
    let idle = ctx.shared.config.idle_timeout;
    if let Some(on_client) = on_client_upgrade {
        // Rare: its state on the heap, off every plain request's future.
        return Box::pin(upgrade_exchange(req, target, on_client, interim, ctx, &via)).await;
    }
    // Bound the wait for the response head; a silent upstream, or one that sends interim
    // answers without end, must not hold the client. The connection's one timer times it
    // (see `AnswerTimer`): no timer is set up per request.
    // Who the request went to, so that a silence is blamed on the parent when it was one.
    let sent_to = parking_lot::Mutex::new(None::<Peer>);
    let deadline = tokio::time::Instant::now() + idle;
    let (response, parent) = tokio::select! {
        biased;
        r = exchange(req, &target, &owner, ctx, &via, &sent_to) => r?,
        () = ctx.local.answer_timer.expired(deadline) => {
            let peer = sent_to.lock().clone().unwrap_or(Peer::Origin(target));
            return Err(no_response(&peer, idle));
        }
        () = interim.exceeded() => {
            ctx.local.upstream.discard();
            return Err(too_many_interim(&target));
        }
    };
    if let Some(parent) =
        parent.filter(|_| !passthrough && response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED)
    {
        // GuardNest's clients answer GuardNest's own challenge: the parent's is not theirs.
        let failure =
            if parent.auth.is_some() { ParentFailure::CredentialsRefused } else { ParentFailure::NeedsCredentials };
        return Err(Refusal::Parent(ParentError { parent: parent.server.to_string(), failure }));
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A switch nobody asked for: the connection speaks something else now.
        ctx.local.upstream.discard();
        let source = BadResponse::UnaskedSwitch;
        return Err(Refusal::Upstream(UpstreamError::Response { target: target.to_string(), source }));
    }
    Ok(answer(response, ctx))
}

/// A request made ready for its upstream, and what its answer needs.
struct Outgoing {
    req: Request<UpBody>,
    target: Target,
    owner: Owner,
    via: Via,
    on_client_upgrade: Option<OnUpgrade>,
    /// The client's proxy credentials are for a parent (GuardNest asks for none itself).
    passthrough: bool,
}

/// Makes the client's request the one sent on: origin form (the absolute form kept for a
/// parent), the normal `Host`, hop-by-hop fields gone, a `Via`, its body timed and counted.
/// Not async, so that none of its temporaries is kept in the request's future, which hyper
/// moves whole for every request.
fn outgoing(mut req: Request<Incoming>, decided: Decided, ctx: &ConnCtx) -> Result<Outgoing, Refusal> {
    let Decided { target, owner } = decided;
    // The URL decides where the request goes; a disagreeing Host header is replaced.
    let host_header =
        host_header(&target, req.headers().get(header::HOST)).ok_or(Refusal::BadRequest(BadRequest::HostField))?;
    let path = req.uri().path_and_query().cloned().unwrap_or(PathAndQuery::from_static("/"));
    let mut origin_form = uri::Parts::default();
    origin_form.path_and_query = Some(path.clone());
    let origin_form = Uri::from_parts(origin_form).map_err(|e| Refusal::BadRequest(e.into()))?;
    // A parent proxy gets the absolute form, from the same normalised parts (built only when
    // a parent may be used: a direct request pays nothing for it).
    let absolute_form = match ctx.shared.router.is_chained() {
        false => None,
        true => {
            let mut parts = uri::Parts::default();
            parts.scheme = Some(uri::Scheme::HTTP);
            parts.authority = Some(
                uri::Authority::try_from(host_header.as_bytes())
                    .map_err(|_| Refusal::BadRequest(BadRequest::HostField))?,
            );
            parts.path_and_query = Some(path);
            Some(Uri::from_parts(parts).map_err(|e| Refusal::BadRequest(e.into()))?)
        }
    };
    let forms = Forms { origin: origin_form, absolute: absolute_form };
    *req.uri_mut() = forms.origin.clone();
    // The client's proxy credentials are for a parent when GuardNest asks for none itself.
    let passthrough = !ctx.shared.access.needs_credentials();
    let client_auth = req.headers().get(header::PROXY_AUTHORIZATION).filter(|_| passthrough).cloned();
    // A protocol upgrade (a WebSocket over plain HTTP) keeps its `Upgrade`: the upstream's
    // 101 turns the connection into a tunnel.
    let upgrade = upgrade_asked(req.headers());
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    if let Some(protocol) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    headers.insert(header::HOST, host_header);
    headers.append(header::VIA, VIA);
    *req.version_mut() = http::Version::HTTP_11;

    let shared = &ctx.shared;
    Stats::bump(&shared.stats.requests_total);
    // "GET /path HTTP/1.1": the head as sent upstream counts with the body.
    let start_line = req.method().as_str().len() + 1 + req.uri().path_and_query().map_or(1, |p| p.as_str().len()) + 9;
    shared.stats.bytes_up.fetch_add(head_size(start_line, req.headers()), Relaxed);
    let idle = shared.config.idle_timeout;
    let on_client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut req = Request::from_parts(parts, IdleBody::new(body, idle, Some((shared.stats.clone(), up_bytes))));
    watch_interim(&ctx.local, &mut req);
    let via = Via { forms, client_auth };
    Ok(Outgoing { req, target, owner, via, on_client_upgrade, passthrough })
}

/// The upstream's answer made into the client's.
fn answer(response: Response<Incoming>, ctx: &ConnCtx) -> Response<ProxyBody> {
    let shared = &ctx.shared;
    let (mut parts, body) = response.into_parts();
    // With Transfer-Encoding, Content-Length is not the body's length (RFC 9112 §6.3):
    // hyper read the body by its coding, and frames it anew for the client.
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    let upgrade = (parts.status == StatusCode::SWITCHING_PROTOCOLS)
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = upgrade {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
    }
    parts.headers.append(header::VIA, VIA);
    // We speak HTTP/1.1 on this hop whatever the upstream spoke; hyper downgrades for 1.0 clients.
    parts.version = http::Version::HTTP_11;
    // "HTTP/1.1 200 OK": the head as sent to the client counts with the body.
    let start_line = 13 + parts.status.canonical_reason().map_or(0, str::len);
    shared.stats.bytes_down.fetch_add(head_size(start_line, &parts.headers), Relaxed);
    let body = IdleBody::new(body, shared.config.idle_timeout, Some((shared.stats.clone(), down_bytes)));
    Response::from_parts(parts, Either::Left(body))
}

fn up_bytes(stats: &Stats) -> &AtomicU64 {
    &stats.bytes_up
}

fn down_bytes(stats: &Stats) -> &AtomicU64 {
    &stats.bytes_down
}

/// The protocol a request asks to switch to: an `Upgrade` field that its `Connection`
/// names (RFC 9110 §7.8).
fn upgrade_asked(headers: &HeaderMap) -> Option<HeaderValue> {
    let protocol = headers.get(header::UPGRADE)?;
    let named = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    named.then(|| protocol.clone())
}

/// Counts, from zero, the interim answers hyper's client reads for `req`, in `local`'s
/// count (held weakly: the callback may outlive the connection in a dropped upstream).
fn watch_interim<B>(local: &Arc<Local>, req: &mut Request<B>) {
    local.interim.seen.store(0, Relaxed);
    let local = Arc::downgrade(local);
    hyper::ext::on_informational(req, move |_| {
        if let Some(local) = local.upgrade() {
            if local.interim.seen.fetch_add(1, Relaxed) + 1 > MAX_INTERIM {
                local.interim.exceeded.notify_one();
            }
        }
    });
}

fn too_many_interim(target: &Target) -> Refusal {
    Refusal::Upstream(UpstreamError::Response {
        target: target.to_string(),
        source: BadResponse::TooManyInterim(MAX_INTERIM),
    })
}

/// A request that asks for an upgrade, over a connection of its own (it will not go back
/// to a pool): a 101 from the upstream becomes a tunnel between the two sockets, started
/// by the connection task once hyper has written the 101; any other answer is passed on.
async fn upgrade_exchange(
    mut req: Request<UpBody>,
    target: Target,
    on_client: OnUpgrade,
    interim: &crate::conn::upstream::Interim,
    ctx: &ConnCtx,
    via: &Via,
) -> Result<Response<ProxyBody>, Refusal> {
    let shared = &ctx.shared;
    let idle = shared.config.idle_timeout;
    let reach = shared.reach();
    let hops = shared.router.hops(false, &target).await;
    let mut reached = None;
    let mut failed = None;
    for hop in hops.iter() {
        let dialed = match hop {
            Hop::Direct => reach.dial(&target).await.map(|s| (s, Peer::Origin(target.clone()), None)),
            Hop::Parent(p) => route::dial_parent(&reach, p).await.map(|s| (s, Peer::Parent(p.target.clone()), Some(p))),
        };
        match dialed {
            Ok(d) => {
                reached = Some(d);
                break;
            }
            Err(e) => failed = Some(e),
        }
    }
    let Some((stream, peer, parent)) = reached else {
        return Err(failed.unwrap_or(Refusal::Upstream(UpstreamError::State)));
    };
    via.prepare(&mut req, parent.map(|p| &**p));
    let io = TokioIo::new(UpstreamIo::new(stream, idle));
    let (mut sender, conn) = http1::Builder::new().handshake(io).await.map_err(|e| upstream_error(e, &peer))?;
    // The connection is driven by a task of its own: it serves this one exchange, and the
    // body of a non-101 answer, then ends (or hands its socket over for the tunnel).
    shared.tracker.spawn(conn.with_upgrades());
    let mut response = tokio::select! {
        r = tokio::time::timeout(idle, sender.send_request(req)) => match r {
            Ok(r) => r.map_err(|e| upstream_error(e, &peer))?,
            Err(_) => return Err(no_response(&peer, idle)),
        },
        () = interim.exceeded() => return Err(too_many_interim(&target)),
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(answer(response, ctx));
    }
    let upgraded = match tokio::time::timeout(idle, hyper::upgrade::on(&mut response)).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return Err(upstream_error(e, &peer)),
        Err(_) => return Err(no_response(&peer, idle)),
    };
    let parts = upgraded.downcast::<TokioIo<UpstreamIo>>().map_err(|_| Refusal::Upstream(UpstreamError::State))?;
    let upstream = parts.io.into_inner().into_inner();
    let early = parts.read_buf.to_vec();
    connect::upgraded(ctx, Pending { on_upgrade: on_client, upstream, target, early })?;
    Ok(answer(response, ctx))
}

/// The request's two URL forms, and the client's credentials for a parent.
struct Via {
    forms: Forms,
    client_auth: Option<HeaderValue>,
}

struct Forms {
    origin: Uri,
    /// `None` when the router names no parent.
    absolute: Option<Uri>,
}

impl Via {
    /// Makes `req` what `parent` (or, without one, the origin) is sent: the absolute form
    /// and the parent's credentials (`[upstream]`'s, else the client's), or the origin form
    /// and no proxy credentials.
    fn prepare<B>(&self, req: &mut Request<B>, parent: Option<&Parent>) {
        let headers = req.headers_mut();
        match parent {
            Some(p) => {
                match p.auth.as_ref().or(self.client_auth.as_ref()) {
                    Some(auth) => headers.insert(header::PROXY_AUTHORIZATION, auth.clone()),
                    None => headers.remove(header::PROXY_AUTHORIZATION),
                };
                if let Some(absolute) = &self.forms.absolute {
                    *req.uri_mut() = absolute.clone();
                }
            }
            None => {
                headers.remove(header::PROXY_AUTHORIZATION);
                if self.forms.absolute.is_some() {
                    *req.uri_mut() = self.forms.origin.clone();
                }
            }
        }
    }
}

/// Sends the request over a kept connection to the first hop the router names (the origin,
/// or a parent proxy), or a new one if there is none or the kept one turns out closed before
/// the request left; a hop that cannot be dialed gives way to the next. Says which parent
/// answered, if one did.
async fn exchange(
    req: Request<UpBody>,
    target: &Target,
    owner: &Owner,
    ctx: &ConnCtx,
    via: &Via,
    sent_to: &parking_lot::Mutex<Option<Peer>>,
) -> Result<(Response<Incoming>, Option<Arc<Parent>>), Refusal> {
    let mut req = req;
    let shared = &ctx.shared;
    let pool = &shared.pool;
    let reach = shared.reach();
    let hops = shared.router.hops(false, target).await;
    let mut failed = None;
    for hop in hops.iter() {
        let (peer, parent) = match hop {
            Hop::Direct => (Peer::Origin(target.clone()), None),
            Hop::Parent(p) => (Peer::Parent(p.target.clone()), Some(p)),
        };
        via.prepare(&mut req, parent.map(|p| &**p));
        *sent_to.lock() = Some(peer.clone());
        if let Some(kept) = ctx.local.upstream.take(&peer, owner, pool) {
            match ctx.local.upstream.send(kept, req).await {
                Ok(response) => return Ok((response, parent.cloned())),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(upstream_error(e.into_error(), &peer)),
                },
            }
        }
        // A new connection: dialed, and its handshake, on the heap (the kept connection is
        // the common case, and this request's future is moved whole).
        let fresh = match Box::pin(connect_to(&reach, target, parent, &peer, owner, pool.io_idle())).await? {
            Ok(up) => up,
            Err(dial_failed) => {
                failed = Some(dial_failed);
                continue;
            }
        };
        let response = ctx.local.upstream.send(fresh, req).await.map_err(|e| upstream_error(e.into_error(), &peer))?;
        return Ok((response, parent.cloned()));
    }
    Err(failed.unwrap_or(Refusal::Upstream(UpstreamError::State)))
}

/// A new upstream connection to `peer` (the origin, or `parent`): `Ok(Err(_))` when it cannot
/// be dialed (the next hop is tried), `Err` when its handshake fails.
async fn connect_to(
    reach: &route::Reach<'_>,
    target: &Target,
    parent: Option<&Arc<Parent>>,
    peer: &Peer,
    owner: &Owner,
    idle: std::time::Duration,
) -> Result<Result<Upstream, Refusal>, Refusal> {
    let dialed = match parent {
        None => reach.dial(target).await,
        Some(p) => route::dial_parent(reach, p).await,
    };
    let stream = match dialed {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    Upstream::over(peer.clone(), owner.clone(), stream, idle).await.map(Ok).map_err(|e| upstream_error(e, peer))
}

/// Connected, and no answer in time: the upstream's slowness (504), not a failed dial.
fn no_response(peer: &Peer, timeout: std::time::Duration) -> Refusal {
    Refusal::Upstream(UpstreamError::ResponseTimeout { target: peer.to_string(), timeout })
}

fn upstream_error(source: hyper::Error, peer: &Peer) -> Refusal {
    Refusal::Upstream(UpstreamError::Http { target: peer.to_string(), source })
}
