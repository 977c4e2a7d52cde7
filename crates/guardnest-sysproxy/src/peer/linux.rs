//! Linux: a connection's owner from sock_diag and `/proc`.
//!
//! 1. sock_diag (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`): one `inet_diag_req_v2` per
//!    connection naming its exact address pair, without `NLM_F_DUMP`. The kernel looks the
//!    socket up in its hash of established connections (as `ss` does with a filter, but
//!    without walking every socket) and answers one `inet_diag_msg`: the owner's uid and
//!    the socket's inode. No such socket is `ENOENT`; a socket no file refers to any more
//!    (closed, `TIME_WAIT`, its program gone) has inode 0.
//! 2. The process: the one whose `/proc/PID/fd` holds a link to `socket:[INODE]`. The
//!    owners of the latest connections are read first (most recent first), then every
//!    process of the socket's uid; one batch reads each process at most once and stops as
//!    soon as every inode is found. A recent owner's `/proc/PID/fd` stays open: the handle
//!    is that process's, not the PID's (once it exits, reads through it fail; a new process
//!    given the same PID is not reached through it), so its program is read once a second
//!    at most. In it, the descriptor numbers where its earlier sockets were found are read
//!    first, by number, before it is listed: the kernel gives a new socket the lowest free
//!    number, most often one its program's last connection freed, so a lookup usually
//!    reads one link, not hundreds.
//! 3. A socket of another uid, when this process is not root, is not looked for: its
//!    owner's descriptors cannot be read (`ptrace` access), so it is named by its user
//!    only. A socket found by sock_diag but in no process we can read is looked up again:
//!    gone by then means its program exited meanwhile; still there means the OS hides its
//!    owner (another PID namespace, `hidepid`), and it is named by its user.
//!
//! The messages are read here as in `local/linux.rs`: fixed offsets of a stable ABI.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr as NetlinkAddr};

use super::{program_name, user_name, Ends, Owner, PeerError, Program};
use crate::netlink::{error_code, messages, u32_at, NLMSG_ERROR, NLMSG_HDRLEN};

// From <linux/sock_diag.h> and <linux/inet_diag.h>: stable kernel ABI.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then `inet_diag_sockid`.
const REQ_LEN: usize = 56;
/// In `inet_diag_msg`: `idiag_uid` and `idiag_inode`, after family, state, timer, retrans,
/// the 48-byte `inet_diag_sockid`, expires, rqueue and wqueue.
const MSG_UID: usize = 64;
const MSG_INODE: usize = 68;
/// `INET_DIAG_NOCOOKIE`: match any socket of the pair, whatever its cookie.
const NO_COOKIE: [u8; 8] = [0xff; 8];

/// A lookup the kernel has not answered after this long is an error.
const RECV_TIMEOUT: Duration = Duration::from_secs(1);
/// Processes remembered as recent owners, read first.
const RECENT_OWNERS: usize = 16;
/// User names remembered (uid → name).
const USERS: usize = 256;
/// Larger than any answer to one exact request.
const RECV_BUFFER: usize = 8 * 1024;
/// Descriptor numbers remembered per recent owner (where its sockets were found).
const HOT_FDS: usize = 32;
/// How long a recent owner's program (its executable) is taken as read: a process that
/// `exec`s another program keeps its PID and descriptors.
const PROGRAM_FRESH: Duration = Duration::from_secs(1);

pub(super) struct Resolver {
    /// An open sock_diag socket, taken by one lookup at a time (another opens its own).
    socket: Mutex<Option<Socket>>,
    /// The owners of the latest connections, most recent first.
    recent: Mutex<Vec<u32>>,
    users: Mutex<HashMap<u32, String>>,
    /// The recent owners' open descriptor directories, with what was learnt of each.
    known: Mutex<HashMap<u32, Known>>,
}

/// A recent owner, held by its open `/proc/PID/fd`.
struct Known {
    dir: std::fs::File,
    /// The descriptor numbers where its looked-for sockets were found, most recent first:
    /// read first, by number (only an order: every match is read).
    hot: Vec<u32>,
    /// Its program, and when it was read.
    program: Option<(Program, std::time::Instant)>,
}

