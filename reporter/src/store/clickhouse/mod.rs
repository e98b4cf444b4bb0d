//! The shared store: ClickHouse, over its HTTP interface, for several
//! reporters ingesting at once (`store = "clickhouse://host:8123/kuroko"`).
//!
//! Plain HTTP with `JSONEachRow` (through `ureq`, synchronous like the
//! [`Store`](super::Store) trait) rather than the `clickhouse` crate, whose schema check
//! needs `RowBinaryWithNamesAndTypes`: that way one build speaks to Debian's
//! ClickHouse 18.16 and to current releases alike, using only SQL both accept
//! (no `Map`, `DateTime64`, `TTL`, query parameters or window functions).
//!
//! **Schema** (created and versioned in `meta` by the reporter on connect):
//! `series` (ReplacingMergeTree; the id is a 64-bit FNV-1a hash of the key,
//! so every replica computes the same id without coordination),
//! `histogram_minute`, `counter_minute`, `error_minute` (MergeTree, one row
//! per written piece, buckets as parallel `Array(Int32)`/`Array(UInt64)`
//! columns) and `kept_trace` (ReplacingMergeTree). Materialised views fill
//! `histogram_hour`/`_day`, `counter_hour`/`_day` and `error_hour`
//! (AggregatingMergeTree of `-State`s, keyed by scale too) at insert time, so
//! roll-ups are always complete, late points included, and no roller runs.
//!
//! **Reads** push the merge down: per stretch of the window (days, hours and
//! minutes, as `store::plan` splits it), `sumMap` over bucket indexes
//! per series and scale; then, per series, every part is downscaled in SQL to
//! the coarsest scale present (`bitShiftRight` of the index: a floor, exact
//! for negative indexes too) and summed again. The reporter receives one row
//! per series. Charts' steps ([`Store::histogram_steps`](super::Store::histogram_steps),
//! [`Store::counter_steps`](super::Store::counter_steps)) are the same query grouped by step as well.
//!
//! **Retention** drops whole partitions (ClickHouse 18.16 has no `TTL`):
//! minute tables by day, hour tables by week, day tables by 30 days; see
//! [`ClickHouseStore::retain`]. **Writes** are group-committed
//! ([`WriteBatching`]): concurrent writers' rows share one INSERT per table,
//! at most every 200 ms by default, so that many small OTLP requests do not
//! make ClickHouse create too many parts. **Durability**: [`Store::write`](super::Store::write)
//! returns once the INSERTs holding the batch have been acknowledged by
//! ClickHouse.
//!
//! The **delivery ledger** ([`DeliveryState::ledger_claim`](super::state::DeliveryState::ledger_claim), [`DeliveryState::ledger_record`](super::state::DeliveryState::ledger_record))
//! lets one of several replicas send each delivery: every claim and every
//! recorded outcome is an event row in `delivery_ledger` stamped with the
//! server's clock; a claim waits a settle delay, reads the delivery's events
//! back and replays them in the server's order, with the embedded store's
//! rules (see `docs/clickhouse.md` for the guarantee and its limits).
//! **Alert states** are rows in `alert_state`, the latest written wins.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::io::BufRead;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::group_commit::GroupCommit;
use super::{SeriesKey, StoreError};

mod deploys;
mod kept;
mod reads;
mod schema;
mod sightings;
mod spool;
mod state;
mod triage;
mod txn;
mod writes;

pub use spool::{SpoolHealth, SpoolSettings};

use state::DEFAULT_CLAIM_SETTLE;
use writes::Encoded;

