//! One test suite, run against both stores (issue #9): the analysis, report
//! and delivery tests are written once and run on the embedded SQLite store
//! and on ClickHouse, with the same assertions, so both stores are held to
//! the same answers.
//!
//! [`suite!`] turns each test `fn name(kind: Kind) { ... }` into two tests,
//! `sqlite::name` and `clickhouse::name`; the body opens its stores with
//! [`TestStore::open`]`(kind, ...)`. What only one store needs done by hand
//! has one name here: [`TestStore::roll_up`] runs SQLite's roller, and
//! applies retention on ClickHouse (whose materialised views roll up at
//! insert time). Included with `#[macro_use] #[path = "support/stores.rs"]`;
//! ClickHouse comes from `clickhouse_server.rs`, one server per test binary.

#![allow(dead_code)]

#[path = "clickhouse_server.rs"]
pub mod clickhouse_server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kuroko_reporter::store::clickhouse::ClickHouseStore;
use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Batch, Store, StoreError};
use kuroko_reporter::synthetic::{self, Spec, Truths};

/// Points [`TestStore::write_synthetic`] gathers into one write.
pub const POINTS_PER_WRITE: usize = 50_000;

/// Which store a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The embedded store, one file.
    Sqlite,
    /// The shared store, on the test binary's ClickHouse server.
    ClickHouse,
}

impl Kind {
    /// Both, in the order the suite runs them.
    pub const ALL: [Kind; 2] = [Kind::Sqlite, Kind::ClickHouse];

    /// 0 or 1: an index for per-kind fixtures (`[OnceLock<Fixture>; 2]`).
    pub fn index(self) -> usize {
        match self {
            Kind::Sqlite => 0,
            Kind::ClickHouse => 1,
        }
    }

    /// `sqlite` or `clickhouse`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::ClickHouse => "clickhouse",
        }
    }
}

enum Concrete {
    Sqlite {
        store: Arc<SqliteStore>,
        dir: PathBuf,
    },
    ClickHouse {
        store: Arc<ClickHouseStore>,
        database: String,
    },
}

/// A fresh store of one kind, usable as a `&dyn Store` (it derefs to one) or
/// shared as an `Arc<dyn Store>`.
pub struct TestStore {
    /// Its kind.
    pub kind: Kind,
    concrete: Concrete,
    /// False once [`TestStore::reopen`] hands the files on.
    remove_on_drop: bool,
}

/// `name` as a ClickHouse database name: letters, digits and `_`.
fn database_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("t_{safe}")
}

