//! Route stage, below the gate and beside the dial stage ([`crate::conn::dial`]): where an
//! allowed request goes (direct, or through a parent proxy, the user's own), and the one
//! place a target is reached, directly ([`Reach::dial`]) or through a parent. Both CONNECT paths call [`connect`]; the forward stage asks [`Router::hops`] and
//! sends absolute-form requests to a parent over its own pooled connections.
//!
//! A CONNECT through a parent costs one round trip more than a direct one: our CONNECT to the
//! parent and its answer, written in one write and read as one head. A parent's `407` is passed
//! to the client with the parent's connection pinned to the client's, so that the client's
//! next CONNECT (its answer to the challenge, NTLM's or Negotiate's included) goes out on the
//! connection that was challenged.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{UpstreamConfig, UpstreamMode};
use crate::conn::dial::{DialError, Dialer};
use crate::conn::respond::{ParentError, ParentFailure, Refusal};
use crate::domain::{Host, Target};
use crate::pac::{Pac, PacHop};
use crate::stats::Stats;
use crate::sysproxy::{Bypass, BypassStyle, ProxyServer, UserProxy, UserSettings};

/// Largest head a parent may answer a CONNECT with.
const MAX_PARENT_HEAD: usize = 64 * 1024;
/// Largest body of a parent's refusal passed to the client (a 407 page); a larger one is cut
/// and the parent's connection is not kept.
const MAX_PARENT_BODY: usize = 64 * 1024;

/// A parent proxy, as requests go to it.
#[derive(Debug)]
pub(crate) struct Parent {
    /// Its address, as the settings name it.
    pub(crate) server: ProxyServer,
    /// The same, to dial.
    pub(crate) target: Target,
    /// `Basic …` from `[upstream] user` and `password`.
    pub(crate) auth: Option<HeaderValue>,
}

impl Parent {
    fn new(server: ProxyServer, auth: Option<HeaderValue>) -> Option<Arc<Parent>> {
        let target = Target { host: Host::parse(&server.host).ok()?, port: server.port };
        Some(Arc::new(Parent { server, target, auth }))
    }
}

/// One way to reach a target, in the order tried.
#[derive(Debug, Clone)]
pub(crate) enum Hop {
    /// Dial the target.
    Direct,
    /// Through a parent proxy.
    Parent(Arc<Parent>),
}

#[derive(Debug)]
enum Kind {
    Direct,
    Manual { http: Arc<[Hop]>, https: Arc<[Hop]>, only_listed: bool },
    Pac(Pac),
}

/// Where allowed traffic goes: the decision of `[upstream]` over the user's own settings,
/// made per request. Read-only once built.
#[derive(Debug)]
pub struct Router {
    kind: Kind,
    /// The OS's bypass list (its own rules) and `[upstream] bypass`.
    bypass: Vec<Bypass>,
    auth: Option<HeaderValue>,
    description: String,
    direct: Arc<[Hop]>,
    /// Loopback and `localhost` always direct, as browsers that follow the OS's settings do
    /// (`mode = "system"`); with `fixed`, `[upstream] bypass` alone decides.
    local_direct: bool,
}

impl Default for Router {
    fn default() -> Self {
        Router::direct("no parent proxy")
    }
}

impl Router {
    /// Everything direct; `why` says why, for the status.
    pub fn direct(why: &str) -> Router {
        Router {
            kind: Kind::Direct,
            bypass: Vec::new(),
            auth: None,
            description: format!("direct ({why})"),
            direct: Arc::from([Hop::Direct]),
            local_direct: true,
        }
    }

