//! The embedded store's schema migrations: a file written by an older
//! build keeps its rows and journal.

use rusqlite::Connection;

use super::super::schema::has_column;
use super::super::*;
use super::{histogram, key};
use crate::histogram::Histogram;
use crate::store::journal::Journal;
use crate::store::HistogramPoint;
use crate::store::{Batch, Filter, SeriesKey, Store, TracePoint};

/// A version 2 file, its error rows keyed without trace or stack, and a
/// journal segment a crash of that build left unflushed, in its layout.
#[test]
fn a_version_2_file_keeps_its_errors_and_replays_its_journal() {
    #[derive(serde::Serialize)]
    struct OldError {
        key: SeriesKey,
        minute: i64,
        error_type: String,
        message: String,
        location: String,
        count: u64,
        last_seen: u64,
        fingerprint: String,
    }
    #[derive(serde::Serialize)]
    struct OldRecord {
        histograms: Vec<(i64, i64, Histogram)>,
        #[serde(with = "crate::buckets::serde_bytes_compat")]
        counters: Vec<u8>,
        errors: Vec<(i64, OldError)>,
        traces: Vec<(i64, TracePoint)>,
    }
    let dir = std::env::temp_dir().join(format!("kuroko-migrate-v3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.db");
    {
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '2');
                 CREATE TABLE series (
                     id INTEGER PRIMARY KEY,
                     service TEXT NOT NULL, host TEXT NOT NULL, txn TEXT NOT NULL, feature TEXT NOT NULL,
                     kind TEXT NOT NULL, environment TEXT NOT NULL DEFAULT '',
                     UNIQUE (service, host, txn, feature, kind, environment));
                 INSERT INTO series VALUES (7, 'cards-api', 'a', 'GET /cards/{id}', 'cards', 'web', '');
                 CREATE TABLE error_minute (
                     series INTEGER NOT NULL, minute INTEGER NOT NULL,
                     error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
                     count INTEGER NOT NULL, last_seen INTEGER NOT NULL, fingerprint TEXT NOT NULL DEFAULT '',
                     PRIMARY KEY (series, minute, error_type, message, location)) WITHOUT ROWID;
                 INSERT INTO error_minute VALUES (7, 10, 'E', 'old', 'src/a.rs:1', 3, 600000000000, 'fp');
                 CREATE TABLE error_hour (
                     series INTEGER NOT NULL, hour INTEGER NOT NULL,
                     error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
                     count INTEGER NOT NULL, last_seen INTEGER NOT NULL, fingerprint TEXT NOT NULL DEFAULT '',
                     first_minute INTEGER,
                     PRIMARY KEY (series, hour, error_type, message, location)) WITHOUT ROWID;
                 INSERT INTO error_hour VALUES (7, 0, 'E', 'older', 'src/a.rs:1', 2, 60000000000, '', 1);
                 INSERT INTO error_hour VALUES (7, 0, 'E', 'oldest', 'src/a.rs:1', 1, 60000000000, '', 1);",
        )
        .unwrap();
        let record = OldRecord {
            histograms: vec![],
            counters: vec![],
            errors: vec![(
                7,
                OldError {
                    key: key("a"),
                    minute: 11,
                    error_type: "E".into(),
                    message: "journaled".into(),
                    location: "src/a.rs:1".into(),
                    count: 4,
                    last_seen: 660_000_000_000,
                    fingerprint: String::new(),
                },
            )],
            traces: vec![],
        };
        let bytes = postcard::to_allocvec(&record).unwrap();
        let mut segment = (bytes.len() as u32).to_le_bytes().to_vec();
        segment.extend_from_slice(&bytes);
        let journal = Journal::dir_of(&path);
        std::fs::create_dir_all(&journal).unwrap();
        std::fs::write(journal.join(format!("{:020}.log", 1)), segment).unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let mut found: Vec<(String, u64, String, String)> = store
        .errors(&Filter::default(), 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.message, e.count, e.fingerprint, e.stacktrace.to_string()))
        .collect();
    found.sort();
    let row = |m: &str, c, f: &str| (m.to_owned(), c, f.to_owned(), String::new());
    assert_eq!(found, [row("journaled", 4, ""), row("old", 3, "fp")]);
    let connection = store.connection();
    let hours: i64 = connection
        .query_row("SELECT COUNT(*) FROM error_hour WHERE hour = 0", [], |r| r.get(0))
        .unwrap();
    assert_eq!(hours, 2, "the hour rows are kept");
    let version: String = connection
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
    for table in ["error_minute", "error_hour"] {
        for column in ["trace_id", "stack_hash", "stacktrace"] {
            assert!(has_column(&connection, table, column).unwrap(), "{table}.{column}");
        }
    }
    drop(connection);
    drop(store);
    // Opening again replays nothing more and changes nothing.
    assert_eq!(
        SqliteStore::open(&path)
            .unwrap()
            .errors(&Filter::default(), 0, 100)
            .unwrap()
            .len(),
        2
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn error_tables_gain_fingerprints_and_keep_their_rows() {
    let dir = std::env::temp_dir().join(format!("kuroko-migrate-fp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.db");
    {
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '2');
                 CREATE TABLE series (
                     id INTEGER PRIMARY KEY,
                     service TEXT NOT NULL, host TEXT NOT NULL, txn TEXT NOT NULL, feature TEXT NOT NULL,
                     kind TEXT NOT NULL, environment TEXT NOT NULL DEFAULT '',
                     UNIQUE (service, host, txn, feature, kind, environment));
                 INSERT INTO series VALUES (7, 'cards-api', 'a', 'GET /cards/{id}', 'cards', 'web', '');
                 CREATE TABLE error_minute (
                     series INTEGER NOT NULL, minute INTEGER NOT NULL,
                     error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
                     count INTEGER NOT NULL, last_seen INTEGER NOT NULL,
                     PRIMARY KEY (series, minute, error_type, message, location)) WITHOUT ROWID;
                 INSERT INTO error_minute VALUES (7, 10, 'E', 'old', 'src/a.rs:1', 3, 600000000000);
                 CREATE TABLE error_hour (
                     series INTEGER NOT NULL, hour INTEGER NOT NULL,
                     error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
                     count INTEGER NOT NULL, last_seen INTEGER NOT NULL,
                     PRIMARY KEY (series, hour, error_type, message, location)) WITHOUT ROWID;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let point = |message: &str, fingerprint: &str| crate::store::ErrorPoint {
        key: key("a"),
        minute: 11,
        error_type: "E".into(),
        message: message.into(),
        location: "src/a.rs:1".into(),
        count: 1,
        last_seen: 660_000_000_000,
        fingerprint: fingerprint.into(),
        stacktrace: String::new(),
        trace_id: String::new(),
    };
    store
        .write(&Batch {
            errors: vec![point("new", "group-7")],
            ..Batch::default()
        })
        .unwrap();
    let mut found: Vec<(String, u64, String)> = store
        .errors(&Filter::default(), 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.message, e.count, e.fingerprint))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("new".to_owned(), 1, "group-7".to_owned()),
            ("old".to_owned(), 3, String::new())
        ]
    );
    drop(store);
    // Opening again finds the columns there and changes nothing.
    assert_eq!(
        SqliteStore::open(&path)
            .unwrap()
            .errors(&Filter::default(), 0, 100)
            .unwrap()
            .len(),
        2
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_version_1_file_gains_environments_and_keeps_its_series() {
    let dir = std::env::temp_dir().join(format!("kuroko-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v1.db");
    {
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '1');
                 CREATE TABLE series (
                     id INTEGER PRIMARY KEY,
                     service TEXT NOT NULL, host TEXT NOT NULL, txn TEXT NOT NULL, feature TEXT NOT NULL,
                     kind TEXT NOT NULL, UNIQUE (service, host, txn, feature, kind));
                 INSERT INTO series VALUES (7, 'cards-api', 'a', 'GET /cards/{id}', 'cards', 'web');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.series().unwrap(),
        [key("a")],
        "the old series, with no environment"
    );
    let mut production = key("a");
    production.environment = "production".into();
    store
        .write(&Batch {
            histograms: vec![HistogramPoint {
                key: production.clone().into(),
                minute: 10,
                histogram: histogram(&[0.25]),
            }],
            ..Batch::default()
        })
        .unwrap();
    let only = Filter {
        environment: Some("production".into()),
        ..Filter::default()
    };
    let found = store.histograms(&only, 0, 100).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].0, production,
        "a new series beside the old one, told apart by environment"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
