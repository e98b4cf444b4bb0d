//! Any bytes through the reporter's OTLP decode-and-validate path: must not
//! panic, and the in-place metrics reader must agree with prost.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kuroko_reporter::ingest::decode_and_validate(data);
    assert!(kuroko_reporter::ingest::metrics_paths_agree(data));
});
