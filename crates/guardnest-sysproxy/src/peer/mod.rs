//! Who is on the other end of a connection to this host: the program holding the client's
//! socket, found from the connection's two addresses (the client's, and ours).
//!
//! A local proxy can answer this where an upstream proxy cannot: every local client's
//! connection is a socket of this host's kernel, and its owner is a process here.
//!
//! * **Linux**: one sock_diag netlink request for the exact address pair (`inet_diag_req_v2`
//!   without `NLM_F_DUMP`: one lookup in the kernel's hash of connections, not a dump of all
//!   of them) gives the client socket's inode and its owner's uid. The inode's process is
//!   the one whose `/proc/PID/fd` holds `socket:[INODE]`: the processes that owned the last
//!   connections first (a browser asks again and again), then every process of that uid.
//!   The program is `/proc/PID/exe`, the user the uid's name (`getpwuid_r`).
//! * **Windows**: `GetExtendedTcpTable` (`TCP_TABLE_OWNER_PID_CONNECTIONS`, IPv4 and IPv6):
//!   the row whose local end is the client and whose remote end is us names the owning PID;
//!   the program is `QueryFullProcessImageNameW`, the user the process token's
//!   (`GetTokenInformation(TokenUser)`, `LookupAccountSidW`).
//! * **macOS**: `proc_listallpids`, then each process's descriptors
//!   (`proc_pidinfo(PROC_PIDLISTFDS)`) and sockets (`proc_pidfdinfo(PROC_PIDFDSOCKETINFO)`)
//!   until one has both ends; the program is `proc_pidpath`. Compiled here, never run (no
//!   macOS in CI); the reading of `socket_fdinfo` is unit-tested on every OS (`xnu.rs`).
//!
//! Nothing is guessed. A socket whose owner this process may not inspect (another user's,
//! when GuardNest is not privileged) is [`Owner::Restricted`], with the user where the OS
//! says it; a socket that no longer exists is [`Owner::NotFound`]. Lookups read the OS's
//! tables only; nothing is written anywhere.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
// The layout of macOS's `socket_fdinfo`, read as bytes: compiled and tested everywhere.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod xnu;

/// Why the owner of a connection could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// An OS call failed.
    #[error("{call}: {source}")]
    Os {
        /// The call (`sock_diag`, `GetExtendedTcpTable`, …).
        call: &'static str,
        /// The OS's error.
        #[source]
        source: std::io::Error,
    },
    /// The OS answered something that could not be understood.
    #[error("{0}")]
    Malformed(String),
    /// This OS is not one GuardNest knows how to ask.
    #[error("naming the program of a connection is not implemented on this OS")]
    Unsupported,
}

impl PeerError {
    #[cfg_attr(not(any(target_os = "linux", target_os = "macos", windows)), allow(dead_code))]
    pub(crate) fn os(call: &'static str, source: std::io::Error) -> Self {
        PeerError::Os { call, source }
    }
}

/// A program on this host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Program {
    /// Its process.
    pub pid: u32,
    /// Its executable, when the OS tells (a process of another user may hide it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A short name: the executable's file name, or the OS's name for the process.
    pub name: String,
    /// The user it runs as, by name (a number when the name is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The owner of the client's end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The program holding the client's socket.
    Program(Program),
    /// The socket is there, but this process may not look at its owner: another user's
    /// program (GuardNest is not privileged), or one the OS hides. What the OS does say
    /// is kept: the user (Linux, Windows when the token can be read), the PID (Windows).
    Restricted {
        /// The owner's PID, where the OS gives it without access to the process.
        pid: Option<u32>,
        /// The owner's user, where the OS gives it.
        user: Option<String>,
    },
    /// No such connection on this host (any more): its program closed it or exited, or
    /// the client is on another machine.
    NotFound,
}

/// One connection, as the two ends' addresses: the client's, and the server's (ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ends {
    /// The client's address: the local end of the socket whose owner is asked for.
    pub client: SocketAddr,
    /// The server's address (the proxy's): the socket's remote end.
    pub server: SocketAddr,
}

impl Ends {
    /// The two ends, an IPv4 client of a dual-stack listener read as IPv4 (its socket is
    /// an IPv4 socket: that is how its own OS lists it).
    pub fn new(client: SocketAddr, server: SocketAddr) -> Ends {
        match (unmapped(client), unmapped(server)) {
            (c @ SocketAddr::V4(_), s @ SocketAddr::V4(_)) => Ends { client: c, server: s },
            _ => Ends { client, server },
        }
    }
}

fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// Looks up the owners of connections. Keeps what makes the next lookup cheaper: the
/// processes that owned the latest connections (Linux, macOS), user names, an open
/// netlink socket. Safe to share between threads; each lookup blocks its thread (call it
/// from a blocking pool, never from an async task).
pub struct Owners(os::Resolver);

impl Default for Owners {
    fn default() -> Self {
        Owners(os::Resolver::new())
    }
}

impl std::fmt::Debug for Owners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Owners")
    }
}

impl Owners {
    /// A resolver with nothing remembered yet.
    pub fn new() -> Owners {
        Owners::default()
    }

    /// The owner of the client's end of one connection.
    pub fn owner(&self, ends: Ends) -> Result<Owner, PeerError> {
        let mut all = self.0.owners(&[ends])?;
        all.pop().ok_or_else(|| PeerError::Malformed("no answer for a lookup".into()))
    }

    /// The owners of many connections at once, in their order: a batch reads each
    /// process's descriptors at most once.
    pub fn owners(&self, ends: &[Ends]) -> Result<Vec<Owner>, PeerError> {
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        self.0.owners(ends)
    }
}

/// The short name of a program at `path`: its file name, without `.exe` and without the
/// " (deleted)" Linux adds when the file was replaced while it runs.
pub fn program_name(path: &std::path::Path) -> Option<String> {
    // A Windows path read on any OS (tests, Wine): the last component after either slash.
    let text = path.to_string_lossy();
    let name = text.rsplit(['/', '\\']).next()?.trim_end_matches(" (deleted)");
    let name = name.strip_suffix(".exe").or_else(|| name.strip_suffix(".EXE")).unwrap_or(name);
    (!name.is_empty()).then(|| name.to_string())
}

/// The user name of `uid` (`getpwuid_r`), if the user database has one.
#[cfg(unix)]
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: all zeroes is a valid passwd (null pointers, zero ids); it is only read
    // after getpwuid_r filled it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: `buf` holds `buf.len()` bytes for the strings; `result` is set to `&pwd` or null.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buf`, NUL-terminated, alive here.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_mapped_addresses() {
        assert_eq!(program_name(std::path::Path::new("/usr/bin/curl")).as_deref(), Some("curl"));
        assert_eq!(program_name(std::path::Path::new("/usr/bin/python3.11 (deleted)")).as_deref(), Some("python3.11"));
        assert_eq!(program_name(std::path::Path::new("C:\\Program Files\\A\\app.EXE")).as_deref(), Some("app"));
        assert_eq!(program_name(std::path::Path::new("/")), None);
        let ends = Ends::new("[::ffff:127.0.0.1]:4000".parse().unwrap(), "[::ffff:127.0.0.1]:3000".parse().unwrap());
        assert_eq!(ends.client, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(ends.server, "127.0.0.1:3000".parse().unwrap());
        let v6 = Ends::new("[::1]:4000".parse().unwrap(), "[::1]:3000".parse().unwrap());
        assert_eq!(v6.client, "[::1]:4000".parse().unwrap());
    }
}
