//! The key-policy parser, evaluator and platform checker (`keyplane_core::policy`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        keyplane_fuzz::policy::check(text);
    }
});
