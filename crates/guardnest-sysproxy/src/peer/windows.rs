//! Windows: a connection's owner from the IP Helper's TCP tables.
//!
//! `GetExtendedTcpTable` with `TCP_TABLE_OWNER_PID_CONNECTIONS` lists every connection
//! with the PID of the process that owns it, one table per family; one read of each
//! answers a whole batch. The row whose local end is the client and remote end the server
//! is the client's socket. A row in `TIME_WAIT` belongs to no program any more: not found.
//! A live row owned by PID 0 names no owner (Windows gives 0 only to `TIME_WAIT` rows;
//! Wine 8 gives it to every row): the OS does not say whose it is, and neither do we. The program is `QueryFullProcessImageNameW`; the user is the
//! process token's (`OpenProcessToken`, `GetTokenInformation(TokenUser)`,
//! `LookupAccountSidW`, as `DOMAIN\name`). A process GuardNest may not open (another
//! user's, elevated, or the system's) is named by its PID only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use windows_sys::Win32::Foundation::{ERROR_INSUFFICIENT_BUFFER, HANDLE, NO_ERROR};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_CONNECTIONS,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Security::{GetTokenInformation, LookupAccountSidW, TokenUser, TOKEN_QUERY, TOKEN_USER};
use windows_sys::Win32::System::Threading::{OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION};

use super::{program_name, Ends, Owner, PeerError, Program};
use crate::windows::os::{image_path, Process};

/// `MIB_TCP_STATE_TIME_WAIT`.
const TIME_WAIT: u32 = 11;
/// Reads of a table that keeps growing between the size query and the read.
const TRIES: usize = 4;

pub(super) struct Resolver;

impl Resolver {
    pub(super) fn new() -> Self {
        Resolver
    }

    pub(super) fn owners(&self, ends: &[Ends]) -> Result<Vec<Owner>, PeerError> {
        let mut rows: Vec<(SocketAddr, SocketAddr, u32, u32)> = Vec::new();
        if ends.iter().any(|e| e.client.is_ipv4()) {
            rows.extend(v4_rows()?);
        }
        if ends.iter().any(|e| e.client.is_ipv6()) {
            rows.extend(v6_rows()?);
        }
        Ok(ends
            .iter()
            .map(|e| match rows.iter().find(|(local, remote, _, _)| *local == e.client && *remote == e.server) {
                Some(&(_, _, state, _)) if state == TIME_WAIT => Owner::NotFound,
                // A live connection without an owner: the OS does not say whose (Wine 8
                // lists every connection with PID 0).
                Some(&(_, _, _, 0)) => Owner::Restricted { pid: None, user: None },
                Some(&(_, _, _, pid)) => owner(pid),
                None => Owner::NotFound,
            })
            .collect())
    }
}

fn owner(pid: u32) -> Owner {
    match image_path(pid) {
        Some(path) => {
            let name = program_name(&path).unwrap_or_else(|| format!("PID {pid}"));
            Owner::Program(Program { pid, name, path: Some(path), user: user(pid) })
        }
        None => Owner::Restricted { pid: Some(pid), user: user(pid) },
    }
}

/// A table of `family`, as raw bytes (`u32` aligned): its row count, then its rows.
fn table(family: u16) -> Result<Vec<u32>, PeerError> {
    let call = "GetExtendedTcpTable";
    let mut size = 0u32;
    for _ in 0..TRIES {
        let mut buf = vec![0u32; (size as usize).div_ceil(4).max(1)];
        let mut len = (buf.len() * 4) as u32;
        // SAFETY: `buf` holds `len` bytes; Windows writes at most that and says how many
        // it needs when they do not suffice.
        let rc = unsafe {
            GetExtendedTcpTable(
                buf.as_mut_ptr().cast(),
                &mut len,
                0,
                u32::from(family),
                TCP_TABLE_OWNER_PID_CONNECTIONS,
                0,
            )
        };
        match rc {
            NO_ERROR => return Ok(buf),
            ERROR_INSUFFICIENT_BUFFER => size = len + 1024,
            code => return Err(PeerError::os(call, std::io::Error::from_raw_os_error(code as i32))),
        }
    }
    Err(PeerError::Malformed(format!("{call}: the table kept growing during {TRIES} reads")))
}

/// The rows of a table read by [`table`]: `dwNumEntries`, then the rows (8-byte aligned
/// for neither row type: both are made of `u32`s and byte arrays).
fn rows<T: Copy>(buf: &[u32]) -> Result<Vec<T>, PeerError> {
    let n = *buf.first().ok_or_else(|| PeerError::Malformed("an empty TCP table".into()))? as usize;
    let bytes = buf.len() * 4 - 4;
    if n.checked_mul(size_of::<T>()).is_none_or(|need| need > bytes) {
        return Err(PeerError::Malformed(format!("a TCP table of {n} rows in {bytes} bytes")));
    }
    // SAFETY: the rows follow the count, `n` of them fit in the buffer (checked above), and
    // each row type is plain data of `u32`s (alignment 4, which the `u32` buffer has).
    let first = unsafe { buf.as_ptr().add(1).cast::<T>() };
    // SAFETY: as above.
    Ok((0..n).map(|i| unsafe { *first.add(i) }).collect())
}

