//! The ingest path under structure-aware hostile input, on stable Rust in CI:
//! the generator the `structured_streams` fuzz target uses
//! (`support/structured.rs`) fed with seeded random bytes, so that requests
//! decode and reach the rules behind decoding: attributes of any length (up
//! to half a megabyte), the same cumulative streams revisited across
//! requests, counts, bounds and scales of any size, times near now or
//! anywhere; up to 1 MB per sequence.
//!
//! Every batch converted must hold [`check_batch`]'s rules (counts that add
//! up and stay in range, percentiles inside `[min, max]`, names within their
//! budget), the streams held must stay within their limit, and nothing may
//! panic. Under tighter limits too, so that the limits themselves are hit.

#[path = "support/structured.rs"]
mod structured;

use std::time::{SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use kuroko_reporter::ingest::invariants::check_sequence;
use kuroko_reporter::ingest::otlp::Limits;
use kuroko_reporter::ingest::{decode_and_validate, metrics_paths_agree};

#[path = "support/seeded.rs"]
mod seeded;
use seeded::Rng;

#[test]
fn generated_requests_convert_to_batches_that_hold_the_rules() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64;
    let tight = Limits {
        max_cumulative_streams: 8,
        max_cumulative_stream_bytes: 64 << 10,
        max_attributes: 4,
        max_value_bytes: 64,
        ..Limits::default()
    };
    let mut rng = Rng::new(0x6b75_726f_6b6f);
    let (mut sequences, mut stored, mut largest, mut requests) = (0, 0, 0, 0);
    for round in 0..2_000 {
        // Short inputs mostly: the generator's choices, not its strings, take bytes.
        let len = 64 + (rng.next() % 4_096) as usize;
        let bytes = rng.bytes(len);
        let Ok(plan) = structured::Plan::arbitrary(&mut Unstructured::new(&bytes)) else {
            continue;
        };
        let bodies = structured::requests(&plan, now);
        sequences += 1;
        requests += bodies.len();
        largest = largest.max(bodies.iter().map(Vec::len).sum::<usize>());
        for limits in [&Limits::default(), &tight] {
            match check_sequence(&bodies, limits, now) {
                Ok(points) => stored += points,
                Err(breach) => panic!("round {round} (input of {len} bytes): {breach}"),
            }
        }
        for body in &bodies {
            let _ = decode_and_validate(body);
            assert!(
                metrics_paths_agree(body),
                "round {round}: the two metrics readers disagree"
            );
        }
    }
    // The generator must reach what it is for: many requests, points that
    // pass the rules and are stored, and sequences near the size budget.
    assert!(sequences > 1_500, "only {sequences} plans generated");
    assert!(requests > 3_000, "only {requests} requests generated");
    assert!(
        stored > 1_000,
        "only {stored} points stored: the generated input rarely passes the rules"
    );
    assert!(
        largest > 256 << 10,
        "the largest sequence is {largest} bytes: long attributes not generated"
    );
    eprintln!("{sequences} sequences, {requests} requests, {stored} points stored, largest {largest} bytes");
}