    /// The router `[upstream]` describes, over the user's own settings (`mode = "system"`;
    /// `None` when they could not be read, or there is no backend). A parent at `own` (this
    /// proxy's listener: the settings are GuardNest's own, not the user's) is not used.
    pub fn new(config: &UpstreamConfig, user: Option<&UserSettings>, own: Option<SocketAddr>) -> Router {
        let auth = basic(config);
        let extra = Bypass::new(BypassStyle::GuardNest, config.bypass.iter().cloned());
        let parent = |s: &Option<ProxyServer>| -> Option<Arc<Parent>> {
            let s = s.as_ref()?;
            if is_own(s, own) {
                tracing::warn!(parent = %s, "the system proxy settings point at GuardNest itself; not used as a parent");
                return None;
            }
            Parent::new(s.clone(), auth.clone())
        };
        let hops = |p: Option<Arc<Parent>>| -> Arc<[Hop]> {
            match p {
                Some(p) => Arc::from([Hop::Parent(p)]),
                None => Arc::from([Hop::Direct]),
            }
        };
        let (kind, bypass, description) = match config.mode {
            UpstreamMode::None => return Router::direct("[upstream] mode = \"none\""),
            UpstreamMode::Fixed => match (config.proxy_server(), &config.pac) {
                (Ok(Some(server)), _) => {
                    let p = parent(&Some(server.clone()));
                    let description = format!("parent proxy {server} ([upstream] proxy)");
                    (
                        Kind::Manual { http: hops(p.clone()), https: hops(p), only_listed: false },
                        vec![extra],
                        description,
                    )
                }
                (_, Some(url)) => {
                    (Kind::Pac(Pac::new(url)), vec![extra], format!("the PAC script at {url} ([upstream] pac)"))
                }
                _ => return Router::direct("[upstream] names no proxy"),
            },
            UpstreamMode::System => {
                let Some(user) = user else { return Router::direct("your system proxy settings could not be read") };
                let from = format!("your {} proxy settings", backend_words(user.backend));
                match &user.proxy {
                    UserProxy::Manual { http, https, bypass, only_listed } => {
                        let (h, s) = (parent(http), parent(https));
                        if h.is_none() && s.is_none() {
                            return Router::direct(&format!("{from}: no proxy"));
                        }
                        let description = format!("{} (from {from})", user.proxy.describe());
                        let kind = Kind::Manual { http: hops(h), https: hops(s), only_listed: *only_listed };
                        (kind, vec![bypass.clone(), extra], description)
                    }
                    UserProxy::Pac { url } => {
                        (Kind::Pac(Pac::new(url)), vec![extra], format!("{} (from {from})", user.proxy.describe()))
                    }
                    UserProxy::Direct => return Router::direct(&format!("{from}: no proxy")),
                    UserProxy::Unsupported(why) => return Router::direct(&format!("{from}: {why}")),
                }
            }
        };
        let local_direct = config.mode == UpstreamMode::System;
        Router { kind, bypass, auth, description, direct: Arc::from([Hop::Direct]), local_direct }
    }

    /// In plain words: "parent proxy corp.example:8123 for HTTP and HTTPS, except 2 bypassed
    /// hosts (from your GNOME proxy settings)", "direct (no parent proxy)".
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Whether any traffic may go through a parent.
    pub fn is_chained(&self) -> bool {
        !matches!(self.kind, Kind::Direct)
    }

    /// The parents named outright (not by a PAC script), for the health check.
    pub fn fixed_parents(&self) -> Vec<ProxyServer> {
        let Kind::Manual { http, https, .. } = &self.kind else { return Vec::new() };
        let mut out: Vec<ProxyServer> = Vec::new();
        for hop in http.iter().chain(https.iter()) {
            if let Hop::Parent(p) = hop {
                if !out.contains(&p.server) {
                    out.push(p.server.clone());
                }
            }
        }
        out
    }

    /// The hops for a request to `target` (`https`: a CONNECT), in the order to try them.
    pub(crate) async fn hops(&self, https: bool, target: &Target) -> Arc<[Hop]> {
        if matches!(self.kind, Kind::Direct) || (self.local_direct && is_local(&target.host)) {
            return self.direct.clone();
        }
        // A proxy list or a PAC script to consult: its state on the heap, so that every
        // request's future (moved whole for each request) stays small.
        Box::pin(self.chosen_hops(https, target)).await
    }

