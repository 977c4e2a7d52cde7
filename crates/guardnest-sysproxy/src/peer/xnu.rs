//! macOS's `struct socket_fdinfo` (`<sys/proc_info.h>`), what `proc_pidfdinfo` with
//! `PROC_PIDFDSOCKETINFO` fills, read as bytes at the offsets of the 64-bit layout.
//!
//! The `libc` crate does not define this struct, and defining the whole of it (a union
//! whose largest member holds two `sockaddr_un`) to read four fields would be more code to
//! get wrong. The offsets below follow the header, member by member:
//!
//! * `proc_fileinfo pfi`: 24 bytes; `socket_info psi` starts at 24.
//! * in `socket_info`: `vinfo_stat soi_stat` (136 bytes), `soi_so`, `soi_pcb` (8 each), then
//!   `soi_type`, `soi_protocol`, `soi_family` (`int`s at 152, 156, 160), eight `short`s,
//!   `soi_oobmark`, two 24-byte `sockbuf_info`, then `soi_kind` at 232, a reserved `u32`,
//!   and the union `soi_proto` at 240 (8-aligned), 528 bytes (`un_sockinfo`, its largest).
//! * in `in_sockinfo` (the start of `tcp_sockinfo` too): `insi_fport`, `insi_lport`
//!   (`int`s holding a port in network order), `insi_gencnt` (8), `insi_flags`, `insi_flow`,
//!   `insi_vflag` (`u8` at 24), `insi_ip_ttl`, a reserved `u32` at 28, then `insi_faddr` at 32
//!   and `insi_laddr` at 48, each 16 bytes (`in6_addr`, or `in4in6_addr`: the IPv4 address
//!   in its last 4 bytes).
//!
//! Whole struct: 24 + 240 + 528 = 792 bytes, `PROC_PIDFDSOCKETINFO_SIZE`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `sizeof(struct socket_fdinfo)` on 64-bit macOS.
pub(super) const SOCKET_FDINFO_SIZE: usize = 792;
const PSI: usize = 24;
const SOI_FAMILY: usize = PSI + 160;
const SOI_KIND: usize = PSI + 232;
const SOI_PROTO: usize = PSI + 240;
const INSI_FPORT: usize = SOI_PROTO;
const INSI_LPORT: usize = SOI_PROTO + 4;
const INSI_VFLAG: usize = SOI_PROTO + 24;
const INSI_FADDR: usize = SOI_PROTO + 32;
const INSI_LADDR: usize = SOI_PROTO + 48;

/// `soi_kind`: `SOCKINFO_IN`, `SOCKINFO_TCP`.
const SOCKINFO_IN: i32 = 1;
const SOCKINFO_TCP: i32 = 2;
/// `insi_vflag`: `INI_IPV4`, `INI_IPV6`.
const INI_IPV4: u8 = 0x1;
const INI_IPV6: u8 = 0x2;
/// macOS's `AF_INET` and `AF_INET6`.
const AF_INET: i32 = 2;
const AF_INET6: i32 = 30;

