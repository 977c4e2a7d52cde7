//! The config file: any text either loads into a valid configuration or is a clear error.
#![no_main]

use guardnest_core::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::from_toml(text, "fuzz.toml") {
        Ok(c) => c.validate().expect("a loaded config is valid"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