    async fn chosen_hops(&self, https: bool, target: &Target) -> Arc<[Hop]> {
        let host = match &target.host {
            Host::Name(n) => n.clone(),
            Host::Ip(ip) => ip.to_string(),
        };
        let bypassed = self.bypass.iter().any(|b| b.matches(&host, target.port));
        match &self.kind {
            Kind::Direct => self.direct.clone(),
            Kind::Manual { only_listed: true, http, https: tls } => match bypassed {
                true => {
                    if https {
                        tls.clone()
                    } else {
                        http.clone()
                    }
                }
                false => self.direct.clone(),
            },
            _ if bypassed => self.direct.clone(),
            Kind::Manual { http, https: tls, .. } => {
                if https {
                    tls.clone()
                } else {
                    http.clone()
                }
            }
            Kind::Pac(pac) => match pac.find(https, &host, target.port).await {
                Ok(answer) => answer
                    .iter()
                    .filter_map(|hop| match hop {
                        PacHop::Direct => Some(Hop::Direct),
                        PacHop::Proxy(server) => Parent::new(server.clone(), self.auth.clone()).map(Hop::Parent),
                    })
                    .collect(),
                Err(e) => {
                    // Browsers go direct when the script fails; so does GuardNest, saying why.
                    tracing::warn!(%target, error = %e, "PAC script gave no answer; going direct");
                    self.direct.clone()
                }
            },
        }
    }
}

/// `Basic base64(user:password)` from the configuration; marked sensitive so it is never
/// printed.
fn basic(config: &UpstreamConfig) -> Option<HeaderValue> {
    use base64::Engine as _;
    let (user, password) = (config.user.as_ref()?, config.password.as_ref()?);
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.0));
    let mut value = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn backend_words(backend: &str) -> &str {
    match backend {
        "gnome" => "GNOME",
        "kde" => "KDE",
        "windows" => "Windows",
        "macos" => "macOS",
        other => other,
    }
}

/// Whether `server` is this proxy's own listener.
fn is_own(server: &ProxyServer, own: Option<SocketAddr>) -> bool {
    let Some(own) = own else { return false };
    let Ok(ip) = server.host.parse::<std::net::IpAddr>() else {
        return server.port == own.port() && server.host == "localhost";
    };
    server.port == own.port()
        && (ip == own.ip() || (own.ip().is_unspecified() && ip.is_loopback()) || ip.is_unspecified())
}

/// Loopback and `localhost` (no parent reaches this machine's loopback).
fn is_local(host: &Host) -> bool {
    match host {
        Host::Ip(ip) => ip.is_loopback(),
        Host::Name(n) => n == "localhost" || n.ends_with(".localhost"),
    }
}

/// A parent's connection kept for one client connection: the parent answered `407` and the
/// client's answer to the challenge must go out on this very connection.
pub(crate) struct Pinned {
    parent: Arc<Parent>,
    stream: TcpStream,
}

/// A parent's own answer to a CONNECT, other than 2xx: passed to the client.
pub(crate) struct ParentAnswer {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
    /// The parent's connection, when the client's next CONNECT must use it (a `407` on a
    /// connection the parent keeps open).
    pub(crate) pinned: Option<Pinned>,
}

impl ParentAnswer {
    /// The whole answer as bytes (the first-head CONNECT path writes it itself).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(self.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// The same as a response for hyper's engine.
    pub(crate) fn into_response(self) -> http::Response<crate::conn::respond::ProxyBody> {
        let mut response = http::Response::new(http_body_util::Either::Right(http_body_util::Full::new(self.body)));
        *response.status_mut() = self.status;
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// How a CONNECT reached its target.
pub(crate) enum Reached {
    /// Connected (directly, or through a parent that answered 2xx): tunnel now. `early` is
    /// what the parent sent behind its answer.
    Open { upstream: TcpStream, early: Vec<u8> },
    /// A parent answered with something else: pass it on.
    Answered(ParentAnswer),
}

/// What the route stage needs of the proxy's shared state (`conn::gate::Shared::reach`).
pub(crate) struct Reach<'a> {
    pub(crate) router: &'a Router,
    pub(crate) dialer: &'a Dialer,
    pub(crate) stats: &'a Stats,
    /// Time a parent has to answer our CONNECT (`connect_timeout`).
    pub(crate) connect_timeout: std::time::Duration,
    /// Time a parent has to send the body of its refusal (`idle_timeout`).
    pub(crate) idle_timeout: std::time::Duration,
    /// Whether the client's `Proxy-Authorization` is for the parent: GuardNest itself asks
    /// for none (no `[access] users`).
    pub(crate) passthrough: bool,
}

impl Reach<'_> {
    /// Dials `target` itself, counting failures.
    pub(crate) async fn dial(&self, target: &Target) -> Result<TcpStream, Refusal> {
        self.dialer.dial(target).await.map_err(|e| {
            if !matches!(e, DialError::Loop { .. }) {
                Stats::bump(&self.stats.dial_failures);
            }
            Refusal::Dial(e)
        })
    }
}

