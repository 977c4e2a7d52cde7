//! Linux: this host's addresses from rtnetlink.
//!
//! Two dumps on a fresh socket: `RTM_GETADDR` (every interface address, both families) and
//! `RTM_GETROUTE` (every route of every table, both families), keeping the routes the kernel
//! delivers locally (`local`, `broadcast`, `anycast`). A dump the kernel marks interrupted
//! (the table changed meanwhile) is done again. Changes come on a second socket subscribed
//! to the IPv4/IPv6 address and route groups; only address messages and routes of those
//! types ask for a new read, so a router's unicast route churn costs nothing.
//!
//! The messages are read here, not by a netlink message crate: only the fixed headers and
//! two attributes matter, and anything else the kernel adds (new attributes, new sizes) is
//! skipped instead of failing the whole read. What cannot be read at all (a length that
//! runs past the datagram, an address of the wrong size) is an error: never a partial set.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

use super::LocalError;
use crate::netlink::{align4, error_code, u16_at, Message, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN};

// From <linux/netlink.h> and <linux/rtnetlink.h>: stable kernel ABI.
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
/// `struct ifaddrmsg` and `struct rtmsg`.
const IFADDRMSG_LEN: usize = 8;
const RTMSG_LEN: usize = 12;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
/// Route types the kernel delivers to this host (`RTN_LOCAL`, `RTN_BROADCAST`, `RTN_ANYCAST`).
const LOCAL_TYPES: [u8; 3] = [2, 3, 4];
/// The attribute type without its `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` bits.
const NLA_TYPE_MASK: u16 = 0x3fff;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
const GROUPS: [u32; 4] =
    [libc::RTNLGRP_IPV4_IFADDR, libc::RTNLGRP_IPV6_IFADDR, libc::RTNLGRP_IPV4_ROUTE, libc::RTNLGRP_IPV6_ROUTE];

/// Larger than any datagram the kernel sends a dump in (at most 32 KiB).
const RECV_BUFFER: usize = 64 * 1024;
/// A dump that has not finished after this long is an error.
const DUMP_TIMEOUT: Duration = Duration::from_secs(5);
/// Dumps the kernel marked interrupted are done again this many times, then it is an error.
const DUMP_TRIES: usize = 4;
/// Notifications read in one go before the caller reads the table again.
const DRAIN_MAX: usize = 1024;
/// Room for bursts of notifications (an overflow is not an error: it means "read again").
const SUBSCRIBER_BUFFER: usize = 1 << 20;

/// Every address this host delivers to itself, as networks.
pub(super) fn read() -> Result<Vec<IpNet>, LocalError> {
    let socket = open("netlink socket")?;
    for attempt in 1..=DUMP_TRIES {
        let mut nets = Vec::new();
        let seq = attempt as u32;
        let addrs_interrupted = dump(&socket, RTM_GETADDR, IFADDRMSG_LEN, seq * 2, &mut nets)?;
        let routes_interrupted = dump(&socket, RTM_GETROUTE, RTMSG_LEN, seq * 2 + 1, &mut nets)?;
        if !addrs_interrupted && !routes_interrupted {
            return Ok(nets);
        }
    }
    Err(LocalError::Malformed(format!("the address and route tables kept changing during {DUMP_TRIES} reads")))
}

fn open(what: &'static str) -> Result<Socket, LocalError> {
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| LocalError::os(what, e))?;
    socket.bind_auto().map_err(|e| LocalError::os(what, e))?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(|e| LocalError::os(what, e))?;
    socket2::SockRef::from(&socket).set_read_timeout(Some(DUMP_TIMEOUT)).map_err(|e| LocalError::os(what, e))?;
    Ok(socket)
}

