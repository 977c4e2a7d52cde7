//! The user's own proxy, as their OS settings describe it: what GuardNest chains through
//! (its "parent") while it is the system proxy.
//!
//! Each backend has one pure parse from its settings map (the keys it reads, with the
//! transaction's snapshot laid over the keys GuardNest changed) to a [`UserProxy`]:
//! [`crate::gnome::user_proxy`], [`crate::kde::user_proxy`], [`crate::windows::user_proxy`],
//! [`crate::macos::user_proxy`]. The bypass list keeps the OS's own semantics
//! ([`BypassStyle`]): each OS matches its entries its own way, and [`Bypass::matches`] does
//! what that OS does.

use std::net::IpAddr;

use ipnet::IpNet;

/// A parent proxy's address: a host name or IP and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyServer {
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl ProxyServer {
    /// `host:port`, `[v6]:port`, or `host` with a default port; an `http://` in front and a
    /// `/` behind are not part of it. `None` for anything else (a SOCKS URL among them).
    pub fn parse(text: &str, default_port: u16) -> Option<ProxyServer> {
        let text = text.trim();
        let text = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return None,
            None => text,
        };
        let text = text.trim_end_matches('/');
        // Credentials in the URL are not read here.
        let text = text.rsplit_once('@').map_or(text, |(_, hp)| hp);
        if text.is_empty() || text.contains(['/', ' ', '?', '#']) {
            return None;
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            match after.strip_prefix(':') {
                Some(p) => (host, p.parse().ok()?),
                None if after.is_empty() => (host, default_port),
                None => return None,
            }
        } else {
            match text.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, p.parse().ok()?),
                Some(_) => return None, // a bare IPv6 address needs brackets
                None => (text, default_port),
            }
        };
        (!host.is_empty() && port != 0).then(|| ProxyServer { host: host.to_ascii_lowercase(), port })
    }
}

impl std::fmt::Display for ProxyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Whose rules a bypass list follows: every OS matches its entries its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BypassStyle {
    /// GLib's resolver (GNOME `ignore-hosts`): a name matches itself and its subdomains (a
    /// leading `*.` or `.` changes nothing), an optional `:port`; an address or a CIDR
    /// matches IP literals only (no lookup).
    Gnome,
    /// KDE's KIO (`NoProxyFor`): each entry is matched against the end of the host, character
    /// by character (`kde.org` also matches `notkde.org`), then against `host:port`;
    /// `<local>` matches names without a dot; a CIDR matches IP literals.
    Kde,
    /// WinINet (`ProxyOverride`): `;`-separated patterns where `*` stands for any characters,
    /// matched against the whole host, case-insensitively; `<local>` matches names without
    /// a dot.
    Windows,
    /// macOS (exceptions): `*.domain` matches subdomains, `.domain` too, other names match
    /// exactly; an address, or a network such as `169.254/16`, matches IP literals.
    Macos,
    /// GuardNest's own `[upstream] bypass`: a name matches itself and its subdomains, `*` is
    /// a wildcard, a CIDR or an address matches IP literals, `<local>` names without a dot.
    GuardNest,
}

/// A bypass list: hosts that go direct, never through the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bypass {
    /// Whose rules apply.
    pub style: BypassStyle,
    /// The entries, as the OS stores them (trimmed, empty ones left out).
    pub entries: Vec<String>,
}

impl Bypass {
    /// A list in `style`.
    pub fn new(style: BypassStyle, entries: impl IntoIterator<Item = String>) -> Self {
        let entries = entries.into_iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
        Self { style, entries }
    }

    /// An empty list.
    pub fn none(style: BypassStyle) -> Self {
        Self { style, entries: Vec::new() }
    }

    /// Whether a request to `host` (a name, or an IP literal without brackets) on `port`
    /// goes direct under this OS's rules (pure: names are never resolved).
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        match self.style {
            BypassStyle::Kde => kde_matches(&self.entries, &host, port, ip),
            _ => self.entries.iter().any(|e| entry_matches(self.style, e, &host, port, ip)),
        }
    }
}