/// Reaches `target` for a CONNECT: each hop in order until one connects or answers.
/// `client_auth` is the client's `Proxy-Authorization`, passed to a parent only when
/// GuardNest itself asks no credentials; `pinned` is the parent connection this client's
/// previous CONNECT was challenged on.
pub(crate) async fn connect(
    shared: &Reach<'_>,
    target: &Target,
    client_auth: Option<&[u8]>,
    mut pinned: Option<Pinned>,
) -> Result<Reached, Refusal> {
    let hops = shared.router.hops(true, target).await;
    let mut failed = None;
    for hop in hops.iter() {
        let parent = match hop {
            Hop::Direct => match shared.dial(target).await {
                Ok(upstream) => return Ok(Reached::Open { upstream, early: Vec::new() }),
                Err(e) => {
                    failed = Some(e);
                    continue;
                }
            },
            Hop::Parent(p) => p,
        };
        let kept = pinned.take().filter(|pin| pin.parent.server == parent.server).map(|pin| pin.stream);
        let stream = match kept {
            Some(s) => s,
            None => match dial_parent(shared, parent).await {
                Ok(s) => s,
                Err(e) => {
                    failed = Some(e);
                    continue;
                }
            },
        };
        let passthrough = shared.passthrough;
        let auth = parent.auth.as_ref().map(HeaderValue::as_bytes).or(client_auth.filter(|_| passthrough));
        match handshake(shared, parent, stream, target, auth, passthrough && parent.auth.is_none()).await {
            Ok(reached) => return Ok(reached),
            Err(e) => {
                Stats::bump(&shared.stats.dial_failures);
                tracing::debug!(%target, parent = %parent.server, reason = %e.reason(), "parent failed");
                failed = Some(e);
            }
        }
    }
    Err(failed.unwrap_or_else(|| Refusal::Dial(DialError::Loop { target: target.to_string() })))
}

/// Dials a parent; a failure names it (the parent is unreachable, not the site).
pub(crate) async fn dial_parent(shared: &Reach<'_>, parent: &Parent) -> Result<TcpStream, Refusal> {
    shared.dialer.dial(&parent.target).await.map_err(|e| {
        if !matches!(e, DialError::Loop { .. }) {
            Stats::bump(&shared.stats.dial_failures);
        }
        Refusal::Parent(ParentError { parent: parent.server.to_string(), failure: ParentFailure::Dial(e) })
    })
}

