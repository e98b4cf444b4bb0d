//! `kuroko sql` against a store with known data: every query of
//! `docs/queries.md` runs and tells the story the document tells, the
//! histogram functions agree with the exact samples and with
//! `Histogram::merge`, writes and bad blobs are refused with clear errors,
//! and the real binary prints CSV.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::sql::{self, Format, SqlError};
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Batch, CounterPoint, ErrorPoint, HistogramPoint, SeriesKey, Store, TracePoint};

/// The store every test reads, built once.
struct Fixture {
    path: PathBuf,
    /// Kept open: `kuroko sql` reads beside a writer.
    _store: SqliteStore,
    /// Every sample, per (transaction, host).
    samples: BTreeMap<(String, String), Vec<f64>>,
    /// Every histogram point written.
    points: Vec<HistogramPoint>,
}

#[path = "support/seeded.rs"]
mod seeded;
use seeded::Rng;

fn key(service: &str, host: &str, transaction: &str, feature: &str) -> SeriesKey {
    SeriesKey {
        service: service.into(),
        host: host.into(),
        transaction: transaction.into(),
        feature: feature.into(),
        kind: "web".into(),
        environment: "production".into(),
    }
}

const DB_LABELS: &str = "kuroko.segment.kind=database,kuroko.segment.name=SELECT cards";
const PAYMENTS_LABELS: &str = "kuroko.segment.kind=external,kuroko.segment.name=POST payments";

/// Three days of a small shop, every five minutes: `POST /cards` got slower
/// six hours ago (a query lost its index: more time in the database), host
/// web-3 is slow for `GET /cards/{id}` and times out for a day, `GET /cards`
/// has a tail over one second. Rolled up with one day of minutes and two of
/// hours kept, so that all three resolutions hold data.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sql-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kuroko.db");
        let store = SqliteStore::open(&path).unwrap();
        let now = (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 60) as i64;
        let series = [
            key("cards-api", "web-1", "GET /cards/{id}", "cards"),
            key("cards-api", "web-2", "GET /cards/{id}", "cards"),
            key("cards-api", "web-3", "GET /cards/{id}", "cards"),
            key("cards-api", "web-1", "POST /cards", "cards"),
            key("cards-api", "web-2", "POST /cards", "cards"),
            key("cards-api", "web-1", "GET /cards", "cards"),
            key("cards-api", "web-2", "GET /cards", "cards"),
            key("billing-api", "bill-1", "POST /invoices", "billing"),
        ];
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut batch = Batch::default();
        let mut samples: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        for minute in (now - 3 * 1_440 + 1..now).step_by(5) {
            let (recent, regressed) = (minute >= now - 1_440, minute >= now - 360);
            for key in &series {
                let (median, sigma, database) = match (key.transaction.as_str(), key.host.as_str()) {
                    ("GET /cards/{id}", "web-3") if recent => (0.090, 0.4, 0.5),
                    ("GET /cards/{id}", _) => (0.030, 0.4, 0.5),
                    ("POST /cards", _) if regressed => (0.400, 0.3, 0.7),
                    ("POST /cards", _) => (0.080, 0.3, 0.25),
                    ("GET /cards", _) => (0.150, 0.5, 0.4),
                    _ => (0.300, 0.3, 0.2),
                };
                let mut histogram = Histogram::empty();
                for _ in 0..10 {
                    let value = if key.transaction == "GET /cards" && rng.uniform() < 0.04 {
                        1.2 + 1.8 * rng.uniform()
                    } else {
                        rng.lognormal(median, sigma)
                    };
                    histogram.record(value).unwrap();
                    samples
                        .entry((key.transaction.clone(), key.host.clone()))
                        .or_default()
                        .push(value);
                }
                let counter = |labels: &str, share: f64| CounterPoint {
                    key: key.clone().into(),
                    minute,
                    name: "kuroko.segment.exclusive_duration".into(),
                    labels: labels.into(),
                    value: share * histogram.sum,
                };
                batch.counters.push(counter(DB_LABELS, database));
                if key.transaction.starts_with("POST") {
                    batch.counters.push(counter(PAYMENTS_LABELS, 0.15));
                }
                let timeouts = match key.host.as_str() {
                    "web-3" if recent => 3,
                    _ if rng.uniform() < 0.1 => 1,
                    _ => 0,
                };
                if key.transaction == "GET /cards/{id}" && timeouts > 0 {
                    batch.errors.push(ErrorPoint {
                        key: key.clone(),
                        minute,
                        error_type: "TimeoutError".into(),
                        message: "deadline exceeded calling cards-db".into(),
                        location: "src/cards.rs:88".into(),
                        count: timeouts,
                        last_seen: (minute as u64 * 60 + 30) * 1_000_000_000,
                        fingerprint: String::new(),
                        stacktrace: String::new(),
                        trace_id: String::new(),
                    });
                }
                if key.transaction == "POST /cards" && regressed {
                    let start = minute as u64 * 60_000_000_000;
                    let duration_ns = (histogram.max * 1e9) as u64;
                    batch.traces.push(TracePoint {
                        key: key.clone(),
                        trace_id: format!("{:032x}", start + 7),
                        start,
                        duration: histogram.max,
                        spans: format!(
                            r#"[{{"name":"POST /cards","kind":"web","span_id":"01","start":{start},"duration_ns":{duration_ns},"attributes":{{}}}},{{"name":"SELECT cards","kind":"database","span_id":"02","start":{},"duration_ns":{},"attributes":{{"db.system":"postgresql"}}}}]"#,
                            start + 1_000_000,
                            duration_ns * 7 / 10
                        ),
                    });
                }
                batch.histograms.push(HistogramPoint {
                    key: key.clone().into(),
                    minute,
                    histogram,
                });
            }
        }
        store.write(&batch).unwrap();
        store.flush().unwrap();
        let mut roller = store
            .roller(Retention {
                minute_days: 1,
                hour_days: 2,
                day_days: 30,
            })
            .unwrap();
        let pass = roller.run(now).unwrap();
        assert!(pass.days > 0 && pass.deleted > 0, "{pass:?}: days rolled, old minutes and hours cut");
        Fixture {
            path,
            _store: store,
            samples,
            points: batch.histograms,
        }
    })
}

