//! A chunked response body as an upstream sends it, arriving in two pieces (the first byte
//! picks where it splits). Where the relay stage finds the body's end must not depend on
//! how the bytes arrive, must lie inside what was fed, and nothing may panic.
#![no_main]

use guardnest_core::chunked::ChunkedEnd;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let split = usize::from(split).min(body.len());
    let whole = ChunkedEnd::default().feed(body);
    if let Ok(Some(n)) = whole {
        assert!(n <= body.len());
    }
    let mut parts = ChunkedEnd::default();
    let pieces = match parts.feed(&body[..split]) {
        Ok(None) => parts.feed(&body[split..]).map(|end| end.map(|n| n + split)),
        other => other,
    };
    assert_eq!(pieces.is_ok(), whole.is_ok(), "{body:?} split at {split}");
    if let (Ok(a), Ok(b)) = (&pieces, &whole) {
        assert_eq!(a, b, "{body:?} split at {split}");
    }
});
