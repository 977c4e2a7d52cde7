//! The addresses this host delivers to itself: what a gateway's `self` must refuse.
//!
//! Not "the addresses a socket can bind": a bind test misses prefixes routed to the host
//! without being on an interface (Linux's `ip route add local 2001:db8::/64 dev lo`, the
//! "AnyIP" set-up of floating and anycast addresses) and, with `ip_nonlocal_bind=1`, calls
//! every address local. Here it is read from the OS's own tables:
//!
//! * **Linux**: rtnetlink dumps of every interface address (`RTM_GETADDR`) and of the routes
//!   of every routing table whose type the kernel delivers locally (`RTM_GETROUTE`: `local`,
//!   `broadcast`, `anycast`), both families; [`Changes`] listens to the address and route
//!   multicast groups. Every table counts, not only those the policy rules send this
//!   process's traffic to: a table chosen by a firewall mark still counts, since a mark can
//!   be set on any traffic.
//! * **Windows**: every unicast address (`GetUnicastIpAddressTable`) and every route marked
//!   loopback or on a software-loopback interface (`GetIpForwardTable2`); [`Changes`] asks
//!   `NotifyUnicastIpAddressChange` and `NotifyRouteChange2`, and reads again every second
//!   where they are not available (Wine 8).
//! * **macOS**: every interface address (`getifaddrs`); [`Changes`] reads the routing
//!   socket's address messages. Not covered: routes to `lo0` for addresses no interface
//!   carries (macOS delivers to interface addresses only, as far as we know; untested here).
//!
//! Reading is all or nothing: a dump that fails, or that cannot be understood, is an
//! error, never a partial answer, so the caller can fail closed.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod unsupported;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
use unsupported as os;

/// Why this host's addresses could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// An OS call failed.
    #[error("{call}: {source}")]
    Os {
        /// The call (`netlink RTM_GETROUTE dump`, `GetUnicastIpAddressTable`, …).
        call: &'static str,
        /// The OS's error.
        #[source]
        source: std::io::Error,
    },
    /// The OS answered something that could not be understood.
    #[error("{0}")]
    Malformed(String),
    /// This OS is not one GuardNest knows how to ask.
    #[error("reading this host's addresses is not implemented on this OS")]
    Unsupported,
}

impl LocalError {
    pub(crate) fn os(call: &'static str, source: std::io::Error) -> Self {
        LocalError::Os { call, source }
    }
}

/// A set of networks, normalised for lookups: host bits cleared, no network inside another,
/// sorted; IPv4 and IPv6 kept apart as ranges, so [`LocalNets::contains`] is a binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalNets {
    nets: Vec<IpNet>,
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl LocalNets {
    /// The set of `nets` (in any order, nested or repeated).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut all: Vec<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
        // Wider networks first among those that start at the same address, so that what
        // follows inside them is dropped.
        all.sort_by(|a, b| a.network().cmp(&b.network()).then(a.prefix_len().cmp(&b.prefix_len())));
        let mut nets: Vec<IpNet> = Vec::with_capacity(all.len());
        for net in all {
            if nets.last().is_some_and(|kept| kept.contains(&net)) {
                continue;
            }
            nets.push(net);
        }
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in &nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        Self { nets, v4, v6 }
    }

    /// Whether `ip` is in the set; an IPv4-mapped IPv6 address is looked up as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => within(&self.v4, u32::from(v4)),
                None => within(&self.v6, u128::from(v6)),
            },
            IpAddr::V4(v4) => within(&self.v4, u32::from(v4)),
        }
    }

    /// The networks, normalised and sorted.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// How many networks.
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// Whether `x` falls in one of `ranges` (sorted, disjoint).
fn within<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let after = ranges.partition_point(|r| r.0 <= x);
    after > 0 && ranges[after - 1].1 >= x
}

impl std::fmt::Display for LocalNets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// Reads the whole table now: every address this host delivers to itself.
pub fn read() -> Result<LocalNets, LocalError> {
    os::read().map(LocalNets::new)
}

/// A subscription to changes of this host's addresses and local routes. Subscribe before
/// the first [`read`], so that no change falls between the two.
pub struct Changes(os::Changes);

impl Changes {
    /// Starts listening.
    pub fn subscribe() -> Result<Self, LocalError> {
        os::Changes::subscribe().map(Changes)
    }

    /// Blocks until the table may have changed (`Ok(true)`: read it again) or `timeout`
    /// has passed (`Ok(false)`). An error means changes may have been missed: subscribe
    /// again and read.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, LocalError> {
        self.0.wait(timeout)
    }
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Changes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn nested_and_repeated_networks_are_folded_and_looked_up() {
        let set = LocalNets::new(nets(&[
            "198.51.100.7/24",
            "198.51.100.5/32",
            "127.0.0.1/32",
            "127.0.0.0/8",
            "2001:db8:77::/64",
            "2001:db8:77::5/128",
            "192.0.2.1/32",
            "192.0.2.1/32",
            "::1/128",
        ]));
        assert_eq!(
            set.to_string(),
            "127.0.0.0/8, 192.0.2.1/32, 198.51.100.0/24, ::1/128, 2001:db8:77::/64",
            "host bits cleared, nothing inside another, sorted"
        );
        for inside in ["127.1.2.3", "192.0.2.1", "198.51.100.0", "198.51.100.255", "2001:db8:77::5", "::1"] {
            assert!(set.contains(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["192.0.2.0", "192.0.2.2", "198.51.101.0", "126.255.255.255", "2001:db8:78::", "::2", "::"] {
            assert!(!set.contains(outside.parse().unwrap()), "{outside}");
        }
        assert!(set.contains("::ffff:198.51.100.9".parse().unwrap()), "an IPv4-mapped address is IPv4");
        assert!(!set.contains("::ffff:192.0.2.2".parse().unwrap()));
        assert!(LocalNets::new(nets(&["0.0.0.0/0"])).contains("203.0.113.1".parse().unwrap()));
        assert!(!LocalNets::default().contains("127.0.0.1".parse().unwrap()));
    }

    /// The real table of the machine the tests run on: loopback is always there.
    #[test]
    fn this_hosts_table_has_loopback() {
        let mut changes = Changes::subscribe().expect("subscribe");
        let set = read().expect("read this host's addresses");
        eprintln!("this host delivers to itself: {set}");
        assert!(set.contains("127.0.0.1".parse().unwrap()), "{set}");
        assert!(!set.contains("192.0.2.123".parse().unwrap()), "TEST-NET is nobody's here: {set}");
        // Nothing changes here meanwhile, or something does: either is an answer, not an error.
        changes.wait(Duration::from_millis(10)).expect("wait");
    }
}
