//! Host names and request targets, normalised once so that every later stage
//! (policy, dial, logs) sees the same spelling of a name.
//!
//! Normal form: ASCII lowercase, no trailing dot, IDN labels in punycode. Anything that
//! is not a plausible DNS name or IP literal is rejected here, which is what turns
//! percent-encoding, backslashes and whitespace in an authority into a 400.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Why a host or authority was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Nothing where a host should be.
    #[error("empty host")]
    EmptyHost,
    /// The host has characters or a shape no DNS name has.
    #[error("invalid host name")]
    InvalidHost,
    /// Longer than any DNS name (253 characters).
    #[error("too long for a host name (at most 253 characters)")]
    TooLong,
    /// `host:port` without the port.
    #[error("missing port")]
    MissingPort,
    /// Port 0, over 65535, or not a number.
    #[error("invalid port")]
    InvalidPort,
}

/// A request target's host: a normalised DNS name or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name in normal form.
    Name(String),
    /// An IP address literal (IPv4-mapped IPv6 folded to IPv4).
    Ip(IpAddr),
}

impl Host {
    /// Parses a host as it appears in a URL or authority (IPv6 in brackets).
    pub fn parse(raw: &str) -> Result<Host, TargetError> {
        if raw.is_empty() {
            return Err(TargetError::EmptyHost);
        }
        if let Some(inner) = raw.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(TargetError::InvalidHost)?;
            let v6: Ipv6Addr = inner.parse().map_err(|_| TargetError::InvalidHost)?;
            return Ok(Host::Ip(fold_mapped(IpAddr::V6(v6))));
        }
        if let Ok(ip) = raw.parse::<IpAddr>() {
            return Ok(Host::Ip(fold_mapped(ip)));
        }
        let name = match normalize_name(raw) {
            Some(name) => name,
            // Said as such when that is what is wrong (a trailing dot is the root, not
            // part of the length).
            None if raw.strip_suffix('.').unwrap_or(raw).len() > 253 => return Err(TargetError::TooLong),
            None => return Err(TargetError::InvalidHost),
        };
        // `127.1`, `2130706433`, `0x7f.1`: not DNS names, but the resolver reads them as IPv4
        // (inet_aton), so they would reach a listed address under another spelling.
        if looks_numeric(&name) {
            return Err(TargetError::InvalidHost);
        }
        Ok(Host::Name(name))
    }

    /// The name used for policy: the DNS name, or the IP literal's text.
    pub fn policy_name(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Host::Name(n) => std::borrow::Cow::Borrowed(n),
            Host::Ip(_) => std::borrow::Cow::Owned(self.ip_text().unwrap_or_default().as_str().to_owned()),
        }
    }

    /// An IP literal's text (no brackets), on the stack: policy lookups and `Host` headers
    /// need it for every request to an address, and `Ipv4Addr`'s `Display` costs about as
    /// much as the lookup itself. `None` for a name.
    pub fn ip_text(&self) -> Option<IpText> {
        let Host::Ip(ip) = self else { return None };
        let mut text = IpText::default();
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use fmt::Write;
                // The longest IPv6 text is 45 bytes; the buffer holds it.
                let _ = write!(text, "{v6}");
            }
        }
        Some(text)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(_) => f.write_str(self.ip_text().unwrap_or_default().as_str()),
        }
    }
}

/// An IP address's text in a fixed buffer (the longest, IPv6 with an IPv4 tail, is 45 bytes).
#[derive(Clone, Copy)]
pub struct IpText {
    buf: [u8; 46],
    len: u8,
}

impl Default for IpText {
    fn default() -> Self {
        Self { buf: [0; 46], len: 0 }
    }
}

impl IpText {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(usize::from(self.len)) {
            *slot = b;
            self.len += 1;
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons and hex letters are ever pushed.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if usize::from(self.len) + s.len() > self.buf.len() {
            return Err(fmt::Error);
        }
        s.bytes().for_each(|b| self.push(b));
        Ok(())
    }
}

