//! Linux: the framing of netlink messages, shared by the readers of rtnetlink
//! (`local/linux.rs`) and sock_diag (`peer/linux.rs`).
//!
//! Only the fixed header is read here; each reader reads its own payloads. A length that
//! runs past its datagram is an error, never a shorter answer.

// From <linux/netlink.h>: stable kernel ABI.
pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;

/// One netlink message of a datagram.
pub(crate) struct Message<'a> {
    pub(crate) kind: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u32,
    pub(crate) payload: &'a [u8],
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The messages of a datagram; a length that runs past it is an error.
pub(crate) fn messages(mut buf: &[u8]) -> Result<Vec<Message<'_>>, &'static str> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32_at(buf, 0).ok_or("short header")? as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err("a message length outside its datagram");
        }
        out.push(Message {
            kind: u16_at(buf, 4).unwrap_or_default(),
            flags: u16_at(buf, 6).unwrap_or_default(),
            seq: u32_at(buf, 8).unwrap_or_default(),
            payload: &buf[NLMSG_HDRLEN..len],
        });
        buf = buf.get(align4(len)..).unwrap_or_default();
    }
    Ok(out)
}

/// The (negative) errno of an `NLMSG_ERROR` or a dump's `NLMSG_DONE`; 0 is an acknowledgement.
pub(crate) fn error_code(payload: &[u8]) -> Option<i32> {
    u32_at(payload, 0).map(|v| v as i32)
}

/// A request header of `len` bytes in all (header and payload) with its payload zeroed.
pub(crate) fn request(kind: u16, flags: u16, len: usize, seq: u32) -> Vec<u8> {
    let len = len.max(NLMSG_HDRLEN);
    let mut request = vec![0u8; len];
    request[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&kind.to_ne_bytes());
    request[6..8].copy_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    request[8..12].copy_from_slice(&seq.to_ne_bytes());
    request
}