fn query(sql: &str) -> String {
    sql::run(&fixture().path, sql, Format::Csv).unwrap_or_else(|e| panic!("{e}\n{sql}"))
}

/// The single value a one-row, one-column query returns.
fn value(sql: &str) -> String {
    let out = query(sql);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    lines[1].to_owned()
}

fn number(sql: &str) -> f64 {
    value(sql).parse().unwrap()
}

const MERGE: &str = "hist_merge(count, sum, min, max, scale, zero_count, zero_threshold, buckets, estimated)";

/// The ```sql blocks of docs/queries.md.
fn documented_queries() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/queries.md")).unwrap();
    let mut queries = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sql") => current = Some(String::new()),
            (Some(sql), "```") => {
                queries.push(std::mem::take(sql));
                current = None;
            }
            (Some(sql), _) => {
                sql.push_str(line);
                sql.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```sql block");
    queries
}

#[test]
fn every_documented_query_runs_and_tells_the_documented_story() {
    let queries = documented_queries();
    assert!(queries.len() >= 8, "{} queries", queries.len());
    // What the story says each finding is: (a fragment of the query, its first row).
    let findings = [
        ("AS p95_ms_today", "POST /cards"),
        ("txn = 'GET /cards/{id}'", "web-3"),
        ("database_pct DESC", "POST /cards"),
        ("pct_over_1s DESC", "GET /cards"),
        ("AS timeouts", "web-3"),
    ];
    let mut found = 0;
    for sql in &queries {
        let table = sql::run(&fixture().path, sql, Format::Table).unwrap_or_else(|e| panic!("{e}\n{sql}"));
        let footer = table.lines().last().unwrap();
        assert!(footer != "(0 rows)", "no rows: the example shows nothing\n{sql}");
        let json = sql::run(&fixture().path, sql, Format::Json).unwrap();
        let rows: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
        assert!(rows.as_array().is_some_and(|r| !r.is_empty()));
        for (fragment, first) in findings {
            if sql.contains(fragment) {
                let row = table.lines().nth(2).unwrap();
                assert!(row.contains(first), "expected {first} first:\n{table}\n{sql}");
                found += 1;
            }
        }
    }
    assert_eq!(found, findings.len(), "each finding's query is in the document");
}

fn exact_quantile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

#[test]
fn quantiles_are_within_one_percent_of_the_exact_samples() {
    let samples = &fixture().samples[&("POST /cards".to_owned(), "web-1".to_owned())];
    for q in [0.5, 0.95, 0.99] {
        let read = number(&format!(
            "SELECT hist_quantile({MERGE}, {q}) FROM histograms_best WHERE txn = 'POST /cards' AND host = 'web-1'"
        ));
        let exact = exact_quantile(samples, q);
        assert!((read - exact).abs() <= 0.01 * exact, "p{q}: {read} vs exact {exact}");
    }
    let sql =
        |f: &str| format!("SELECT {f}({MERGE}) FROM histograms_best WHERE txn = 'POST /cards' AND host = 'web-1'");
    assert_eq!(value(&sql("hist_count")), samples.len().to_string());
    let max = samples.iter().copied().fold(0.0, f64::max);
    assert_eq!(number(&sql("hist_max")), max, "max is exact");
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    assert!((number(&sql("hist_mean")) - mean).abs() < 1e-9 * mean);
    let variance = samples.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / samples.len() as f64;
    let stddev = number(&sql("hist_stddev"));
    assert!(
        (stddev - variance.sqrt()).abs() < 0.01 * variance.sqrt(),
        "{stddev} vs {}",
        variance.sqrt()
    );
}

#[test]
fn merging_over_hosts_in_sql_equals_histogram_merge_and_best_views_count_every_run_once() {
    let fixture = fixture();
    let mut expected = Histogram::empty();
    for point in fixture.points.iter().filter(|p| p.key.transaction == "GET /cards/{id}") {
        expected.merge(&point.histogram);
    }
    let out = sql::open(&fixture.path)
        .unwrap()
        .query_row(
            &format!("SELECT {MERGE} FROM histograms_best WHERE txn = 'GET /cards/{{id}}'"),
            [],
            |row| row.get::<_, Vec<u8>>(0),
        )
        .unwrap();
    let merged = Histogram::from_blob(&out).unwrap();
    assert_eq!(
        (
            merged.count,
            merged.zero_count,
            merged.scale,
            merged.min,
            merged.max,
            merged.estimated
        ),
        (
            expected.count,
            expected.zero_count,
            expected.scale,
            expected.min,
            expected.max,
            expected.estimated
        )
    );
    assert_eq!(
        merged.iter_buckets().collect::<Vec<_>>(),
        expected.iter_buckets().collect::<Vec<_>>()
    );
    assert!((merged.sum - expected.sum).abs() < 1e-9 * expected.sum);

    // Merging merged histograms again (per host, then over hosts) changes nothing.
    let twice = number(&format!(
        "SELECT hist_count(hist_merge(h)) FROM (SELECT host, {MERGE} AS h FROM histograms_best
         WHERE txn = 'GET /cards/{{id}}' GROUP BY host)"
    ));
    assert_eq!(twice, expected.count as f64);

    // All three resolutions hold data, so the plain view counts runs more than once.
    let total = fixture.points.iter().map(|p| p.histogram.count).sum::<u64>();
    assert_eq!(value("SELECT SUM(count) FROM histograms_best"), total.to_string());
    assert_eq!(
        value("SELECT COUNT(DISTINCT resolution) FROM histograms_best"),
        "3",
        "the fixture reaches past minute and hour retention"
    );
    assert!(number("SELECT SUM(count) FROM histograms") > total as f64);
    let counted = number(
        "SELECT SUM(value) FROM counters_best WHERE name = 'kuroko.segment.exclusive_duration'
         AND label_value(labels, 'kuroko.segment.kind') = 'database'",
    );
    assert!(counted > 0.0);
}

#[test]
fn the_share_over_one_second_is_exact() {
    let samples: Vec<f64> = fixture()
        .samples
        .iter()
        .filter(|((txn, _), _)| txn == "GET /cards")
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    let exact = samples.iter().filter(|&&v| v > 1.0).count() as f64 / samples.len() as f64;
    assert!(exact > 0.02, "the fixture has a tail: {exact}");
    let read = number(&format!(
        "SELECT hist_fraction_above({MERGE}, 1.0) FROM histograms_best WHERE txn = 'GET /cards'"
    ));
    assert!((read - exact).abs() < 1e-12, "{read} vs {exact}");
    let half = number(&format!(
        "SELECT hist_fraction_above({MERGE}, 0.5) FROM histograms_best WHERE txn = 'GET /cards'"
    ));
    assert!(half > read && half < 1.0);
}

#[test]
fn writes_are_refused_as_read_only() {
    for write in [
        "DELETE FROM series",
        "INSERT INTO meta VALUES ('x', 'y')",
        "DROP TABLE histogram_minute",
        "CREATE TABLE t (a)",
    ] {
        let error = sql::run(&fixture().path, write, Format::Table).unwrap_err();
        assert!(matches!(error, SqlError::ReadOnly), "{write}: {error}");
        assert!(error.to_string().contains("opens the store read-only"), "{error}");
    }
    assert_eq!(value("SELECT COUNT(*) > 0 FROM series"), "1", "nothing was deleted");
    let two = sql::run(&fixture().path, "SELECT 1; SELECT 2", Format::Table).unwrap_err();
    assert!(matches!(two, SqlError::MultipleStatements), "{two}");
    assert!(matches!(
        sql::run(&fixture().path, "  ; ", Format::Table),
        Err(SqlError::Empty)
    ));
    assert!(matches!(
        sql::run(&fixture().path, "-- only a comment", Format::Table),
        Err(SqlError::Empty)
    ));
}

#[test]
fn bad_blobs_and_arguments_are_errors_that_say_why() {
    let fails = |sql: &str, expected: &str| {
        let error = sql::run(&fixture().path, sql, Format::Table).unwrap_err().to_string();
        assert!(error.contains(expected), "{sql}: {error}");
    };
    fails("SELECT hist_quantile(x'4b4801', 0.5)", "not a histogram");
    fails("SELECT hist_mean(x'00ff00ff')", "not a histogram");
    fails("SELECT hist_count(buckets) FROM histograms LIMIT 1", "not a histogram");
    fails("SELECT hist_quantile('fast', 0.5)", "must be a histogram BLOB");
    fails(
        "SELECT hist_merge(1, 0.1, 0.1, 0.1, 7, 0, 0, x'80', 0)",
        "buckets blob is corrupt",
    );
    fails(
        "SELECT hist_merge(2, 0.1, 0.1, 0.1, 7, 0, 0, x'0201', 0)",
        "bucket counts add up to 1, but count is 2",
    );
    fails("SELECT hist_merge(1, 0.1, 0.1, 0.1, 99, 0, 0, x'0201', 0)", "scale 99");
    fails(
        "SELECT hist_merge(1, 'a', 0.1, 0.1, 7, 0, 0, x'0201', 0)",
        "(sum) must be a number",
    );
    fails(
        &format!("SELECT hist_quantile({MERGE}, 95) FROM histograms"),
        "between 0 and 1",
    );
    fails(
        &format!("SELECT hist_fraction_above({MERGE}, -1) FROM histograms"),
        "0 or more",
    );
    // Blobs that are not histograms are shown by length, histograms by count.
    let shown = sql::run(
        &fixture().path,
        &format!("SELECT buckets, {MERGE} AS h FROM histograms WHERE resolution = 'day' GROUP BY buckets LIMIT 1"),
        Format::Table,
    )
    .unwrap();
    assert!(shown.contains("<blob ") && shown.contains("<histogram n="), "{shown}");
    assert_eq!(
        value("SELECT hist_quantile(NULL, 0.5) IS NULL"),
        "1",
        "NULL in, NULL out"
    );
}

#[test]
fn the_kuroko_binary_prints_csv() {
    let path = &fixture().path;
    let sql = format!(
        "SELECT host, hist_count({MERGE}) AS runs FROM histograms_best WHERE txn = 'GET /cards/{{id}}' GROUP BY host ORDER BY host"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["sql", "--format", "csv", "--store"])
        .arg(path)
        .arg(&sql)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let runs = |host: &str| fixture().samples[&("GET /cards/{id}".to_owned(), host.to_owned())].len();
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "host,runs\nweb-1,{}\nweb-2,{}\nweb-3,{}\n",
            runs("web-1"),
            runs("web-2"),
            runs("web-3")
        )
    );

    // From standard input, with the store from KUROKO_STORE; a write fails with the reason.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["sql", "--format", "csv", "-"])
        .env("KUROKO_STORE", path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"DELETE FROM series").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("opens the store read-only"), "{stderr}");
}

#[test]
fn a_clickhouse_store_is_sent_to_its_own_sql_not_opened_as_a_file() {
    let dir = std::env::temp_dir().join(format!("kuroko-sql-clickhouse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args([
            "sql",
            "--store",
            "clickhouse://kuroko:s3cret@ch.internal:8123/fleet",
            "SELECT 1",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("clickhouse-client --host ch.internal --database fleet"),
        "says what to use instead: {stderr}"
    );
    assert!(!stderr.contains("s3cret"), "no password shown: {stderr}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no file made of the URL");
    std::fs::remove_dir_all(&dir).unwrap();
}
