//! The relay's response-head parse against httparse: a head it completes, httparse completes
//! at the same length (1xx ones too); the head it writes for the client parses again, keeps
//! the status, carries no hop-by-hop field but `Transfer-Encoding`, never a `Content-Length`
//! beside `Transfer-Encoding`, and its framing follows RFC 9112 §6.3 (chunked when the last
//! coding is chunked, a length otherwise, else until the close).
#![no_main]

use guardnest_core::fuzzing::response_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flag, rest)) = data.split_first() else { return };
    let is_head = flag & 1 == 1;
    let mut buf = b"HTTP/1.1 ".to_vec();
    buf.extend_from_slice(rest);
    let ours = response_head(&buf, is_head);
    let mut fields = [httparse::EMPTY_HEADER; 100];
    let mut res = httparse::Response::new(&mut fields);
    let theirs = res.parse(&buf);
    let head = match (ours, &theirs) {
        (Ok(None), Ok(httparse::Status::Partial)) | (Err(_), _) => return,
        (Ok(Some(head)), Ok(httparse::Status::Complete(n))) => {
            assert_eq!(head.head_len, *n);
            head
        }
        (ours, theirs) => panic!("ours {ours:?}, httparse {theirs:?}"),
    };
    let code = res.code.unwrap_or(0);
    let Some((client, framing, _keeps)) = head.final_head else {
        assert!((100..200).contains(&code) && code != 101, "{code} taken as interim");
        return;
    };
    let mut client = client;
    client.extend_from_slice(b"\r\n");
    let mut again_fields = [httparse::EMPTY_HEADER; 101];
    let mut again = httparse::Response::new(&mut again_fields);
    assert!(matches!(again.parse(&client), Ok(httparse::Status::Complete(n)) if n == client.len()), "{:?}", String::from_utf8_lossy(&client));
    assert_eq!(again.code, Some(code));
    let has = |name: &str| again.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    for hop in ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authorization"] {
        assert!(!has(hop), "{hop} passed on");
    }
    let te = res.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding")).last();
    if te.is_some() && framing != "none" {
        assert!(!has("content-length"), "Content-Length beside Transfer-Encoding");
    }
    let expected = if is_head || code == 204 || code == 304 {
        "none"
    } else if let Some(te) = te {
        let last = te.value.rsplit(|&b| b == b',').next().unwrap_or_default().trim_ascii();
        if last.eq_ignore_ascii_case(b"chunked") { "chunked" } else { "close" }
    } else if res.headers.iter().any(|h| h.name.eq_ignore_ascii_case("content-length")) {
        "length"
    } else {
        "close"
    };
    assert_eq!(framing, expected);
});
