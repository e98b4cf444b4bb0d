//! The decode-and-validate path under hostile input, on stable Rust in CI:
//! real payloads from Kuroko's agent and SDK-shaped ones, mutated thousands of
//! times (bit flips, truncations, splices, huge varints), must never panic —
//! the same entry point the `cargo fuzz` target in `reporter/fuzz` drives.

use std::time::{Duration, SystemTime};

use kuroko_agent::export::{encode, exponential, ExportConfig, ExportStats};
use kuroko_agent::{Agent, CapturedError, Outcome, SegmentKind, TransactionSpec};
use kuroko_reporter::ingest::decode_and_validate;
use prost::Message;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let agent = Agent::default();
    let tx = agent.register(
        TransactionSpec::web("GET", "/cards/{id}")
            .feature("cards")
            .apdex(Duration::from_millis(1)),
    );
    for i in 0..200u64 {
        tx.record_nanos(
            50_000 + i * 997_003,
            if i % 9 == 0 { Outcome::Status(503) } else { Outcome::Ok },
        );
    }
    {
        let run = tx.start();
        let _db = run.segment(SegmentKind::Database, "SELECT cards");
        std::thread::sleep(Duration::from_millis(5));
    }
    agent.capture_error("GET /cards/{id}", CapturedError::new("DbTimeout", "took 5 s"));
    let harvest = agent.harvest();
    let resource = ExportConfig::default().resource("svc");
    let mut seeds = vec![encode::metrics_request(
        &harvest,
        &resource,
        exponential::DEFAULT_SCALE,
        ExportStats::default(),
        SystemTime::now(),
    )
    .encode_to_vec()];
    seeds.extend(encode::logs_request(&harvest, &resource).map(|r| r.encode_to_vec()));
    seeds.extend(encode::traces_request(&harvest, &resource).map(|r| r.encode_to_vec()));
    seeds.push(Vec::new());
    seeds
}

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
            2 => bytes.truncate(rng.below(bytes.len() + 1)),
            3 => {
                let at = rng.below(bytes.len() + 1);
                let junk: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, junk);
            }
            4 => {
                // An over-long varint or a huge length prefix.
                let at = rng.below(bytes.len() + 1);
                bytes.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
            }
            _ if bytes.len() > 2 => {
                let (a, b) = (rng.below(bytes.len()), rng.below(bytes.len()));
                let (a, b) = (a.min(b), a.max(b));
                let copy = bytes[a..b].to_vec();
                bytes.extend(copy);
            }
            _ => {}
        }
    }
    bytes
}

#[test]
fn mutated_payloads_never_panic_and_valid_ones_are_kept() {
    let seeds = seeds();
    let [metrics, logs, traces] = decode_and_validate(&seeds[0]);
    assert!(
        metrics > 0 && logs == 0 && traces == 0,
        "the untouched metrics seed is stored: {metrics}"
    );
    assert!(decode_and_validate(&seeds[1])[1] > 0, "the logs seed is stored");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut decoded = 0;
    for round in 0..20_000 {
        let seed = &seeds[round % seeds.len()];
        let bytes = mutate(seed, &mut rng);
        let outcome = std::panic::catch_unwind(|| decode_and_validate(&bytes));
        match outcome {
            Ok(points) => decoded += usize::from(points.iter().any(|p| *p > 0)),
            Err(_) => panic!(
                "round {round} panicked on {} bytes: {:02x?}",
                bytes.len(),
                &bytes[..bytes.len().min(64)]
            ),
        }
    }
    assert!(
        decoded > 1_000,
        "mutations still reach the conversion, not just the decoder ({decoded})"
    );
}
