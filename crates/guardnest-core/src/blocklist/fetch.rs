//! Downloads of URL sources: conditional, bounded, and never through GuardNest itself.
//!
//! Once GuardNest is the system proxy, a client that honours the proxy settings would send
//! GuardNest's own list downloads through GuardNest; the client is built with no proxy of
//! its own. Each download goes where the proxy's router (`[upstream]`, by default the
//! user's own proxy settings) sends it: through the user's proxy, or direct. A parent that
//! cannot be reached gives way to the next hop the settings name.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;

use crate::conn::respond::error_chain;

/// Redirects followed before a download fails.
const MAX_REDIRECTS: usize = 5;
/// Time to establish the connection to a list server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server could not be reached: name resolution or the connection failed.
    #[error("{0}")]
    Connect(String),
    /// TLS, redirect or protocol failure (the whole cause chain).
    #[error("{0}")]
    Transport(String),
    /// The server answered with a status other than 200 or 304.
    #[error("server answered {0}")]
    Status(StatusCode),
    /// The body is larger than the configured limit.
    #[error("download larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The body could not be written to disk.
    #[error("cannot store the download: {0}")]
    Disk(String),
    /// The download took longer than the configured limit.
    #[error("download took longer than {0:?}")]
    Timeout(Duration),
}

impl FetchError {
    /// The kind of problem this is for the user.
    pub fn problem_kind(&self) -> super::problem::ProblemKind {
        use super::problem::ProblemKind;
        match self {
            FetchError::Connect(_) | FetchError::Transport(_) => ProblemKind::Offline,
            FetchError::Status(_) => ProblemKind::Refused,
            FetchError::TooLarge { .. } => ProblemKind::TooLarge,
            FetchError::Disk(_) => ProblemKind::Disk,
            FetchError::Timeout(_) => ProblemKind::Timeout,
        }
    }
}

/// A new body, or word that the cached one is current.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the validators matched.
    NotModified,
    /// 200 with a body.
    Body {
        /// The body (transfer encoding undone), in the file the caller gave.
        file: tempfile::NamedTempFile,
        /// Its `ETag`.
        etag: Option<String>,
        /// Its `Last-Modified`.
        last_modified: Option<String>,
    },
}

/// Reports download progress: bytes so far and the total when known.
pub trait Progress: Send + Sync {
    /// Called as bytes arrive.
    fn update(&self, received: u64, total: Option<u64>);
}

impl Progress for () {
    fn update(&self, _: u64, _: Option<u64>) {}
}

/// The list downloader.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    max_bytes: u64,
    timeout: Duration,
    /// Where downloads go (none yet: direct).
    upstream: Arc<ArcSwapOption<crate::Router>>,
    /// A client per parent proxy, made on first use.
    through: Arc<Mutex<HashMap<String, reqwest::Client>>>,
}

