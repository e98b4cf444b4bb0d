//! A ClickHouse replica acknowledges from its local journal and sends it to
//! ClickHouse in blocks (`store/clickhouse/spool.rs`): what it acknowledged
//! reaches ClickHouse once, through a crash and its replay, and through
//! ClickHouse being stopped for two minutes under load.
//!
//! Needs Debian's `clickhouse-server` (tests/run-all.sh installs it); each
//! test starts what it needs and fails with the reason when it cannot.

#[path = "support/clickhouse_server.rs"]
mod clickhouse_server;
#[path = "support/kuroko_serve.rs"]
mod kuroko_serve;
#[path = "support/requests.rs"]
mod requests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::store::clickhouse::{ClickHouseStore, SpoolSettings};
use kuroko_reporter::store::{Batch, Filter, HistogramPoint, SeriesKey, Store};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;
use prost::Message;

fn now_minute() -> i64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60) as i64
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kuroko-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `store`'s block writer until its journal is empty (at most 60 s).
fn send_journal(store: &ClickHouseStore) {
    let (stop, stopped) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || store.run_spool(&stopped, Duration::from_secs(30)));
        let started = Instant::now();
        while store.spool_health().unwrap().waiting_bytes > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the journal was not sent within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.send(()).unwrap();
        writer.join().unwrap();
    });
}

/// Runs stored in `database` over the last day, through the store's reads.
fn runs_stored(database: &str) -> u64 {
    let minute = now_minute();
    runs_in(database, minute - 1_440, minute + 10)
}

/// Runs stored in `database` over `from..to` (unix minutes; whole hours are
/// read from the hour roll-ups), per series; and the same read across hosts
/// (from the roll-ups across hosts) must count as many, in its scalars and
/// in its buckets alike.
fn runs_in(database: &str, from: i64, to: i64) -> u64 {
    let store = clickhouse_server::connect_again(database);
    let per_series: u64 = store
        .histograms(&Filter::default(), from, to)
        .unwrap()
        .iter()
        .map(|(_, h)| h.count)
        .sum();
    let across = Filter {
        across_hosts: true,
        ..Filter::default()
    };
    let (mut counted, mut in_buckets) = (0, 0);
    for (_, h) in store.histograms(&across, from, to).unwrap() {
        counted += h.count;
        in_buckets += h.zero_count + h.iter_buckets().map(|(_, c)| c).sum::<u64>();
    }
    assert_eq!(
        (counted, in_buckets),
        (per_series, per_series),
        "runs across hosts (counted, in buckets) over {from}..{to}"
    );
    per_series
}

fn journal_segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments
}