/// One dump request of `kind` (its family-specific header zeroed: `AF_UNSPEC`, every table);
/// adds what it finds to `nets`. Returns whether the kernel marked it interrupted.
fn dump(socket: &Socket, kind: u16, header_len: usize, seq: u32, nets: &mut Vec<IpNet>) -> Result<bool, LocalError> {
    let call = if kind == RTM_GETADDR { "netlink RTM_GETADDR dump" } else { "netlink RTM_GETROUTE dump" };
    let request = request(kind, header_len, seq);
    socket.send(&request, 0).map_err(|e| LocalError::os(call, e))?;
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut interrupted = false;
    // Ends at NLMSG_DONE; each receive is bounded by the socket's timeout.
    loop {
        let n = socket.recv(&mut &mut buf[..], libc::MSG_TRUNC).map_err(|e| LocalError::os(call, e))?;
        if n > buf.len() {
            return Err(LocalError::Malformed(format!("{call}: a {n}-byte message did not fit")));
        }
        for m in messages(&buf[..n])? {
            if m.seq != seq {
                continue; // an answer to an earlier request
            }
            interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
            match m.kind {
                NLMSG_DONE => {
                    // Since Linux 4.x a dump's DONE carries its error, if any.
                    return match error_code(m.payload) {
                        Some(errno) if errno < 0 => Err(LocalError::os(call, io::Error::from_raw_os_error(-errno))),
                        _ => Ok(interrupted),
                    };
                }
                NLMSG_ERROR => match error_code(m.payload) {
                    Some(0) => {}
                    Some(errno) => return Err(LocalError::os(call, io::Error::from_raw_os_error(errno.abs()))),
                    None => return Err(LocalError::Malformed(format!("{call}: a short error message"))),
                },
                RTM_NEWADDR => nets.extend(address(m.payload)?),
                RTM_NEWROUTE => nets.extend(local_route(m.payload)?),
                _ => {}
            }
        }
    }
}

fn request(kind: u16, header_len: usize, seq: u32) -> Vec<u8> {
    crate::netlink::request(kind, NLM_F_DUMP, NLMSG_HDRLEN + header_len, seq)
}

fn malformed(what: &str) -> LocalError {
    LocalError::Malformed(format!("netlink: {what}"))
}

/// The messages of a datagram; a length that runs past it is an error.
fn messages(buf: &[u8]) -> Result<Vec<Message<'_>>, LocalError> {
    crate::netlink::messages(buf).map_err(malformed)
}

/// The attributes after a fixed header; one that runs past the message is an error.
fn attributes(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, LocalError> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16_at(buf, 0).unwrap_or_default() as usize;
        let kind = u16_at(buf, 2).unwrap_or_default() & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return Err(malformed("an attribute length outside its message"));
        }
        out.push((kind, &buf[4..len]));
        buf = buf.get(align4(len)..).unwrap_or_default();
    }
    Ok(out)
}

fn ip(family: u8, bytes: &[u8]) -> Result<Option<IpAddr>, LocalError> {
    Ok(match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(bytes).map_err(|_| malformed("an IPv4 address that is not 4 bytes"))?,
        ))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).map_err(|_| malformed("an IPv6 address that is not 16 bytes"))?,
        ))),
        _ => None,
    })
}

/// An `RTM_NEWADDR`: the interface's own address (`IFA_LOCAL`; `IFA_ADDRESS` when there is no
/// `IFA_LOCAL`; with both, `IFA_ADDRESS` is a point-to-point peer, not this host).
fn address(payload: &[u8]) -> Result<Option<IpNet>, LocalError> {
    let family = *payload.first().ok_or_else(|| malformed("an empty address message"))?;
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let attrs = attributes(payload.get(IFADDRMSG_LEN..).ok_or_else(|| malformed("a short address message"))?)?;
    let find = |kind| attrs.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v);
    match find(IFA_LOCAL).or_else(|| find(IFA_ADDRESS)) {
        Some(bytes) => Ok(ip(family, bytes)?.map(IpNet::from)),
        None => Err(malformed("an address message without an address")),
    }
}

