//! Every list format: the first byte picks the format (or detection), the rest is the list.
//! Every name a parser yields must already be in normal form.
#![no_main]

use guardnest_core::blocklist::{detect, parse, Format};
use guardnest_core::domain::normalize_name;
use libfuzzer_sys::fuzz_target;

const FORMATS: [Option<Format>; 6] =
    [None, Some(Format::Hosts), Some(Format::Plain), Some(Format::Adblock), Some(Format::Wildcard), Some(Format::Json)];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let format = FORMATS[pick as usize % FORMATS.len()].unwrap_or_else(|| detect(&text));
    let parsed = parse(&text, format);
    for name in parsed.block.iter().chain(parsed.allow.iter()) {
        assert_eq!(normalize_name(name).as_deref(), Some(name), "{format:?} yielded {name:?}");
    }
    // Streaming reads must agree with whole-text parsing.
    let mut streamed = guardnest_core::blocklist::Parsed::default();
    let _ = guardnest_core::blocklist::parse_reader(std::io::Cursor::new(text.as_bytes()), Some(format), &mut streamed);
    if format != Format::Json {
        assert_eq!(streamed.block.len(), parsed.block.len());
        assert_eq!(streamed.allow.len(), parsed.allow.len());
    }
});
