//! PROXY protocol v1/v2 headers, as a load balancer (or an attacker) sends them.
#![no_main]

use guardnest_core::proxy_protocol::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
});