/// An `RTM_NEWROUTE` of a type delivered locally: its destination network (no `RTA_DST` is
/// a default route: everything).
fn local_route(payload: &[u8]) -> Result<Option<IpNet>, LocalError> {
    let header = payload.get(..RTMSG_LEN).ok_or_else(|| malformed("a short route message"))?;
    let (family, dst_len, kind) = (header[0], header[1], header[7]);
    if (family != AF_INET && family != AF_INET6) || !LOCAL_TYPES.contains(&kind) {
        return Ok(None);
    }
    let unspecified = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let attrs = attributes(&payload[RTMSG_LEN..])?;
    let dst = match attrs.iter().find(|(k, _)| *k == RTA_DST) {
        Some((_, bytes)) => ip(family, bytes)?.unwrap_or(unspecified),
        None => unspecified,
    };
    IpNet::new(dst, dst_len).map(Some).map_err(|_| malformed("a route prefix longer than its address"))
}

/// Whether a notification datagram may change the set: an address message, or a route of a
/// type delivered locally. What cannot be read counts as a change.
fn relevant(datagram: &[u8]) -> bool {
    let Ok(messages) = messages(datagram) else { return true };
    messages.iter().any(|m| match m.kind {
        RTM_NEWADDR | RTM_DELADDR => true,
        RTM_NEWROUTE | RTM_DELROUTE => m.payload.get(7).is_none_or(|kind| LOCAL_TYPES.contains(kind)),
        _ => false,
    })
}

/// A socket subscribed to the address and route groups of both families.
pub(super) struct Changes {
    socket: Socket,
    buf: Vec<u8>,
}

