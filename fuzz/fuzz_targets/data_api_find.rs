//! The Data API's filter, sort and projection parsers, through `DocStore::find`/`count`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::data_api::find(data));
