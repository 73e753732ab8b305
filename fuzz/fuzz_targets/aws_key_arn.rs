//! The AWS key-ARN parser (`keyplane_core::AwsKeyArn`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        keyplane_fuzz::key_ids::aws_key_arn(text);
    }
});
