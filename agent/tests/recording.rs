//! Recording API: every sample counted once across concurrent harvests, the
//! cardinality bound, guards, futures, outcomes and Apdex.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use kuroko_agent::{
    Agent, AgentConfig, CapturedError, Outcome, SegmentKind, TransactionKind, TransactionSpec, OVERFLOW_TRANSACTION,
};

fn agent_with(change: impl FnOnce(&mut AgentConfig)) -> Agent {
    let mut config = AgentConfig::default();
    change(&mut config);
    Agent::new(config).expect("valid config")
}

/// Threads record a known set of samples while another thread harvests
/// without pause; the harvests must add up to exactly what was recorded:
/// nothing lost, nothing counted twice, through shard promotion too.
#[test]
fn concurrent_harvest_loses_and_duplicates_nothing() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 200_000;
    const SERIES: u64 = 8;
    let agent = agent_with(|c| {
        // Every series turns hot at the first harvest that sees it, while the
        // recorders run: a higher threshold made promotion depend on how
        // often the harvester happened to run (it flaked on a quiet machine).
        c.hot_series_threshold = 1;
        c.max_shards = 4;
    });
    let handles: Vec<_> = (0..SERIES).map(|i| agent.transaction(&format!("job-{i}"))).collect();
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(THREADS as usize + 1));

    let harvester = {
        let (agent, done, start) = (agent.clone(), done.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            let mut harvests = Vec::new();
            while !done.load(Ordering::Acquire) {
                harvests.push(agent.harvest());
            }
            harvests
        })
    };
    let recorders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (agent, handles, start) = (agent.clone(), handles.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for i in 0..PER_THREAD {
                    let ns = 1_000 + (i * 7_919 + t * 104_729) % 5_000_000_000;
                    let series = (i + t) % SERIES;
                    if i % 3 == 0 {
                        agent.record_outcome(&format!("job-{series}"), Duration::from_nanos(ns), Outcome::Ok);
                    } else {
                        handles[series as usize].record_nanos(ns, Outcome::Ok);
                    }
                }
            })
        })
        .collect();
    for recorder in recorders {
        recorder.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let mut harvests = harvester.join().unwrap();
    harvests.push(agent.harvest());
    assert!(
        harvests.len() > 2,
        "the harvester ran concurrently ({} harvests)",
        harvests.len()
    );

    let mut expected_count = [0u64; SERIES as usize];
    let mut expected_sum = [0u64; SERIES as usize];
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            let series = ((i + t) % SERIES) as usize;
            expected_count[series] += 1;
            expected_sum[series] += 1_000 + (i * 7_919 + t * 104_729) % 5_000_000_000;
        }
    }
    let mut count = [0u64; SERIES as usize];
    let mut sum = [0u64; SERIES as usize];
    let mut bucketed = [0u64; SERIES as usize];
    for harvest in &harvests {
        for tx in &harvest.transactions {
            let series: usize = tx.meta.name.trim_start_matches("job-").parse().unwrap();
            count[series] += tx.count;
            sum[series] += tx.sum_ns;
            bucketed[series] += tx.histogram.buckets().map(|b| b.count).sum::<u64>();
        }
    }
    assert_eq!(count, expected_count);
    assert_eq!(bucketed, expected_count);
    assert_eq!(sum, expected_sum);
    assert_eq!(
        agent.stats().sharded_series,
        SERIES as usize,
        "hot series were promoted to shards"
    );
}