impl Fetcher {
    /// A downloader with a size cap and an overall time limit per download.
    pub fn new(max_bytes: u64, timeout: Duration) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .user_agent(concat!("guardnest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Transport(error_chain(&e)))?;
        Ok(Self { client, max_bytes, timeout, upstream: Arc::default(), through: Arc::default() })
    }

    /// Sends downloads where `router` says.
    pub fn set_upstream(&self, router: Arc<crate::Router>) {
        self.upstream.store(Some(router));
        self.through.lock().clear();
    }

    /// The clients to try for `url`, in order: one through each parent the router names
    /// for it, or the direct one.
    async fn clients_for(&self, url: &str) -> Vec<(reqwest::Client, Option<String>)> {
        use crate::conn::route::Hop;
        let direct = || vec![(self.client.clone(), None)];
        let Some(router) = self.upstream.load_full() else { return direct() };
        let Ok(uri) = url.parse::<http::Uri>() else { return direct() };
        let https = uri.scheme_str() == Some("https");
        let default_port = if https { 443 } else { 80 };
        let Some(authority) = uri.authority() else { return direct() };
        let Ok(target) = crate::domain::Target::parse_with_default(authority.as_str(), Some(default_port)) else {
            return direct();
        };
        let mut out = Vec::new();
        for hop in router.hops(https, &target).await.iter() {
            match hop {
                Hop::Direct => out.push((self.client.clone(), None)),
                Hop::Parent(p) => {
                    let key = p.server.to_string();
                    let made = self.through.lock().get(&key).cloned();
                    let client = match made {
                        Some(c) => c,
                        None => match self.client_through(&key, p.auth.clone()) {
                            Ok(c) => {
                                self.through.lock().insert(key.clone(), c.clone());
                                c
                            }
                            Err(e) => {
                                tracing::warn!(parent = %key, error = %e, "cannot use the parent proxy for list downloads");
                                continue;
                            }
                        },
                    };
                    out.push((client, Some(key)));
                }
            }
        }
        if out.is_empty() {
            return direct();
        }
        out
    }

    /// A client whose every request goes through the parent proxy at `server`.
    fn client_through(
        &self,
        server: &str,
        auth: Option<reqwest::header::HeaderValue>,
    ) -> Result<reqwest::Client, FetchError> {
        let mut proxy =
            reqwest::Proxy::all(format!("http://{server}")).map_err(|e| FetchError::Transport(error_chain(&e)))?;
        if let Some(auth) = auth {
            proxy = proxy.custom_http_auth(auth);
        }
        reqwest::Client::builder()
            .proxy(proxy)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .connect_timeout(CONNECT_TIMEOUT.min(self.timeout))
            .user_agent(concat!("guardnest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Transport(error_chain(&e)))
    }

    /// The size limit, also applied to a list once decompressed.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Downloads `url` into `file`, conditionally when validators are given. The body goes
    /// to disk as it arrives, so a large list never sits in memory whole.
    pub async fn fetch(
        &self,
        url: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
        progress: &dyn Progress,
        file: tempfile::NamedTempFile,
    ) -> Result<Fetched, FetchError> {
        match tokio::time::timeout(self.timeout, self.fetch_unbounded(url, etag, last_modified, progress, file)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(self.timeout)),
        }
    }

    async fn fetch_unbounded(
        &self,
        url: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
        progress: &dyn Progress,
        mut file: tempfile::NamedTempFile,
    ) -> Result<Fetched, FetchError> {
        let transport = |e: reqwest::Error| FetchError::Transport(error_chain(&e));
        let mut sent = None;
        for (client, parent) in self.clients_for(url).await {
            let mut request = client.get(url);
            if let Some(v) = etag {
                request = request.header(IF_NONE_MATCH, v);
            }
            if let Some(v) = last_modified {
                request = request.header(IF_MODIFIED_SINCE, v);
            }
            let result = request.send().await.map_err(|e| match (e.is_connect(), &parent) {
                (true, Some(p)) => FetchError::Connect(format!("parent proxy {p} unreachable: {}", error_chain(&e))),
                (true, None) => FetchError::Connect(error_chain(&e)),
                (false, _) => transport(e),
            });
            let next = matches!(result, Err(FetchError::Connect(_)));
            sent = Some(result);
            if !next {
                break;
            }
        }
        let mut response =
            sent.unwrap_or_else(|| Err(FetchError::Connect("no way to reach the list server".into())))?;
        match response.status() {
            StatusCode::NOT_MODIFIED => return Ok(Fetched::NotModified),
            StatusCode::OK => {}
            other => return Err(FetchError::Status(other)),
        }
        let header = |name| {
            response.headers().get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).map(str::to_owned)
        };
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let total = response.content_length();
        if total.is_some_and(|t| t > self.max_bytes) {
            return Err(FetchError::TooLarge { limit: self.max_bytes });
        }
        let mut received = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            received += chunk.len() as u64;
            if received > self.max_bytes {
                return Err(FetchError::TooLarge { limit: self.max_bytes });
            }
            // Chunks are small and the file is local: a plain write does not stall the runtime.
            std::io::Write::write_all(&mut file, &chunk).map_err(|e| FetchError::Disk(e.to_string()))?;
            progress.update(received, total);
        }
        Ok(Fetched::Body { file, etag, last_modified })
    }
}
