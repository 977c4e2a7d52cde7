//! Who may use the proxy and where its clients may go: the `[access]` table, with the
//! destinations a gateway refuses by default.

use serde::Deserialize;

use super::error::ConfigError;

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
