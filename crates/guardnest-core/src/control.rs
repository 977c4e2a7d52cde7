//! The control API: JSON over HTTP on loopback, for the CLI and the desktop app.
//!
//! A web page can reach loopback too, so every request is checked before anything else:
//! the Host header must name loopback (DNS rebinding), a browser's Origin header and fetch
//! metadata of a page (`Sec-Fetch-Site` other than `none`) are refused (CSRF, and pages
//! including `/proxy.pac` as a script), every answer is `nosniff`, and every `/v1` call
//! needs the bearer token that `run` writes into the data dir
//! with owner-only permissions. A missing or wrong token gets 401 and nothing more.
//!
//! The CLI never sends the token itself: it could be talking to a program that took the
//! port of a GuardNest that died. It proves it holds the token with a keyed hash of a fresh
//! nonce and the request (`Authorization: GuardNest-Proof nonce=…, mac=…`, see [`proof`]),
//! and the answer proves the same back (`GuardNest-Proof` header over the nonce, status and
//! body), so an impostor neither learns the token nor gets its answers believed. Scripts may
//! still send `Authorization: Bearer TOKEN`.
//!
//! `POST /v1/quit` stops the whole instance as Ctrl-C would (`guardnest stop`, upgrades and
//! the uninstaller), answering first with the command line that started it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::service::ProxyService;

/// What `run` records for the CLI: where the control API is and its token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// Control API address.
    pub addr: SocketAddr,
    /// Bearer token.
    pub token: String,
    /// The running instance (`pid` and its start time in the file): a record whose process
    /// is gone, or whose PID another process got since, is stale.
    #[serde(flatten)]
    pub owner: crate::sysproxy::ProcessId,
}

impl RuntimeInfo {
    /// Writes the runtime file (owner-only, atomically).
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::sysproxy::fsutil::write_atomic(path, &json, true)
    }

    /// Reads the runtime file (never through a link: see [`crate::sysproxy::fsutil::open_no_follow`]).
    pub fn load(path: &Path) -> std::io::Result<RuntimeInfo> {
        let text = crate::sysproxy::fsutil::read_to_string_no_follow(path)?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }

    /// The PID of the instance that wrote it.
    pub fn pid(&self) -> u32 {
        self.owner.pid
    }
}

/// A fresh random token (32 bytes, hex).
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Connections the control API holds at once: its clients are the CLI and the app, a
/// handful. When all are held, a new connection takes the place of the one that has been
/// waiting longest without a request (see `Held`), so silent connections cannot keep the
/// CLI out.
pub const MAX_CONNECTIONS: usize = 32;

/// A bound control API.
pub struct ControlServer {
    listener: TcpListener,
    addr: SocketAddr,
}

/// A `{kind, message}` error body.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    kind: &'a str,
    message: String,
}

/// The connections held, so that a new one can take the place of an idle one. A local
/// process holding many silent connections (each may wait the head timeout before it is
/// closed) would otherwise keep `guardnest status` waiting for a free place; here the
/// silent ones are the first to go, and a connection in the middle of a request never is.
#[derive(Default)]
struct Held {
    conns: parking_lot::Mutex<Vec<Conn>>,
    next: std::sync::atomic::AtomicU64,
    /// Signalled when a connection goes.
    freed: tokio::sync::Notify,
}

struct Conn {
    id: u64,
    close: CancellationToken,
    /// Requests being answered on it now.
    busy: Arc<std::sync::atomic::AtomicUsize>,
    /// When it last finished a request (or was accepted).
    idle_since: Arc<parking_lot::Mutex<std::time::Instant>>,
}

/// One held connection: closes it when cancelled, and leaves [`Held`] when dropped.
struct Place {
    id: u64,
    close: CancellationToken,
    busy: Arc<std::sync::atomic::AtomicUsize>,
    idle_since: Arc<parking_lot::Mutex<std::time::Instant>>,
    held: Arc<Held>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.held.conns.lock().retain(|c| c.id != self.id);
        self.held.freed.notify_one();
    }
}