/// The ClickHouse store; see the [module documentation](self).
pub struct ClickHouseStore {
    agent: ureq::Agent,
    /// `http://host:port/`.
    endpoint: String,
    /// `host:port/database`, for messages (never the password).
    server: String,
    database: String,
    authorization: Option<String>,
    /// Series this process has written to `series`.
    known: Mutex<HashSet<u64>>,
    /// Series this process has written to `metric_transaction`.
    metric_series: Mutex<HashSet<u64>>,
    claim_settle: Duration,
    /// Concurrent writes gathered into shared INSERTs (without the journal).
    group: GroupCommit<Encoded, String>,
    /// How often the journal's blocks go, when it is on.
    batching: WriteBatching,
    /// Whether the server takes `insert_deduplication_token` (22.3 and later).
    dedup: bool,
    /// The journal, once [`ClickHouseStore::start_spool`] turned it on.
    spool: OnceLock<spool::Spool>,
    /// Answers about which series exist, kept while their tables' parts last.
    kept: kept::Kept,
}

/// How [`Store::write`](super::Store::write) gathers concurrent writes into shared INSERTs (one
/// per table): a round of INSERTs starts at most every `interval`, or as
/// soon as the previous round is done once `max_rows` rows wait. A write
/// returns once the round holding its rows is acknowledged. Set in the
/// store's URL (`?batch_ms=200&batch_rows=50000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WriteBatching {
    /// The least time between the starts of two rounds of INSERTs. Zero
    /// sends each write at once, unless a round is under way: the writes
    /// that arrive meanwhile still share the next one.
    pub interval: Duration,
    /// Rows (histogram, counter, error and trace points) after which a
    /// round goes without waiting for `interval`.
    pub max_rows: usize,
}

impl Default for WriteBatching {
    /// 200 ms and 50,000 rows: five rounds a second per reporter at most
    /// (ClickHouse wants about one INSERT per second per table, of
    /// thousands of rows), and a wait of 200 ms at most for a request.
    fn default() -> Self {
        WriteBatching {
            interval: Duration::from_millis(200),
            max_rows: 50_000,
        }
    }
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The series id: FNV-1a (64 bits) of the key's fields, each followed by a
/// 0xFF byte (never in UTF-8, so fields cannot run into each other). Stored
/// in ClickHouse: it must never change.
pub fn series_id(key: &SeriesKey) -> u64 {
    crate::stable_hash::fnv1a64(&[
        key.service.as_bytes(),
        key.host.as_bytes(),
        key.transaction.as_bytes(),
        key.feature.as_bytes(),
        key.kind.as_bytes(),
        key.environment.as_bytes(),
    ])
}

/// `s` as a ClickHouse string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

pub(super) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl WriteBatching {
    /// With the journal on (`kuroko serve`): a block per second, or per
    /// 100,000 rows (once merged per series and minute), whichever comes first (ClickHouse wants about one
    /// INSERT per table per second, of thousands of rows); a request waits
    /// for none of them.
    const SPOOL: WriteBatching = WriteBatching {
        interval: Duration::from_secs(1),
        max_rows: 100_000,
    };
}

/// [`WriteBatching`] from the URL's options (`batch_ms=N&batch_rows=M`).
fn write_batching(options: &str) -> Result<WriteBatching, &'static str> {
    write_batching_from(options, WriteBatching::default())
}

