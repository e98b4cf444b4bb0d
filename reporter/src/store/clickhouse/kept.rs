//! Answers about which series exist, kept between reads: every histogram or
//! counter read first asks `meta` for the retention marks, `txn` (or
//! `series`) for the keys it selects and `series` for the transactions whose
//! runs a metric counts, the same few questions a page asks again and again
//! (84 queries for the overview over 32,000 series, most of them these).
//!
//! They are kept exactly: an answer is kept with the active parts of the
//! tables it reads (`series`, `txn`, `metric_transaction`, `meta`), and
//! used again only while those are the same. MergeTree parts never change
//! once written (an insert, merge or mutation makes new ones, under new
//! names), so the same parts hold the same rows. One cheap query of
//! `system.parts` per read replaces the three.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{quote, ClickHouseStore};
use crate::store::StoreError;

/// The most answers kept for one set of parts (one per question: filters
/// differ by page); past it they are all dropped.
const MOST_KEPT: usize = 64;

/// The answers kept, for the parts they were read from.
#[derive(Default)]
pub(super) struct Kept {
    inner: Mutex<Answers>,
}

#[derive(Default)]
struct Answers {
    parts: u64,
    by_query: HashMap<String, Arc<dyn Any + Send + Sync>>,
}

impl ClickHouseStore {
    /// A fingerprint of the active parts of the tables that name series
    /// and of `meta`: their names, rows, sizes and times (the times tell a
    /// table dropped and created again from the one before).
    pub(super) fn naming_parts(&self) -> Result<u64, StoreError> {
        #[derive(Deserialize)]
        struct Parts {
            v: u64,
        }
        let rows: Vec<Parts> = self.select(&format!(
            "SELECT sipHash64(toString(groupArray((table, name, rows, bytes_on_disk, modification_time)))) AS v
             FROM (SELECT table, name, rows, bytes_on_disk, modification_time FROM system.parts
                   WHERE database = {} AND table IN ('series', 'txn', 'metric_transaction', 'meta') AND active
                   ORDER BY table, name)",
            quote(&self.database)
        ))?;
        Ok(rows.first().map_or(0, |p| p.v))
    }

    /// The rows `sql` selects from the tables [`ClickHouseStore::naming_parts`]
    /// watches, as read when they last had `parts`, or read now.
    pub(super) fn select_kept<T>(&self, parts: u64, sql: &str) -> Result<Arc<Vec<T>>, StoreError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        {
            let answers = crate::sync::lock(&self.kept.inner);
            if answers.parts == parts {
                if let Some(rows) = answers
                    .by_query
                    .get(sql)
                    .and_then(|a| a.clone().downcast::<Vec<T>>().ok())
                {
                    return Ok(rows);
                }
            }
        }
        // Read without the lock: other reads go on meanwhile.
        let rows = Arc::new(self.select::<T>(sql)?);
        let mut answers = crate::sync::lock(&self.kept.inner);
        if answers.parts != parts || answers.by_query.len() >= MOST_KEPT {
            answers.by_query.clear();
            answers.parts = parts;
        }
        answers.by_query.insert(sql.to_owned(), rows.clone());
        Ok(rows)
    }
}