/// A CIDR or an address, as written in a bypass list (macOS also takes `169.254/16`).
fn network(entry: &str, abbreviated: bool) -> Option<IpNet> {
    let entry = entry.trim_start_matches('[').replace(']', "");
    if let Ok(net) = entry.parse::<IpNet>() {
        return Some(net.trunc());
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(IpNet::from(ip));
    }
    if !abbreviated {
        return None;
    }
    let (addr, len) = entry.split_once('/')?;
    let mut octets: Vec<&str> = addr.split('.').collect();
    if octets.len() > 4 || octets.iter().any(|o| o.parse::<u8>().is_err()) {
        return None;
    }
    octets.resize(4, "0");
    format!("{}/{len}", octets.join(".")).parse::<IpNet>().ok().map(|n| n.trunc())
}

/// `*` stands for any run of characters (WinINet's and macOS's patterns), the whole text.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `name` is `domain` or ends in `.domain`.
fn is_within(name: &str, domain: &str) -> bool {
    name == domain || name.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
}

fn entry_matches(style: BypassStyle, entry: &str, host: &str, port: u16, ip: Option<IpAddr>) -> bool {
    let entry = entry.to_ascii_lowercase();
    if entry == "<local>" {
        return matches!(style, BypassStyle::Windows | BypassStyle::GuardNest) && ip.is_none() && !host.contains('.');
    }
    if let Some(net) = network(&entry, style == BypassStyle::Macos) {
        return ip.is_some_and(|ip| net.contains(&ip));
    }
    match style {
        BypassStyle::Gnome => {
            // GLib: an optional "*." or "." in front, an optional ":port" behind; a suffix
            // match on a label boundary.
            let name = entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')).unwrap_or(&entry);
            let (name, want_port) = match name.rsplit_once(':') {
                Some((n, p)) if !n.contains(':') => (n, p.parse::<u16>().ok()),
                _ => (name, None),
            };
            want_port.is_none_or(|p| p == port) && is_within(host, name)
        }
        BypassStyle::Windows => {
            // WinINet also takes an entry with a scheme or a port; the host part is matched.
            let pattern = entry.split_once("://").map_or(entry.as_str(), |(_, rest)| rest);
            glob(pattern, host) || glob(pattern, &format!("{host}:{port}"))
        }
        BypassStyle::Macos => match entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
            Some(domain) if !domain.contains('*') => is_within(host, domain) && host != domain,
            _ => glob(&entry, host),
        },
        BypassStyle::GuardNest => {
            let name = entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')).unwrap_or(&entry);
            if name.contains('*') {
                glob(&entry, host)
            } else {
                is_within(host, name)
            }
        }
        BypassStyle::Kde => false,
    }
}

/// KIO's `revmatch` (each comma- or space-separated entry compared with the end of the host,
/// character by character), then `host:port`, then `<local>` for a name without a dot;
/// entries that are networks match IP literals (KIO would resolve a name; GuardNest does
/// not).
fn kde_matches(entries: &[String], host: &str, port: u16, ip: Option<IpAddr>) -> bool {
    let (nets, names): (Vec<&String>, Vec<&String>) = entries.iter().partition(|e| network(e, false).is_some());
    let names: Vec<String> =
        names.iter().flat_map(|e| e.split([',', ' '])).filter(|e| !e.is_empty()).map(str::to_ascii_lowercase).collect();
    let ends = |h: &str| names.iter().any(|n| h.ends_with(n.as_str()));
    if ends(host) || ends(&format!("{host}:{port}")) {
        return true;
    }
    if ip.is_none() && !host.contains('.') && names.iter().any(|n| n == "<local>") {
        return true;
    }
    ip.is_some_and(|ip| nets.iter().filter_map(|n| network(n, false)).any(|net| net.contains(&ip)))
}

/// What the user's own settings send traffic to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserProxy {
    /// No proxy: everything goes direct.
    Direct,
    /// A manual proxy, per protocol (an absent one sends that protocol direct).
    Manual {
        /// For `http://` URLs.
        http: Option<ProxyServer>,
        /// For `https://` URLs (CONNECT).
        https: Option<ProxyServer>,
        /// Hosts that go direct.
        bypass: Bypass,
        /// With KDE's "use the proxy only for these" (`ReversedException`): the list names
        /// the hosts that use the proxy; everything else goes direct.
        only_listed: bool,
    },
    /// A PAC script at a URL, asked for each host.
    Pac {
        /// Where the script is.
        url: String,
    },
    /// Settings GuardNest cannot follow (automatic discovery, a SOCKS-only proxy, proxies
    /// from environment variables): traffic goes direct, and the status says why.
    Unsupported(String),
}