/// A port as the tables keep it: network order in the low 16 bits of a `u32`.
fn port(raw: u32) -> u16 {
    u16::from_be(raw as u16)
}

fn v4_rows() -> Result<Vec<(SocketAddr, SocketAddr, u32, u32)>, PeerError> {
    let buf = table(AF_INET)?;
    Ok(rows::<MIB_TCPROW_OWNER_PID>(&buf)?
        .into_iter()
        .map(|r| {
            let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(r.dwLocalAddr.to_ne_bytes())), port(r.dwLocalPort));
            let remote =
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(r.dwRemoteAddr.to_ne_bytes())), port(r.dwRemotePort));
            (local, remote, r.dwState, r.dwOwningPid)
        })
        .collect())
}

fn v6_rows() -> Result<Vec<(SocketAddr, SocketAddr, u32, u32)>, PeerError> {
    let buf = table(AF_INET6)?;
    Ok(rows::<MIB_TCP6ROW_OWNER_PID>(&buf)?
        .into_iter()
        .map(|r| {
            let local = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(r.ucLocalAddr)), port(r.dwLocalPort));
            let remote = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(r.ucRemoteAddr)), port(r.dwRemotePort));
            (local, remote, r.dwState, r.dwOwningPid)
        })
        .collect())
}

/// The user of a process's token, as `DOMAIN\name`; `None` when it may not be read.
fn user(pid: u32) -> Option<String> {
    let process = Process::open(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: a valid process handle and an out parameter.
    if unsafe { OpenProcessToken(process.0, TOKEN_QUERY, &mut token) } == 0 {
        return None;
    }
    let token = Process(token); // closed by Drop like any handle
    let mut needed = 0u32;
    // SAFETY: a size query: no buffer.
    unsafe { GetTokenInformation(token.0, TokenUser, std::ptr::null_mut(), 0, &mut needed) };
    if needed == 0 {
        return None;
    }
    let mut buf = vec![0u64; (needed as usize).div_ceil(8)];
    // SAFETY: `buf` holds `needed` bytes, 8-aligned for TOKEN_USER.
    if unsafe { GetTokenInformation(token.0, TokenUser, buf.as_mut_ptr().cast(), needed, &mut needed) } == 0 {
        return None;
    }
    // SAFETY: filled by GetTokenInformation(TokenUser): a TOKEN_USER whose SID points into `buf`.
    let sid = unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let (mut name, mut domain) = (vec![0u16; 256], vec![0u16; 256]);
    let (mut name_len, mut domain_len, mut kind) = (name.len() as u32, domain.len() as u32, 0);
    // SAFETY: the SID lives in `buf`; the two buffers hold their stated lengths.
    let ok = unsafe {
        LookupAccountSidW(
            std::ptr::null(),
            sid,
            name.as_mut_ptr(),
            &mut name_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut kind,
        )
    };
    if ok == 0 {
        return None;
    }
    let name = String::from_utf16_lossy(&name[..name_len as usize]);
    let domain = String::from_utf16_lossy(&domain[..domain_len as usize]);
    Some(if domain.is_empty() { name } else { format!("{domain}\\{name}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_rows_are_read_as_the_tables_keep_them() {
        assert_eq!(port(0x0000_b80b), 3000, "0x0bb8 in network order");
        let mut buf = vec![1u32];
        buf.extend([5, u32::from_ne_bytes([127, 0, 0, 1]), 0x409c, u32::from_ne_bytes([127, 0, 0, 1]), 0xb80b, 42]);
        let r = rows::<MIB_TCPROW_OWNER_PID>(&buf).unwrap();
        assert_eq!((r[0].dwOwningPid, port(r[0].dwLocalPort), port(r[0].dwRemotePort)), (42, 40000, 3000));
        buf[0] = 2;
        assert!(rows::<MIB_TCPROW_OWNER_PID>(&buf).is_err(), "a count beyond the buffer");
    }

    /// Given a PID (which Wine's TCP table does not give), the program and the user are
    /// read from the process itself: this process.
    #[test]
    fn a_pid_is_named_with_its_program_and_user() {
        let me = std::process::id();
        match owner(me) {
            Owner::Program(p) => {
                let exe = std::env::current_exe().unwrap();
                assert_eq!(p.pid, me);
                assert_eq!(program_name(p.path.as_deref().unwrap()), program_name(&exe));
                let user = p.user.expect("our own token's user");
                eprintln!("this process: {} as {user}", p.path.unwrap().display());
                assert!(!user.is_empty());
            }
            other => panic!("expected this process, got {other:?}"),
        }
        // PID 4 is the system's: not ours to open (or, under Wine, no such process).
        assert!(!matches!(owner(4), Owner::Program(Program { user: Some(_), .. })));
    }
}
