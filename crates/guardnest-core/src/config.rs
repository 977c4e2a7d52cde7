//! Typed configuration, validated before any port is bound.
//!
//! One struct per subsystem; every default is a named constant here (`[access]` in its own
//! file) and nowhere else.
//! Durations are humantime strings in TOML (`"10s"`, `"1m 30s"`); unknown keys are errors
//! that name the key, so a typo never silently falls back to a default.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

mod access;
mod error;
pub use access::{AccessConfig, UserConfig, CLOUD_METADATA, DEFAULT_DENY_DESTINATIONS};
pub use error::ConfigError;

/// The default listen address: loopback only, port 3000.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 3000);
/// Time a client has to send a complete request head.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to resolve and connect to an upstream before answering 504.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A tunnel with no bytes either way for this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace given to open connections at shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; a permit is taken before `accept`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// Largest request head accepted; larger heads get 431.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Threads serving connections: one. A desktop proxy is I/O bound; one thread avoids the
/// cross-thread wake-ups that cost more CPU per connection than the work itself.
pub const DEFAULT_WORKER_THREADS: usize = 1;
/// Period of the self-connect health check.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// How often list sources are checked for changes.
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(30);
/// Largest list download accepted.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 256 * 1024 * 1024;
/// Longest a list download may take, start to finish.
pub const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// The whole configuration of a GuardNest instance.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The listener and connection handling.
    pub proxy: ProxyConfig,
    /// The self-connect health check.
    pub health: HealthConfig,
    /// Block and allow lists.
    pub blocklist: BlocklistConfig,
    /// The local control API.
    pub control: ControlConfig,
    /// Making GuardNest the system proxy.
    pub system_proxy: SystemProxyConfig,
    /// Who may use the proxy (gateway mode).
    pub access: AccessConfig,
    /// Where allowed traffic goes: direct, or through the user's own proxy (the parent).
    pub upstream: UpstreamConfig,
}

/// Which parent proxy GuardNest chains through (`[upstream] mode`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamMode {
    /// The user's own proxy, from the OS's settings (the snapshot of them while GuardNest
    /// is the system proxy).
    #[default]
    System,
    /// Always direct.
    None,
    /// `proxy` or `pac` from this section.
    Fixed,
}

impl UpstreamMode {
    /// The name, as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamMode::System => "system",
            UpstreamMode::None => "none",
            UpstreamMode::Fixed => "fixed",
        }
    }
}

/// A secret from the configuration: never printed (its `Debug` says `<hidden>`).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Where allowed traffic goes after the checks: direct, or through a parent proxy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// `system` (the default), `none` or `fixed`.
    pub mode: UpstreamMode,
    /// With `fixed`: the parent, `http://host:port`.
    pub proxy: Option<String>,
    /// With `fixed`: a PAC script's URL (`http://`, `https://` or `file://`) asked for each host.
    pub pac: Option<String>,
    /// Hosts that never go through the parent, besides the OS's own bypass list: a name (and
    /// its subdomains), `*` wildcards, an address or a CIDR, `<local>` for names without a dot.
    pub bypass: Vec<String>,
    /// Basic credentials for the parent: the user name.
    pub user: Option<String>,
    /// Basic credentials for the parent: the password (never logged or shown).
    pub password: Option<Secret>,
}

