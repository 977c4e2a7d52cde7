//! `head::parse_plain` (the relay's GET/HEAD parse) against httparse and `http::Uri`: a head
//! it takes, httparse completes at the same length, as an HTTP/1.1 GET or HEAD with an
//! absolute http URL hyper would accept, and without a field that needs hyper (a body, an
//! upgrade, 100-continue); no field it passes on is hop-by-hop or `Host`.
#![no_main]

use guardnest_core::fuzzing::plain_head;
use libfuzzer_sys::fuzz_target;

const HOP: [&str; 9] =
    ["connection", "proxy-connection", "proxy-authorization", "keep-alive", "te", "trailer", "upgrade", "host", "expect"];

fuzz_target!(|data: &[u8]| {
    let (method, rest) = data.split_first().map_or((b"GET ".as_slice(), data), |(m, r)| {
        if m & 1 == 0 { (b"GET ".as_slice(), r) } else { (b"HEAD ".as_slice(), r) }
    });
    let mut buf = method.to_vec();
    buf.extend_from_slice(rest);
    let ours = plain_head(&buf);
    let mut fields = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut fields);
    let theirs = req.parse(&buf);
    let head = match (ours, &theirs) {
        (Err(()), Ok(httparse::Status::Partial)) => return,
        (Err(()), other) => panic!("partial for us, {other:?} for httparse"),
        (Ok(None), _) => return,
        (Ok(Some(head)), Ok(httparse::Status::Complete(n))) => {
            assert_eq!(head.head_len, *n);
            head
        }
        (Ok(Some(head)), other) => panic!("ours {head:?}, httparse {other:?}"),
    };
    assert_eq!(req.version, Some(1));
    assert_eq!(req.method, Some(if head.is_head { "HEAD" } else { "GET" }));
    assert!(head.target.starts_with(b"http://"));
    for h in req.headers.iter() {
        for refused in ["content-length", "transfer-encoding", "expect", "upgrade"] {
            assert!(!h.name.eq_ignore_ascii_case(refused), "{refused} taken by the relay");
        }
    }
    for (name, _) in &head.fields {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        assert!(!HOP.contains(&name.as_str()), "{name} passed on");
    }
});
