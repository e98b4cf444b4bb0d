//! Chaos against a real `kuroko serve` (the binary cargo built for this
//! test): four senders ingest over OTLP/HTTP while the store's disk (a real
//! tmpfs) fills, the reporter is killed (SIGKILL) mid-load and restarted,
//! and late points arrive for hours already rolled up, one of them for an
//! hour whose first minutes retention has deleted. Afterwards:
//!
//! - every acknowledged run is stored, exactly (counts read back per
//!   transaction);
//! - the hour and day rows equal a from-scratch roll-up of the same data: a
//!   second store, fed the same acknowledged requests through the same
//!   receiver in one go, rolled once;
//! - retention has run: minute rows past `minute_days` are gone, their
//!   hours kept.

#[path = "support/kuroko_serve.rs"]
mod kuroko_serve;
#[path = "support/store_serve.rs"]
mod store_serve;
use store_serve::{eventually, minute_runs, now_nanos, post_metrics, rows, runs_request, Reporter, Tmpfs};

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::ingest::Receiver;
use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Batch, HistogramPoint, SeriesKey, Store};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

const MIN_FREE: u64 = 8 << 20;
const RETENTION: &str = "[retention]\nminute_days = 2\nhour_days = 3\nday_days = 4\n";
const ROUTES: usize = 40;

fn retention() -> Retention {
    Retention {
        minute_days: 2,
        hour_days: 3,
        day_days: 4,
    }
}

fn now_minute() -> i64 {
    (now_nanos() / 60_000_000_000) as i64
}

/// What the store held before the reporter started (as if written by it
/// earlier): `runs` runs of `GET /old` at each of `minutes`.
fn seeded(minutes: &[i64]) -> Batch {
    let key = Arc::new(SeriesKey {
        service: "shop".into(),
        host: "h1".into(),
        transaction: "GET /old".into(),
        feature: String::new(),
        kind: "web".into(),
        environment: String::new(),
    });
    let mut histogram = Histogram::empty();
    for _ in 0..3 {
        histogram.record(0.02).unwrap();
    }
    Batch {
        histograms: minutes
            .iter()
            .map(|&minute| HistogramPoint {
                key: key.clone(),
                minute,
                histogram: histogram.clone(),
            })
            .collect(),
        ..Batch::default()
    }
}

/// A request's body, and the host and minute that find it in the store.
type Located = (Vec<u8>, String, i64);

/// A request of `ROUTES` routes, two runs each, at one of the `span`
/// minutes before `newest`, on a host: each `seed` its own (host, minute),
/// so that a request whose answer was lost can be looked for in the store.
fn load_request(seed: u64, newest: i64, span: i64, host: &str) -> Located {
    let span = span as u64;
    let minute = newest - (seed % span) as i64;
    let host = format!("{host}{}", seed / span);
    let time = minute as u64 * 60_000_000_000 + 1_000_000_000;
    let points: Vec<(String, u64)> = (0..ROUTES).map(|r| (format!("/r{r}"), time)).collect();
    (runs_request("shop", &host, &points, 2, 0), host, minute)
}

/// Whether a request of [`load_request`] is in the store.
fn stored(store: &Path, host: &str, minute: i64) -> bool {
    rows(
        store,
        &format!(
            "SELECT COUNT(*) FROM histogram_minute h JOIN series s ON s.id = h.series
             WHERE s.host = '{host}' AND h.minute = {minute}"
        ),
    ) != ["0"]
}

/// Hour or day rows of `table` with their transaction, sums rounded (added
/// in another order, floating-point sums differ in their last bits).
fn rolled(store: &Path, table: &str, column: &str, before: i64) -> Vec<String> {
    rows(
        store,
        &format!(
            "SELECT s.txn, h.{column}, h.count, printf('%.6f', h.sum), h.min, h.max, h.scale, h.zero_count,
                    h.zero_threshold, hex(h.buckets), h.estimated
             FROM {table} h JOIN series s ON s.id = h.series WHERE h.{column} < {before}
             ORDER BY s.txn, h.{column}"
        ),
    )
}

