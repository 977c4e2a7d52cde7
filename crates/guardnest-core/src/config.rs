//! Typed configuration, validated before any port is bound.
//!
//! One struct per subsystem; every default is a named constant here and nowhere else.
//! Durations are humantime strings in TOML (`"10s"`, `"1m 30s"`); unknown keys are errors
//! that name the key, so a typo never silently falls back to a default.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

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

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file that failed.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key is unknown or has the wrong type.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file that failed.
        path: String,
        /// The parser's message, naming the key and line.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

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

/// Destinations a gateway's clients may not reach by default: loopback, link-local (most
/// clouds' instance metadata, 169.254.169.254 among them), unspecified addresses, this
/// host's own addresses (`self`), and the clouds' metadata endpoints outside link-local
/// (`cloud-metadata`, [`CLOUD_METADATA`]).
pub const DEFAULT_DENY_DESTINATIONS: [&str; 8] =
    ["127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128", "self", "cloud-metadata"];

/// The instance-metadata (and host agent) endpoints clouds document outside link-local,
/// each exactly, never the shared range around it (100.64.0.0/10 is carrier-grade NAT,
/// fd00::/8 is every network's unique-local space). Sources in docs/gateway.md. The
/// link-local ones (AWS, GCP, Azure, Oracle, DigitalOcean, Hetzner, OpenStack, IBM, Linode
/// at 169.254.169.254; AWS ECS 169.254.170.2 and EKS 169.254.170.23; Tencent 169.254.0.23;
/// Scaleway 169.254.42.42; OpenStack fe80::a9fe:a9fe) are in 169.254.0.0/16 and fe80::/10.
pub const CLOUD_METADATA: [&str; 9] = [
    "fd00:ec2::254/128",      // AWS instance metadata, IPv6 (Nitro)
    "fd00:ec2::23/128",       // AWS EKS Pod Identity Agent, IPv6
    "fd20:ce::254/128",       // Google Cloud metadata server, IPv6
    "168.63.129.16/32",       // Azure WireServer (host agent, extension and health endpoint)
    "100.100.100.200/32",     // Alibaba Cloud instance metadata
    "192.0.0.192/32",         // Oracle Cloud Classic metadata
    "fd00:c1::a9fe:a9fe/128", // Oracle Cloud Infrastructure metadata, IPv6
    "fd00:42::42/128",        // Scaleway metadata, IPv6
    "fd00:a9fe:a9fe::1/128",  // Akamai (Linode) metadata, IPv6
];

/// Who may use the proxy. Empty (the default) is only allowed on a loopback listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Client networks allowed (CIDRs such as `192.168.1.0/24`, or single addresses);
    /// empty allows any client that passes authentication.
    pub allow: Vec<String>,
    /// Proxy users (Basic authentication); empty needs no authentication.
    pub users: Vec<UserConfig>,
    /// Peers allowed to send a PROXY protocol header when `proxy.proxy_protocol` is on.
    pub trusted_proxies: Vec<String>,
    /// Destinations refused in gateway mode (CIDRs, `self` for this host's own addresses,
    /// `cloud-metadata` for [`CLOUD_METADATA`]), checked on the address actually dialed.
    pub deny_destinations: Vec<String>,
    /// Destinations let through in gateway mode although `deny_destinations` lists them.
    pub allow_destinations: Vec<String>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            users: Vec::new(),
            trusted_proxies: vec!["127.0.0.0/8".into(), "::1/128".into()],
            deny_destinations: DEFAULT_DENY_DESTINATIONS.iter().map(ToString::to_string).collect(),
            allow_destinations: Vec::new(),
        }
    }
}

/// One proxy user.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user name (no `:`).
    pub name: String,
    /// An argon2 PHC string, as printed by `guardnest hash-password`.
    pub password_hash: String,
}

