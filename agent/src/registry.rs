//! Name → series, with a cardinality limit and a per-thread lookup cache.
//!
//! Registering a transaction takes a mutex; recording by name does not: each
//! thread keeps its own cache of the names it has used, so the by-name path is
//! a hash lookup in thread-local memory followed by the handle's record.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use crate::config::AgentConfig;
use crate::errors::{truncate, ErrorLog};
use crate::layout::Layout;
use crate::series::{Series, Tracing};
use crate::snapshot::TransactionSnapshot;
use crate::sync::lock;
use crate::traces::TraceLog;
use crate::transaction::{Transaction, TransactionKind, TransactionMeta, TransactionSpec};

/// Name of the series that collects samples of transactions refused by the
/// cardinality limit.
pub const OVERFLOW_TRANSACTION: &str = "kuroko.overflow";

/// Longest transaction name kept, in bytes; longer names are cut.
pub const MAX_NAME_BYTES: usize = 512;

/// Agents whose names one thread caches at once, and names per agent.
const CACHED_AGENTS: usize = 4;
const CACHED_NAMES: usize = 4_096;

type NameCache = Vec<(u64, FxHashMap<Box<str>, Transaction>)>;

thread_local! {
    static CACHE: RefCell<NameCache> = const { RefCell::new(Vec::new()) };
}

static NEXT_REGISTRY: AtomicU64 = AtomicU64::new(1);

fn tracing_for(config: &AgentConfig, log: &Arc<TraceLog>, apdex_t: std::time::Duration) -> Tracing {
    Tracing {
        log: log.clone(),
        slow_ns: crate::config::nanos(apdex_t).saturating_mul(u64::from(config.slow_factor)),
        per_minute: config.max_slow_traces_per_minute,
        max_segments: config.max_trace_segments,
        budget: Default::default(),
    }
}

pub(crate) struct Registry {
    id: u64,
    pub(crate) config: AgentConfig,
    pub(crate) layout: Layout,
    shards: usize,
    series: Mutex<FxHashMap<Arc<str>, Transaction>>,
    overflow: Transaction,
    refused: AtomicU64,
    overflowed_samples: AtomicU64,
    shard_bytes: AtomicUsize,
    pub(crate) errors: Arc<ErrorLog>,
    pub(crate) traces: Arc<TraceLog>,
}

impl Registry {
    pub(crate) fn new(config: AgentConfig, layout: Layout) -> Self {
        let errors = Arc::new(ErrorLog::new(
            config.max_errors_per_interval,
            config.max_error_message_bytes,
        ));
        let shards = config.max_shards.next_power_of_two();
        let overflow_meta = TransactionMeta {
            name: Arc::from(OVERFLOW_TRANSACTION),
            kind: TransactionKind::Job,
            feature: None,
            method: None,
            route: None,
            apdex_t: config.apdex_t,
            overflow: true,
        };
        let traces = Arc::new(TraceLog::new(config.max_traces_per_interval));
        let overflow_tracing = tracing_for(&config, &traces, config.apdex_t);
        let overflow = Series::new(
            overflow_meta,
            layout,
            shards,
            config.max_segments_per_transaction,
            errors.clone(),
            overflow_tracing,
        );
        Registry {
            id: NEXT_REGISTRY.fetch_add(1, Ordering::Relaxed),
            layout,
            shards,
            series: Mutex::new(FxHashMap::default()),
            overflow: Transaction {
                series: Arc::new(overflow),
            },
            refused: AtomicU64::new(0),
            overflowed_samples: AtomicU64::new(0),
            shard_bytes: AtomicUsize::new(0),
            errors,
            traces,
            config,
        }
    }

    /// The transaction registered under `spec`'s name, registering it first
    /// if needed; the overflow series when the limit is reached.
    pub(crate) fn register(&self, spec: TransactionSpec) -> Transaction {
        let mut series = lock(&self.series);
        let name = truncate(spec.name.clone(), MAX_NAME_BYTES);
        if let Some(tx) = series.get(name.as_str()) {
            return tx.clone();
        }
        if series.len() >= self.config.max_series {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return self.overflow.clone();
        }
        let meta = TransactionMeta {
            apdex_t: spec.apdex_t.unwrap_or_else(|| self.config.apdex_for(&name)),
            name: Arc::from(name),
            kind: spec.kind(),
            feature: spec.feature.map(Arc::from),
            method: spec.method.map(Arc::from),
            route: spec.route.map(Arc::from),
            overflow: false,
        };
        let tracing = tracing_for(&self.config, &self.traces, meta.apdex_t);
        let new = Series::new(
            meta,
            self.layout,
            self.shards,
            self.config.max_segments_per_transaction,
            self.errors.clone(),
            tracing,
        );
        if self.config.hot_series_threshold == 0 {
            self.promote(&new);
        }
        let tx = Transaction { series: Arc::new(new) };
        series.insert(tx.series.meta.name.clone(), tx.clone());
        tx
    }

