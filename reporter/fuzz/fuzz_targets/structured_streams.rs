//! Structure-aware: the fuzzer's bytes become a sequence of OTLP metrics
//! requests that decode (`reporter/tests/support/structured.rs`, up to 1 MB:
//! attributes of any length, streams revisited across requests, counts,
//! bounds and scales of any size), converted one after the other as one
//! reporter would. Every batch must hold the ingest rules
//! (`kuroko_reporter::ingest::invariants`), under the default limits and
//! under tight ones, and nothing may panic.
#![no_main]

#[path = "../../tests/support/structured.rs"]
mod structured;

use kuroko_reporter::ingest::invariants::check_sequence;
use kuroko_reporter::ingest::otlp::Limits;

/// A fixed "now", so that a crash reproduces from its input alone.
const NOW: u64 = 1_796_600_000_000_000_000;

libfuzzer_sys::fuzz_target!(|plan: structured::Plan| {
    let bodies = structured::requests(&plan, NOW);
    let tight = Limits {
        max_cumulative_streams: 8,
        max_cumulative_stream_bytes: 64 << 10,
        max_attributes: 4,
        max_value_bytes: 64,
        ..Limits::default()
    };
    for limits in [&Limits::default(), &tight] {
        if let Err(breach) = check_sequence(&bodies, limits, NOW) {
            panic!("{breach}");
        }
    }
    for body in &bodies {
        let _ = kuroko_reporter::ingest::decode_and_validate(body);
        assert!(kuroko_reporter::ingest::metrics_paths_agree(body));
    }
});