impl UpstreamConfig {
    /// `proxy`, parsed (`None` when not set).
    pub fn proxy_server(&self) -> Result<Option<crate::sysproxy::ProxyServer>, ConfigError> {
        let Some(text) = &self.proxy else { return Ok(None) };
        crate::sysproxy::ProxyServer::parse(text, 0).map(Some).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "upstream.proxy {text:?} is not http://HOST:PORT (only HTTP parents are supported)"
            ))
        })
    }

    /// Checks the section: `fixed` needs one of `proxy` and `pac`; credentials come in pairs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.proxy_server()?;
        if let Some(pac) = &self.pac {
            let ok = ["http://", "https://", "file://"]
                .iter()
                .any(|s| pac.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)));
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "upstream.pac {pac:?} is not an http://, https:// or file:// URL"
                )));
            }
        }
        match (self.mode, &self.proxy, &self.pac) {
            (UpstreamMode::Fixed, None, None) => {
                return Err(ConfigError::Invalid(
                    "upstream.mode = \"fixed\" needs upstream.proxy or upstream.pac".into(),
                ))
            }
            (UpstreamMode::Fixed, Some(_), Some(_)) => {
                return Err(ConfigError::Invalid("upstream: set proxy or pac, not both".into()))
            }
            (UpstreamMode::System | UpstreamMode::None, Some(_), _)
            | (UpstreamMode::System | UpstreamMode::None, _, Some(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "upstream.proxy and upstream.pac are used with mode = \"fixed\" (mode is \"{}\")",
                    self.mode.name()
                )))
            }
            _ => {}
        }
        match (&self.user, &self.password) {
            (Some(u), Some(_)) if u.is_empty() || u.contains(':') => {
                Err(ConfigError::Invalid(format!("upstream.user {u:?} is empty or has a ':'")))
            }
            (Some(_), None) | (None, Some(_)) => {
                Err(ConfigError::Invalid("upstream: set both user and password, or neither".into()))
            }
            _ => Ok(()),
        }
    }
}

/// The default control API address.
pub const DEFAULT_CONTROL_LISTEN: &str = "127.0.0.1:3001";

/// Settings of the control API (JSON over HTTP, loopback only).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// A loopback address, or `none` for no control API.
    pub listen: String,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self { listen: DEFAULT_CONTROL_LISTEN.into() }
    }
}

impl ControlConfig {
    /// The address, or `None` when turned off.
    pub fn addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.listen.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let addr: SocketAddr = parse_listen(&self.listen)
            .map_err(|why| ConfigError::Invalid(format!("control.listen: {why}, or \"none\"")))?;
        if !addr.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!("control.listen {addr} must be a loopback address")));
        }
        Ok(Some(addr))
    }
}

/// How the system proxy points at GuardNest.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SystemProxyMode {
    /// A fixed proxy: everything goes through GuardNest (no internet if it dies).
    #[default]
    Fixed,
    /// A PAC file served by the control API: `PROXY GuardNest; DIRECT`, so a dead
    /// GuardNest degrades to direct browsing (fail-open).
    Pac,
}

/// Settings of the system-proxy step.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SystemProxyConfig {
    /// Whether enabling protection also makes GuardNest the system proxy.
    pub enabled: bool,
    /// `auto`, `gnome`, `kde`, `windows`, `macos` or `none`.
    pub backend: crate::sysproxy::BackendKind,
    /// `fixed` or `pac`.
    pub mode: SystemProxyMode,
}

impl Default for SystemProxyConfig {
    fn default() -> Self {
        Self { enabled: false, backend: crate::sysproxy::BackendKind::Auto, mode: SystemProxyMode::Fixed }
    }
}

/// Settings of the listener and of every connection.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Address the proxy listens on.
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// Time a client has to send a complete request head.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Time allowed to resolve and connect to an upstream.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A tunnel idle both ways for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Grace for open connections at shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest request head accepted.
    pub max_header_bytes: usize,
    /// Threads serving connections (0: one per CPU).
    pub worker_threads: usize,
    /// Expect a PROXY protocol (v1 or v2) header first on every connection, as sent by
    /// HAProxy's `send-proxy`/`send-proxy-v2`; only from `[access] trusted_proxies`.
    pub proxy_protocol: bool,
    /// Move bulk tunnel traffic with splice(2) on Linux, never copying it into the process;
    /// `false` uses the portable read-and-write path (as on other systems).
    pub splice: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            worker_threads: DEFAULT_WORKER_THREADS,
            proxy_protocol: false,
            splice: true,
        }
    }
}