/// The local and foreign ends of an internet socket's `socket_fdinfo`; `None` for any
/// other socket, or a buffer too short to be one.
pub(super) fn ends(info: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    if info.len() < SOCKET_FDINFO_SIZE {
        return None;
    }
    let family = i32_at(info, SOI_FAMILY)?;
    let kind = i32_at(info, SOI_KIND)?;
    if !(family == AF_INET || family == AF_INET6) || !(kind == SOCKINFO_IN || kind == SOCKINFO_TCP) {
        return None;
    }
    let vflag = info[INSI_VFLAG];
    let ip = |at: usize| -> Option<IpAddr> {
        let bytes: [u8; 16] = info.get(at..at + 16)?.try_into().ok()?;
        if vflag & INI_IPV4 != 0 {
            Some(IpAddr::V4(Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15])))
        } else if vflag & INI_IPV6 != 0 {
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        } else {
            None
        }
    };
    // The port is kept in network order in the int's first two bytes.
    let port = |at: usize| u16::from_be_bytes([info[at], info[at + 1]]);
    let local = SocketAddr::new(ip(INSI_LADDR)?, port(INSI_LPORT));
    let foreign = SocketAddr::new(ip(INSI_FADDR)?, port(INSI_FPORT));
    Some((local, foreign))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `socket_fdinfo` as macOS fills it for a TCP socket.
    fn info(family: i32, kind: i32, vflag: u8, local: SocketAddr, foreign: SocketAddr) -> Vec<u8> {
        let mut b = vec![0u8; SOCKET_FDINFO_SIZE];
        b[SOI_FAMILY..SOI_FAMILY + 4].copy_from_slice(&family.to_ne_bytes());
        b[SOI_KIND..SOI_KIND + 4].copy_from_slice(&kind.to_ne_bytes());
        b[INSI_VFLAG] = vflag;
        b[INSI_LPORT..INSI_LPORT + 2].copy_from_slice(&local.port().to_be_bytes());
        b[INSI_FPORT..INSI_FPORT + 2].copy_from_slice(&foreign.port().to_be_bytes());
        for (at, addr) in [(INSI_LADDR, local), (INSI_FADDR, foreign)] {
            match addr.ip() {
                IpAddr::V4(v4) => b[at + 12..at + 16].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => b[at..at + 16].copy_from_slice(&v6.octets()),
            }
        }
        b
    }

    /// The header's structs, member by member, as a C compiler lays them out: the offsets
    /// read above must be theirs.
    #[allow(dead_code)]
    mod header {
        #[repr(C)]
        pub struct ProcFileinfo(u32, u32, i64, i32, u32);
        #[repr(C)]
        pub struct VinfoStat(u32, u16, u16, u64, u32, u32, [i64; 8], i64, i64, i32, u32, u32, u32, [i64; 2]);
        #[repr(C)]
        pub struct SockbufInfo(u32, u32, u32, u32, u32, i16, i16);
        #[repr(C)]
        pub struct InSockinfo {
            pub fport: i32,
            pub lport: i32,
            pub gencnt: u64,
            pub flags: u32,
            pub flow: u32,
            pub vflag: u8,
            pub ttl: u8,
            pub rfu: u32,
            pub faddr: [u32; 4],
            pub laddr: [u32; 4],
            pub v4: u8,
            pub v6: (u8, i32, u16, i16),
        }
        #[repr(C)]
        pub struct UnSockinfo(u64, u64, [u8; 255], [u8; 255]);
        #[repr(C)]
        pub union Proto {
            pub inet: std::mem::ManuallyDrop<InSockinfo>,
            pub un: std::mem::ManuallyDrop<UnSockinfo>,
        }
        #[repr(C)]
        pub struct SocketInfo {
            pub stat: VinfoStat,
            pub so: u64,
            pub pcb: u64,
            pub kind_type: i32,
            pub protocol: i32,
            pub family: i32,
            pub shorts: [i16; 7],
            pub error: u16,
            pub oobmark: u32,
            pub rcv: SockbufInfo,
            pub snd: SockbufInfo,
            pub kind: i32,
            pub rfu: u32,
            pub proto: Proto,
        }
        #[repr(C)]
        pub struct SocketFdinfo {
            pub pfi: ProcFileinfo,
            pub psi: SocketInfo,
        }
    }

    #[test]
    fn offsets_are_those_of_the_header() {
        use header::*;
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<SocketFdinfo>(), SOCKET_FDINFO_SIZE);
        assert_eq!(offset_of!(SocketFdinfo, psi), PSI);
        assert_eq!(PSI + offset_of!(SocketInfo, family), SOI_FAMILY);
        assert_eq!(PSI + offset_of!(SocketInfo, kind), SOI_KIND);
        assert_eq!(PSI + offset_of!(SocketInfo, proto), SOI_PROTO);
        assert_eq!(SOI_PROTO + offset_of!(InSockinfo, fport), INSI_FPORT);
        assert_eq!(SOI_PROTO + offset_of!(InSockinfo, lport), INSI_LPORT);
        assert_eq!(SOI_PROTO + offset_of!(InSockinfo, vflag), INSI_VFLAG);
        assert_eq!(SOI_PROTO + offset_of!(InSockinfo, faddr), INSI_FADDR);
        assert_eq!(SOI_PROTO + offset_of!(InSockinfo, laddr), INSI_LADDR);
    }

    #[test]
    fn internet_sockets_are_read_others_skipped() {
        let (l, f): (SocketAddr, SocketAddr) = ("127.0.0.1:51000".parse().unwrap(), "127.0.0.1:3000".parse().unwrap());
        assert_eq!(ends(&info(AF_INET, SOCKINFO_TCP, INI_IPV4, l, f)), Some((l, f)));
        let (l6, f6): (SocketAddr, SocketAddr) = ("[::1]:51000".parse().unwrap(), "[::1]:3000".parse().unwrap());
        assert_eq!(ends(&info(AF_INET6, SOCKINFO_TCP, INI_IPV6, l6, f6)), Some((l6, f6)));
        // An IPv4 connection on an IPv6 socket: the vflag says IPv4.
        assert_eq!(ends(&info(AF_INET6, SOCKINFO_TCP, INI_IPV4, l, f)), Some((l, f)));
        assert_eq!(ends(&info(1, 3, 0, l, f)), None, "a Unix socket");
        assert_eq!(ends(&info(AF_INET, SOCKINFO_TCP, 0, l, f)), None, "no address family flag");
        assert_eq!(ends(&info(AF_INET, SOCKINFO_TCP, INI_IPV4, l, f)[..700]), None, "too short");
    }
}