impl AccessConfig {
    /// `allow`, parsed.
    pub fn allow_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_nets("access.allow", &self.allow)
    }

    /// `deny_destinations` and `allow_destinations`, parsed (`self`: this host's addresses;
    /// `cloud-metadata`: [`CLOUD_METADATA`]).
    pub fn destinations(&self) -> Result<crate::conn::dial::Destinations, ConfigError> {
        let named = |d: &String, name: &str| d.trim().eq_ignore_ascii_case(name);
        let deny_own = self.deny_destinations.iter().any(|d| named(d, "self"));
        let mut deny: Vec<String> = Vec::new();
        for d in &self.deny_destinations {
            match () {
                () if named(d, "self") => {}
                () if named(d, "cloud-metadata") => deny.extend(CLOUD_METADATA.iter().map(ToString::to_string)),
                () => deny.push(d.clone()),
            }
        }
        let deny = parse_nets("access.deny_destinations", &deny)?;
        let allow = parse_nets("access.allow_destinations", &self.allow_destinations)?;
        Ok(crate::conn::dial::Destinations::new(deny, allow, deny_own))
    }

    /// `trusted_proxies`, parsed.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_nets("access.trusted_proxies", &self.trusted_proxies)
    }

    /// User name → PHC hash, checked: unique names without `:`, hashes that are argon2.
    pub fn users(&self) -> Result<std::collections::HashMap<String, String>, ConfigError> {
        let mut users = std::collections::HashMap::new();
        for u in &self.users {
            if u.name.is_empty() || u.name.contains(':') {
                return Err(ConfigError::Invalid(format!(
                    "access.users: user name {:?} is empty or has a ':'",
                    u.name
                )));
            }
            match argon2::PasswordHash::new(&u.password_hash) {
                Ok(h) if h.algorithm.as_str().starts_with("argon2") => {}
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "access.users: the password_hash of {:?} is not an argon2 hash (make one with `guardnest hash-password`)",
                        u.name
                    )))
                }
            }
            if users.insert(u.name.clone(), u.password_hash.clone()).is_some() {
                return Err(ConfigError::Invalid(format!("access.users: {:?} is listed twice", u.name)));
            }
        }
        Ok(users)
    }
}

