//! macOS: a connection's owner from libproc.
//!
//! macOS has no lookup from a connection to its socket's owner that an unprivileged
//! process may use (no sock_diag; `netstat` and `lsof` walk the processes too). So:
//! the owners of the latest connections first, then every process (`proc_listallpids`);
//! for each, its descriptors (`proc_pidinfo(PROC_PIDLISTFDS)`), and for each socket its
//! ends (`proc_pidfdinfo(PROC_PIDFDSOCKETINFO)`, read by `xnu.rs`), until a socket whose
//! local end is the client and foreign end the server. The program is `proc_pidpath`, the
//! user the process's uid (`proc_pidinfo(PROC_PIDTBSDINFO)`, `getpwuid_r`).
//!
//! What macOS does not allow: the descriptors of another user's process, unless GuardNest
//! runs as root. A connection found in no process that could be read, while some could
//! not, is [`Owner::Restricted`] without a user (macOS does not say whose socket it is);
//! found nowhere while every process could be read, it is [`Owner::NotFound`].
//! Compiled here, never run: there is no macOS in CI.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::xnu::{self, SOCKET_FDINFO_SIZE};
use super::{program_name, user_name, Ends, Owner, PeerError, Program};

/// Processes remembered as recent owners, read first.
const RECENT_OWNERS: usize = 16;
/// `PROC_PIDFDSOCKETINFO` (`<sys/proc_info.h>`; not in the libc crate).
const PROC_PIDFDSOCKETINFO: libc::c_int = 3;
/// `PROC_PIDPATHINFO_MAXSIZE`: 4 × MAXPATHLEN.
const PATH_MAX_SIZE: usize = 4 * 1024;

pub(super) struct Resolver {
    recent: Mutex<Vec<u32>>,
}

impl Resolver {
    pub(super) fn new() -> Self {
        Resolver { recent: Mutex::new(Vec::new()) }
    }

    pub(super) fn owners(&self, ends: &[Ends]) -> Result<Vec<Owner>, PeerError> {
        let mut found: HashMap<Ends, u32> = HashMap::new();
        let mut unreadable = false;
        let recent = self.recent.lock().clone();
        for &pid in &recent {
            let _ = sockets_of(pid, ends, &mut found);
            if found.len() == ends.len() {
                break;
            }
        }
        if found.len() < ends.len() {
            for pid in all_pids()? {
                if recent.contains(&pid) {
                    continue;
                }
                unreadable |= !sockets_of(pid, ends, &mut found);
                if found.len() == ends.len() {
                    break;
                }
            }
        }
        let mut holders = Vec::new();
        let owners = ends
            .iter()
            .map(|e| match found.get(e) {
                Some(&pid) => {
                    holders.push(pid);
                    Owner::Program(program(pid))
                }
                None if unreadable => Owner::Restricted { pid: None, user: None },
                None => Owner::NotFound,
            })
            .collect();
        let mut recent = self.recent.lock();
        for pid in holders {
            recent.retain(|p| *p != pid);
            recent.insert(0, pid);
        }
        recent.truncate(RECENT_OWNERS);
        Ok(owners)
    }
}

fn all_pids() -> Result<Vec<u32>, PeerError> {
    // SAFETY: a null buffer asks for the count.
    let n = unsafe { libc::proc_listallpids(std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Err(PeerError::os("proc_listallpids", std::io::Error::last_os_error()));
    }
    // Room for processes started since.
    let mut pids = vec![0 as libc::c_int; n as usize + 64];
    let bytes = (pids.len() * size_of::<libc::c_int>()) as libc::c_int;
    // SAFETY: `pids` holds `bytes` bytes.
    let n = unsafe { libc::proc_listallpids(pids.as_mut_ptr().cast(), bytes) };
    if n <= 0 {
        return Err(PeerError::os("proc_listallpids", std::io::Error::last_os_error()));
    }
    pids.truncate(n as usize);
    Ok(pids.into_iter().filter(|p| *p > 0).map(|p| p as u32).collect())
}

/// Marks the wanted connections whose client end `pid` holds; false when its descriptors
/// may not be read (another user's process).
fn sockets_of(pid: u32, ends: &[Ends], found: &mut HashMap<Ends, u32>) -> bool {
    let fd_size = size_of::<libc::proc_fdinfo>() as libc::c_int;
    // SAFETY: a null buffer asks for the size needed.
    let bytes = unsafe { libc::proc_pidinfo(pid as libc::c_int, libc::PROC_PIDLISTFDS, 0, std::ptr::null_mut(), 0) };
    if bytes <= 0 {
        return false;
    }
    let mut fds = vec![libc::proc_fdinfo { proc_fd: 0, proc_fdtype: 0 }; bytes as usize / fd_size as usize + 16];
    let room = (fds.len() * fd_size as usize) as libc::c_int;
    // SAFETY: `fds` holds `room` bytes of proc_fdinfo.
    let bytes =
        unsafe { libc::proc_pidinfo(pid as libc::c_int, libc::PROC_PIDLISTFDS, 0, fds.as_mut_ptr().cast(), room) };
    if bytes <= 0 {
        return false;
    }
    fds.truncate(bytes as usize / fd_size as usize);
    let mut info = vec![0u64; SOCKET_FDINFO_SIZE.div_ceil(8)];
    for fd in fds {
        if fd.proc_fdtype != libc::PROX_FDTYPE_SOCKET as u32 {
            continue;
        }
        // SAFETY: `info` holds SOCKET_FDINFO_SIZE bytes, 8-aligned.
        let n = unsafe {
            libc::proc_pidfdinfo(
                pid as libc::c_int,
                fd.proc_fd,
                PROC_PIDFDSOCKETINFO,
                info.as_mut_ptr().cast(),
                SOCKET_FDINFO_SIZE as libc::c_int,
            )
        };
        if n as usize != SOCKET_FDINFO_SIZE {
            continue;
        }
        // SAFETY: the u64 buffer viewed as its bytes.
        let bytes = unsafe { std::slice::from_raw_parts(info.as_ptr().cast::<u8>(), SOCKET_FDINFO_SIZE) };
        let Some((local, foreign)) = xnu::ends(bytes) else { continue };
        let here = Ends::new(local, foreign);
        if ends.contains(&here) {
            found.entry(here).or_insert(pid);
        }
    }
    true
}

fn program(pid: u32) -> Program {
    let mut buf = vec![0u8; PATH_MAX_SIZE];
    // SAFETY: `buf` holds PATH_MAX_SIZE bytes.
    let n = unsafe { libc::proc_pidpath(pid as libc::c_int, buf.as_mut_ptr().cast(), buf.len() as u32) };
    let path = (n > 0).then(|| {
        buf.truncate(n as usize);
        PathBuf::from(std::ffi::OsStr::from_bytes(&buf))
    });
    let name = path.as_deref().and_then(program_name).unwrap_or_else(|| format!("PID {pid}"));
    Program { pid, path, name, user: uid(pid).map(|u| user_name(u).unwrap_or_else(|| format!("uid {u}"))) }
}

fn uid(pid: u32) -> Option<u32> {
    // SAFETY: a plain C struct of integers and byte arrays: all zeroes is valid.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: `info` is a buffer of `size` bytes for the flavour asked for.
    let n = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    (n == size).then_some(info.pbi_uid)
}