/// [`WriteBatching`] from the URL's options, `defaults` for those not given.
fn write_batching_from(options: &str, defaults: WriteBatching) -> Result<WriteBatching, &'static str> {
    let mut batching = defaults;
    for option in options.split('&').filter(|o| !o.is_empty()) {
        let number = |value: &str| {
            value
                .parse::<u64>()
                .map_err(|_| "batch_ms and batch_rows take a whole number")
        };
        match option.split_once('=') {
            Some(("batch_ms", value)) => batching.interval = Duration::from_millis(number(value)?),
            Some(("batch_rows", value)) => {
                batching.max_rows = usize::try_from(number(value)?).unwrap_or(usize::MAX);
            }
            _ => return Err("unknown option: the URL takes ?batch_ms=N&batch_rows=M"),
        }
    }
    Ok(batching)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}<credentials>{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// A random 64-bit token (std's randomly seeded hasher, mixed with the time).
pub(super) fn token() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

impl ClickHouseStore {
    /// True when `location` names a ClickHouse store (`clickhouse://...`)
    /// rather than a file.
    pub fn is_url(location: &str) -> bool {
        location.starts_with("clickhouse://")
    }

    /// Connects to `clickhouse://[user[:password]@]host[:port]/database`
    /// (port 8123 by default; the database is created if missing), then
    /// creates or checks the schema. `?batch_ms=N&batch_rows=M` after the
    /// database sets [`WriteBatching`] (default 200 ms, 50,000 rows).
    pub fn connect(url: &str) -> Result<ClickHouseStore, StoreError> {
        let invalid = |reason: &'static str| StoreError::Url {
            url: redact(url),
            reason,
        };
        let rest = url
            .strip_prefix("clickhouse://")
            .ok_or(invalid("expected clickhouse://host:8123/database"))?;
        let (authority, database) = rest
            .split_once('/')
            .ok_or(invalid("no database: expected clickhouse://host:8123/database"))?;
        let (database, options) = database.split_once('?').unwrap_or((database, ""));
        let batching = write_batching(options).map_err(invalid)?;
        let spool_batching = write_batching_from(options, WriteBatching::SPOOL).map_err(invalid)?;
        let database = database.trim_end_matches('/');
        if database.is_empty()
            || !database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || database.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(invalid("the database name must be letters, digits and _"));
        }
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((credentials, host)) => (Some(credentials), host),
            None => (None, authority),
        };
        if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
            return Err(invalid("no host: expected clickhouse://host:8123/database"));
        }
        let host = if host.contains(':') && !host.ends_with(']') {
            host.to_owned()
        } else {
            format!("{host}:8123")
        };
        let authorization = credentials.map(|credentials| {
            use base64::Engine;
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .new_agent();
        let store = ClickHouseStore {
            agent,
            endpoint: format!("http://{host}/"),
            server: format!("{host}/{database}"),
            database: database.to_owned(),
            authorization,
            known: Mutex::new(HashSet::new()),
            metric_series: Mutex::new(HashSet::new()),
            claim_settle: DEFAULT_CLAIM_SETTLE,
            group: GroupCommit::new(batching.interval, batching.max_rows),
            batching: spool_batching,
            dedup: false,
            spool: OnceLock::new(),
            kept: kept::Kept::default(),
        };
        store.migrate()?;
        let mut store = store;
        store.dedup = store.enable_deduplication()?;
        Ok(store)
    }

    /// Sets how long [`DeliveryState::ledger_claim`](super::state::DeliveryState::ledger_claim) waits before reading claims
    /// back (at least one second is waited whatever is set).
    pub fn with_claim_settle(mut self, settle: Duration) -> Self {
        self.claim_settle = settle;
        self
    }

    /// The database the store uses.
    pub fn database(&self) -> &str {
        &self.database
    }

    fn error(&self, message: impl Into<String>) -> StoreError {
        StoreError::clickhouse(self.server.clone(), message.into())
    }

    /// Sends one statement; `query` goes in the URL (for an INSERT whose
    /// rows are `body`), else `body` is the statement.
    fn post(&self, query: Option<&str>, body: &[u8], in_database: bool) -> Result<ureq::Body, StoreError> {
        self.post_with(query, body, in_database, &[])
    }

    /// [`ClickHouseStore::post`] with more settings in the URL.
    fn post_with(
        &self,
        query: Option<&str>,
        body: &[u8],
        in_database: bool,
        settings: &[(&str, &str)],
    ) -> Result<ureq::Body, StoreError> {
        let mut request = self
            .agent
            .post(&self.endpoint)
            .query("output_format_json_quote_64bit_integers", "0")
            .query_pairs(settings.iter().copied());
        if in_database {
            request = request.query("database", &self.database);
        }
        if let Some(query) = query {
            request = request.query("query", query);
        } else {
            // The status then tells whether the whole SELECT succeeded.
            request = request.query("wait_end_of_query", "1");
        }
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request
            .send(body)
            .map_err(|e| self.error(format!("cannot reach the server: {e}")))?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let text = body
                .with_config()
                .limit(64 << 10)
                .lossy_utf8(true)
                .read_to_string()
                .unwrap_or_default();
            let text: String = text.trim().chars().take(600).collect();
            return Err(self.error(format!("HTTP {}: {text}", status.as_u16())));
        }
        Ok(body)
    }

    fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.post(None, sql.as_bytes(), true).map(drop)
    }

    /// Runs a SELECT, reading its `JSONEachRow` rows.
    fn select<T: DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, StoreError> {
        let body = self.post(None, format!("{sql} FORMAT JSONEachRow").as_bytes(), true)?;
        let reader = std::io::BufReader::new(body.into_with_config().reader());
        let mut rows = Vec::new();
        for line in reader.lines() {
            let line = line.map_err(|e| self.error(format!("reading an answer: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let row = serde_json::from_str(&line).map_err(|e| {
                let shown: String = line.chars().take(300).collect();
                self.error(format!("unexpected answer ({e}): {shown}"))
            })?;
            rows.push(row);
        }
        Ok(rows)
    }

    /// Inserts rows in one `INSERT ... FORMAT JSONEachRow`.
    fn insert<T: Serialize>(&self, table: &str, rows: impl IntoIterator<Item = T>) -> Result<(), StoreError> {
        let mut body = Vec::new();
        self.encode(&mut body, rows)?;
        self.insert_encoded(table, &body, None)
    }

    /// Appends rows to `body` as `JSONEachRow`.
    fn encode<T: Serialize>(&self, body: &mut Vec<u8>, rows: impl IntoIterator<Item = T>) -> Result<(), StoreError> {
        for row in rows {
            serde_json::to_writer(&mut *body, &row).map_err(|e| self.error(format!("encoding a row: {e}")))?;
            body.push(b'\n');
        }
        Ok(())
    }

    /// Inserts `JSONEachRow` rows (nothing when there are none), as one
    /// block named `token` when given (the server then stores it once
    /// however often it is sent; servers without tokens are never given one).
    fn insert_encoded(&self, table: &str, body: &[u8], token: Option<&str>) -> Result<(), StoreError> {
        if body.is_empty() {
            return Ok(());
        }
        let query = format!("INSERT INTO {table} FORMAT JSONEachRow");
        let settings: &[(&str, &str)] = match token {
            Some(token) => &[
                ("insert_deduplication_token", token),
                ("deduplicate_blocks_in_dependent_materialized_views", "1"),
            ],
            None => &[],
        };
        self.post_with(Some(&query), body, true, settings).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_literals() {
        assert!(ClickHouseStore::is_url("clickhouse://127.0.0.1:8123/kuroko"));
        assert!(!ClickHouseStore::is_url("/var/lib/kuroko.db"));
        let bad = ClickHouseStore::connect("clickhouse://host:8123/bad-name").unwrap_err();
        assert!(bad.to_string().contains("letters, digits and _"), "{bad}");
        let no_db = ClickHouseStore::connect("clickhouse://u:secret@host:8123").unwrap_err();
        assert!(!no_db.to_string().contains("secret"), "{no_db}");
        assert_eq!(quote(r"it's \ here"), r"'it\'s \\ here'");
        let mut key = SeriesKey {
            service: "a".into(),
            host: "b".into(),
            transaction: String::new(),
            feature: String::new(),
            kind: "web".into(),
            environment: String::new(),
        };
        let id = series_id(&key);
        key.service = "ab".into();
        key.host = String::new();
        assert_ne!(series_id(&key), id, "fields do not run into each other");
    }

    #[test]
    fn write_batching_is_set_in_the_url() {
        assert_eq!(write_batching(""), Ok(WriteBatching::default()));
        assert_eq!(
            write_batching("batch_ms=0&batch_rows=1000"),
            Ok(WriteBatching {
                interval: Duration::ZERO,
                max_rows: 1_000
            })
        );
        assert!(write_batching("batch_ms=soon").is_err());
        assert!(write_batching("batch=5").is_err());
        let bad = ClickHouseStore::connect("clickhouse://host:8123/kuroko?batch_ms=-1").unwrap_err();
        assert!(bad.to_string().contains("whole number"), "{bad}");
    }
}