/// What sock_diag said about one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Diag {
    /// No such socket.
    Absent,
    /// A socket with an owner uid and an inode (0: no file refers to it any more).
    Socket { uid: u32, inode: u64 },
}

impl Resolver {
    pub(super) fn new() -> Self {
        Resolver {
            socket: Mutex::new(None),
            recent: Mutex::new(Vec::new()),
            users: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn owners(&self, ends: &[Ends]) -> Result<Vec<Owner>, PeerError> {
        let diags = self.diagnose(ends)?;
        // SAFETY: no arguments; cannot fail.
        let me = unsafe { libc::geteuid() };
        // The inodes to find in /proc, and the uids whose processes may hold them.
        let mut wanted: HashMap<u64, Option<u32>> = HashMap::new();
        let mut uids: HashSet<u32> = HashSet::new();
        for d in &diags {
            if let Diag::Socket { uid, inode } = *d {
                if inode != 0 && (me == 0 || uid == me) {
                    wanted.insert(inode, None);
                    uids.insert(uid);
                }
            }
        }
        if !wanted.is_empty() {
            self.find_holders(&mut wanted, &uids);
        }
        let mut owners = Vec::with_capacity(ends.len());
        let mut holders = Vec::new();
        for (i, d) in diags.iter().enumerate() {
            let owner = match *d {
                Diag::Absent | Diag::Socket { inode: 0, .. } => Owner::NotFound,
                Diag::Socket { uid, inode } => match wanted.get(&inode).copied().flatten() {
                    Some(pid) => {
                        holders.push(pid);
                        Owner::Program(self.program(pid, uid))
                    }
                    None if me != 0 && uid != me => Owner::Restricted { pid: None, user: Some(self.user(uid)) },
                    // In no process we could read: gone meanwhile, or hidden from us.
                    None => match self.diagnose(&ends[i..=i])?.first() {
                        Some(Diag::Socket { inode: again, .. }) if *again == inode => {
                            Owner::Restricted { pid: None, user: Some(self.user(uid)) }
                        }
                        _ => Owner::NotFound,
                    },
                },
            };
            owners.push(owner);
        }
        self.remember(&holders);
        Ok(owners)
    }

    /// One exact sock_diag request per connection, on one socket.
    fn diagnose(&self, ends: &[Ends]) -> Result<Vec<Diag>, PeerError> {
        let call = "sock_diag";
        let taken = self.socket.lock().take();
        let socket = match taken {
            Some(s) => s,
            None => open().map_err(|e| PeerError::os(call, e))?,
        };
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut out = Vec::with_capacity(ends.len());
        for (seq, e) in ends.iter().enumerate() {
            let seq = seq as u32 + 1;
            socket.send(&request(*e, seq), 0).map_err(|e| PeerError::os(call, e))?;
            out.push(answer(&socket, &mut buf, seq)?);
        }
        // Kept for the next lookup only when every answer was read (nothing left queued).
        *self.socket.lock() = Some(socket);
        Ok(out)
    }

    /// Finds the process holding each wanted inode: recent owners first (through their
    /// open directories), then the processes of `uids`.
    fn find_holders(&self, wanted: &mut HashMap<u64, Option<u32>>, uids: &HashSet<u32>) {
        let recent = self.recent.lock().clone();
        let mut left = wanted.len();
        // The processes read here: the scan of /proc below skips only these. A recent one
        // another lookup holds at the moment (taken out of `known`) is read there.
        let mut scanned = Vec::with_capacity(recent.len());
        for &pid in &recent {
            let Some(mut known) = self.known.lock().remove(&pid) else { continue };
            scanned.push(pid);
            let mut at = Vec::new();
            let (found, listed) = holds(pid, &known.dir, wanted, left, &known.hot, &mut at);
            left -= found;
            // A directory that lists nothing is a process that has gone: forgotten.
            if listed || found > 0 {
                heat(&mut known.hot, &at);
                self.keep(pid, known);
            }
            if left == 0 {
                return;
            }
        }
        let Ok(dir) = std::fs::read_dir("/proc") else { return };
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if scanned.contains(&pid) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !uids.contains(&std::os::unix::fs::MetadataExt::uid(&meta)) {
                continue;
            }
            let Ok(fds) = std::fs::File::open(format!("/proc/{pid}/fd")) else { continue };
            let mut at = Vec::new();
            let (found, _) = holds(pid, &fds, wanted, left, &[], &mut at);
            if found > 0 {
                let mut hot = Vec::new();
                heat(&mut hot, &at);
                self.keep(pid, Known { dir: fds, hot, program: None });
                left -= found;
            }
            if left == 0 {
                return;
            }
        }
    }

    /// Keeps `known` for `pid`; owners no longer recent are let go first when many are kept.
    fn keep(&self, pid: u32, known: Known) {
        let mut all = self.known.lock();
        if !all.contains_key(&pid) && all.len() >= RECENT_OWNERS * 2 {
            let recent = self.recent.lock().clone();
            all.retain(|p, _| recent.contains(p));
        }
        all.insert(pid, known);
    }

    fn remember(&self, holders: &[u32]) {
        if holders.is_empty() {
            return;
        }
        let mut recent = self.recent.lock();
        for &pid in holders {
            recent.retain(|p| *p != pid);
            recent.insert(0, pid);
        }
        recent.truncate(RECENT_OWNERS);
    }

    /// `pid`'s program (read at most once a second while it is a recent owner).
    fn program(&self, pid: u32, uid: u32) -> Program {
        let user = self.user(uid);
        if let Some((program, at)) = self.known.lock().get(&pid).and_then(|k| k.program.as_ref()) {
            if at.elapsed() < PROGRAM_FRESH && program.user.as_deref() == Some(user.as_str()) {
                return program.clone();
            }
        }
        let path = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let name = path.as_deref().and_then(program_name).unwrap_or_else(|| comm(pid));
        let program = Program { pid, path, name, user: Some(user) };
        if let Some(known) = self.known.lock().get_mut(&pid) {
            known.program = Some((program.clone(), std::time::Instant::now()));
        }
        program
    }

    fn user(&self, uid: u32) -> String {
        if let Some(name) = self.users.lock().get(&uid) {
            return name.clone();
        }
        let name = user_name(uid).unwrap_or_else(|| format!("uid {uid}"));
        let mut users = self.users.lock();
        if users.len() >= USERS {
            users.clear();
        }
        users.insert(uid, name.clone());
        name
    }
}

fn open() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    socket2::SockRef::from(&socket).set_read_timeout(Some(RECV_TIMEOUT))?;
    Ok(socket)
}

