//! Where a chunked message body ends (RFC 9112 §7.1), for the relay stage (a simple GET or
//! HEAD served without hyper), which passes the body on byte for byte and must stop exactly at its
//! end: an upstream connection is only kept for the next request when no byte of this
//! response is left in it and none of the next is taken.
//!
//! The size lines and the trailer section are parsed by httparse, the parser hyper uses;
//! this module only finds their ends in bytes that arrive in pieces, under limits.

/// Longest chunk-size line taken (size, extensions, CRLF); hyper allows 16 KiB of
/// extensions over a whole body, we allow 4 KiB per line.
const MAX_SIZE_LINE: usize = 4096;

/// Largest trailer section taken.
const MAX_TRAILERS: usize = 64 * 1024;

/// Trailer fields taken.
const MAX_TRAILER_FIELDS: usize = 100;

/// Why a chunked body was refused: the connection it came on is closed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct BadChunk(&'static str);

/// Finds the end of one chunked body, fed the bytes as they arrive.
#[derive(Debug, Default)]
pub struct ChunkedEnd {
    state: State,
    /// The size line or trailer section read so far (they may arrive split).
    pending: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// Inside chunk data: this many bytes left.
    Data(u64),
    /// After chunk data: the CR, then the LF, still due.
    DataEnd(u8),
    /// After the last chunk: the trailer section and the empty line that ends the body.
    Trailers,
    Done,
}

impl ChunkedEnd {
    /// Takes the next bytes of the body; `Some(n)` when the body ends after `bytes[..n]`
    /// (bytes after it belong to whatever follows). Not to be fed again after that.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, BadChunk> {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            match self.state {
                State::Size => {
                    let Some(lf) = memchr(b'\n', rest) else {
                        self.keep(rest, MAX_SIZE_LINE, "chunk-size line too long")?;
                        return Ok(None);
                    };
                    self.keep(&rest[..=lf], MAX_SIZE_LINE, "chunk-size line too long")?;
                    at += lf + 1;
                    let size = self.size_line()?;
                    self.pending.clear();
                    self.state = if size == 0 { State::Trailers } else { State::Data(size) };
                }
                State::Data(left) => {
                    let n = left.min(rest.len() as u64);
                    at += n as usize;
                    self.state = if n == left { State::DataEnd(2) } else { State::Data(left - n) };
                }
                State::DataEnd(due) => {
                    let want = if due == 2 { b'\r' } else { b'\n' };
                    if rest[0] != want {
                        return Err(BadChunk("chunk data not followed by CRLF"));
                    }
                    at += 1;
                    self.state = if due == 2 { State::DataEnd(1) } else { State::Size };
                }
                State::Trailers => {
                    // The section ends at its first empty line; found by scanning only the
                    // new bytes (an upstream that trickles them costs no re-parsing), then
                    // checked once by httparse.
                    let before = self.pending.len();
                    self.keep(rest, MAX_TRAILERS, "trailer section too large")?;
                    let end = if self.pending.starts_with(b"\r\n") {
                        Some(2)
                    } else {
                        let from = before.saturating_sub(3);
                        self.pending[from..].windows(4).position(|w| w == b"\r\n\r\n").map(|i| from + i + 4)
                    };
                    let Some(end) = end else { return Ok(None) };
                    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
                    match httparse::parse_headers(&self.pending[..end], &mut fields) {
                        Ok(httparse::Status::Complete((n, _))) if n == end => {
                            self.pending = Vec::new();
                            self.state = State::Done;
                            return Ok(Some(at + (end - before)));
                        }
                        _ => return Err(BadChunk("malformed trailer section")),
                    }
                }
                State::Done => return Err(BadChunk("bytes fed after the end")),
            }
        }
        Ok(None)
    }

    /// Whether the whole body has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn keep(&mut self, bytes: &[u8], max: usize, too_long: &'static str) -> Result<(), BadChunk> {
        if self.pending.len() + bytes.len() > max {
            return Err(BadChunk(too_long));
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// The size in the complete line in `pending` (ending in its first LF).
    fn size_line(&self) -> Result<u64, BadChunk> {
        // httparse reads an empty size as 0; a size line must start with a digit.
        if !self.pending.first().is_some_and(u8::is_ascii_hexdigit) {
            return Err(BadChunk("chunk-size line without a size"));
        }
        match httparse::parse_chunk_size(&self.pending) {
            Ok(httparse::Status::Complete((end, size))) if end == self.pending.len() => Ok(size),
            // Partial: the line ended in a bare LF.
            _ => Err(BadChunk("malformed chunk-size line")),
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end found when `body` arrives whole and split at every point (and in single
    /// bytes) must be the same.
    fn end_of(body: &[u8]) -> Result<Option<usize>, BadChunk> {
        let whole = ChunkedEnd::default().feed(body);
        for split in 0..=body.len() {
            let mut c = ChunkedEnd::default();
            let first = c.feed(&body[..split]);
            let got = match first {
                Ok(Some(n)) => Ok(Some(n)),
                Err(e) => Err(e),
                Ok(None) => c.feed(&body[split..]).map(|r| r.map(|n| n + split)),
            };
            assert_eq!(got, whole, "split at {split} of {:?}", String::from_utf8_lossy(body));
        }
        let mut c = ChunkedEnd::default();
        let mut bytewise = Ok(None);
        for (i, b) in body.iter().enumerate() {
            match c.feed(std::slice::from_ref(b)) {
                Ok(Some(_)) => {
                    bytewise = Ok(Some(i + 1));
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    bytewise = Err(e);
                    break;
                }
            }
        }
        assert_eq!(bytewise, whole, "byte by byte");
        whole
    }

    #[test]
    fn ends_where_the_last_chunk_and_trailers_end() {
        let cases: [&[u8]; 6] = [
            b"0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            b"5;ext=1\r\nhello\r\nA \r\n0123456789\r\n0\r\n\r\n",
            b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n",
            b"1\r\n\n\r\n0;last\r\n\r\n",
            b"fF\r\n",
        ];
        for body in cases {
            let mut next = body.to_vec();
            next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            let end = end_of(&next).unwrap();
            if body.ends_with(b"\r\n\r\n") {
                assert_eq!(end, Some(body.len()), "{:?}", String::from_utf8_lossy(body));
            } else {
                // "fF": 255 bytes of data expected, the rest is inside them.
                assert_eq!(end, None);
            }
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let cases: [&[u8]; 8] = [
            b"\r\n\r\n",                  // no size
            b"x\r\n",                     // not hex
            b"5\nhello\r\n0\r\n\r\n",     // bare LF after the size
            b"5\r\nhelloXX0\r\n\r\n",     // data not followed by CRLF
            b"5\r\nhello\r\r",            // CR not followed by LF
            b"10000000000000000\r\n",     // 17 digits: overflow
            b"0\r\nbad trailer\r\n\r\n",  // not a field
            b"0\r\nX: 1\n\nY: 2\r\n\r\n", // httparse ends it early at a bare-LF empty line
        ];
        for body in cases {
            let got = end_of(body);
            assert!(got.is_err(), "{:?} accepted: {got:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn limits_hold() {
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_SIZE_LINE));
        assert_eq!(end_of(&line), Err(BadChunk("chunk-size line too long")));
        let mut trailers = b"0\r\n".to_vec();
        for i in 0..MAX_TRAILERS / 8 {
            trailers.extend_from_slice(format!("X{i}: 1\r\n").as_bytes());
        }
        assert!(ChunkedEnd::default().feed(&trailers).is_err());
    }
}