/// Parses a listen address, `IP:PORT`; the error says what form is expected, and why a
/// host name or a missing port is not taken.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let example = "127.0.0.1:3000";
    if text.parse::<std::net::IpAddr>().is_ok() || text.trim_matches(['[', ']']).parse::<std::net::Ipv6Addr>().is_ok() {
        let ip = text.trim_matches(['[', ']']);
        let with_port = if ip.contains(':') { format!("[{ip}]:3000") } else { format!("{ip}:3000") };
        return Err(format!("{text:?} has no port: expected IP:PORT, e.g. {with_port} (port 0 picks a free one)"));
    }
    let (host, port) = text.rsplit_once(':').unwrap_or((text, ""));
    if host.eq_ignore_ascii_case("localhost") {
        let port = if port.is_empty() { "3000" } else { port };
        return Err(format!("{text:?} is a host name: expected IP:PORT, e.g. 127.0.0.1:{port} for localhost"));
    }
    Err(format!("{text:?} is not an address: expected IP:PORT, e.g. {example} (or [::1]:3000)"))
}

fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    parse_listen(&text).map_err(serde::de::Error::custom)
}

/// Settings of the health check.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Period of the self-connect check.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self { interval: DEFAULT_HEALTH_INTERVAL }
    }
}

/// Block and allow lists.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BlocklistConfig {
    /// Lists of names to block.
    pub sources: Vec<SourceSpec>,
    /// Lists of names that are never blocked; they win over every block list.
    pub allowlist: Vec<SourceSpec>,
    /// How often sources are checked for changes.
    #[serde(with = "humantime_serde")]
    pub update_interval: Duration,
    /// Whether the built-in default lists are used besides `sources`.
    pub default_lists: bool,
    /// Largest list download accepted, in bytes.
    pub max_download_bytes: u64,
    /// Longest a list download may take.
    #[serde(with = "humantime_serde")]
    pub download_timeout: Duration,
}

impl Default for BlocklistConfig {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            allowlist: Vec::new(),
            update_interval: DEFAULT_UPDATE_INTERVAL,
            default_lists: true,
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            download_timeout: DEFAULT_DOWNLOAD_TIMEOUT,
        }
    }
}

/// One list source: a bare string (a file path or an http(s) URL) or a table with options.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SourceSpec {
    /// A file path or an http(s) URL.
    Location(String),
    /// A source with options.
    Detailed(DetailedSource),
}

/// A list source with options.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetailedSource {
    /// File path or http(s) URL.
    pub source: String,
    /// Name shown in block pages and logs; defaults to the file name.
    pub name: Option<String>,
    /// Forced format instead of detection.
    pub format: Option<ListFormat>,
    /// How often this source is checked; defaults to `[blocklist] update_interval`.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
}

impl SourceSpec {
    /// Where the list lives.
    pub fn location(&self) -> &str {
        match self {
            SourceSpec::Location(s) => s,
            SourceSpec::Detailed(d) => &d.source,
        }
    }

    /// The name to show for this source.
    pub fn display_name(&self) -> String {
        if let SourceSpec::Detailed(DetailedSource { name: Some(n), .. }) = self {
            return n.clone();
        }
        let loc = self.location();
        if self.is_url() {
            // host/last-segment reads better than a whole URL in a block page.
            let rest = loc.split_once("://").map_or(loc, |(_, r)| r);
            let host = rest.split('/').next().unwrap_or(rest);
            return match rest.trim_end_matches('/').rsplit('/').next().filter(|l| *l != host) {
                Some(last) => format!("{host}/{last}"),
                None => host.to_string(),
            };
        }
        Path::new(loc).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| loc.to_string())
    }

    /// The forced format, if any.
    pub fn format(&self) -> Option<ListFormat> {
        match self {
            SourceSpec::Location(_) => None,
            SourceSpec::Detailed(d) => d.format,
        }
    }

    /// The source's own check interval, if set.
    pub fn interval(&self) -> Option<Duration> {
        match self {
            SourceSpec::Location(_) => None,
            SourceSpec::Detailed(d) => d.interval,
        }
    }

    /// Whether the source is downloaded rather than read from a file.
    pub fn is_url(&self) -> bool {
        let l = self.location();
        l.starts_with("http://") || l.starts_with("https://")
    }
}

