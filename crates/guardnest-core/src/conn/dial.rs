//! Dial stage: resolve a target and connect to it, before anything is answered.
//!
//! Every resolved address is tried, families interleaved, a new attempt starting every
//! [`ATTEMPT_DELAY`] or as soon as one fails (Happy Eyeballs, RFC 8305 in spirit); the first
//! connection wins. The whole stage is bounded by `connect_timeout`, so a timeout is a
//! timeout (504) and a refusal is a refusal (502). An address that is this proxy's own
//! listener is refused before any connect, so no request can loop through us. In gateway
//! mode each address is checked against [`Destinations`] first: `self` is what
//! [`OwnAddresses`] knows this host delivers to itself.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::domain::{Host, Target};
use crate::own_addresses::{Own, OwnAddresses};

/// Head start of one connection attempt before the next address is tried too.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Why no upstream connection was made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Name resolution failed.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// Every address refused or was unreachable.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The target.
        target: String,
        /// The last attempt's error.
        #[source]
        source: io::Error,
    },
    /// Resolution and connection together took longer than the connect timeout.
    #[error("connecting to {target} timed out after {timeout:?}")]
    Timeout {
        /// The target.
        target: String,
        /// The limit.
        timeout: Duration,
    },
    /// The target is this proxy's own listener.
    #[error("{target} is this proxy itself")]
    Loop {
        /// The target.
        target: String,
    },
    /// In gateway mode, every address of the target is one clients may not reach.
    #[error("{target} is {addr}, which clients of this gateway may not reach ([access] deny_destinations)")]
    Denied {
        /// The target.
        target: String,
        /// The (first) address refused.
        addr: IpAddr,
    },
    /// In gateway mode, this host's own addresses (`self`) could not be read, so no address
    /// can be told apart from them: refused (fail closed).
    #[error(
        "{target} is {addr}, which clients of this gateway may not reach while it cannot tell its own addresses \
         ([access] deny_destinations \"self\"): {why}"
    )]
    OwnUnknown {
        /// The target.
        target: String,
        /// The (first) address refused.
        addr: IpAddr,
        /// Why this host's addresses are not known.
        why: std::sync::Arc<str>,
    },
}

/// Which addresses a gateway's clients may reach: checked on each resolved address before
/// it is dialed, so a name that resolves to a refused address (DNS rebinding included)
/// reaches nothing.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
    /// This host's own addresses (`self`) are refused too.
    deny_own: bool,
    /// Where they come from; none yet is "unknown" (fails closed).
    own: Option<OwnAddresses>,
}

/// Whether a destination may be dialed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It may.
    Allowed,
    /// `deny_destinations` refuses it (a network, or `self`).
    Denied,
    /// `self` is refused and this host's addresses are not known now (why): refused too.
    OwnUnknown(std::sync::Arc<str>),
}

impl Destinations {
    /// Refuses `deny` (and this host's own addresses with `deny_own`, once they are given
    /// by [`Destinations::with_own`]), except `allow`.
    pub fn new(deny: Vec<IpNet>, allow: Vec<IpNet>, deny_own: bool) -> Self {
        Self { deny, allow, deny_own, own: None }
    }

    /// Whether this host's own addresses are refused (`self` in `deny_destinations`).
    pub fn denies_own(&self) -> bool {
        self.deny_own
    }

    /// The same, telling this host's own addresses by `own`.
    pub fn with_own(mut self, own: OwnAddresses) -> Self {
        self.own = Some(own);
        self
    }

    /// Whether a client may reach `ip`: `allow_destinations` first, then the denied
    /// networks, then `self`. A lookup in a snapshot: nothing is sent, nothing waits.
    pub fn check(&self, ip: IpAddr) -> Verdict {
        let ip = unmap(ip);
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return Verdict::Allowed;
        }
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Verdict::Denied;
        }
        if !self.deny_own {
            return Verdict::Allowed;
        }
        match self.own.as_ref().map(|own| own.check(ip)) {
            Some(Own::No) => Verdict::Allowed,
            Some(Own::Yes) => Verdict::Denied,
            Some(Own::Unknown(why)) => Verdict::OwnUnknown(why),
            None => Verdict::OwnUnknown("this host's own addresses are not being read".into()),
        }
    }

    /// Whether a client may reach `ip` ([`Destinations::check`] says why not).
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.check(ip) == Verdict::Allowed
    }
}

