//! The parsers the proxy wrote itself, for the fuzz targets (`cfg(fuzzing)` only): each is
//! checked there against httparse and hyper's own reading of the same bytes.

use crate::conn::head::{self, Parse};
use crate::domain::{BadTarget, Target};
use crate::respond::BadResponse;

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

/// A GET or HEAD head the relay takes.
#[derive(Debug)]
pub struct PlainHead {
    /// The head's length.
    pub head_len: usize,
    /// HEAD rather than GET.
    pub is_head: bool,
    /// The request target, as written.
    pub target: Vec<u8>,
    /// The fields passed on, as written.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// The client asked to close.
    pub close: bool,
}

/// `head::parse_plain` on a buffer that starts with `GET ` or `HEAD `: `Err(())` when
/// incomplete, `Ok(None)` when the relay leaves it to hyper.
#[allow(clippy::result_unit_err)]
pub fn plain_head(buf: &[u8]) -> Result<Option<PlainHead>, ()> {
    match head::parse_plain(buf) {
        Parse::Partial => Err(()),
        Parse::NotMine => Ok(None),
        Parse::Plain(m) => Ok(Some(PlainHead {
            head_len: m.head_len,
            is_head: m.is_head,
            target: buf[m.target.clone()].to_vec(),
            fields: m.fields.iter().map(|(n, v)| (buf[n.clone()].to_vec(), buf[v.clone()].to_vec())).collect(),
            close: m.close,
        })),
    }
}

/// A response head as the relay reads it.
#[derive(Debug)]
pub struct ResponseHead {
    /// The upstream head's length.
    pub head_len: usize,
    /// `None` for an interim (1xx) answer; else the head written for the client (without
    /// its final CRLF), the framing (`none`, `length`, `chunked`, `close`) and whether the
    /// upstream connection may be kept.
    pub final_head: Option<(Vec<u8>, &'static str, bool)>,
}

/// The relay's response-head parse.
pub fn response_head(buf: &[u8], is_head: bool) -> Result<Option<ResponseHead>, BadResponse> {
    Ok(crate::conn::relay::fuzz_response(buf, is_head)?
        .map(|(head_len, final_head)| ResponseHead { head_len, final_head }))
}