impl TestStore {
    /// An empty store of `kind` named `name` (unique within the test binary):
    /// a new SQLite file in a temporary folder, or a new ClickHouse database.
    pub fn open(kind: Kind, name: &str) -> TestStore {
        let concrete = match kind {
            Kind::Sqlite => {
                let dir = std::env::temp_dir().join(format!("kuroko-{name}-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
                let store = Arc::new(SqliteStore::open(&dir.join("kuroko.db")).unwrap());
                Concrete::Sqlite { store, dir }
            }
            Kind::ClickHouse => {
                let database = database_name(name);
                // Claims wait the shortest settle (a second): one replica here.
                let store = clickhouse_server::clickhouse(&database).with_claim_settle(Duration::ZERO);
                Concrete::ClickHouse {
                    store: Arc::new(store),
                    database,
                }
            }
        };
        TestStore {
            kind,
            concrete,
            remove_on_drop: true,
        }
    }

    /// The same data opened again, as a restarted reporter opens it. The
    /// SQLite file is closed first: drop every other handle of it before.
    pub fn reopen(mut self) -> TestStore {
        self.remove_on_drop = false;
        let kind = self.kind;
        let concrete = match &self.concrete {
            Concrete::Sqlite { dir, .. } => {
                let dir = dir.clone();
                drop(self);
                let store = Arc::new(SqliteStore::open(&dir.join("kuroko.db")).unwrap());
                Concrete::Sqlite { store, dir }
            }
            Concrete::ClickHouse { database, .. } => {
                let database = database.clone();
                drop(self);
                let store = clickhouse_server::connect_again(&database).with_claim_settle(Duration::ZERO);
                Concrete::ClickHouse {
                    store: Arc::new(store),
                    database,
                }
            }
        };
        TestStore {
            kind,
            concrete,
            remove_on_drop: true,
        }
    }

    /// The store, shared (for a `Runner` or a producer).
    pub fn shared(&self) -> Arc<dyn Store> {
        match &self.concrete {
            Concrete::Sqlite { store, .. } => store.clone(),
            Concrete::ClickHouse { store, .. } => store.clone(),
        }
    }

    /// Writes `spec`'s synthetic data, in batches of about
    /// [`POINTS_PER_WRITE`] points: the generator's batches (an hour of one
    /// service) cost ClickHouse an INSERT per table each, which would make
    /// a fortnight take minutes; the stored data is the same either way.
    pub fn write_synthetic(&self, spec: &Spec) -> Truths {
        let mut pending = Batch::default();
        let truths = synthetic::generate(spec, |batch| {
            pending.histograms.extend(batch.histograms);
            pending.counters.extend(batch.counters);
            pending.errors.extend(batch.errors);
            pending.traces.extend(batch.traces);
            if pending.len() >= POINTS_PER_WRITE {
                self.write(&std::mem::take(&mut pending))?;
            }
            Ok::<(), StoreError>(())
        })
        .unwrap();
        self.write(&pending).unwrap();
        truths
    }

    /// Makes the coarser resolutions whole as of `now_minute` and applies
    /// `retention`, as a running reporter would: SQLite flushes and runs its
    /// roller; ClickHouse, whose materialised views rolled up at insert,
    /// drops what retention cuts.
    pub fn roll_up(&self, retention: Retention, now_minute: i64) {
        match &self.concrete {
            Concrete::Sqlite { store, .. } => {
                // The roller reads the tables: flush what still waits in memory first.
                store.flush().unwrap();
                store.roller(retention).unwrap().run(now_minute).unwrap();
            }
            Concrete::ClickHouse { store, .. } => {
                store.retain(&retention, now_minute).unwrap();
            }
        }
    }
}

impl std::ops::Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &(dyn Store + 'static) {
        match &self.concrete {
            Concrete::Sqlite { store, .. } => store.as_ref(),
            Concrete::ClickHouse { store, .. } => store.as_ref(),
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let (true, Concrete::Sqlite { dir, .. }) = (self.remove_on_drop, &self.concrete) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Turns each `fn name(kind: Kind) { body }` (sync or `async`, under its test
/// attribute, e.g. `#[test]` or `#[tokio::test(...)]`) into two tests,
/// `sqlite::name` and `clickhouse::name`, that run the body with
/// `kind: Kind` set to that store. One invocation per file holds all its
/// tests; `Kind` must be in scope.
#[allow(unused_macros)]
macro_rules! suite {
    (@tests [$($sqlite:tt)*] [$($clickhouse:tt)*]) => {
        mod sqlite {
            use super::*;
            $($sqlite)*
        }
        mod clickhouse {
            use super::*;
            $($clickhouse)*
        }
    };
    (@tests [$($sqlite:tt)*] [$($clickhouse:tt)*]
        $(#[$attr:meta])+ async fn $name:ident($kind:ident: Kind) $body:block $($rest:tt)*) => {
        async fn $name($kind: Kind) $body
        suite!(@tests
            [$($sqlite)* $(#[$attr])+ async fn $name() { super::$name(Kind::Sqlite).await }]
            [$($clickhouse)* $(#[$attr])+ async fn $name() { super::$name(Kind::ClickHouse).await }]
            $($rest)*);
    };
    (@tests [$($sqlite:tt)*] [$($clickhouse:tt)*]
        $(#[$attr:meta])+ fn $name:ident($kind:ident: Kind) $body:block $($rest:tt)*) => {
        fn $name($kind: Kind) $body
        suite!(@tests
            [$($sqlite)* $(#[$attr])+ fn $name() { super::$name(Kind::Sqlite) }]
            [$($clickhouse)* $(#[$attr])+ fn $name() { super::$name(Kind::ClickHouse) }]
            $($rest)*);
    };
    ($($tests:tt)*) => {
        suite!(@tests [] [] $($tests)*);
    };
}