/// Whether the last label is a number (decimal, octal or hex): no top-level domain is, and
/// the C resolver would take the whole name for an IPv4 address.
fn looks_numeric(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    match last.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// `::ffff:a.b.c.d` names the same host as `a.b.c.d`; policy must see one spelling.
fn fold_mapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A CONNECT target: host and a port in 1..=65535.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The host.
    pub host: Host,
    /// The port.
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Target {
    /// Parses an authority `[userinfo@]host:port`; userinfo is ignored, the port required.
    pub fn parse_authority(raw: &str) -> Result<Target, TargetError> {
        Self::parse_with_default(raw, None)
    }

    /// Parses an authority whose port may be absent, in which case `default_port` is used.
    pub fn parse_with_default(raw: &str, default_port: Option<u16>) -> Result<Target, TargetError> {
        let hostport = raw.rsplit_once('@').map_or(raw, |(_, h)| h);
        let (host, port) = split_host_port(hostport)?;
        let port = match port {
            Some(p) => parse_port(p)?,
            None => default_port.ok_or(TargetError::MissingPort)?,
        };
        Ok(Target { host: Host::parse(host)?, port })
    }
}

/// Why a request's target was refused: a one-line reason for a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTarget(pub String);

impl Target {
    /// Where a CONNECT asks to go: its request target, which must be a `host:port` authority
    /// and nothing else (RFC 9110 §9.3.6).
    pub fn of_connect(raw: &str) -> Result<Target, BadTarget> {
        if raw.is_empty() {
            return Err(BadTarget("CONNECT needs a host:port target".into()));
        }
        // The authority grammar as hyper's `Uri` checks it, so a CONNECT is read the same
        // whichever path served it.
        if raw.contains(['/', '?', '#']) || http::uri::Authority::try_from(raw).is_err() {
            return Err(BadTarget(format!("CONNECT target {raw:?} is not host:port")));
        }
        Target::parse_authority(raw).map_err(|e| BadTarget(format!("CONNECT target {raw:?}: {e}")))
    }

    /// Where a request asks to go: a CONNECT authority (port required), or an absolute
    /// `http://` URL (port 80 by default). Everything else is a 400 with the reason.
    pub fn of_request(method: &http::Method, uri: &http::Uri) -> Result<Target, BadTarget> {
        if method == http::Method::CONNECT {
            let authority = uri.authority().ok_or_else(|| BadTarget("CONNECT needs a host:port target".into()))?;
            if uri.scheme().is_some() || uri.path_and_query().is_some_and(|p| !p.as_str().is_empty() && p != "/") {
                return Err(BadTarget(format!("CONNECT target {uri:?} is not host:port")));
            }
            return Target::of_connect(authority.as_str());
        }
        let Some(authority) = uri.authority() else {
            return Err(BadTarget(
                "GuardNest is a forward proxy: request an absolute URL (GET http://host/path) or CONNECT host:port"
                    .into(),
            ));
        };
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(BadTarget("https:// URLs must be tunnelled with CONNECT".into())),
            other => return Err(BadTarget(format!("unsupported URL scheme {:?}", other.unwrap_or("")))),
        }
        Target::parse_with_default(authority.as_str(), Some(80))
            .map_err(|e| BadTarget(format!("URL host {:?}: {e}", authority.as_str())))
    }
}

/// The host a person means by what they typed or pasted: a name (`evil.test`, `EVIL.TEST.`,
/// `bücher.example`), an address, `host:port`, or a URL (`https://evil.test/some/path?x=1`,
/// `http://vm:8081`): the scheme, user, port, path, query and fragment are dropped. Anything
/// with no host in it (`javascript:alert(1)`, spaces, markup) is refused.
pub fn host_of_input(raw: &str) -> Result<Host, TargetError> {
    let raw = raw.trim();
    let rest = match raw.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            rest
        }
        Some(_) => return Err(TargetError::InvalidHost),
        None => raw,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.is_empty() {
        return Err(TargetError::EmptyHost);
    }
    // A bare IPv6 address (`::1`) is a host on its own; otherwise a port may follow.
    if let Ok(ip) = hostport.parse::<IpAddr>() {
        return Ok(Host::Ip(fold_mapped(ip)));
    }
    let (host, port) = split_host_port(hostport)?;
    if let Some(p) = port {
        parse_port(p)?;
    }
    Host::parse(host)
}

