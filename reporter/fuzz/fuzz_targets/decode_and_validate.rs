//! Any bytes through the reporter's OTLP decode-and-validate path: must not panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kuroko_reporter::ingest::decode_and_validate(data);
});