/// Sends our CONNECT to the parent and reads its answer head, within `connect_timeout`.
async fn handshake(
    shared: &Reach<'_>,
    parent: &Arc<Parent>,
    mut stream: TcpStream,
    target: &Target,
    auth: Option<&[u8]>,
    pin_challenge: bool,
) -> Result<Reached, Refusal> {
    let fail = |failure| Refusal::Parent(ParentError { parent: parent.server.to_string(), failure });
    let limit = shared.connect_timeout;
    let exchange = async {
        let authority = target.to_string();
        let mut request = Vec::with_capacity(128);
        request.extend_from_slice(b"CONNECT ");
        request.extend_from_slice(authority.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        request.extend_from_slice(authority.as_bytes());
        if let Some(auth) = auth {
            request.extend_from_slice(b"\r\nProxy-Authorization: ");
            request.extend_from_slice(auth);
        }
        request.extend_from_slice(b"\r\n\r\n");
        stream.write_all(&request).await.map_err(|e| fail(ParentFailure::Io(e.to_string())))?;
        let (head, rest) = read_head(&mut stream).await.map_err(fail)?;
        Ok::<_, Refusal>((stream, head, rest))
    };
    let (mut stream, head, mut rest) = match tokio::time::timeout(limit, exchange).await {
        Ok(r) => r?,
        Err(_) => return Err(fail(ParentFailure::Timeout(limit))),
    };
    if head.status.is_success() {
        return Ok(Reached::Open { upstream: stream, early: rest });
    }
    if head.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED && !pin_challenge {
        let failure = match parent.auth.is_some() {
            true => ParentFailure::CredentialsRefused,
            false => ParentFailure::NeedsCredentials,
        };
        return Err(fail(failure));
    }
    // The parent's refusal (a challenge, its own 403 or 502): its body, then passed on.
    let body_len = head.content_length.unwrap_or(0);
    let keep = head.keep_alive && head.content_length.is_some() && body_len <= MAX_PARENT_BODY;
    let wanted = body_len.min(MAX_PARENT_BODY);
    let read_body = async {
        while rest.len() < wanted {
            let mut chunk = vec![0u8; (wanted - rest.len()).min(16 * 1024)];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    let complete = matches!(tokio::time::timeout(shared.idle_timeout, read_body).await, Ok(true));
    let exact = rest.len() == wanted;
    rest.truncate(wanted);
    let pinned = (keep && complete && exact && head.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED)
        .then(|| Pinned { parent: parent.clone(), stream });
    Ok(Reached::Answered(ParentAnswer { status: head.status, headers: head.headers, body: Bytes::from(rest), pinned }))
}

/// A parent's answer head, as far as GuardNest reads it.
struct ParentHead {
    status: StatusCode,
    /// End-to-end fields, for the client.
    headers: Vec<(HeaderName, HeaderValue)>,
    content_length: Option<usize>,
    keep_alive: bool,
}

/// Reads a response head (httparse, at most [`MAX_PARENT_HEAD`]); returns it and the bytes
/// read behind it.
async fn read_head(stream: &mut TcpStream) -> Result<(ParentHead, Vec<u8>), ParentFailure> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| ParentFailure::Io(e.to_string()))?;
        if n == 0 {
            return Err(ParentFailure::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut fields);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let code = response.code.unwrap_or(0);
                let status =
                    StatusCode::from_u16(code).map_err(|_| ParentFailure::Garbage(format!("status {code}")))?;
                if status.is_informational() {
                    // A parent has no reason to send 1xx to a CONNECT; skip it all the same.
                    buf.drain(..len);
                    continue;
                }
                let mut head = ParentHead { status, headers: Vec::new(), content_length: None, keep_alive: true };
                if response.version == Some(0) {
                    head.keep_alive = false;
                }
                for field in response.headers.iter() {
                    let name = HeaderName::from_bytes(field.name.as_bytes())
                        .map_err(|_| ParentFailure::Garbage("a bad header name".into()))?;
                    let value = HeaderValue::from_bytes(field.value)
                        .map_err(|_| ParentFailure::Garbage("a bad header value".into()))?;
                    let text = String::from_utf8_lossy(field.value).to_ascii_lowercase();
                    match name.as_str() {
                        "content-length" => {
                            let len = text
                                .trim()
                                .parse()
                                .map_err(|_| ParentFailure::Garbage("a bad Content-Length".into()))?;
                            head.content_length = Some(len);
                        }
                        "connection" | "proxy-connection" => {
                            if text.contains("close") {
                                head.keep_alive = false;
                            } else if text.contains("keep-alive") {
                                head.keep_alive = true;
                            }
                        }
                        "transfer-encoding" => head.keep_alive = false,
                        "keep-alive" | "te" | "trailer" | "upgrade" => {}
                        _ => head.headers.push((name, value)),
                    }
                }
                if head.content_length.is_none() && !status.is_success() && status != StatusCode::NOT_MODIFIED {
                    // No length: the body runs to the close, so nothing of it is read.
                    head.keep_alive = false;
                }
                let rest = buf.split_off(len);
                return Ok((head, rest));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_PARENT_HEAD => {}
            Ok(httparse::Status::Partial) => return Err(ParentFailure::Garbage("an answer head too large".into())),
            Err(e) => return Err(ParentFailure::Garbage(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn target(s: &str) -> Target {
        Target::parse_authority(s).unwrap()
    }

    fn first(hops: &[Hop]) -> String {
        match &hops[0] {
            Hop::Direct => "DIRECT".into(),
            Hop::Parent(p) => p.server.to_string(),
        }
    }

    #[tokio::test]
    async fn manual_routes_per_scheme_with_the_os_bypass() {
        let user = UserSettings {
            backend: "gnome",
            proxy: UserProxy::Manual {
                http: ProxyServer::parse("corp.example:8080", 0),
                https: ProxyServer::parse("corp.example:8443", 0),
                bypass: Bypass::new(BypassStyle::Gnome, ["*.corp.example".to_string()]),
                only_listed: false,
            },
            from_snapshot: true,
        };
        let config = UpstreamConfig { bypass: vec!["10.0.0.0/8".into()], ..UpstreamConfig::default() };
        let r = Router::new(&config, Some(&user), None);
        assert!(r.describe().contains("from your GNOME proxy settings"), "{}", r.describe());
        assert_eq!(first(&r.hops(true, &target("example.org:443")).await), "corp.example:8443");
        assert_eq!(first(&r.hops(false, &target("example.org:80")).await), "corp.example:8080");
        assert_eq!(first(&r.hops(true, &target("wiki.corp.example:443")).await), "DIRECT");
        assert_eq!(first(&r.hops(true, &target("10.1.1.1:443")).await), "DIRECT", "[upstream] bypass");
        assert_eq!(first(&r.hops(true, &target("127.0.0.1:443")).await), "DIRECT", "loopback");
        assert_eq!(first(&r.hops(true, &target("localhost:443")).await), "DIRECT");
        assert_eq!(r.fixed_parents().len(), 2);
    }

    #[tokio::test]
    async fn guardnest_itself_is_never_a_parent() {
        let user = UserSettings {
            backend: "kde",
            proxy: UserProxy::Manual {
                http: ProxyServer::parse("127.0.0.1:3000", 0),
                https: ProxyServer::parse("127.0.0.1:3000", 0),
                bypass: Bypass::none(BypassStyle::Kde),
                only_listed: false,
            },
            from_snapshot: false,
        };
        let r = Router::new(&UpstreamConfig::default(), Some(&user), Some("127.0.0.1:3000".parse().unwrap()));
        assert!(!r.is_chained(), "{}", r.describe());
        let none = UpstreamConfig { mode: UpstreamMode::None, ..UpstreamConfig::default() };
        assert!(!Router::new(&none, Some(&user), None).is_chained());
        assert!(Router::new(&UpstreamConfig::default(), None, None).describe().contains("could not be read"));
    }

    #[tokio::test]
    async fn only_listed_and_fixed_with_credentials() {
        let user = UserSettings {
            backend: "kde",
            proxy: UserProxy::Manual {
                http: ProxyServer::parse("p:1", 0),
                https: ProxyServer::parse("p:1", 0),
                bypass: Bypass::new(BypassStyle::Kde, [".proxied.example".to_string()]),
                only_listed: true,
            },
            from_snapshot: false,
        };
        let r = Router::new(&UpstreamConfig::default(), Some(&user), None);
        assert_eq!(first(&r.hops(true, &target("a.proxied.example:443")).await), "p:1");
        assert_eq!(first(&r.hops(true, &target("other.example:443")).await), "DIRECT");
        let fixed = UpstreamConfig {
            mode: UpstreamMode::Fixed,
            proxy: Some("http://parent.test:3128".into()),
            user: Some("me".into()),
            password: Some(Secret("pw".into())),
            ..UpstreamConfig::default()
        };
        let r = Router::new(&fixed, None, None);
        let hops = r.hops(true, &target("example.org:443")).await;
        let Hop::Parent(p) = &hops[0] else { panic!() };
        assert_eq!(p.auth.as_ref().unwrap().to_str().unwrap(), "Basic bWU6cHc=");
        assert!(p.auth.as_ref().unwrap().is_sensitive());
        assert_eq!(r.describe(), "parent proxy parent.test:3128 ([upstream] proxy)");
    }
}