/// The exact request for the socket whose local end is the client and remote end the server.
fn request(ends: Ends, seq: u32) -> Vec<u8> {
    let mut r = crate::netlink::request(SOCK_DIAG_BY_FAMILY, 0, NLMSG_HDRLEN + REQ_LEN, seq);
    let p = &mut r[NLMSG_HDRLEN..];
    p[0] = if ends.client.is_ipv4() { libc::AF_INET as u8 } else { libc::AF_INET6 as u8 };
    p[1] = libc::IPPROTO_TCP as u8;
    p[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
                                                      // inet_diag_sockid: sport, dport (big-endian), src[16], dst[16], if, cookie[2].
    p[8..10].copy_from_slice(&ends.client.port().to_be_bytes());
    p[10..12].copy_from_slice(&ends.server.port().to_be_bytes());
    put_ip(&mut p[12..28], ends.client.ip());
    put_ip(&mut p[28..44], ends.server.ip());
    p[48..56].copy_from_slice(&NO_COOKIE);
    r
}

fn put_ip(to: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => to[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => to.copy_from_slice(&v6.octets()),
    }
}

/// Reads the answer to request `seq`.
fn answer(socket: &Socket, buf: &mut [u8], seq: u32) -> Result<Diag, PeerError> {
    let call = "sock_diag";
    // Bounded: each receive by the socket's timeout, and answers to other requests are
    // never more than the one being read.
    for _ in 0..4 {
        let n = socket.recv(&mut &mut buf[..], libc::MSG_TRUNC).map_err(|e| PeerError::os(call, e))?;
        if n > buf.len() {
            return Err(PeerError::Malformed(format!("{call}: a {n}-byte answer did not fit")));
        }
        let msgs = messages(&buf[..n]).map_err(|e| PeerError::Malformed(format!("{call}: {e}")))?;
        for m in msgs {
            if m.seq != seq {
                continue;
            }
            return parse(m.kind, m.payload);
        }
    }
    Err(PeerError::Malformed(format!("{call}: no answer to request {seq}")))
}

/// One answer: an `inet_diag_msg`, or an error (`ENOENT`: no such socket).
fn parse(kind: u16, payload: &[u8]) -> Result<Diag, PeerError> {
    match kind {
        NLMSG_ERROR => match error_code(payload) {
            Some(errno) if -errno == libc::ENOENT => Ok(Diag::Absent),
            Some(errno) => Err(PeerError::os("sock_diag", io::Error::from_raw_os_error(errno.abs()))),
            None => Err(PeerError::Malformed("sock_diag: a short error message".into())),
        },
        SOCK_DIAG_BY_FAMILY => match (u32_at(payload, MSG_UID), u32_at(payload, MSG_INODE)) {
            (Some(uid), Some(inode)) => Ok(Diag::Socket { uid, inode: u64::from(inode) }),
            _ => Err(PeerError::Malformed("sock_diag: a short inet_diag_msg".into())),
        },
        other => Err(PeerError::Malformed(format!("sock_diag: an answer of type {other}"))),
    }
}

/// Marks the wanted inodes held by the process whose descriptor directory is `dir` (`pid`'s);
/// how many it newly found, and whether its directory listed anything (a process that has
/// gone lists nothing). The descriptors numbered in `hot` are read first; the numbers where
/// sockets were found are added to `at`. Stops once the `left` still unfound are found: a
/// lookup's cost is the links it reads.
fn holds(
    pid: u32,
    dir: &std::fs::File,
    wanted: &mut HashMap<u64, Option<u32>>,
    left: usize,
    hot: &[u32],
    at: &mut Vec<u32>,
) -> (usize, bool) {
    use std::os::fd::AsRawFd as _;
    let mut found = 0;
    let mut buf = [0u8; 64];
    // Each link is read relative to the open directory (readlinkat): no path walk per
    // descriptor.
    let mut read = |name: &std::ffi::CStr| -> bool {
        // SAFETY: `dir` is an open directory, `name` a NUL-terminated string, `buf` is
        // writable for its length; readlinkat writes at most that and returns the count.
        let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(n) = usize::try_from(n) else { return false };
        let Some(inode) = socket_inode(OsStr::from_bytes(&buf[..n])) else { return false };
        match wanted.get_mut(&inode) {
            Some(slot @ None) => {
                *slot = Some(pid);
                true
            }
            _ => false,
        }
    };
    for &fd in hot {
        let Ok(name) = std::ffi::CString::new(fd.to_string()) else { continue };
        if read(&name) {
            at.push(fd);
            found += 1;
            if found == left {
                return (found, true);
            }
        }
    }
    let mut listed = false;
    for name in list(dir) {
        listed = true;
        let number = name.to_str().ok().and_then(|n| n.parse::<u32>().ok());
        if number.is_some_and(|n| hot.contains(&n)) {
            continue;
        }
        if read(&name) {
            at.extend(number);
            found += 1;
            if found == left {
                break;
            }
        }
    }
    (found, listed)
}

/// The names in the open directory `dir`, from its start (read through a duplicate of the
/// handle, so it is the same process's directory however its PID is reused).
fn list(dir: &std::fs::File) -> Vec<std::ffi::CString> {
    use std::os::fd::AsRawFd as _;
    let mut names = Vec::new();
    // SAFETY: dup of an open descriptor; the duplicate is then owned by the DIR stream
    // below, which closedir closes (or closed here if fdopendir fails).
    let copy = unsafe { libc::dup(dir.as_raw_fd()) };
    if copy < 0 {
        return names;
    }
    // SAFETY: `copy` is an open directory descriptor we own.
    let stream = unsafe { libc::fdopendir(copy) };
    if stream.is_null() {
        // SAFETY: `copy` is ours and no stream took it.
        unsafe { libc::close(copy) };
        return names;
    }
    // SAFETY: `stream` is a valid DIR stream until closedir; each entry readdir returns is
    // valid until the next call, and its name is NUL-terminated. The duplicate shares the
    // original's offset, hence the rewind.
    unsafe {
        libc::rewinddir(stream);
        loop {
            let entry = libc::readdir(stream);
            if entry.is_null() {
                break;
            }
            let name = std::ffi::CStr::from_ptr((*entry).d_name.as_ptr());
            if name.to_bytes().first() != Some(&b'.') {
                names.push(name.to_owned());
            }
        }
        libc::closedir(stream);
    }
    names
}

/// Puts the descriptor numbers `at` (where sockets were just found) first in `hot`.
fn heat(hot: &mut Vec<u32>, at: &[u32]) {
    for &fd in at {
        hot.retain(|f| *f != fd);
        hot.insert(0, fd);
    }
    hot.truncate(HOT_FDS);
}

/// The inode of a `socket:[INODE]` link.
fn socket_inode(link: &OsStr) -> Option<u64> {
    let text = link.as_bytes().strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// The kernel's name for a process (when its executable cannot be read).
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or_else(|_| format!("PID {pid}"), |s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_the_exact_pair() {
        let ends = Ends::new("127.0.0.1:40000".parse().unwrap(), "127.0.0.2:3000".parse().unwrap());
        let r = request(ends, 7);
        assert_eq!(r.len(), NLMSG_HDRLEN + REQ_LEN);
        assert_eq!(u32_at(&r, 0), Some((NLMSG_HDRLEN + REQ_LEN) as u32));
        let p = &r[NLMSG_HDRLEN..];
        assert_eq!(p[0], libc::AF_INET as u8);
        assert_eq!(&p[8..12], &[0x9c, 0x40, 0x0b, 0xb8], "ports big-endian: 40000, 3000");
        assert_eq!(&p[12..16], &[127, 0, 0, 1]);
        assert_eq!(&p[28..32], &[127, 0, 0, 2]);
        assert_eq!(&p[48..56], &NO_COOKIE);
        let v6 = request(Ends::new("[::1]:1".parse().unwrap(), "[::1]:2".parse().unwrap()), 1);
        assert_eq!(v6[NLMSG_HDRLEN], libc::AF_INET6 as u8);
        assert_eq!(v6[NLMSG_HDRLEN + 12 + 15], 1);
    }

    #[test]
    fn answers_are_read_and_what_cannot_be_read_is_an_error() {
        let mut msg = vec![0u8; 72];
        msg[MSG_UID..MSG_UID + 4].copy_from_slice(&1000u32.to_ne_bytes());
        msg[MSG_INODE..MSG_INODE + 4].copy_from_slice(&123456u32.to_ne_bytes());
        assert_eq!(parse(SOCK_DIAG_BY_FAMILY, &msg).unwrap(), Diag::Socket { uid: 1000, inode: 123456 });
        assert!(parse(SOCK_DIAG_BY_FAMILY, &msg[..60]).is_err());
        let enoent = (-libc::ENOENT).to_ne_bytes();
        assert_eq!(parse(NLMSG_ERROR, &enoent).unwrap(), Diag::Absent);
        assert!(parse(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes()).is_err());
        assert!(parse(99, &msg).is_err());
        assert_eq!(socket_inode(OsStr::new("socket:[98765]")), Some(98765));
        assert_eq!(socket_inode(OsStr::new("pipe:[98765]")), None);
        assert_eq!(socket_inode(OsStr::new("socket:[x]")), None);
    }

    #[test]
    fn users_are_named() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        let r = Resolver::new();
        assert_eq!(r.user(0), "root");
        assert_eq!(r.user(3_999_999_999), "uid 3999999999", "a uid without a name is its number");
    }
}
