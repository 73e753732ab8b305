//! Every provider's key-ID parser on the same input (see `keyplane_fuzz::key_ids::PARSERS`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        keyplane_fuzz::key_ids::all(text);
    }
});