/// The sum a shard's owning thread keeps with plain stores is taken at
/// harvest as what it gained since the previous harvest. Two harvesters run
/// at once while recording threads come and go (an exited thread's slot, and
/// with it the ownership of a shard, passes to the next thread), with more
/// threads than shards: every count and every nanosecond is harvested
/// exactly once.
#[test]
fn owned_sums_survive_concurrent_harvests_and_threads_that_come_and_go() {
    const WAVES: u64 = 6;
    const THREADS: u64 = 5;
    const PER_THREAD: u64 = 50_000;
    let agent = agent_with(|c| {
        c.hot_series_threshold = 0;
        // Five threads on two shards: most of them share a shard with its owner.
        c.max_shards = 2;
    });
    let handle = agent.transaction("job");
    let done = Arc::new(AtomicBool::new(false));
    let harvesters: Vec<_> = (0..2)
        .map(|_| {
            let (agent, done) = (agent.clone(), done.clone());
            std::thread::spawn(move || {
                let mut total = (0u64, 0u64, 0usize);
                while !done.load(Ordering::Acquire) {
                    if let Some(tx) = agent.harvest().transaction("job") {
                        total.0 += tx.count;
                        total.1 += tx.sum_ns;
                    }
                    total.2 += 1;
                    // Leave the recorders the CPU most of the time, so that
                    // they run side by side.
                    std::thread::sleep(Duration::from_micros(200));
                }
                total
            })
        })
        .collect();
    let (mut expected_count, mut expected_sum) = (0u64, 0u64);
    for wave in 0..WAVES {
        let start = Arc::new(Barrier::new(THREADS as usize));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (handle, start) = (handle.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for i in 0..PER_THREAD {
                        handle.record_nanos(1_000 + (i * 7_919 + t * 104_729 + wave) % 900_000_000, Outcome::Ok);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        for t in 0..THREADS {
            for i in 0..PER_THREAD {
                expected_count += 1;
                expected_sum += 1_000 + (i * 7_919 + t * 104_729 + wave) % 900_000_000;
            }
        }
    }
    done.store(true, Ordering::Release);
    let (mut count, mut sum, mut harvests) = (0u64, 0u64, 0usize);
    for harvester in harvesters {
        let (c, s, h) = harvester.join().unwrap();
        count += c;
        sum += s;
        harvests += h;
    }
    if let Some(tx) = agent.harvest().transaction("job") {
        count += tx.count;
        sum += tx.sum_ns;
    }
    assert!(harvests > 4, "the harvesters ran concurrently ({harvests} harvests)");
    assert_eq!(count, expected_count);
    assert_eq!(sum, expected_sum);
}

#[test]
fn cardinality_limit_folds_into_one_overflow_series() {
    let agent = agent_with(|c| c.max_series = 10);
    for i in 0..15 {
        agent.record(&format!("GET /items/{i}"), Duration::from_millis(5));
        // a second time, through this thread's cache
        agent.record(&format!("GET /items/{i}"), Duration::from_millis(5));
    }
    let handle = agent.transaction("POST /late");
    assert_eq!(handle.name(), OVERFLOW_TRANSACTION);
    handle.record(Duration::from_millis(1));

    let harvest = agent.harvest();
    assert_eq!(harvest.transactions.len(), 11, "10 series and the overflow series");
    let overflow = harvest.transaction(OVERFLOW_TRANSACTION).expect("overflow series");
    assert!(overflow.meta.overflow);
    assert_eq!(overflow.count, 11, "5 names twice each, and one late handle");
    assert_eq!(harvest.stats.series, 10);
    assert_eq!(harvest.stats.overflowed_samples, 11);
    assert!(harvest.stats.refused_registrations >= 6);
    for i in 0..10 {
        assert_eq!(harvest.transaction(&format!("GET /items/{i}")).unwrap().count, 2);
    }
}

#[test]
fn percentiles_are_within_one_percent_of_exact() {
    let agent = Agent::default();
    let tx = agent.transaction("GET /cards/{id}");
    // A deterministic log-normal-ish spread from 50 µs to ~5 s.
    let mut samples: Vec<u64> = (0..100_000u64)
        .map(|i| {
            let u = ((i * 2_654_435_761) % 1_000_003) as f64 / 1_000_003.0;
            (50_000.0 * (u * 11.5).exp()) as u64
        })
        .collect();
    for &ns in &samples {
        tx.record_nanos(ns, Outcome::Ok);
    }
    samples.sort_unstable();
    let snapshot = agent.harvest().transaction("GET /cards/{id}").unwrap().clone();
    for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
        let exact = samples[((q * samples.len() as f64).ceil() as usize).max(1) - 1] as f64;
        let ours = snapshot.histogram.value_at_quantile(q) as f64;
        assert!((ours - exact).abs() / exact <= 0.01, "p{q}: {ours} vs exact {exact}");
    }
    assert_eq!(snapshot.min_ns, samples[0]);
    assert_eq!(snapshot.max_ns, *samples.last().unwrap());
    assert_eq!(snapshot.sum_ns, samples.iter().sum::<u64>());
}

/// The low end, as the README states it: below 131 µs the default layout's
/// counters are 512 ns wide (the HDR unit: the largest power of two under the
/// 1 µs lower bound), so a percentile there is at most 0.512 µs above the
/// exact sample (never below it), which is within 1% only from 51.2 µs up.
#[test]
fn sub_100_microsecond_percentiles_are_within_half_a_microsecond() {
    /// The stated floor: absolute error at most 511 ns below 131 µs.
    const FLOOR_NS: f64 = 511.0;
    let mut worst_under_10us: f64 = 0.0;
    // Spreads across the sub-100 µs range, each checked at many quantiles.
    for (low, high) in [
        (1_000u64, 10_000u64),
        (2_000, 6_000),
        (10_000, 50_000),
        (51_200, 100_000),
    ] {
        let agent = Agent::default();
        let tx = agent.transaction("GET /health");
        // A deterministic spread, log-uniform from `low` to `high`.
        let ratio = (high as f64 / low as f64).ln();
        let mut samples: Vec<u64> = (0..50_000u64)
            .map(|i| {
                let u = ((i * 2_654_435_761) % 1_000_003) as f64 / 1_000_003.0;
                (low as f64 * (u * ratio).exp()) as u64
            })
            .collect();
        for &ns in &samples {
            tx.record_nanos(ns, Outcome::Ok);
        }
        samples.sort_unstable();
        let snapshot = agent.harvest().transaction("GET /health").unwrap().clone();
        for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999] {
            let exact = samples[((q * samples.len() as f64).ceil() as usize).max(1) - 1] as f64;
            let ours = snapshot.quantile_ns(q) as f64;
            let error = ours - exact;
            assert!(
                (0.0..=FLOOR_NS).contains(&error),
                "{low}–{high} ns, p{q}: {ours} vs exact {exact}: off by {error} ns"
            );
            if exact >= 51_200.0 {
                assert!(error / exact <= 0.01, "p{q}: {ours} vs exact {exact} is over 1%");
            }
            if high <= 10_000 {
                worst_under_10us = worst_under_10us.max(error / exact);
            }
        }
    }
    // Why the README states a floor: in microseconds, 1% does not hold.
    assert!(
        worst_under_10us > 0.01,
        "below 10 µs the relative error reaches {worst_under_10us}: the README's floor would be too cautious"
    );
}