impl Changes {
    pub(super) fn subscribe() -> Result<Self, LocalError> {
        let call = "netlink subscription";
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| LocalError::os(call, e))?;
        socket.bind_auto().map_err(|e| LocalError::os(call, e))?;
        for group in GROUPS {
            socket.add_membership(group).map_err(|e| LocalError::os(call, e))?;
        }
        // A bigger buffer makes overflows rarer; the kernel may cap it, which is fine.
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(SUBSCRIBER_BUFFER);
        Ok(Self { socket, buf: vec![0u8; RECV_BUFFER] })
    }

    pub(super) fn wait(&mut self, timeout: Duration) -> Result<bool, LocalError> {
        let call = "netlink subscription";
        let timeout = timeout.max(Duration::from_millis(1));
        socket2::SockRef::from(&self.socket).set_read_timeout(Some(timeout)).map_err(|e| LocalError::os(call, e))?;
        let mut changed = match self.receive(0) {
            Ok(Some(relevant)) => relevant,
            Ok(None) => return Ok(false),
            Err(e) => return Err(LocalError::os(call, e)),
        };
        // Take what else has arrived, so that a burst of changes costs one read.
        for _ in 0..DRAIN_MAX {
            match self.receive(libc::MSG_DONTWAIT) {
                Ok(Some(relevant)) => changed |= relevant,
                Ok(None) => break,
                Err(e) => return Err(LocalError::os(call, e)),
            }
        }
        Ok(changed)
    }

    /// One datagram: `Some(relevant)`, or `None` when nothing came in time. An overflow
    /// (`ENOBUFS`: notifications were lost) counts as a change.
    fn receive(&mut self, flags: libc::c_int) -> io::Result<Option<bool>> {
        match self.socket.recv(&mut &mut self.buf[..], flags | libc::MSG_TRUNC) {
            Ok(n) => Ok(Some(n > self.buf.len() || relevant(&self.buf[..n]))),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(Some(true)),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align4(a.len()), 0);
        a
    }

    fn message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = request(kind, payload.len(), seq);
        m[6..8].copy_from_slice(&flags.to_ne_bytes());
        m[NLMSG_HDRLEN..].copy_from_slice(payload);
        m.resize(align4(m.len()), 0);
        m
    }

    fn route(family: u8, dst_len: u8, table: u8, kind: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![family, dst_len, 0, 0, table, 0, 0, kind, 0, 0, 0, 0];
        for a in attrs {
            p.extend_from_slice(a);
        }
        p
    }

    fn addr(family: u8, prefix: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![family, prefix, 0, 0, 1, 0, 0, 0];
        for a in attrs {
            p.extend_from_slice(a);
        }
        p
    }

    #[test]
    fn local_routes_and_own_addresses_are_read_others_skipped() {
        let v6: Ipv6Addr = "2001:db8:77::".parse().unwrap();
        let unknown_attr = attr(99, &[1, 2, 3, 4, 5, 6, 7, 8, 9]); // skipped, whatever its size
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (
                route(AF_INET6, 64, 255, 2, &[attr(RTA_DST, &v6.octets()), unknown_attr.clone()]),
                Some("2001:db8:77::/64"),
            ),
            (route(AF_INET, 24, 100, 2, &[attr(RTA_DST, &[198, 51, 100, 0])]), Some("198.51.100.0/24")),
            (route(AF_INET, 32, 255, 3, &[attr(RTA_DST, &[192, 0, 2, 255])]), Some("192.0.2.255/32")),
            (route(AF_INET, 0, 100, 2, &[]), Some("0.0.0.0/0")), // a local default route: everything
            (route(AF_INET, 24, 254, 1, &[attr(RTA_DST, &[10, 0, 0, 0])]), None), // unicast: not local
            (route(28, 20, 0, 2, &[]), None),                    // MPLS: not IP
        ];
        for (payload, want) in cases {
            assert_eq!(local_route(&payload).unwrap().map(|n| n.to_string()).as_deref(), want);
        }
        // An address: IFA_LOCAL wins over a point-to-point peer in IFA_ADDRESS.
        let p2p = addr(AF_INET, 32, &[attr(IFA_ADDRESS, &[10, 9, 9, 2]), attr(IFA_LOCAL, &[10, 9, 9, 1])]);
        assert_eq!(address(&p2p).unwrap().unwrap().to_string(), "10.9.9.1/32");
        let plain6 = addr(AF_INET6, 64, &[attr(IFA_ADDRESS, &"2001:db8:1::1".parse::<Ipv6Addr>().unwrap().octets())]);
        assert_eq!(address(&plain6).unwrap().unwrap().to_string(), "2001:db8:1::1/128", "the address, not its subnet");
    }

    #[test]
    fn what_cannot_be_read_is_an_error_not_a_smaller_set() {
        let too_long = route(AF_INET, 33, 255, 2, &[attr(RTA_DST, &[1, 2, 3, 4])]);
        assert!(local_route(&too_long).is_err());
        let wrong_size = route(AF_INET, 32, 255, 2, &[attr(RTA_DST, &[1, 2, 3])]);
        assert!(local_route(&wrong_size).is_err());
        let mut overrun = route(AF_INET, 32, 255, 2, &[attr(RTA_DST, &[1, 2, 3, 4])]);
        overrun[RTMSG_LEN..RTMSG_LEN + 2].copy_from_slice(&64u16.to_ne_bytes());
        assert!(local_route(&overrun).is_err());
        assert!(address(&addr(AF_INET, 32, &[])).is_err(), "an address message without an address");
        let mut datagram = message(RTM_NEWROUTE, 0, 1, &route(AF_INET, 8, 255, 2, &[]));
        datagram[0..4].copy_from_slice(&4096u32.to_ne_bytes());
        assert!(messages(&datagram).is_err());
    }

    #[test]
    fn only_address_and_local_route_notifications_ask_for_a_read() {
        let unicast = message(RTM_NEWROUTE, 0, 0, &route(AF_INET, 24, 254, 1, &[]));
        let local = message(RTM_DELROUTE, 0, 0, &route(AF_INET6, 64, 255, 2, &[]));
        let address = message(RTM_NEWADDR, 0, 0, &addr(AF_INET, 32, &[attr(IFA_LOCAL, &[192, 0, 2, 1])]));
        assert!(!relevant(&unicast), "a router's unicast churn is not our business");
        assert!(relevant(&local));
        assert!(relevant(&address));
        assert!(relevant(&[unicast.clone(), local].concat()));
        assert!(relevant(&unicast[..20]), "what cannot be read counts as a change");
    }
}