fn split_host_port(s: &str) -> Result<(&str, Option<&str>), TargetError> {
    if s.starts_with('[') {
        let end = s.find(']').ok_or(TargetError::InvalidHost)?;
        let (host, rest) = s.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => rest.strip_prefix(':').map(|p| (host, Some(p))).ok_or(TargetError::InvalidHost),
        };
    }
    match s.rsplit_once(':') {
        // A bare IPv6 literal without brackets is not a valid authority.
        Some((h, _)) if h.contains(':') => Err(TargetError::InvalidHost),
        Some((h, p)) => Ok((h, Some(p))),
        None => Ok((s, None)),
    }
}

fn parse_port(p: &str) -> Result<u16, TargetError> {
    if p.is_empty() {
        return Err(TargetError::MissingPort);
    }
    if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::InvalidPort);
    }
    match p.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(TargetError::InvalidPort),
    }
}

/// Normalises a DNS name: lowercase, no trailing dot, punycode; `None` if it is not one.
///
/// Accepts what real block lists contain (underscores, a leading hyphen in a label) but
/// nothing that could smuggle a second meaning past the policy (`%`, `\`, spaces, `@`).
pub fn normalize_name(raw: &str) -> Option<String> {
    let mut out = String::new();
    normalize_into(raw, &mut out).then_some(out)
}

/// [`normalize_name`] into a reused buffer (no allocation per name when parsing big lists).
/// Returns false, leaving `out` unspecified, if `raw` is not a DNS name.
pub fn normalize_into(raw: &str, out: &mut String) -> bool {
    out.clear();
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return false;
    }
    if trimmed.is_ascii() {
        out.extend(trimmed.bytes().map(|b| b.to_ascii_lowercase() as char));
    } else {
        match idna::domain_to_ascii(trimmed) {
            Ok(a) => out.push_str(&a),
            Err(_) => return false,
        }
    }
    valid_ascii_name(out)
}

