//! Dial stage: resolve a target and connect to it, before anything is answered.
//!
//! Every resolved address is tried, families interleaved, a new attempt starting every
//! [`ATTEMPT_DELAY`] or as soon as one fails (Happy Eyeballs, RFC 8305 in spirit); the first
//! connection wins. The whole stage is bounded by `connect_timeout`, so a timeout is a
//! timeout (504) and a refusal is a refusal (502). An address that is this proxy's own
//! listener is refused before any connect, so no request can loop through us.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::domain::{Host, Target};

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
}

/// Which addresses a gateway's clients may reach: checked on each resolved address before
/// it is dialed, so a name that resolves to a refused address (DNS rebinding included)
/// reaches nothing.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
    /// This host's own addresses are refused too.
    deny_own: bool,
}

impl Destinations {
    /// Refuses `deny` (and this host's own addresses with `deny_own`), except `allow`.
    pub fn new(deny: Vec<IpNet>, allow: Vec<IpNet>, deny_own: bool) -> Self {
        Self { deny, allow, deny_own }
    }

    /// Whether a client may reach `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        !(self.deny.iter().any(|n| n.contains(&ip)) || self.deny_own && is_own_address(ip))
    }
}

/// Whether `ip` is one of this host's own addresses: a socket can be bound to it. A bind
/// sends nothing; it asks the kernel, which knows the current addresses (they change). A
/// TCP socket, not UDP: Wine lets a UDP socket bind to any address at all.
fn is_own_address(ip: IpAddr) -> bool {
    let addr = SocketAddr::new(ip, 0);
    socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)
        .and_then(|s| s.bind(&addr.into()))
        .is_ok()
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
                let first = addrs[0].ip();
                let allowed: Vec<SocketAddr> = addrs.into_iter().filter(|a| d.allows(a.ip())).collect();
                if allowed.is_empty() {
                    return Err(DialError::Denied { target: target.to_string(), addr: unmap(first) });
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

    #[test]
    fn gateway_destinations() {
        let nets = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<IpNet>>();
        let d = Destinations::new(
            nets(&["127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128"]),
            nets(&["127.0.0.9/32"]),
            true,
        );
        for refused in ["127.0.0.1", "::ffff:127.0.0.1", "::1", "169.254.169.254", "fe80::1", "0.0.0.0", "::"] {
            assert!(!d.allows(refused.parse().unwrap()), "{refused}");
        }
        assert!(d.allows("127.0.0.9".parse().unwrap()), "allow_destinations wins");
        // 192.0.2.1 (TEST-NET) is nobody's own address here; nothing is sent to find out.
        assert!(d.allows("192.0.2.1".parse().unwrap()));
        assert!(is_own_address("127.0.0.1".parse().unwrap()));
        assert!(!is_own_address("192.0.2.1".parse().unwrap()));
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
