//! macOS: this host's addresses from `getifaddrs`, changes from the routing socket.
//!
//! Covered: every address of every interface, both families (aliases on `lo0` included).
//! Not covered: routes to `lo0` for addresses that no interface carries
//! (`route add -net X -interface lo0`); BSD stacks deliver to interface addresses, but this
//! is compiled here, never run (no macOS in CI).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use ipnet::IpNet;

use super::LocalError;

/// Routing messages read in one go before the caller reads the table again.
const DRAIN_MAX: usize = 1024;

pub(super) fn read() -> Result<Vec<IpNet>, LocalError> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: an out pointer to a list that libc allocates; freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(LocalError::os("getifaddrs", io::Error::last_os_error()));
    }
    let mut nets = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*entry };
        // SAFETY: ifa_addr is null or a sockaddr whose family tells its real type.
        if let Some(ip) = unsafe { ip(ifa.ifa_addr) } {
            nets.push(IpNet::from(ip));
        }
        entry = ifa.ifa_next;
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(nets)
}

/// # Safety
/// `addr` is null or points to a sockaddr of the size its family says.
unsafe fn ip(addr: *const libc::sockaddr) -> Option<IpAddr> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    unsafe {
        match i32::from((*addr).sa_family) {
            libc::AF_INET => {
                let v4 = &*addr.cast::<libc::sockaddr_in>();
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                let mut bytes = (*addr.cast::<libc::sockaddr_in6>()).sin6_addr.s6_addr;
                // KAME keeps a link-local address's scope in its bytes 2 and 3.
                if bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 {
                    bytes[2] = 0;
                    bytes[3] = 0;
                }
                Some(IpAddr::V6(Ipv6Addr::from(bytes)))
            }
            _ => None,
        }
    }
}

/// A routing socket: every address added or removed is a message on it.
pub(super) struct Changes {
    socket: socket2::Socket,
    buf: Vec<std::mem::MaybeUninit<u8>>,
}

impl Changes {
    pub(super) fn subscribe() -> Result<Self, LocalError> {
        // SAFETY: a plain socket call; the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::PF_ROUTE, libc::SOCK_RAW, libc::AF_UNSPEC) };
        if fd < 0 {
            return Err(LocalError::os("routing socket", io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let socket = socket2::Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Self { socket, buf: vec![std::mem::MaybeUninit::uninit(); 2048] })
    }

    pub(super) fn wait(&mut self, timeout: Duration) -> Result<bool, LocalError> {
        let call = "routing socket";
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| LocalError::os(call, e))?;
        let mut changed = match self.receive(0) {
            Ok(Some(relevant)) => relevant,
            Ok(None) => return Ok(false),
            Err(e) => return Err(LocalError::os(call, e)),
        };
        for _ in 0..DRAIN_MAX {
            match self.receive(libc::MSG_DONTWAIT) {
                Ok(Some(relevant)) => changed |= relevant,
                Ok(None) => break,
                Err(e) => return Err(LocalError::os(call, e)),
            }
        }
        Ok(changed)
    }

    /// One message: whether it adds or removes an address; `None` when nothing came.
    fn receive(&mut self, flags: libc::c_int) -> io::Result<Option<bool>> {
        match self.socket.recv_with_flags(&mut self.buf, flags) {
            // rt_msghdr and ifa_msghdr: u16 length, u8 version, u8 type.
            Ok(n) if n >= 4 => {
                // SAFETY: the first `n` bytes were written by recv.
                let kind = unsafe { self.buf[3].assume_init() };
                Ok(Some(i32::from(kind) == libc::RTM_NEWADDR || i32::from(kind) == libc::RTM_DELADDR))
            }
            Ok(_) => Ok(Some(true)),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(Some(true)),
            Err(e) => Err(e),
        }
    }
}