impl UserProxy {
    /// In plain words, for the status: "proxy corp.example:8123 for HTTP and HTTPS, except
    /// 2 hosts", "the PAC script at URL", "no proxy".
    pub fn describe(&self) -> String {
        match self {
            UserProxy::Direct => "no proxy (direct)".into(),
            UserProxy::Manual { http, https, bypass, only_listed } => {
                let which = match (http, https) {
                    (Some(a), Some(b)) if a == b => format!("proxy {a} for HTTP and HTTPS"),
                    (Some(a), Some(b)) => format!("proxy {a} for HTTP, {b} for HTTPS"),
                    (Some(a), None) => format!("proxy {a} for HTTP only"),
                    (None, Some(b)) => format!("proxy {b} for HTTPS only"),
                    (None, None) => return "no proxy (direct)".into(),
                };
                let n = bypass.entries.len();
                match (only_listed, n) {
                    (true, _) => format!("{which}, only for {n} listed host{}", if n == 1 { "" } else { "s" }),
                    (false, 0) => which,
                    (false, _) => format!("{which}, except {n} bypassed host{}", if n == 1 { "" } else { "s" }),
                }
            }
            UserProxy::Pac { url } => format!("the PAC script at {url}"),
            UserProxy::Unsupported(why) => format!("direct ({why})"),
        }
    }

    /// Whether any traffic goes to a proxy.
    pub fn is_proxy(&self) -> bool {
        match self {
            UserProxy::Manual { http, https, .. } => http.is_some() || https.is_some(),
            UserProxy::Pac { .. } => true,
            UserProxy::Direct | UserProxy::Unsupported(_) => false,
        }
    }
}

/// A GVariant string as gsettings prints it (`'text'`, or `"text"` when it holds a `'`).
pub(crate) fn gvariant_string(text: &str) -> Option<String> {
    let t = text.trim();
    let quote = t.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = t.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    Some(out)
}