fn meta(store: &Path, key: &str) -> i64 {
    rows(store, &format!("SELECT value FROM meta WHERE key = '{key}'"))
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(i64::MIN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_is_stored_and_roll_ups_equal_a_fresh_roll_up_after_a_full_disk_a_kill_and_late_points() {
    let started = Instant::now();
    let tmpfs = Tmpfs::mount("chaos", 48);
    let dir = std::env::temp_dir().join(format!("kuroko-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = tmpfs.dir.join("kuroko.db");
    let filler = tmpfs.dir.join("someone-elses-file");
    let toml = dir.join("kuroko.toml");
    std::fs::write(
        &toml,
        format!(
            "rollup_interval_seconds = 1\n[limits]\nmin_free_bytes = {MIN_FREE}\nmax_age_seconds = 172800\n{RETENTION}"
        ),
    )
    .unwrap();

    // Before the reporter: an old hour 60 h ago (its minutes past
    // retention), and the first minute of the hour that straddles the
    // minutes' cutoff, where a late point will go.
    let now = now_minute();
    let late = now - 2 * 1_440 + 2;
    let straddling = late.div_euclid(60) * 60;
    let old = (now - 60 * 60).div_euclid(60) * 60;
    let seed = seeded(&[old + 1, old + 2, straddling]);
    // The load keeps to the days after the straddling hour's, so that only
    // the late point can make that day change.
    let next_day = (straddling.div_euclid(1_440) + 1) * 1_440;
    {
        let opened = SqliteStore::open(&store).unwrap();
        opened.write(&seed).unwrap();
        opened.flush().unwrap();
    }

    let first = Reporter::start(&toml, &store, &dir.join("first.log"), None).unwrap();
    let http = first.http.clone();
    assert!(
        eventually(|| meta(&store, "rolled_hours_until") >= (now - 2).div_euclid(60) * 60),
        "the first pass rolls every finished hour"
    );
    // Someone else's file leaves 6 MB above the headroom.
    let leave = MIN_FREE + (6 << 20);
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while tmpfs.free() > leave + (1 << 20) {
            file.write_all(&chunk).unwrap();
        }
    }

    // Four senders: requests for minutes from the next day on (all rolled),
    // every acknowledged body kept.
    let acknowledged: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    // Sent when the reporter was killed: their answer was lost.
    let unknown: Arc<Mutex<Vec<Located>>> = Arc::default();
    let (stop, refused, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut senders = Vec::new();
    for sender in 0..4u64 {
        let (acknowledged, unknown, stop, refused, sent, http) = (
            acknowledged.clone(),
            unknown.clone(),
            stop.clone(),
            refused.clone(),
            sent.clone(),
            http.clone(),
        );
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = sender;
            while !stop.load(Ordering::Relaxed) {
                let (body, host, minute) = load_request(n, now - 61, now - 61 - next_day, "h");
                n += 4;
                sent.fetch_add(1, Ordering::Relaxed);
                match post_metrics(&client, &http, body.clone()).await {
                    (200, _, _) => acknowledged.lock().unwrap().push(body),
                    (503, Some(_), _) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    // Killed mid-request, or not yet back: not acknowledged.
                    (0, _, _) => {
                        unknown.lock().unwrap().push((body, host, minute));
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    (status, _, text) => panic!("{status}: {text}"),
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused.load(Ordering::Relaxed) < 50 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused.load(Ordering::Relaxed) >= 50,
        "the disk reached the headroom under load ({} requests sent)",
        sent.load(Ordering::Relaxed)
    );
    // Flushes and roll-up passes (every second here) use the headroom, not
    // the refused writes.
    let free = tmpfs.free();
    assert!(free > 1 << 20, "refused before the disk filled: {free} bytes free");
    // Killed mid-load, the senders still sending.
    let first_log = first.log_text();
    let first_rss = first.peak_rss();
    first.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::remove_file(&filler).unwrap();
    let second = Reporter::start(&toml, &store, &dir.join("second.log"), Some(&http)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }

    // Late points: ten hours of the next day (rolled, their minutes kept:
    // rolled again), and the hour straddling the cutoff (merged into its
    // row, its day rolled again).
    let client = reqwest::Client::new();
    let mut late_bodies = vec![runs_request(
        "shop",
        "h1",
        &[("/old".to_owned(), late as u64 * 60_000_000_000 + 1)],
        5,
        0,
    )];
    for n in 0..40 {
        late_bodies.push(load_request(n, next_day + 10 * 60, 10 * 60, "late").0);
    }
    for body in late_bodies {
        let (status, _, text) = post_metrics(&client, &http, body.clone()).await;
        assert_eq!(status, 200, "{text}");
        acknowledged.lock().unwrap().push(body);
    }
    let mut acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let acknowledged_count = acknowledged.len();
    // Wait for the flushes, then: requests whose answer the kill cut off
    // may have been kept (at most one per sender, those under way); they
    // are fed to the reference too.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let unknown = std::mem::take(&mut *unknown.lock().unwrap());
    let mut kept_unanswered = 0;
    for (body, host, minute) in unknown {
        if stored(&store, &host, minute) {
            kept_unanswered += 1;
            acknowledged.push(body);
        }
    }
    assert!(
        kept_unanswered <= 4,
        "{kept_unanswered} requests kept without an answer"
    );

    // The reference: a fresh store fed the same data in one go, rolled once.
    let reference_path = dir.join("reference.db");
    let reference = Arc::new(SqliteStore::open(&reference_path).unwrap());
    reference.write(&seed).unwrap();
    let receiver = Receiver::new(reference.clone(), Default::default(), None).unwrap();
    for body in &acknowledged {
        let request = ExportMetricsServiceRequest::decode(&body[..]).unwrap();
        receiver.metrics(request).await.unwrap();
    }
    reference.flush().unwrap();
    // The seeded minutes are past retention in the reporter's store: the
    // load's transactions are compared by minutes, `GET /old` by hours.
    let load_runs = |store: &Path| {
        let mut runs = minute_runs(store);
        runs.remove("GET /old");
        runs
    };
    let expected = load_runs(&reference_path);

    // The reporter has flushed everything, and rolled the dirty hours.
    assert!(
        eventually(|| load_runs(&store) == expected && rows(&store, "SELECT COUNT(*) FROM dirty") == ["0"]),
        "acknowledged = stored, per transaction: {:?} of {expected:?}; log:\n{}",
        load_runs(&store),
        second.log_text()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak_rss = first_rss.max(second.peak_rss());
    assert!(peak_rss < 300 << 20, "peak RSS {peak_rss} bytes");
    for log in [first_log, second.log_text()] {
        assert!(
            !log.contains("flush failed") && !log.contains("flushing") && !log.contains("roll-up pass stopped"),
            "no flush or roll-up failed for want of space:\n{log}"
        );
    }
    second.kill();
    let pass_at = now_minute();
    reference.roller(retention()).unwrap().run(pass_at).unwrap();
    let runs_acknowledged: u64 = expected.values().sum();
    let runs_stored: u64 = load_runs(&store).values().sum();
    assert_eq!(runs_stored, runs_acknowledged);

    // Roll-ups equal the fresh roll-up.
    let hours_before = meta(&store, "rolled_hours_until").min(meta(&reference_path, "rolled_hours_until")) / 60;
    let days_before = meta(&store, "rolled_days_until").min(meta(&reference_path, "rolled_days_until")) / 1_440;
    let hours = rolled(&store, "histogram_hour", "hour", hours_before);
    assert!(hours.len() > ROUTES, "{} hour rows", hours.len());
    assert_eq!(hours, rolled(&reference_path, "histogram_hour", "hour", hours_before));
    let days = rolled(&store, "histogram_day", "day", days_before);
    assert!(!days.is_empty());
    assert_eq!(days, rolled(&reference_path, "histogram_day", "day", days_before));
    // The straddling hour holds the seeded run and the late point's.
    let straddled = rows(
        &store,
        &format!(
            "SELECT SUM(h.count) FROM histogram_hour h JOIN series s ON s.id = h.series
             WHERE s.txn = 'GET /old' AND h.hour = {}",
            straddling / 60
        ),
    );
    assert_eq!(straddled, ["8"], "3 seeded runs and 5 late ones");

    // Retention ran: minutes past minute_days are gone, their hours kept.
    let cutoff = pass_at - 2 * 1_440 - 5;
    assert_eq!(
        rows(
            &store,
            &format!("SELECT COUNT(*) FROM histogram_minute WHERE minute < {cutoff}")
        ),
        ["0"]
    );
    assert_eq!(
        rows(
            &store,
            &format!("SELECT SUM(count) FROM histogram_hour WHERE hour = {}", old / 60)
        ),
        ["6"]
    );
    eprintln!(
        "{} requests sent, {} acknowledged, {kept_unanswered} kept unanswered ({runs_acknowledged} runs), {} refused for the disk, peak RSS {} MiB, {:?}",
        sent.load(Ordering::Relaxed),
        acknowledged_count,
        refused.load(Ordering::Relaxed),
        peak_rss >> 20,
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