    /// Runs `f` on the transaction called `name`, through this thread's cache.
    #[inline]
    pub(crate) fn with_name<R>(&self, name: &str, f: impl FnOnce(&Transaction) -> R) -> R {
        self.with_spec(name, || TransactionSpec::new(name), f)
    }

    /// Like [`with_name`](Self::with_name); on a cache miss the transaction is
    /// registered with `spec()` (whose name must be `name`).
    #[inline]
    pub(crate) fn with_spec<R>(
        &self,
        name: &str,
        spec: impl FnOnce() -> TransactionSpec,
        f: impl FnOnce(&Transaction) -> R,
    ) -> R {
        let mut spec = Some(spec);
        let mut f = Some(f);
        let cached = CACHE.try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let map = self.thread_map(&mut cache);
            if let Some(tx) = map.get(name) {
                return f.take().map(|f| f(tx));
            }
            if map.len() >= CACHED_NAMES {
                map.clear();
            }
            let tx = self.register(spec.take().map_or_else(|| TransactionSpec::new(name), |s| s()));
            let result = f.take().map(|f| f(&tx));
            map.insert(Box::from(name), tx);
            result
        });
        if let Ok(Some(result)) = cached {
            return result;
        }
        // This thread's cache is gone (thread exit) or busy: go to the registry.
        let tx = self.register(spec.take().map_or_else(|| TransactionSpec::new(name), |s| s()));
        match f.take() {
            Some(f) => f(&tx),
            None => unreachable!("`f` is taken only when it is called, and then the cache path returned"),
        }
    }

    #[inline]
    fn thread_map<'c>(&self, cache: &'c mut NameCache) -> &'c mut FxHashMap<Box<str>, Transaction> {
        let position = match cache.iter().position(|(id, _)| *id == self.id) {
            Some(position) => position,
            None => {
                if cache.len() >= CACHED_AGENTS {
                    cache.remove(0);
                }
                cache.push((self.id, FxHashMap::default()));
                cache.len() - 1
            }
        };
        &mut cache[position].1
    }

    /// Takes every series' interval; promotes the ones that turned hot.
    pub(crate) fn drain(&self) -> Vec<TransactionSnapshot> {
        let all: Vec<Transaction> = lock(&self.series)
            .values()
            .cloned()
            .chain(std::iter::once(self.overflow.clone()))
            .collect();
        let mut scratch = vec![0u64; self.layout.len()];
        let mut out = Vec::new();
        for tx in all {
            if let Some(snapshot) = tx.series.drain(&mut scratch) {
                if snapshot.count >= self.config.hot_series_threshold && !tx.series.is_sharded() {
                    self.promote(&tx.series);
                }
                if snapshot.meta.overflow {
                    self.overflowed_samples.fetch_add(snapshot.count, Ordering::Relaxed);
                }
                out.push(snapshot);
            }
        }
        out
    }

    /// Shards `series` if the shard memory budget allows it.
    fn promote(&self, series: &Series) {
        let cost = series.promotion_bytes();
        let budget = self.config.shard_memory_budget;
        let granted = self
            .shard_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |spent| {
                (spent + cost <= budget).then_some(spent + cost)
            });
        if granted.is_ok() {
            series.promote();
        }
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.series).len()
    }

    pub(crate) fn sharded(&self) -> usize {
        lock(&self.series).values().filter(|tx| tx.series.is_sharded()).count()
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn overflowed_samples(&self) -> u64 {
        self.overflowed_samples.load(Ordering::Relaxed)
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        let series = lock(&self.series);
        let map = series.capacity() * (std::mem::size_of::<(Arc<str>, Transaction)>() + 8);
        map + series.values().map(|tx| tx.series.bytes()).sum::<usize>() + self.overflow.series.bytes()
    }
}