/// A GVariant array of strings (`['a', 'b']`, `@as []`).
pub(crate) fn gvariant_strings(text: &str) -> Vec<String> {
    let t = text.trim().trim_start_matches("@as").trim();
    let Some(inner) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else { return Vec::new() };
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let Some(quote) = chars.next() else { break };
        if quote != '\'' && quote != '"' {
            break;
        }
        let mut item = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => item.extend(chars.next()),
                c if c == quote => break,
                c => item.push(c),
            }
        }
        out.push(item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(style: BypassStyle, entries: &[&str]) -> Bypass {
        Bypass::new(style, entries.iter().map(ToString::to_string))
    }

    #[test]
    fn proxy_servers() {
        let p = |s| ProxyServer::parse(s, 8080).map(|p| p.to_string());
        assert_eq!(p("corp.example:8123").as_deref(), Some("corp.example:8123"));
        assert_eq!(p("http://Corp.Example:8123/").as_deref(), Some("corp.example:8123"));
        assert_eq!(p("corp.example").as_deref(), Some("corp.example:8080"));
        assert_eq!(p("[2001:db8::1]:3128").as_deref(), Some("[2001:db8::1]:3128"));
        assert_eq!(p("http://user:pw@corp:3128").as_deref(), Some("corp:3128"));
        assert_eq!(p("socks://corp:1080"), None);
        assert_eq!(p("2001:db8::1"), None);
        assert_eq!(p("corp:0"), None);
        assert_eq!(p(""), None);
    }

    #[test]
    fn gnome_bypass_is_glibs() {
        let b = list(BypassStyle::Gnome, &["*.corp.example", "intranet", "10.0.0.0/8", "::1", "build.test:8080"]);
        assert!(b.matches("corp.example", 443), "*.domain also matches the domain (GLib strips *.)");
        assert!(b.matches("a.b.corp.example", 443));
        assert!(b.matches("A.Corp.Example.", 443));
        assert!(!b.matches("notcorp.example", 443), "on a label boundary");
        assert!(b.matches("intranet", 80) && b.matches("www.intranet", 80));
        assert!(b.matches("10.1.2.3", 80) && !b.matches("11.1.2.3", 80));
        assert!(b.matches("::1", 80));
        assert!(!b.matches("ten.example", 80), "networks match IP literals only");
        assert!(b.matches("build.test", 8080) && !b.matches("build.test", 443));
    }

    #[test]
    fn kde_bypass_is_kios_revmatch() {
        let b = list(BypassStyle::Kde, &[".corp.example", "kde.org", "192.168.0.0/16", "<local>", "dev:8080"]);
        assert!(b.matches("www.corp.example", 443));
        assert!(!b.matches("corp.example", 443), "\".corp.example\" needs the dot");
        assert!(b.matches("kde.org", 443) && b.matches("notkde.org", 443), "a plain suffix, as KIO does");
        assert!(b.matches("192.168.4.5", 80) && !b.matches("192.169.0.1", 80));
        assert!(b.matches("printer", 80), "<local>: a name without a dot");
        assert!(b.matches("dev", 8080), "host:port");
        assert!(!b.matches("example.com", 80));
        // KIO stores one comma-separated string; an entry of several is split the same.
        let one = list(BypassStyle::Kde, &["localhost, .corp.example"]);
        assert!(one.matches("x.corp.example", 1) && one.matches("localhost", 1));
    }

    #[test]
    fn windows_bypass_is_winininets() {
        let b = list(BypassStyle::Windows, &["*.corp.example", "10.*", "<local>", "intranet.test", "http://svc.test"]);
        assert!(b.matches("a.corp.example", 443));
        assert!(!b.matches("corp.example", 443), "*.corp.example needs a subdomain");
        assert!(b.matches("10.2.3.4", 80) && !b.matches("110.2.3.4", 80));
        assert!(b.matches("printer", 80) && !b.matches("printer.lan", 80));
        assert!(b.matches("INTRANET.test", 80) && !b.matches("www.intranet.test", 80), "whole host");
        assert!(b.matches("svc.test", 80));
    }

    #[test]
    fn macos_bypass() {
        let b = list(BypassStyle::Macos, &["*.local", "169.254/16", "corp.example", ".lan"]);
        assert!(b.matches("printer.local", 80) && !b.matches("local", 80));
        assert!(b.matches("169.254.3.4", 80) && !b.matches("169.255.0.1", 80));
        assert!(b.matches("corp.example", 80) && !b.matches("www.corp.example", 80), "exact");
        assert!(b.matches("nas.lan", 80));
    }

    #[test]
    fn guardnest_bypass() {
        let b = list(BypassStyle::GuardNest, &["corp.example", "*.test", "10.0.0.0/8", "<local>", "web*.org"]);
        assert!(b.matches("corp.example", 1) && b.matches("a.corp.example", 1));
        assert!(b.matches("x.test", 1) && b.matches("test", 1));
        assert!(b.matches("10.9.9.9", 1) && b.matches("printer", 1) && b.matches("web1.org", 1));
        assert!(!b.matches("example.org", 1));
    }

    #[test]
    fn gvariant_text() {
        assert_eq!(gvariant_string("'corp.example'").as_deref(), Some("corp.example"));
        assert_eq!(gvariant_string("\"it's\"").as_deref(), Some("it's"));
        assert_eq!(gvariant_string("'a\\'b'").as_deref(), Some("a'b"));
        assert_eq!(gvariant_strings("['localhost', '127.0.0.0/8', '*.corp.example']").len(), 3);
        assert_eq!(gvariant_strings("@as []"), Vec::<String>::new());
        assert_eq!(gvariant_strings("['a,b', \"c'd\"]"), ["a,b", "c'd"]);
    }

    #[test]
    fn descriptions_in_plain_words() {
        let s = ProxyServer::parse("corp.example:8123", 0);
        let m = UserProxy::Manual {
            http: s.clone(),
            https: s,
            bypass: list(BypassStyle::Gnome, &["*.corp.example"]),
            only_listed: false,
        };
        assert_eq!(m.describe(), "proxy corp.example:8123 for HTTP and HTTPS, except 1 bypassed host");
        assert_eq!(
            UserProxy::Pac { url: "http://wpad/p.pac".into() }.describe(),
            "the PAC script at http://wpad/p.pac"
        );
    }
}