impl Held {
    /// A place for a new connection: free, or taken from the connection idle longest;
    /// `None` when every held connection is answering a request (then the new one waits,
    /// bounded by the caller).
    fn try_place(self: &Arc<Self>) -> Option<Place> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut conns = self.conns.lock();
        if conns.len() >= MAX_CONNECTIONS {
            let idle_since = |c: &Conn| *c.idle_since.lock();
            let oldest = conns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.busy.load(Relaxed) == 0)
                .min_by_key(|(_, c)| idle_since(c))
                .map(|(i, _)| i)?;
            conns.swap_remove(oldest).close.cancel();
        }
        let place = Place {
            id: self.next.fetch_add(1, Relaxed),
            close: CancellationToken::new(),
            busy: Arc::default(),
            idle_since: Arc::new(parking_lot::Mutex::new(std::time::Instant::now())),
            held: self.clone(),
        };
        conns.push(Conn {
            id: place.id,
            close: place.close.clone(),
            busy: place.busy.clone(),
            idle_since: place.idle_since.clone(),
        });
        Some(place)
    }
}

impl ControlServer {
    /// Binds the (loopback) address.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until cancelled, holding at most [`MAX_CONNECTIONS`] connections (a new one
    /// takes the place of the one idle longest), each given the proxy's `request_timeout`
    /// for every request head, as the proxy's own clients are.
    pub async fn run(self, service: Arc<ProxyService>, token: String, shutdown: CancellationToken) {
        let token: Arc<str> = token.into();
        let head_timeout = service.request_timeout();
        let held = Arc::new(Held::default());
        let own = self.addr;
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = self.listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let (service, token, held) = (service.clone(), token.clone(), held.clone());
            tokio::spawn(async move {
                // Every held connection is answering a request: wait for one to finish,
                // as long as a head may take; then give up on this one.
                let place = tokio::time::timeout(head_timeout, async {
                    loop {
                        let freed = held.freed.notified();
                        if let Some(place) = held.try_place() {
                            return place;
                        }
                        freed.await;
                    }
                })
                .await;
                let Ok(place) = place else { return };
                let (busy, idle_since) = (place.busy.clone(), place.idle_since.clone());
                let svc = service_fn(move |req| {
                    let (service, token, busy, idle_since) =
                        (service.clone(), token.clone(), busy.clone(), idle_since.clone());
                    async move {
                        use std::sync::atomic::Ordering::Relaxed;
                        busy.fetch_add(1, Relaxed);
                        let response = handle(req, &service, &token, own).await;
                        *idle_since.lock() = std::time::Instant::now();
                        busy.fetch_sub(1, Relaxed);
                        Ok::<_, Infallible>(response)
                    }
                });
                let mut builder = http1::Builder::new();
                builder.timer(TokioTimer::new()).header_read_timeout(head_timeout);
                tokio::select! {
                    _ = builder.serve_connection(TokioIo::new(stream), svc) => {}
                    () = place.close.cancelled() => {}
                }
                drop(place);
            });
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    // Never run as a script or read as another type by a page that includes it (the PAC
    // file is JavaScript by its content, not by its type).
    r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    r
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => reply(status, "application/json", body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response<Full<Bytes>> {
    json(status, &ErrorBody { kind, message: message.into() })
}

/// Whether a browser says the request comes from a web page of another site: its fetch
/// metadata (`Sec-Fetch-Site`), which a page cannot forge or leave out and which comes with
/// the `no-cors` requests that carry no `Origin` (a `<script src>` of the PAC file). Only a
/// fetch nobody's page started (`none`: typed in, or the browser's own) is let through; the
/// OS and the browsers' proxy resolvers send no fetch metadata at all.
fn from_another_site(headers: &http::HeaderMap) -> bool {
    headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() != b"none")
}

/// Whether a Host header names this machine's loopback (with any port).
pub fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Proving the token is held without sending it: keyed BLAKE2b (the token is the key) over
/// a fresh nonce and what is said. The request's proof covers its method, path and query,
/// and the address it was sent to (so a request proved for one address is refused at
/// another); the answer's covers the nonce, its status and its body.
pub mod proof {
    use std::net::SocketAddr;

    use blake2::digest::{KeyInit as _, Mac as _};
    use bytes::Bytes;
    use http::{HeaderValue, Response};
    use http_body_util::{BodyExt as _, Full};

    /// The response header carrying the answer's proof.
    pub const HEADER: &str = "guardnest-proof";
    /// The `Authorization` scheme of a proved request.
    pub const SCHEME: &str = "GuardNest-Proof";

    fn mac(token: &str, parts: &[&[u8]]) -> String {
        // A key of up to 64 bytes: the token (64 hex digits) is one.
        let Ok(mut m) = blake2::Blake2bMac512::new_from_slice(&token.as_bytes()[..token.len().min(64)]) else {
            return String::new();
        };
        for part in parts {
            m.update(&(part.len() as u64).to_le_bytes());
            m.update(part);
        }
        m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A fresh nonce (16 random bytes, hex).
    pub fn nonce() -> std::io::Result<String> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The `Authorization` value proving `token` for this request to `addr`.
    pub fn authorization(token: &str, nonce: &str, method: &str, target: &str, addr: SocketAddr) -> String {
        format!("{SCHEME} nonce={nonce}, mac={}", authorization_mac(token, nonce, method, target, addr))
    }

    /// What the answer's [`HEADER`] must be.
    pub fn expected(token: &str, nonce: &str, status: u16, body: &[u8]) -> String {
        mac(token, &[b"response", nonce.as_bytes(), status.to_string().as_bytes(), body])
    }

    /// Checks an `Authorization` value: a bearer token, or a proof made for this server's
    /// address (`own`; the Host header must name it too). The nonce when it was a proof.
    pub(super) fn check(
        authorization: &str,
        token: &str,
        method: &str,
        target: &str,
        host: &str,
        own: SocketAddr,
    ) -> Result<Option<String>, ()> {
        if let Some(bearer) = authorization.strip_prefix("Bearer ") {
            return match super::same(bearer.as_bytes(), token.as_bytes()) {
                true => Ok(None),
                false => Err(()),
            };
        }
        let fields = authorization.strip_prefix(SCHEME).ok_or(())?.trim();
        let field = |name: &str| {
            fields.split(',').map(str::trim).find_map(|f| f.strip_prefix(name)?.strip_prefix('=')).map(str::to_string)
        };
        let (nonce, presented) = (field("nonce").ok_or(())?, field("mac").ok_or(())?);
        if nonce.len() < 16 || host != own.to_string() {
            return Err(());
        }
        let wanted = authorization_mac(token, &nonce, method, target, own);
        match super::same(presented.as_bytes(), wanted.as_bytes()) {
            true => Ok(Some(nonce)),
            false => Err(()),
        }
    }

    fn authorization_mac(token: &str, nonce: &str, method: &str, target: &str, addr: SocketAddr) -> String {
        let addr = addr.to_string();
        mac(token, &[b"request", nonce.as_bytes(), method.as_bytes(), target.as_bytes(), addr.as_bytes()])
    }

    /// Adds the answer's proof.
    pub(super) async fn sign(response: Response<Full<Bytes>>, token: &str, nonce: &str) -> Response<Full<Bytes>> {
        let (mut parts, body) = response.into_parts();
        let body = body.collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
        let proof = expected(token, nonce, parts.status.as_u16(), &body);
        if let Ok(v) = HeaderValue::from_str(&proof) {
            parts.headers.insert(HEADER, v);
        }
        Response::from_parts(parts, Full::new(body))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn proofs_bind_the_nonce_request_and_address() {
            let token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
            let own: SocketAddr = "127.0.0.1:3001".parse().unwrap();
            let n = nonce().unwrap();
            let a = authorization(token, &n, "POST", "/v1/disable", own);
            assert_eq!(check(&a, token, "POST", "/v1/disable", "127.0.0.1:3001", own), Ok(Some(n.clone())));
            // Another request, another address, another token, a bad Host: refused.
            assert!(check(&a, token, "POST", "/v1/enable", "127.0.0.1:3001", own).is_err());
            let other: SocketAddr = "127.0.0.1:3002".parse().unwrap();
            assert!(check(&a, token, "POST", "/v1/disable", "127.0.0.1:3002", other).is_err());
            assert!(check(&a, &token.replace('0', "1"), "POST", "/v1/disable", "127.0.0.1:3001", own).is_err());
            assert!(check(&a, token, "POST", "/v1/disable", "localhost:3001", own).is_err());
            assert_eq!(check(&format!("Bearer {token}"), token, "GET", "/v1/status", "x", own), Ok(None));
            assert!(check("Bearer nope", token, "GET", "/v1/status", "x", own).is_err());
            // The answer's proof covers its status and body.
            let p = expected(token, &n, 200, b"{}");
            assert_ne!(p, expected(token, &n, 200, b"{\"x\":1}"));
            assert_ne!(p, expected(token, &n, 500, b"{}"));
            assert_ne!(p, expected(token, &nonce().unwrap(), 200, b"{}"));
        }
    }
}

async fn handle(req: Request<Incoming>, service: &ProxyService, token: &str, own: SocketAddr) -> Response<Full<Bytes>> {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !loopback_host(host) {
        return error(StatusCode::FORBIDDEN, "forbidden", "the Host header must name loopback");
    }
    if req.headers().contains_key(header::ORIGIN) || from_another_site(req.headers()) {
        return error(StatusCode::FORBIDDEN, "forbidden", "requests from web pages are refused");
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method.as_str(), path.as_str()) {
        ("GET", "/healthz") => {
            let status = service.status().await;
            match status.running {
                // The proxy itself is fine; a parent proxy it cannot reach is said apart (the
                // sites behind it are unreachable, which is not GuardNest's own failure).
                true => {
                    let parents: String =
                        status.upstream.unreachable.iter().map(|p| format!("parent proxy {p}\n")).collect();
                    reply(StatusCode::OK, "text/plain", format!("ok\n{parents}"))
                }
                false => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "proxy not running\n"),
            }
        }
        ("GET", "/metrics") => reply(StatusCode::OK, "text/plain; version=0.0.4", metrics(service).await),
        ("GET", "/proxy.pac") => match service.pac().await {
            Some(pac) => reply(StatusCode::OK, "application/x-ns-proxy-autoconfig", pac),
            // A PAC that says DIRECT keeps browsing working while the proxy is off.
            None => reply(
                StatusCode::OK,
                "application/x-ns-proxy-autoconfig",
                "function FindProxyForURL(u, h) { return \"DIRECT\"; }\n",
            ),
        },
        (_, p) if p.starts_with("/v1/") => {
            let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
            let target = req.uri().path_and_query().map_or(p, |pq| pq.as_str()).to_string();
            let Ok(nonce) = proof::check(authorization, token, method.as_str(), &target, host, own) else {
                return error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong token");
            };
            let response = v1(&method, p, req.uri().query(), service).await;
            match nonce {
                Some(nonce) => proof::sign(response, token, &nonce).await,
                None => response,
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", format!("no such endpoint: {path}")),
    }
}

async fn v1(method: &Method, path: &str, query: Option<&str>, service: &ProxyService) -> Response<Full<Bytes>> {
    fn answer<T: Serialize>(r: Result<T, crate::service::ServiceError>) -> Response<Full<Bytes>> {
        match r {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => {
                let status = match e.kind() {
                    crate::service::ErrorKind::Input => StatusCode::BAD_REQUEST,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                json(status, &e.report())
            }
        }
    }
    match (method.as_str(), path) {
        ("GET", "/v1/status") => json(StatusCode::OK, &service.status().await),
        ("GET", "/v1/stats") => json(StatusCode::OK, &service.stats()),
        ("GET", "/v1/check") => match query_value(query, "name") {
            Some(name) => answer(service.check(&name)),
            None => error(StatusCode::BAD_REQUEST, "input", "give the name to check: /v1/check?name=NAME"),
        },
        ("POST", "/v1/enable") => answer(service.enable().await),
        ("POST", "/v1/disable") => answer(service.disable().await),
        ("POST", "/v1/restart") => answer(service.restart().await),
        ("POST", "/v1/pause") => {
            let seconds = query_value(query, "seconds").map(|s| s.parse::<u64>());
            let minutes =
                query_value(query, "minutes").map_or(Ok(crate::service::PAUSE_DEFAULT_MINUTES), |m| m.parse::<u64>());
            match (seconds, minutes) {
                (Some(Ok(s)), _) => answer(service.pause_for(std::time::Duration::from_secs(s)).await),
                (None, Ok(m)) => answer(service.pause(m).await),
                _ => error(StatusCode::BAD_REQUEST, "input", "minutes must be a number: /v1/pause?minutes=15"),
            }
        }
        ("POST", "/v1/resume") => json(StatusCode::OK, &service.resume().await),
        ("GET", "/v1/allowlist") => json(StatusCode::OK, &Allowed { names: service.allowed() }),
        ("POST", "/v1/allowlist/add" | "/v1/allowlist/remove") => match query_value(query, "name") {
            Some(name) if path.ends_with("/add") => answer(service.allow_domain(&name).await),
            Some(name) => answer(service.unallow_domain(&name).await),
            None => error(StatusCode::BAD_REQUEST, "input", format!("give the name: {path}?name=NAME")),
        },
        ("POST", "/v1/lists/update") => json(StatusCode::OK, &service.update_lists().await),
        ("POST", "/v1/quit") => {
            let answer = Quitting::of_this_process();
            service.request_quit();
            json(StatusCode::OK, &answer)
        }
        (
            _,
            "/v1/status"
            | "/v1/stats"
            | "/v1/check"
            | "/v1/enable"
            | "/v1/disable"
            | "/v1/restart"
            | "/v1/pause"
            | "/v1/resume"
            | "/v1/lists/update"
            | "/v1/quit"
            | "/v1/allowlist"
            | "/v1/allowlist/add"
            | "/v1/allowlist/remove",
        ) => error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{method} is not allowed on {path}")),
        _ => error(StatusCode::NOT_FOUND, "not_found", format!("no such endpoint: {path}")),
    }
}

/// The answer to `GET /v1/allowlist`: the names on the user's own allowlist, in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Allowed {
    /// The names.
    pub names: Vec<String>,
}

/// The answer to `POST /v1/quit`: how this instance was started, so that whoever stopped
/// it (an upgrade) can start it again the same way.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Quitting {
    /// Always true: the instance is stopping.
    pub changed: bool,
    /// One line.
    pub message: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The directory it was started in.
    pub cwd: Option<PathBuf>,
}

impl Quitting {
    fn of_this_process() -> Quitting {
        let program = std::env::current_exe().ok().map(|p| p.display().to_string());
        let command = program.into_iter().chain(std::env::args().skip(1)).collect();
        Quitting {
            changed: true,
            message: format!("stopping GuardNest (PID {})", std::process::id()),
            command,
            cwd: std::env::current_dir().ok(),
        }
    }
}

/// The percent-decoded value of `key` in a query string.
fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    let pair = query?.split('&').find_map(|p| p.split_once('=').filter(|(k, _)| *k == key))?;
    let raw = pair.1.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' if i + 2 < raw.len() => {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Prometheus text format.
async fn metrics(service: &ProxyService) -> String {
    let c = service.counters();
    let status = service.status().await;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        out += &format!("# HELP guardnest_{name} {help}\n# TYPE guardnest_{name} {kind}\nguardnest_{name} {value}\n");
    };
    metric("up", "gauge", "1 when the proxy listener accepts connections.", u64::from(status.running));
    metric("connections_active", "gauge", "Connections open now.", c.connections_active);
    metric("connections_total", "counter", "Connections accepted.", c.connections_total);
    metric("tunnels_total", "counter", "CONNECT tunnels established.", c.tunnels_total);
    metric("requests_total", "counter", "Plain HTTP requests forwarded.", c.requests_total);
    metric("blocked_total", "counter", "Requests refused by policy.", c.blocked_total);
    metric("dial_failures_total", "counter", "Upstream connects that failed or timed out.", c.dial_failures);
    metric("accept_errors_total", "counter", "Accept errors (descriptor exhaustion and the like).", c.accept_errors);
    metric("access_denied_total", "counter", "Requests refused by [access] (address or credentials).", c.access_denied);
    metric("upstream_idle_connections", "gauge", "Idle upstream connections kept for plain HTTP.", c.upstream_idle);
    metric("list_names", "gauge", "Distinct names in the loaded lists.", status.names as u64);
    metric("health_check_failures_total", "counter", "Self-connect health checks that failed.", status.health_failures);
    out += "# HELP guardnest_bytes_total Bytes through the proxy by direction (tunnels, and plain HTTP heads and bodies).\n# TYPE guardnest_bytes_total counter\n";
    out += &format!("guardnest_bytes_total{{direction=\"up\"}} {}\n", c.bytes_up);
    out += &format!("guardnest_bytes_total{{direction=\"down\"}} {}\n", c.bytes_down);
    out += "# HELP guardnest_blocked_by_list_total Blocks by list.\n# TYPE guardnest_blocked_by_list_total counter\n";
    for (list, n) in service.stats().blocked_by_list {
        out += &format!(
            "guardnest_blocked_by_list_total{{list=\"{}\"}} {n}\n",
            list.replace('\\', "\\\\").replace('"', "\\\"")
        );
    }
    out
}

/// The runtime file path inside a data dir.
pub fn runtime_path(data_dir: &Path) -> PathBuf {
    crate::service::runtime_file(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_tokens() {
        for ok in ["127.0.0.1:3001", "localhost", "LOCALHOST:1", "[::1]:3001", "127.9.9.9"] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in ["", "evil.test", "evil.test:3001", "10.0.0.1:3001", "localhost.evil.test", "[::2]:1"] {
            assert!(!loopback_host(bad), "{bad}");
        }
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"abc", b"ab"));
        assert_eq!(query_value(Some("x=1&name=b%C3%BCcher.example"), "name").as_deref(), Some("bücher.example"));
        assert_eq!(query_value(Some("name=a%2"), "name").as_deref(), Some("a%2"));
        assert_eq!(query_value(Some("other=1"), "name"), None);
        let t = new_token().unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token().unwrap());
    }
}