#[test]
fn what_a_replica_acknowledged_reaches_clickhouse_once_through_a_crash_and_a_replay() {
    let database = "kuroko_journal_replay";
    let dir = temp_dir("journal-replay");
    let settings = SpoolSettings {
        dir: dir.clone(),
        fsync: false,
        max_bytes: 1 << 30,
    };
    let minute = now_minute() - 5;
    let batch = |i: usize| {
        let mut histogram = Histogram::empty();
        for v in 0..=i {
            histogram.record(0.001 * (v + 1) as f64).unwrap();
        }
        Batch {
            histograms: vec![HistogramPoint {
                key: Arc::new(SeriesKey {
                    service: "journal".into(),
                    host: format!("host-{}", i % 7),
                    transaction: format!("GET /r/{}", i % 5),
                    feature: String::new(),
                    kind: "web".into(),
                    environment: String::new(),
                }),
                minute: minute - (i % 3) as i64,
                histogram,
            }],
            ..Batch::default()
        }
    };
    let expected: u64 = (0..200).map(|i| i as u64 + 1).sum();

    // A replica acknowledges 200 batches, then dies before sending any.
    let replica = clickhouse_server::clickhouse(database);
    replica.start_spool(&settings).unwrap();
    for i in 0..200 {
        replica.write(&batch(i)).unwrap();
    }
    assert_eq!(
        runs_stored(database),
        0,
        "acknowledged from the journal, not from ClickHouse"
    );
    assert!(replica.spool_health().unwrap().waiting_bytes > 0);
    drop(replica);
    let left = journal_segments(&dir);
    assert!(!left.is_empty(), "the journal holds what was acknowledged");
    let copies: Vec<(std::path::PathBuf, Vec<u8>)> =
        left.iter().map(|p| (p.clone(), std::fs::read(p).unwrap())).collect();

    // The next start replays it.
    let restarted = clickhouse_server::connect_again(database);
    restarted.start_spool(&settings).unwrap();
    send_journal(&restarted);
    assert_eq!(runs_stored(database), expected, "every acknowledged run, once");
    assert!(
        journal_segments(&dir).iter().all(|p| !left.contains(p)),
        "sent segments are deleted"
    );
    drop(restarted);

    // A crash after the blocks landed but before their segments were
    // deleted: the same segments come back, and are not counted again.
    for (path, bytes) in &copies {
        std::fs::write(path, bytes).unwrap();
    }
    let again = clickhouse_server::connect_again(database);
    again.start_spool(&settings).unwrap();
    send_journal(&again);
    assert_eq!(
        runs_stored(database),
        expected,
        "a replayed segment already in is skipped"
    );
    let marks = clickhouse_server::query(&format!("SELECT count() FROM {database}.ingest_block")).unwrap();
    assert!(marks.trim().parse::<u64>().unwrap() >= 1, "{marks}");
    drop(again);

    // A crash after the blocks landed but before `ingest_block` said so:
    // the same segments are sent again under the same tokens. A server
    // with deduplication tokens (22.3+) stores them once, roll-ups
    // included; 18.16 cannot tell (docs/clickhouse.md says so).
    clickhouse_server::query(&format!("TRUNCATE TABLE {database}.ingest_block")).unwrap();
    for (path, bytes) in &copies {
        std::fs::write(path, bytes).unwrap();
    }
    let again = clickhouse_server::connect_again(database);
    again.start_spool(&settings).unwrap();
    send_journal(&again);
    let hours_from = (minute - 10).div_euclid(60) * 60;
    let hours = runs_in(database, hours_from, hours_from + 120);
    assert!(
        again.deduplicates() || !clickhouse_server::on_chdb(),
        "a current ClickHouse takes deduplication tokens"
    );
    if again.deduplicates() {
        assert_eq!(
            runs_stored(database),
            expected,
            "sent again under the same tokens: stored once"
        );
        assert_eq!(hours, expected, "and the hour roll-ups too");
    } else {
        assert_eq!(
            runs_stored(database),
            2 * expected,
            "18.16 counts such a segment twice, as documented"
        );
    }

    // A second process is refused the journal while one holds it.
    let other = clickhouse_server::connect_again(database);
    let refused = other.start_spool(&settings).unwrap_err().to_string();
    assert!(
        refused.contains("held by another kuroko process") && refused.contains("[journal] dir"),
        "{refused}"
    );
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_journal_refuses_writes_until_clickhouse_takes_it() {
    let database = "kuroko_journal_full";
    let dir = temp_dir("journal-full");
    let store = clickhouse_server::clickhouse(database);
    store
        .start_spool(&SpoolSettings {
            dir: dir.clone(),
            fsync: false,
            max_bytes: 20_000,
        })
        .unwrap();
    let minute = now_minute() - 2;
    let mut histogram = Histogram::empty();
    histogram.record(0.01).unwrap();
    let batch = Batch {
        histograms: (0..20)
            .map(|i| HistogramPoint {
                key: Arc::new(SeriesKey {
                    service: "full".into(),
                    host: "h".into(),
                    transaction: format!("GET /{i}"),
                    feature: String::new(),
                    kind: "web".into(),
                    environment: String::new(),
                }),
                minute,
                histogram: histogram.clone(),
            })
            .collect(),
        ..Batch::default()
    };
    let mut accepted = 0u64;
    let refusal = loop {
        match store.write(&batch) {
            Ok(()) => accepted += 1,
            Err(error) => break error.to_string(),
        }
        assert!(accepted < 10_000, "never refused");
    };
    assert!(accepted > 0);
    assert!(
        refusal.contains("ClickHouse is behind") && refusal.contains("max_bytes"),
        "{refusal}"
    );
    assert_eq!(store.spool_health().unwrap().writes_refused, 1);
    send_journal(&store);
    store.write(&batch).expect("taken again once the journal is sent");
    send_journal(&store);
    assert_eq!(runs_stored(database), (accepted + 1) * 20);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One request of `points` delta histograms (3 runs each) from
/// `service`, ending now.
fn load_request(service: &str, points: usize) -> Vec<u8> {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let points: Vec<HistogramDataPoint> = (0..points)
        .map(|i| HistogramDataPoint {
            attributes: requests::route(&format!("/load/{i}")),
            ..requests::good_point(time)
        })
        .collect();
    requests::metrics_request(vec![(service, vec![requests::histogram_metric(points)])]).encode_to_vec()
}

/// Seconds ClickHouse stays stopped: 120, or `KUROKO_FAULT_SECONDS`.
fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("KUROKO_FAULT_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stopped_for_two_minutes_under_load_loses_nothing_and_counts_nothing_twice() {
    let server = tokio::task::spawn_blocking(|| clickhouse_server::own_server("fault"))
        .await
        .unwrap();
    let database = "kuroko_fault";
    let dir = temp_dir("journal-fault");
    let url = format!("clickhouse://127.0.0.1:{}/{database}", server.port);
    let config = format!(
        "store = \"{url}\"\n[journal]\ndir = \"{}\"\nmax_bytes = 1073741824\n",
        dir.join("journal").display()
    );
    let serve = kuroko_serve::Serve::start_configured(&dir, &config, &[]);
    let endpoint = format!("http://{}/v1/metrics", serve.http);

    // Four clients send without pause, each retrying what is refused.
    let acknowledged = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (acknowledged, refused, running, endpoint) =
            (acknowledged.clone(), refused.clone(), running.clone(), endpoint.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                n += 1;
                let body = load_request(&format!("fault-{client}-{}", n % 50), 20);
                loop {
                    let answer = http
                        .post(&endpoint)
                        .header("content-type", "application/x-protobuf")
                        .body(body.clone())
                        .send()
                        .await;
                    match answer {
                        Ok(response) if response.status() == 200 => {
                            let bytes = response.bytes().await.unwrap();
                            let answer = ExportMetricsServiceResponse::decode(bytes).unwrap();
                            let rejected = answer.partial_success.map_or(0, |p| p.rejected_data_points);
                            assert_eq!(rejected, 0, "a good point was rejected");
                            acknowledged.fetch_add(20 * 3, Ordering::Relaxed);
                            break;
                        }
                        Ok(response) => {
                            assert_eq!(response.status(), 503, "refused, to be retried");
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => panic!("the reporter did not answer: {error}"),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    let pid = serve.child.id();
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, running) = (peak.clone(), running.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                if let Some(rss) = kuroko_serve::memory(pid, "VmRSS") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(10)).await;
    let before_outage = acknowledged.load(Ordering::Relaxed);
    assert!(before_outage > 0, "nothing acknowledged while ClickHouse was up");
    let server = Arc::new(server);
    {
        let server = server.clone();
        tokio::task::spawn_blocking(move || server.stop()).await.unwrap();
    }
    tokio::time::sleep(outage()).await;
    let during_outage = acknowledged.load(Ordering::Relaxed) - before_outage;
    let waiting = kuroko_serve::self_metric(&serve.http, "kuroko_reporter_journal_waiting_bytes").await;
    {
        let server = server.clone();
        tokio::task::spawn_blocking(move || server.resume()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    running.store(false, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    sampler.await.unwrap();
    let total = acknowledged.load(Ordering::Relaxed);

    // Everything acknowledged reaches ClickHouse.
    let started = Instant::now();
    while kuroko_serve::self_metric(&serve.http, "kuroko_reporter_journal_waiting_bytes").await > 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the journal was not sent within 180 s of ClickHouse coming back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let failures = kuroko_serve::self_metric(&serve.http, "kuroko_reporter_journal_send_failures_total").await;
    let peak = peak.load(Ordering::Relaxed);
    drop(serve);

    let store = ClickHouseStore::connect(&url).unwrap();
    let minute = now_minute();
    let stored: u64 = tokio::task::spawn_blocking(move || {
        store
            .histograms(&Filter::default(), minute - 60, minute + 10)
            .unwrap()
            .iter()
            .map(|(_, h)| h.count)
            .sum()
    })
    .await
    .unwrap();
    eprintln!(
        "acknowledged {total} runs ({during_outage} while ClickHouse was stopped, {waiting} bytes waiting at its end), \
         stored {stored}; {failures} failed sends; reporter peak RSS {} MB",
        peak >> 20
    );
    assert!(
        during_outage > 0,
        "requests were acknowledged while ClickHouse was stopped"
    );
    assert!(waiting > 0.0, "they waited in the journal");
    assert!(failures > 0.0, "the block writer saw ClickHouse gone");
    assert_eq!(stored, total, "nothing acknowledged is lost, nothing counted twice");
    assert!(
        peak < 400 << 20,
        "the reporter's memory stayed bounded: peak {} MB",
        peak >> 20
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stop_sends_what_the_journal_holds_at_once_whatever_batch_ms() {
    let database = "kuroko_journal_stop";
    let dir = temp_dir("journal-stop");
    drop(clickhouse_server::clickhouse(database));
    // Blocks every ten minutes: only the stop sends this one.
    let store = ClickHouseStore::connect(&format!("{}?batch_ms=600000", clickhouse_server::url(database))).unwrap();
    store
        .start_spool(&SpoolSettings {
            dir: dir.clone(),
            fsync: false,
            max_bytes: 1 << 30,
        })
        .unwrap();
    let mut histogram = Histogram::empty();
    histogram.record(0.01).unwrap();
    store
        .write(&Batch {
            histograms: vec![HistogramPoint {
                key: Arc::new(SeriesKey {
                    service: "stop".into(),
                    host: "h".into(),
                    transaction: "GET /stop".into(),
                    feature: String::new(),
                    kind: "web".into(),
                    environment: String::new(),
                }),
                minute: now_minute() - 1,
                histogram,
            }],
            ..Batch::default()
        })
        .unwrap();
    let (stop, stopped) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || store.run_spool(&stopped, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(500));
        stop.send(()).unwrap();
        writer.join().unwrap();
    });
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped in {:?}, not after batch_ms",
        started.elapsed()
    );
    assert_eq!(runs_stored(database), 1, "the stop sent what the journal held");
    let _ = std::fs::remove_dir_all(&dir);
}
