//! The store under poison, late data, full disks and a second writer,
//! against a real `kuroko serve` (the binary cargo built for these tests):
//!
//! - one hour that cannot be rolled up (error rows whose counts overflow
//!   when summed, as a store written before the ingest limit holds) is
//!   quarantined, logged with its hour, table and SQLite's error, and
//!   counted in `/metrics`, while later hours, days and retention go on;
//! - settings that would lose data, and a second `kuroko serve` on a live
//!   store, are refused at start-up saying what to do;
//! - a late point for an hour whose minutes retention has begun to delete
//!   is merged into the rolled hour;
//! - on a real full disk (a tmpfs), writes get 503 with `Retry-After`
//!   before the disk fills, the log says so a bounded number of times,
//!   everything acknowledged is read back, freeing space resumes ingest, and
//!   a restart on the full disk serves reads.

#[path = "support/kuroko_serve.rs"]
mod kuroko_serve;
#[path = "support/store_serve.rs"]
mod store_serve;
use store_serve::{eventually, minute_runs, now_nanos, post_metrics, rows, runs_request, Reporter, Tmpfs};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Batch, ErrorPoint, HistogramPoint, SeriesKey, Store};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

/// A fresh folder for one test.
fn folder(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kuroko-hostile-store-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn now_minute() -> i64 {
    (now_nanos() / 60_000_000_000) as i64
}

fn key(transaction: &str) -> SeriesKey {
    SeriesKey {
        service: "shop".into(),
        host: "h1".into(),
        transaction: transaction.into(),
        feature: String::new(),
        kind: "web".into(),
        environment: String::new(),
    }
}

/// `runs` runs of 10 ms.
fn runs(runs: u64) -> Histogram {
    let mut histogram = Histogram::empty();
    for _ in 0..runs {
        histogram.record(0.01).unwrap();
    }
    histogram
}

/// Writes `batch` into the store file at `store` through the library, as a
/// reporter would have, and flushes it.
fn write(store: &Path, batch: &Batch) {
    let opened = SqliteStore::open(store).unwrap();
    opened.write(batch).unwrap();
    opened.flush().unwrap();
}

fn config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("kuroko.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Item 3 of the hostile-input issue: one hour whose roll-up fails (two
/// error rows of i64::MAX, which an older build stored, overflow SQLite's
/// SUM) used to abort every pass, so newer hours and days were never rolled
/// and retention never ran, and the log said only `error=store <path>`.
/// Now the hour is quarantined with its cause, the rest goes on, and once
/// the rows are repaired it rolls and leaves the quarantine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_hour_is_quarantined_and_the_rest_rolls_up_and_expires() {
    let dir = folder("quarantine");
    let store = dir.join("kuroko.db");
    let now = now_minute();
    let hour = |ago: i64| (now.div_euclid(60) - ago) * 60;
    let (poisoned, older, recent) = (hour(30), hour(29), hour(3));
    let mut batch = Batch::default();
    for (start, route) in [
        (poisoned, "GET /poisoned"),
        (older, "GET /older"),
        (recent, "GET /recent"),
    ] {
        for minute in [start + 5, start + 6] {
            batch.histograms.push(HistogramPoint {
                key: Arc::new(key(route)),
                minute,
                histogram: runs(2),
            });
        }
    }
    for minute in [poisoned + 10, poisoned + 11] {
        batch.errors.push(ErrorPoint {
            key: key("GET /poisoned"),
            minute,
            error_type: "Overflow".into(),
            message: "counted by a build before the ingest limit".into(),
            location: String::new(),
            count: i64::MAX as u64,
            last_seen: minute as u64 * 60_000_000_000,
            fingerprint: String::new(),
            stacktrace: String::new(),
            trace_id: String::new(),
        });
    }
    write(&store, &batch);

    let toml = config(
        &dir,
        "rollup_interval_seconds = 1\n[limits]\nmax_age_seconds = 86400\n\
         [retention]\nminute_days = 1\nhour_days = 2\nday_days = 3\n",
    );
    let reporter = Reporter::start(&toml, &store, &dir.join("serve.log"), None).unwrap();
    let rolled = |start: i64| {
        rows(
            &store,
            &format!("SELECT COUNT(*) FROM histogram_hour WHERE hour = {}", start / 60),
        ) == ["1"]
    };
    assert!(
        eventually(|| rolled(older) && rolled(recent)),
        "the hours after the poisoned one are rolled up; log:\n{}",
        reporter.log_text()
    );
    let minutes = |start: i64| {
        rows(
            &store,
            &format!(
                "SELECT COUNT(*) FROM histogram_minute WHERE minute >= {start} AND minute < {}",
                start + 60
            ),
        )
    };
    assert!(
        eventually(|| minutes(older) == ["0"]),
        "retention ran: the older hour's minutes, past minute_days, are gone; log:\n{}",
        reporter.log_text()
    );
    assert_eq!(minutes(poisoned), ["2"], "a quarantined hour's minutes are kept");
    assert_eq!(minutes(recent), ["2"]);
    let days = rows(&store, "SELECT COUNT(*) FROM histogram_day");
    assert_ne!(days, ["0"], "days are rolled too");

    let quarantine = rows(
        &store,
        "SELECT resolution, period, table_name, cause FROM rollup_quarantine",
    );
    assert_eq!(quarantine.len(), 1, "{quarantine:?}");
    assert!(
        quarantine[0].starts_with(&format!("hour|{}|error_hour|", poisoned / 60))
            && quarantine[0].contains("integer overflow"),
        "{quarantine:?}"
    );
    let log = reporter.log_text();
    let started = jiff::Timestamp::from_second(poisoned * 60).unwrap().to_string();
    let line = log
        .lines()
        .find(|l| l.contains("quarantined"))
        .unwrap_or_else(|| panic!("no quarantine line in the log:\n{log}"));
    assert!(
        line.contains(&started) && line.contains("table=\"error_hour\"") && line.contains("integer overflow"),
        "the line names the hour, the table and SQLite's error: {line}"
    );
    assert_eq!(
        log.matches("could not roll up").count(),
        1,
        "logged once, not once per pass:\n{log}"
    );
    assert_eq!(reporter.metric("kuroko_reporter_rollup_quarantined").await, 1.0);
    assert_eq!(reporter.metric("kuroko_reporter_rollup_failures_total").await, 1.0);

    // Repaired by hand (as an operator would, with sqlite3): it rolls.
    let repair = rusqlite::Connection::open(&store).unwrap();
    repair.busy_timeout(Duration::from_secs(10)).unwrap();
    repair
        .execute("UPDATE error_minute SET count = 1 WHERE error_type = 'Overflow'", [])
        .unwrap();
    assert!(
        eventually(|| rolled(poisoned) && rows(&store, "SELECT COUNT(*) FROM rollup_quarantine") == ["0"]),
        "the repaired hour rolls and leaves the quarantine; log:\n{}",
        reporter.log_text()
    );
    assert_eq!(
        rows(
            &store,
            &format!("SELECT count FROM error_hour WHERE hour = {}", poisoned / 60)
        ),
        ["2"]
    );
    assert!(reporter.wait_for_log("out of quarantine", Duration::from_secs(10)));
    if std::env::var_os("KUROKO_SHOW_LOG").is_some() {
        eprintln!("{}", reporter.log_text());
    }
    drop(reporter);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 6: `max_age_seconds` past `minute_days` (points written into
/// minutes retention is deleting) is refused at start-up, saying what to
/// change.
#[test]
fn settings_that_would_lose_data_are_refused_at_start_up() {
    let dir = folder("settings");
    let toml = config(
        &dir,
        "[limits]\nmax_age_seconds = 864000\n[retention]\nminute_days = 8\n",
    );
    let refused = Reporter::start(&toml, &dir.join("kuroko.db"), &dir.join("serve.log"), None)
        .err()
        .expect("kuroko serve refuses the settings");
    assert!(
        refused.contains("max_age_seconds = 864000")
            && refused.contains("at most 691200")
            && refused.contains("minute_days to at least 10"),
        "{refused}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 9: a second `kuroko serve` on a live store started and answered
/// every write 503. It is refused at start-up, naming the lock and the pid
/// that holds it.
#[test]
fn a_second_reporter_on_a_live_store_is_refused_naming_the_first() {
    let dir = folder("second");
    let store = dir.join("kuroko.db");
    let toml = config(&dir, "");
    let first = Reporter::start(&toml, &store, &dir.join("first.log"), None).unwrap();
    let refused = Reporter::start(&toml, &store, &dir.join("second.log"), None)
        .err()
        .expect("the second reporter is refused");
    assert!(
        refused.contains("already served by another kuroko process")
            && refused.contains(&format!("(pid {})", first.child.id()))
            && refused.contains("kuroko.db-ingest/lock"),
        "{refused}"
    );
    drop(first);
    // Once the first is gone, the store is free.
    let again = Reporter::start(&toml, &store, &dir.join("again.log"), None);
    assert!(again.is_ok(), "{:?}", again.err());
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[journal] fsync = "batch"` syncs every acknowledged batch to the disk
/// before answering (counted in `/metrics`), and the default syncs none;
/// either way a kill -9 loses nothing acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_fsync_batch_syncs_each_acknowledged_batch_and_never_syncs_none() {
    let client = reqwest::Client::new();
    for (setting, synced) in [("fsync = \"batch\"", true), ("fsync = \"never\"", false)] {
        let dir = folder(if synced { "fsync-batch" } else { "fsync-never" });
        let store = dir.join("kuroko.db");
        let toml = config(&dir, &format!("[journal]\n{setting}\n"));
        let reporter = Reporter::start(&toml, &store, &dir.join("serve.log"), None).unwrap();
        let before = reporter.metric("kuroko_reporter_journal_fsyncs_total").await;
        let minute = now_minute() as u64;
        for request in 0..5u64 {
            let point = (format!("/r{request}"), minute * 60_000_000_000 + 1);
            let (status, _, answer) =
                post_metrics(&client, &reporter.http, runs_request("shop", "h1", &[point], 2, 0)).await;
            assert_eq!(status, 200, "{answer}");
        }
        let after = reporter.metric("kuroko_reporter_journal_fsyncs_total").await;
        if synced {
            assert!(
                after - before >= 5.0,
                "{setting}: {before} then {after} syncs for 5 batches"
            );
        } else {
            assert_eq!((before, after), (0.0, 0.0), "{setting}");
        }
        reporter.kill();
        // Opening the store replays its journal.
        let reopened = SqliteStore::open(&store).unwrap();
        reopened.flush().unwrap();
        drop(reopened);
        let runs: u64 = minute_runs(&store).values().sum();
        assert_eq!(runs, 10, "{setting}: every acknowledged run is back after kill -9");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Item 6: a late point for an hour that is rolled up and whose first
/// minutes retention has deleted is merged into the hour's row (rebuilt
/// from the minutes left, the hour would lose the runs rolled before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_point_merges_into_its_rolled_hour() {
    let dir = folder("late");
    let store = dir.join("kuroko.db");
    // Two minutes younger than the oldest a point may be (max_age_seconds
    // = 1 day), in an hour that began before the minutes kept (in 3 minutes
    // of an hour, none does: then this waits for the next).
    let (late, hour_start) = loop {
        let late = now_minute() - 1_440 + 2;
        let hour_start = late.div_euclid(60) * 60;
        if late - hour_start >= 3 {
            break (late, hour_start);
        }
        std::thread::sleep(Duration::from_secs(10));
    };
    write(
        &store,
        &Batch {
            histograms: vec![HistogramPoint {
                key: Arc::new(key("GET /late")),
                minute: hour_start,
                histogram: runs(5),
            }],
            ..Batch::default()
        },
    );
    let toml = config(
        &dir,
        "rollup_interval_seconds = 1\n[limits]\nmax_age_seconds = 86400\n\
         [retention]\nminute_days = 1\nhour_days = 2\nday_days = 3\n",
    );
    let reporter = Reporter::start(&toml, &store, &dir.join("serve.log"), None).unwrap();
    let hour_count = || {
        rows(
            &store,
            &format!("SELECT SUM(count) FROM histogram_hour WHERE hour = {}", hour_start / 60),
        )
    };
    assert!(eventually(|| hour_count() == ["5"]), "the hour is rolled");
    assert!(
        eventually(|| rows(
            &store,
            &format!("SELECT COUNT(*) FROM histogram_minute WHERE minute = {hour_start}")
        ) == ["0"]),
        "retention deleted the hour's first minute"
    );
    let client = reqwest::Client::new();
    let body = runs_request(
        "shop",
        "h1",
        &[("/late".to_owned(), late as u64 * 60_000_000_000 + 1)],
        3,
        0,
    );
    let (status, _, answer) = post_metrics(&client, &reporter.http, body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        eventually(|| hour_count() == ["8"]),
        "the late runs are merged into the rolled hour: {:?}",
        hour_count()
    );
    drop(reporter);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes zeros to `path` until `free` reports at most `leave` bytes free
/// (or the disk is full): the rest of a real disk taken by someone else.
fn fill(path: &Path, tmpfs: &Tmpfs, leave: u64) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = vec![0u8; 256 << 10];
    while tmpfs.free() > leave {
        let take = (tmpfs.free() - leave).min(chunk.len() as u64) as usize;
        if file.write_all(&chunk[..take.max(4096)]).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
}

/// `routes` points at minute `minute`, two runs each, as one request.
fn minute_request(minute: i64, routes: usize) -> Vec<u8> {
    let time = minute as u64 * 60_000_000_000 + 30_000_000_000;
    let points: Vec<(String, u64)> = (0..routes).map(|r| (format!("/r{r}"), time)).collect();
    runs_request("shop", "h1", &points, 2, 0)
}

/// Sum of the runs stored in minute rows.
fn stored_runs(store: &Path) -> u64 {
    minute_runs(store).values().sum()
}

/// Item 8 on a real full disk (a 32 MB tmpfs): the journal used to fill the
/// disk before the first flush, which then could not get space; the
/// reporter logged one ERROR per refused request and would not restart.
/// Now writes get 503 with `Retry-After` while the headroom is still free,
/// the log says so a bounded number of times, what was acknowledged is all
/// read back, freeing space resumes ingest, and a restart on the full disk
/// serves the UI and the API (and refuses writes, with the reason).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_before_it_fills_and_still_serves_reads() {
    const MIN_FREE: u64 = 8 << 20;
    let tmpfs = Tmpfs::mount("full", 32);
    let dir = folder("full");
    let store = tmpfs.dir.join("kuroko.db");
    let filler = tmpfs.dir.join("someone-elses-file");
    let toml = config(&dir, &format!("[limits]\nmin_free_bytes = {MIN_FREE}\n"));
    let reporter = Reporter::start(&toml, &store, &dir.join("serve.log"), None).unwrap();
    // 6 MB above the headroom left for the store.
    fill(&filler, &tmpfs, MIN_FREE + (6 << 20));

    let client = reqwest::Client::new();
    let now = now_minute();
    let (mut acknowledged, mut refused) = (0u64, None);
    for k in 0..3_000i64 {
        let (status, retry, body) = post_metrics(&client, &reporter.http, minute_request(now - 1 - k, 400)).await;
        match status {
            200 => acknowledged += 400 * 2,
            _ => {
                refused = Some((status, retry, body));
                break;
            }
        }
    }
    let (status, retry, body) = refused.expect("writes are refused before 3,000 requests of 400 new rows fill 6 MB");
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("30"), "a Retry-After");
    assert!(
        body.contains("nearly full") && body.contains("min_free_bytes"),
        "the reason: {body}"
    );
    // Refused while the flush of what the journal holds still fits: the
    // headroom is untouched.
    assert!(acknowledged > 0);
    let free = tmpfs.free();
    assert!(
        free > MIN_FREE,
        "refused before the disk filled: {free} bytes still free (the headroom is {MIN_FREE})"
    );
    eprintln!("refused after {acknowledged} runs acknowledged, {free} bytes free");
    assert!(
        eventually(|| stored_runs(&store) == acknowledged),
        "everything acknowledged is flushed and read back: {} of {acknowledged}",
        stored_runs(&store)
    );
    // Someone else's file then grows into the headroom: every write is
    // refused while it lasts.
    fill(&filler, &tmpfs, MIN_FREE / 2);
    // Over gRPC: UNAVAILABLE, with the reason.
    let mut grpc = MetricsServiceClient::connect(format!("http://{}", reporter.grpc))
        .await
        .unwrap();
    let request = ExportMetricsServiceRequest::decode(minute_request(now - 4_000, 10).as_slice()).unwrap();
    let status = grpc.export(request).await.expect_err("refused over gRPC too");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("nearly full"), "{status:?}");
    // A client retrying hard: each refused, none logged on its own.
    for k in 0..300 {
        let (status, retry, _) = post_metrics(&client, &reporter.http, minute_request(now - 5_000 - k, 10)).await;
        assert_eq!((status, retry.as_deref()), (503, Some("30")));
    }
    assert_eq!(stored_runs(&store), acknowledged, "refused writes stored nothing");
    assert!(reporter.metric("kuroko_reporter_writes_refused_disk_total").await >= 302.0);
    assert_eq!(reporter.metric("kuroko_reporter_store_disk_low").await, 1.0);
    let log = reporter.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .count();
    assert!(
        log.contains("disk space low: refusing writes") && lines <= 6,
        "one line for the condition, not one per refused request ({lines} lines):\n{log}"
    );

    // Space freed: ingest resumes.
    std::fs::remove_file(&filler).unwrap();
    let (status, _, body) = post_metrics(&client, &reporter.http, minute_request(now - 6_000, 10)).await;
    assert_eq!(status, 200, "{body}");
    acknowledged += 20;
    assert!(reporter.wait_for_log("accepting writes again", Duration::from_secs(10)));
    assert!(eventually(|| stored_runs(&store) == acknowledged));

    // Restarted on a disk filled by someone else (to the last byte): reads
    // are served, writes refused with the reason.
    let http = reporter.http.clone();
    reporter.kill();
    fill(&filler, &tmpfs, 0);
    let restarted = Reporter::start(&toml, &store, &dir.join("restart.log"), Some(&http))
        .unwrap_or_else(|log| panic!("the reporter starts on a full disk: {log}"));
    let api = client
        .get(format!("http://{http}/api/v1/slowest?since=7d"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    assert!(
        api.text().await.unwrap().contains("GET /r0"),
        "the API answers from the store"
    );
    let page = client.get(format!("http://{http}/")).send().await.unwrap();
    assert_eq!(page.status(), 200, "the web UI answers");
    let (status, retry, body) = post_metrics(&client, &http, minute_request(now - 7_000, 10)).await;
    assert_eq!((status, retry.as_deref()), (503, Some("30")), "{body}");
    assert!(
        restarted.log_text().contains("starting on a nearly full disk"),
        "{}",
        restarted.log_text()
    );
    assert_eq!(stored_runs(&store), acknowledged, "nothing acknowledged was lost");
    if std::env::var_os("KUROKO_SHOW_LOG").is_some() {
        eprintln!(
            "{}\n{}",
            std::fs::read_to_string(dir.join("serve.log")).unwrap(),
            restarted.log_text()
        );
    }
    drop(restarted);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 8 as reported: with no headroom (`min_free_bytes = 0`) a disk full
/// to the last byte refused every journal append, and the reporter wrote
/// one ERROR per refused request (167,812 lines in 20 s). Each is now a 503
/// with `Retry-After`, logged as one condition; once space is freed,
/// ingest resumes and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_headroom_a_full_disk_is_one_log_line_not_one_per_request() {
    let tmpfs = Tmpfs::mount("no-headroom", 16);
    let dir = folder("no-headroom");
    let store = tmpfs.dir.join("kuroko.db");
    let filler = tmpfs.dir.join("someone-elses-file");
    let toml = config(&dir, "[limits]\nmin_free_bytes = 0\n");
    let reporter = Reporter::start(&toml, &store, &dir.join("serve.log"), None).unwrap();
    let client = reqwest::Client::new();
    let now = now_minute();
    let (status, _, body) = post_metrics(&client, &reporter.http, minute_request(now - 1, 10)).await;
    assert_eq!(status, 200, "{body}");
    // Filled before that request is flushed: its flush finds no space.
    fill(&filler, &tmpfs, 0);
    // The journal's last page may still take a few records.
    let (mut refused, mut acknowledged) = (0, 20);
    for k in 0..2_000 {
        let (status, retry, body) = post_metrics(&client, &reporter.http, minute_request(now - 2 - k, 10)).await;
        match status {
            200 => acknowledged += 20,
            _ => {
                assert!(
                    status == 503 && retry.is_some() && body.contains("nearly full"),
                    "{status} {retry:?} {body}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 1_900, "{refused} of 2,000 refused");
    // Past the first flush's five seconds (the flush thread retries).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let log = reporter.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .count();
    assert!(lines <= 8, "{refused} refusals, {lines} lines:\n{log}");
    std::fs::remove_file(&filler).unwrap();
    let (status, _, body) = post_metrics(&client, &reporter.http, minute_request(now - 3_000, 10)).await;
    assert_eq!(status, 200, "{body}");
    acknowledged += 20;
    assert!(
        eventually(|| stored_runs(&store) == acknowledged),
        "{} of {acknowledged}",
        stored_runs(&store)
    );
    drop(reporter);
    let _ = std::fs::remove_dir_all(&dir);
}