#[test]
fn outcomes_apdex_and_errors() {
    let agent = agent_with(|c| {
        c.apdex_overrides
            .insert("GET /search".into(), Duration::from_millis(100));
    });
    let search = agent.transaction("GET /search");
    assert_eq!(search.meta().kind, TransactionKind::Web);
    assert_eq!(search.meta().route.as_deref(), Some("/search"));
    search.record_outcome(Duration::from_millis(50), Outcome::Status(200)); // satisfied
    search.record_outcome(Duration::from_millis(150), Outcome::Status(404)); // tolerating
    search.record_outcome(Duration::from_millis(900), Outcome::Status(200)); // frustrated: > 4T
    search.record_outcome(Duration::from_millis(10), Outcome::Status(503)); // frustrated: failed
    search.record_outcome(Duration::from_millis(10), Outcome::Cancelled); // satisfied
    let mut guard = search.start();
    guard.error(&std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream timed out"));
    drop(guard);

    let harvest = agent.harvest();
    let s = harvest.transaction("GET /search").unwrap();
    assert_eq!(s.count, 6);
    assert_eq!(s.error_count, 2);
    assert_eq!((s.apdex.satisfied, s.apdex.tolerating, s.apdex.frustrated), (2, 1, 3));
    assert_eq!(s.apdex.threshold, Duration::from_millis(100));
    assert_eq!(s.apdex.score(), Some(2.5 / 6.0));
    assert_eq!(
        (
            s.outcomes.ok,
            s.outcomes.client_error,
            s.outcomes.server_error,
            s.outcomes.error,
            s.outcomes.cancelled
        ),
        (2, 1, 1, 1, 1)
    );
    let error = &harvest.errors[0];
    assert_eq!(&*error.transaction, "GET /search");
    assert_eq!(error.error.error_type, "std::io::error::Error");
    assert_eq!(error.error.message, "upstream timed out");
    assert!(error
        .error
        .location
        .as_deref()
        .unwrap()
        .starts_with("agent/tests/recording.rs:"));
}

#[test]
fn segments_break_down_a_transaction() {
    let agent = Agent::default();
    let checkout = agent.register(TransactionSpec::web("POST", "/checkout").feature("payments"));
    let charge = checkout.segment(SegmentKind::External, "POST api.payments.test/charges");
    for _ in 0..3 {
        let run = checkout.start();
        let _db = run.segment(SegmentKind::Database, "INSERT orders");
        charge.record(Duration::from_millis(40));
    }
    let harvest = agent.harvest();
    let t = harvest.transaction("POST /checkout").unwrap();
    assert_eq!(t.meta.feature.as_deref(), Some("payments"));
    assert_eq!(t.count, 3);
    let by_name = |name: &str| t.segments.iter().find(|s| &*s.name == name).unwrap();
    assert_eq!(by_name("INSERT orders").count, 3);
    assert_eq!(by_name("POST api.payments.test/charges").total_ns, 120_000_000);
    assert_eq!(t.time_in(SegmentKind::External), 120_000_000);
}

#[tokio::test]
async fn futures_are_timed_and_cancellation_is_seen() {
    let agent = Agent::default();
    let job = agent.transaction("sync-cards");
    job.time(tokio::time::sleep(Duration::from_millis(20))).await;
    let failed: Result<(), std::fmt::Error> = job.time_result(async { Err(std::fmt::Error) }).await;
    assert!(failed.is_err());
    let cancelled = job.time(std::future::pending::<()>());
    drop(cancelled);

    let harvest = agent.harvest();
    let s = harvest.transaction("sync-cards").unwrap();
    assert_eq!(s.count, 3);
    assert!(s.max_ns >= 20_000_000);
    assert_eq!((s.outcomes.ok, s.outcomes.error, s.outcomes.cancelled), (1, 1, 1));
    assert_eq!(harvest.errors.len(), 1);
    assert!(harvest.errors[0]
        .error
        .location
        .as_deref()
        .unwrap()
        .contains("recording.rs"));
}

#[test]
fn captured_errors_are_counted_per_distinct_error() {
    let agent = Agent::default();
    for id in 0..5 {
        agent.capture_error("import", CapturedError::new("ParseError", "bad row"));
        agent.capture_error(
            "import",
            CapturedError::new("ParseError", format!("bad row {}", id % 2)),
        );
    }
    let mut errors = agent.harvest().errors;
    errors.sort_by(|a, b| a.error.message.cmp(&b.error.message));
    let counts: Vec<_> = errors.iter().map(|e| (e.error.message.as_str(), e.count)).collect();
    assert_eq!(counts, [("bad row", 5), ("bad row 0", 3), ("bad row 1", 2)]);
}

#[test]
fn bad_configuration_is_refused_with_the_field_named() {
    let error = Agent::new(AgentConfig::default().with_max_series(0)).unwrap_err();
    assert_eq!(error.to_string(), "`max_series` must be at least 1");
    let config = AgentConfig::default().with_highest_trackable(Duration::from_nanos(1));
    assert!(Agent::new(config)
        .unwrap_err()
        .to_string()
        .contains("invalid histogram bounds"));
}