/// Connects to upstreams on behalf of clients.
#[derive(Debug, Clone)]
pub struct Dialer {
    connect_timeout: Duration,
    own_addr: Option<SocketAddr>,
    /// In gateway mode, where clients may go.
    destinations: Option<std::sync::Arc<Destinations>>,
}

impl Dialer {
    /// A dialer with the given timeout that refuses `own_addr` (the proxy's listener).
    pub fn new(connect_timeout: Duration, own_addr: Option<SocketAddr>) -> Self {
        Self { connect_timeout, own_addr, destinations: None }
    }

    /// The same dialer, refusing the addresses `destinations` does not allow (gateway mode).
    pub fn with_destinations(mut self, destinations: Destinations) -> Self {
        self.destinations = Some(std::sync::Arc::new(destinations));
        self
    }

    /// Resolves and connects within the connect timeout.
    pub async fn dial(&self, target: &Target) -> Result<TcpStream, DialError> {
        match tokio::time::timeout(self.connect_timeout, self.dial_unbounded(target)).await {
            Ok(result) => result,
            Err(_) => Err(DialError::Timeout { target: target.to_string(), timeout: self.connect_timeout }),
        }
    }

    async fn dial_unbounded(&self, target: &Target) -> Result<TcpStream, DialError> {
        let addrs: Vec<SocketAddr> = match &target.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), target.port))
                .await
                .map_err(|source| DialError::Resolve { host: name.clone(), source })?
                .map(|a| SocketAddr::new(unmap(a.ip()), a.port()))
                .collect(),
        };
        if addrs.is_empty() {
            let source = io::Error::new(io::ErrorKind::NotFound, "no addresses");
            return Err(DialError::Resolve { host: target.host.to_string(), source });
        }
        if addrs.iter().any(|a| self.is_self(*a)) {
            return Err(DialError::Loop { target: target.to_string() });
        }
        let addrs = match &self.destinations {
            None => addrs,
            Some(d) => {
                let first = (unmap(addrs[0].ip()), d.check(addrs[0].ip()));
                let allowed: Vec<SocketAddr> = addrs.into_iter().filter(|a| d.allows(a.ip())).collect();
                if allowed.is_empty() {
                    let (addr, target) = (first.0, target.to_string());
                    return Err(match first.1 {
                        Verdict::OwnUnknown(why) => DialError::OwnUnknown { target, addr, why },
                        _ => DialError::Denied { target, addr },
                    });
                }
                allowed
            }
        };
        race(interleave(addrs)).await.map_err(|source| DialError::Connect { target: target.to_string(), source })
    }

    /// Whether `addr` reaches this proxy's own listener.
    fn is_self(&self, addr: SocketAddr) -> bool {
        let Some(own) = self.own_addr else { return false };
        if addr.port() != own.port() {
            return false;
        }
        let ip = addr.ip();
        ip == own.ip()
            || ip.is_unspecified()
            // A listener on 0.0.0.0 or [::] is reachable through every loopback address.
            || (own.ip().is_unspecified() && ip.is_loopback())
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Orders addresses so that families alternate, keeping the resolver's preference first.
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let first_v6 = addrs[0].is_ipv6();
    let (mut preferred, mut other): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(preferred.len() + other.len());
    preferred.reverse();
    other.reverse();
    loop {
        match (preferred.pop(), other.pop()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// Staggered connection attempts; the first success wins and the rest are dropped.
async fn race(addrs: Vec<SocketAddr>) -> io::Result<TcpStream> {
    if let [only] = addrs[..] {
        return connect(only).await;
    }
    let mut pending = addrs.into_iter();
    let mut attempts: JoinSet<io::Result<TcpStream>> = JoinSet::new();
    let mut last_err = None;
    let start_next = |attempts: &mut JoinSet<_>, pending: &mut std::vec::IntoIter<SocketAddr>| match pending.next() {
        Some(addr) => {
            attempts.spawn(connect(addr));
            true
        }
        None => false,
    };
    start_next(&mut attempts, &mut pending);
    loop {
        let delay = tokio::time::sleep(ATTEMPT_DELAY);
        tokio::select! {
            done = attempts.join_next() => match done {
                Some(Ok(Ok(stream))) => return Ok(stream),
                Some(Ok(Err(e))) => {
                    last_err = Some(e);
                    if !start_next(&mut attempts, &mut pending) && attempts.is_empty() {
                        break;
                    }
                }
                Some(Err(join)) => last_err = Some(io::Error::other(join)),
                None => break,
            },
            _ = delay, if pending.len() > 0 => { start_next(&mut attempts, &mut pending); }
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no address could be tried")))
}

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use crate::sysproxy::local::{LocalError, LocalNets};

    use super::*;

    #[test]
    fn families_alternate() {
        let a: Vec<SocketAddr> = ["[::1]:1", "[::2]:1", "127.0.0.1:1", "127.0.0.2:1", "[::3]:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let out: Vec<String> = interleave(a).iter().map(ToString::to_string).collect();
        assert_eq!(out, ["[::1]:1", "127.0.0.1:1", "[::2]:1", "127.0.0.2:1", "[::3]:1"]);
    }

    /// A table of this host's own addresses, fixed by the test.
    struct Fixed(Option<&'static [&'static str]>);

    impl crate::own_addresses::Source for Fixed {
        fn read(&mut self) -> Result<LocalNets, LocalError> {
            match self.0 {
                Some(nets) => Ok(LocalNets::new(nets.iter().map(|n| n.parse::<IpNet>().unwrap()))),
                None => Err(LocalError::Malformed("the test's table is unreadable".into())),
            }
        }
        fn wait(&mut self, timeout: Duration) -> Result<bool, LocalError> {
            std::thread::sleep(timeout);
            Ok(false)
        }
    }

    #[test]
    fn gateway_destinations() {
        let nets = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<IpNet>>();
        let own = OwnAddresses::from_source(Fixed(Some(&["2001:db8:77::/64", "198.51.100.0/24", "192.0.2.9/32"])));
        let d = Destinations::new(
            nets(&["127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128"]),
            nets(&["127.0.0.9/32", "192.0.2.9/32"]),
            true,
        )
        .with_own(own);
        for refused in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "2001:db8:77::5",
            "198.51.100.200",
            "::ffff:198.51.100.200",
        ] {
            assert_eq!(d.check(refused.parse().unwrap()), Verdict::Denied, "{refused}");
        }
        assert!(d.allows("127.0.0.9".parse().unwrap()), "allow_destinations wins");
        assert!(d.allows("192.0.2.9".parse().unwrap()), "allow_destinations wins over self");
        assert!(d.allows("192.0.2.1".parse().unwrap()), "not this host's");
        assert!(d.allows("2001:db8:78::1".parse().unwrap()));
    }

    /// Unknown own addresses refuse every destination but the allowed ones; without `self`
    /// in the list nothing is asked.
    #[test]
    fn unknown_own_addresses_fail_closed() {
        let nets = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<IpNet>>();
        let d = Destinations::new(nets(&["127.0.0.0/8"]), nets(&["203.0.113.0/24"]), true)
            .with_own(OwnAddresses::from_source(Fixed(None)));
        let Verdict::OwnUnknown(why) = d.check("192.0.2.1".parse().unwrap()) else { panic!("not fail-closed") };
        assert!(why.contains("unreadable"), "{why}");
        assert_eq!(d.check("127.0.0.1".parse().unwrap()), Verdict::Denied);
        assert!(d.allows("203.0.113.5".parse().unwrap()), "allow_destinations still wins");
        let never_given = Destinations::new(Vec::new(), Vec::new(), true);
        assert!(matches!(never_given.check("192.0.2.1".parse().unwrap()), Verdict::OwnUnknown(_)));
        let not_asked = Destinations::new(Vec::new(), Vec::new(), false);
        assert!(not_asked.allows("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn own_listener_is_refused() {
        let d = Dialer::new(Duration::from_secs(1), Some("127.0.0.1:3000".parse().unwrap()));
        assert!(d.is_self("127.0.0.1:3000".parse().unwrap()));
        assert!(d.is_self("0.0.0.0:3000".parse().unwrap()));
        assert!(!d.is_self("127.0.0.1:3001".parse().unwrap()));
        let any = Dialer::new(Duration::from_secs(1), Some("0.0.0.0:3000".parse().unwrap()));
        assert!(any.is_self("127.0.0.5:3000".parse().unwrap()));
        assert!(any.is_self("[::1]:3000".parse().unwrap()));
    }
}
