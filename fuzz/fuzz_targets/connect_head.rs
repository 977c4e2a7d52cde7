//! `head::parse` (the first-head stage's CONNECT parse) against httparse and hyper's reading
//! of the same bytes: a head it completes, httparse completes at the same length; the target
//! it reads is the one `http::Uri` and `Target::of_request` read; a body is announced
//! exactly when a field says so; the credentials are the field's value.
#![no_main]

use guardnest_core::domain::Target;
use guardnest_core::fuzzing::connect_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = b"CONNECT ".to_vec();
    buf.extend_from_slice(data);
    let ours = connect_head(&buf);
    let mut fields = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut fields);
    let theirs = req.parse(&buf);
    match (&ours, &theirs) {
        (Ok(None), Ok(httparse::Status::Partial)) => return,
        (Err(_), Err(_)) => return,
        (Ok(Some(head)), Ok(httparse::Status::Complete(n))) => assert_eq!(head.head_len, *n),
        _ => panic!("ours {ours:?}, httparse {theirs:?}"),
    }
    let Ok(Some(head)) = ours else { return };
    let path = req.path.unwrap_or("");
    let hyper_target = path.parse::<http::Uri>().ok().and_then(|uri| Target::of_request(&http::Method::CONNECT, &uri).ok());
    assert_eq!(head.target.as_ref().ok(), hyper_target.as_ref(), "{path:?}");
    let body = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding") || h.name.eq_ignore_ascii_case("content-length") && h.value != b"0"
    });
    assert_eq!(head.announces_body, body);
    let auth = req.headers.iter().rev().find(|h| h.name.eq_ignore_ascii_case("proxy-authorization")).map(|h| h.value.to_vec());
    assert_eq!(head.proxy_authorization, auth);
});