/// Parses CIDRs; a bare address is a single-host network.
fn parse_nets(key: &str, items: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    items
        .iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    ConfigError::Invalid(format!("{key}: {s:?} is not a CIDR (like 192.168.1.0/24) or an address"))
                })
        })
        .collect()
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
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_design_defaults() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.proxy.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.proxy.request_timeout, Duration::from_secs(10));
        assert_eq!(c.proxy.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.proxy.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.proxy.max_header_bytes, 65536);
    }

    #[test]
    fn listen_addresses_say_what_form_is_expected() {
        assert_eq!(parse_listen("127.0.0.1:0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(parse_listen("[::1]:3000").unwrap().to_string(), "[::1]:3000");
        let no_port = parse_listen("127.0.0.1").unwrap_err();
        assert!(no_port.contains("has no port") && no_port.contains("127.0.0.1:3000"), "{no_port}");
        assert!(parse_listen("::1").unwrap_err().contains("[::1]:3000"));
        let name = parse_listen("localhost:3200").unwrap_err();
        assert!(name.contains("host name") && name.contains("127.0.0.1:3200"), "{name}");
        assert!(parse_listen("nonsense").unwrap_err().contains("expected IP:PORT"));
        let file = Config::from_toml("[proxy]\nlisten = \"localhost:3200\"\n", "f.toml").unwrap_err().to_string();
        assert!(file.contains("expected IP:PORT, e.g. 127.0.0.1:3200"), "{file}");
    }

    #[test]
    fn humantime_durations_and_sources() {
        let c = Config::from_toml(
            r#"
            [proxy]
            listen = "127.0.0.1:0"
            idle_timeout = "1m 30s"
            connect_timeout = "250ms"
            splice = false
            [blocklist]
            sources = ["/a/hosts", { source = "/b.txt", name = "mine", format = "plain", interval = "1h" }, "https://lists.example/x/hosts.txt"]
            update_interval = "5m"
            "#,
            "t",
        )
        .unwrap();
        assert_eq!(c.proxy.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.proxy.connect_timeout, Duration::from_millis(250));
        assert!(!c.proxy.splice);
        assert!(Config::default().proxy.splice);
        assert_eq!(c.blocklist.sources.len(), 3);
        assert_eq!(c.blocklist.sources[0].display_name(), "hosts");
        assert_eq!(c.blocklist.sources[1].display_name(), "mine");
        assert_eq!(c.blocklist.sources[1].interval(), Some(Duration::from_secs(3600)));
        assert_eq!(c.blocklist.sources[2].display_name(), "lists.example/hosts.txt");
        assert!(c.blocklist.sources[2].is_url());
        assert_eq!(c.blocklist.update_interval, Duration::from_secs(300));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[proxy]\nlisten_addr = \"127.0.0.1:1\"\n", "cfg.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("listen_addr"), "{msg}");
        assert!(msg.contains("cfg.toml"), "{msg}");
        let err = Config::from_toml("[prxy]\n", "cfg.toml").unwrap_err();
        assert!(err.to_string().contains("prxy"), "{err}");
    }

    #[test]
    fn control_and_system_proxy() {
        let c =
            Config::from_toml("[control]\nlisten = \"none\"\n[system_proxy]\nenabled = true\nbackend = \"kde\"\n", "t")
                .unwrap();
        assert_eq!(c.control.addr().unwrap(), None);
        assert!(c.system_proxy.enabled);
        assert!(
            Config::from_toml("[control]\nlisten = \"0.0.0.0:3001\"\n", "t").is_err(),
            "control API beyond loopback"
        );
        assert!(Config::from_toml("[system_proxy]\nbackend = \"amiga\"\n", "t").is_err());
        assert!(Config::from_toml("[control]\nlisten = \"none\"\n[system_proxy]\nmode = \"pac\"\n", "t").is_err());
        assert_eq!(Config::default().control.addr().unwrap(), Some("127.0.0.1:3001".parse().unwrap()));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Config::from_toml("[proxy]\nidle_timeout = \"soon\"\n", "t").is_err());
        assert!(Config::from_toml("[proxy]\nidle_timeout = \"0s\"\n", "t").is_err());
        assert!(Config::from_toml("[proxy]\nmax_connections = 0\n", "t").is_err());
        assert!(Config::from_toml("[proxy]\nlisten = \"nowhere\"\n", "t").is_err());
    }

    #[test]
    fn upstream_section() {
        assert_eq!(Config::default().upstream.mode, UpstreamMode::System);
        let c = Config::from_toml(
            "[upstream]\nmode = \"fixed\"\nproxy = \"http://corp.example:8123\"\nbypass = [\"*.corp.example\"]\nuser = \"me\"\npassword = \"s3cret\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.upstream.proxy_server().unwrap().unwrap().to_string(), "corp.example:8123");
        assert!(!format!("{c:?}").contains("s3cret"), "the password is never printed");
        let bad = |t: &str| Config::from_toml(t, "t").unwrap_err().to_string();
        assert!(bad("[upstream]\nmode = \"fixed\"\n").contains("needs upstream.proxy"));
        assert!(bad("[upstream]\nproxy = \"http://a:1\"\n").contains("mode = \"fixed\""));
        assert!(bad("[upstream]\nmode = \"fixed\"\nproxy = \"socks5://a:1\"\n").contains("only HTTP parents"));
        assert!(bad("[upstream]\nmode = \"fixed\"\npac = \"wpad\"\n").contains("upstream.pac"));
        assert!(bad("[upstream]\nuser = \"me\"\n").contains("both user and password"));
        assert!(bad("[upstream]\nmode = \"proxied\"\n").contains("proxied"));
    }

    #[test]
    fn never_an_open_proxy() {
        let err = Config::from_toml("[proxy]\nlisten = \"0.0.0.0:3128\"\n", "t").unwrap_err().to_string();
        assert!(err.contains("[access] allow"), "{err}");
        assert!(Config::from_toml("[proxy]\nproxy_protocol = true\n", "t").is_err());
        let c = Config::from_toml(
            "[proxy]\nlisten = \"0.0.0.0:3128\"\n[access]\nallow = [\"192.168.1.0/24\", \"10.0.0.7\"]\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.access.allow_nets().unwrap().len(), 2);
        assert!(Config::from_toml("[proxy]\nlisten = \"0.0.0.0:3128\"\n[access]\nallow = [\"10.0.0.0/33\"]\n", "t")
            .is_err());
        let bad_hash =
            "[proxy]\nlisten = \"0.0.0.0:3128\"\n[access]\nusers = [{ name = \"a\", password_hash = \"plain\" }]\n";
        assert!(Config::from_toml(bad_hash, "t").unwrap_err().to_string().contains("argon2"));
        let phc = crate::access::hash_password("pw").unwrap();
        let good = format!(
            "[proxy]\nlisten = \"0.0.0.0:3128\"\n[access]\nusers = [{{ name = \"a\", password_hash = \"{phc}\" }}]\n"
        );
        assert!(Config::from_toml(&good, "t").is_ok());
    }
}
