//! CONNECT authorities and URL hosts as raw text: whatever parses prints back to itself.
#![no_main]

use guardnest_core::domain::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for parsed in [Target::parse_authority(text), Target::parse_with_default(text, Some(80))] {
        if let Ok(t) = parsed {
            assert_ne!(t.port, 0);
            let again = Target::parse_authority(&t.to_string()).expect("a printed target parses");
            assert_eq!(again, t, "{text:?}");
        }
    }
});