/// Whether `s` (already lowercase ASCII) is a plausible DNS name.
fn valid_ascii_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_a_person_pastes_is_checked_by_its_host() {
        let host = |raw: &str| host_of_input(raw).map(|h| h.to_string());
        assert_eq!(host("https://evil.test/some/path?x=1").as_deref(), Ok("evil.test"));
        assert_eq!(host("http://vm:8081").as_deref(), Ok("vm"));
        assert_eq!(host("evil.test:443").as_deref(), Ok("evil.test"));
        assert_eq!(host("  EVIL.TEST.  ").as_deref(), Ok("evil.test"));
        assert_eq!(host("http://user@[::1]:80/x").as_deref(), Ok("[::1]"));
        assert_eq!(host("::1").as_deref(), Ok("[::1]"));
        assert_eq!(host("bücher.example").as_deref(), Ok("xn--bcher-kva.example"));
        assert_eq!(host("127.0.0.2").as_deref(), Ok("127.0.0.2"));
        for bad in
            ["", "   ", "javascript:alert(1)", "<img src=x onerror=alert(1)>", "a b", "http://", "evil.test:0", "://x"]
        {
            assert!(host_of_input(bad).is_err(), "{bad:?}");
        }
    }

    use super::*;

    #[test]
    fn a_name_too_long_is_said_so() {
        assert_eq!(Host::parse(&"a".repeat(300)), Err(TargetError::TooLong));
        assert_eq!(Host::parse(&format!("{}.test", "a.".repeat(125))), Err(TargetError::TooLong));
        assert!(Host::parse(&format!("{}test.", "ab.".repeat(80))).is_ok(), "244 characters and the root's dot");
        assert_eq!(Host::parse("a b"), Err(TargetError::InvalidHost));
    }

    #[test]
    fn ip_text_matches_the_standard_formatting() {
        let mut x: u32 = 0x9E37_79B9;
        let mut v4: Vec<std::net::Ipv4Addr> =
            vec![[0, 0, 0, 0].into(), [255, 255, 255, 255].into(), [10, 0, 9, 100].into(), [1, 20, 199, 9].into()];
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            v4.push(x.into());
        }
        for ip in v4 {
            assert_eq!(Host::Ip(IpAddr::V4(ip)).ip_text().unwrap().as_str(), ip.to_string());
        }
        for raw in
            ["::1", "::", "2001:db8::7", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "64:ff9b::1.2.3.4", "fe80::1:2:3:4"]
        {
            let ip: Ipv6Addr = raw.parse().unwrap();
            assert_eq!(Host::Ip(IpAddr::V6(ip)).ip_text().unwrap().as_str(), ip.to_string());
        }
        assert!(Host::Name("example.com".into()).ip_text().is_none());
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(normalize_name("Evil.TEST."), Some("evil.test".into()));
        assert_eq!(normalize_name("bücher.example"), Some("xn--bcher-kva.example".into()));
        assert_eq!(normalize_name("BÜCHER.example"), Some("xn--bcher-kva.example".into()));
        assert_eq!(normalize_name("_sip._tcp.x.com"), Some("_sip._tcp.x.com".into()));
        assert_eq!(normalize_name("-x3.vindicosuite.com"), Some("-x3.vindicosuite.com".into()));
        for bad in
            ["", ".", "a..b", "ev%69l.test", "evil\\.test", "a b.test", "u@evil.test", "evil.test..", &"a".repeat(64)]
        {
            assert_eq!(normalize_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn authorities() {
        let t = Target::parse_authority("Example.COM.:443").unwrap();
        assert_eq!(t.host, Host::Name("example.com".into()));
        assert_eq!(t.port, 443);
        let t = Target::parse_authority("user:pw@evil.test:443").unwrap();
        assert_eq!(t.host, Host::Name("evil.test".into()));
        let t = Target::parse_authority("[::1]:8443").unwrap();
        assert_eq!(t.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(t.to_string(), "[::1]:8443");
        let t = Target::parse_authority("[::ffff:10.0.0.1]:443").unwrap();
        assert_eq!(t.host, Host::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(Target::parse_authority("example.com"), Err(TargetError::MissingPort));
        assert_eq!(Target::parse_authority("example.com:"), Err(TargetError::MissingPort));
        assert_eq!(Target::parse_authority("example.com:0"), Err(TargetError::InvalidPort));
        assert_eq!(Target::parse_authority("example.com:65536"), Err(TargetError::InvalidPort));
        assert_eq!(Target::parse_authority("example.com:99999999999"), Err(TargetError::InvalidPort));
        assert_eq!(Target::parse_authority("example.com:+80"), Err(TargetError::InvalidPort));
        assert_eq!(Target::parse_authority(":443"), Err(TargetError::EmptyHost));
        assert_eq!(Target::parse_authority("::1:443"), Err(TargetError::InvalidHost));
        assert_eq!(Target::parse_with_default("example.com", Some(80)).unwrap().port, 80);
        for numeric in
            ["127.1:443", "2130706433:443", "0x7f000001:443", "0x7f.0.0.1:443", "0177.0.0.1:443", "1.2.3.4.5:443"]
        {
            assert_eq!(Target::parse_authority(numeric), Err(TargetError::InvalidHost), "{numeric}");
        }
        for name in ["1.example:443", "x.0xdead.example:443", "a.b1:443", "co.ac:443"] {
            assert!(Target::parse_authority(name).is_ok(), "{name}");
        }
    }
}
