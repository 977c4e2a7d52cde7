//! A request head as a client sends it: parsed the way hyper parses it (httparse, then
//! `http::Uri`), then routed by GuardNest (`Target::of_request`) and, when present, the
//! Proxy-Authorization header decoded. Whatever is accepted must name a host in normal form
//! whose printed form parses back to the same target. A CONNECT's target is also read the
//! way GuardNest reads a connection's first CONNECT without hyper (`Target::of_connect`):
//! both readings must agree.
#![no_main]

use guardnest_core::access::parse_basic;
use guardnest_core::domain::{Host, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else { return };
    let (Some(method), Some(path)) = (req.method, req.path) else { return };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else { return };
    let direct = (method == http::Method::CONNECT).then(|| Target::of_connect(path));
    let Ok(uri) = path.parse::<http::Uri>() else {
        assert!(direct.is_none_or(|d| d.is_err()), "{path:?}: accepted only without hyper");
        return;
    };
    if let Some(direct) = direct {
        assert_eq!(direct.ok(), Target::of_request(&method, &uri).ok(), "{path:?}: the two readings differ");
    }
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("proxy-authorization") {
            let _ = parse_basic(h.value);
        }
    }
    if let Ok(target) = Target::of_request(&method, &uri) {
        if let Host::Name(name) = &target.host {
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)), "{name:?}");
            assert!(!name.ends_with('.') && !name.is_empty() && name.len() <= 253, "{name:?}");
        }
        let again = Target::parse_authority(&target.to_string()).expect("a printed target parses");
        assert_eq!(again, target);
    }
});
