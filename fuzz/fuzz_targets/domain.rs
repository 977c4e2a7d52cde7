//! Domain normalisation: the normal form is lowercase ASCII DNS syntax and a fixed point.
#![no_main]

use guardnest_core::domain::{normalize_name, Host};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(name) = normalize_name(text) {
        assert!(name.len() <= 253 && !name.is_empty());
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)), "{name:?}");
        assert!(name.split('.').all(|l| !l.is_empty() && l.len() <= 63), "{name:?}");
        assert_eq!(normalize_name(&name).as_deref(), Some(name.as_str()), "not a fixed point: {text:?}");
    }
    let _ = Host::parse(text);
});
