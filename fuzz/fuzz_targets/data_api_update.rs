//! The Data API's update parser (and filter, sort, projection), through the store's updates.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::data_api::update(data));
