//! The parsers the proxy wrote itself, for the fuzz targets (`cfg(fuzzing)` only): each is
//! checked there against httparse and hyper's own reading of the same bytes.

use crate::conn::head;
use crate::domain::{BadTarget, Target};

/// A CONNECT head as the first-head stage reads it.
#[derive(Debug)]
pub struct ConnectHead {
    /// The head's length.
    pub head_len: usize,
    /// Its target.
    pub target: Result<Target, BadTarget>,
    /// Whether it announces a body.
    pub announces_body: bool,
    /// Its `Proxy-Authorization` value.
    pub proxy_authorization: Option<Vec<u8>>,
}

/// `head::parse`: `Ok(None)` while incomplete, `Err` for a head refused as malformed or too
/// large.
pub fn connect_head(buf: &[u8]) -> Result<Option<ConnectHead>, String> {
    match head::parse(buf) {
        Ok(Some(p)) => Ok(Some(ConnectHead {
            head_len: p.head_len,
            target: p.target,
            announces_body: p.announces_body,
            proxy_authorization: p.proxy_authorization.map(|r| buf[r].to_vec()),
        })),
        Ok(None) => Ok(None),
        Err(refusal) => Err(refusal.reason()),
    }
}