/// The formats GuardNest reads (`format = "hosts"` in a source; `blocklist::Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListFormat {
    /// `0.0.0.0 name [name…]` (hosts file).
    Hosts,
    /// One name per line.
    Plain,
    /// Adblock network rules of domain form: `||name^`, exceptions `@@||name^`.
    Adblock,
    /// `*.name`.
    Wildcard,
    /// A JSON array of names, or `{"domains": [...], "allow": [...]}`.
    Json,
}

impl ListFormat {
    /// Lowercase name, as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            ListFormat::Hosts => "hosts",
            ListFormat::Plain => "plain",
            ListFormat::Adblock => "adblock",
            ListFormat::Wildcard => "wildcard",
            ListFormat::Json => "json",
        }
    }
}

impl std::fmt::Display for ListFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Refuses a listener that would make an open proxy: reachable beyond loopback (or fed by a
/// load balancer through the PROXY protocol) while nothing (`restricted`: an address
/// allowlist or users) limits who may use it.
pub fn check_listen(listen: SocketAddr, proxy_protocol: bool, restricted: bool) -> Result<(), ConfigError> {
    if restricted {
        return Ok(());
    }
    if !listen.ip().is_loopback() {
        return Err(ConfigError::Invalid(format!(
            "proxy.listen {listen} is reachable from other machines: set [access] allow = [\"CIDR\", …] \
             and/or [access] users so that GuardNest is never an open proxy"
        )));
    }
    if proxy_protocol {
        return Err(ConfigError::Invalid(
            "proxy.proxy_protocol serves clients from anywhere: set [access] allow and/or [access] users".into(),
        ));
    }
    Ok(())
}

impl Config {
    /// Parses TOML text; `origin` names the file in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.message().to_string() + &span_hint(text, e.span()),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Checks ranges that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.proxy;
        let nonzero = [
            ("proxy.request_timeout", p.request_timeout),
            ("proxy.connect_timeout", p.connect_timeout),
            ("proxy.idle_timeout", p.idle_timeout),
            ("health.interval", self.health.interval),
            ("blocklist.update_interval", self.blocklist.update_interval),
            ("blocklist.download_timeout", self.blocklist.download_timeout),
        ];
        for (key, value) in nonzero {
            if value.is_zero() {
                return Err(ConfigError::Invalid(format!("{key} must be greater than zero")));
            }
        }
        if p.max_connections == 0 {
            return Err(ConfigError::Invalid("proxy.max_connections must be at least 1".into()));
        }
        // hyper needs room for a request line and a few headers; below this nothing works.
        if p.max_header_bytes < 1024 {
            return Err(ConfigError::Invalid("proxy.max_header_bytes must be at least 1024".into()));
        }
        self.control.addr()?;
        // Parsed, not built: building would hash the decoy password, which validation need not pay.
        let allow = self.access.allow_nets()?;
        let users = self.access.users()?;
        self.access.trusted_proxy_nets()?;
        self.upstream.validate()?;
        check_listen(p.listen, p.proxy_protocol, !allow.is_empty() || !users.is_empty())?;
        if self.system_proxy.mode == SystemProxyMode::Pac && self.control.addr()?.is_none() {
            return Err(ConfigError::Invalid(
                "system_proxy.mode = \"pac\" needs the control API (it serves the PAC file)".into(),
            ));
        }
        Ok(())
    }
}

/// " (line N)" for a parse error's span, so the user finds the key.
fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let line = text[..r.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
