//! The [`Agent`]: the entry point a service holds on to.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::clock::Stamp;
use crate::config::{nanos, AgentConfig, ConfigError};
use crate::errors::CapturedError;
use crate::layout::Layout;
use crate::registry::Registry;
use crate::snapshot::{AgentStats, Harvest};
use crate::sync::lock;
use crate::transaction::{Outcome, Transaction, TransactionGuard, TransactionSpec};

/// Kuroko's agent: records transactions and hands them over at harvest.
///
/// Cloning is cheap; every clone records into the same series. Create one per
/// process and share it (a `static`, an axum `State`, the tracing layer).
///
/// ```
/// use std::time::Duration;
/// use kuroko_agent::{Agent, Outcome};
///
/// let agent = Agent::default();
/// let show_card = agent.transaction("GET /cards/{id}");   // resolve once…
/// show_card.record(Duration::from_millis(12));            // …record many times
/// agent.record_outcome("nightly-rollup", Duration::from_secs(3), Outcome::Error);
///
/// let harvest = agent.harvest();
/// let card = harvest.transaction("GET /cards/{id}").unwrap();
/// assert_eq!(card.count, 1);
/// ```
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    /// When the previous harvest (or the agent's start) was, on the agent's clock.
    last_harvest: Mutex<Stamp>,
}

impl Default for Agent {
    fn default() -> Self {
        Agent::new(AgentConfig::default()).expect("the default configuration is valid")
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("service_name", &self.config().service_name)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent with `config`, checked first.
    pub fn new(config: AgentConfig) -> Result<Agent, ConfigError> {
        config.validate()?;
        crate::clock::warm();
        let layout = Layout::new(
            nanos(config.lowest_discernible).max(1),
            nanos(config.highest_trackable),
            config.significant_digits,
        )?;
        Ok(Agent {
            inner: Arc::new(Inner {
                registry: Registry::new(config, layout),
                last_harvest: Mutex::new(Stamp::now()),
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &AgentConfig {
        &self.inner.registry.config
    }

    /// The histogram layout every series shares.
    pub fn layout(&self) -> &Layout {
        &self.inner.registry.layout
    }

    /// A handle to the transaction called `name`, registered on first use.
    /// `METHOD /route` names are web transactions, others jobs; see
    /// [`TransactionSpec::new`].
    pub fn transaction(&self, name: &str) -> Transaction {
        self.inner.registry.register(TransactionSpec::new(name))
    }

    /// A handle to the transaction `spec` describes. The first registration
    /// of a name fixes its kind, feature and Apdex threshold.
    pub fn register(&self, spec: TransactionSpec) -> Transaction {
        self.inner.registry.register(spec)
    }

    /// Records one successful run of the transaction called `name`.
    #[inline]
    pub fn record(&self, name: &str, duration: Duration) {
        self.record_outcome(name, duration, Outcome::Ok);
    }

    /// Records one run of the transaction called `name` that ended with `outcome`.
    #[inline]
    pub fn record_outcome(&self, name: &str, duration: Duration, outcome: Outcome) {
        let ns = nanos(duration);
        self.inner.registry.with_name(name, |tx| tx.series.record(ns, outcome));
    }

    /// Runs `f` with the handle of the transaction called `name`, looked up
    /// in this thread's cache without taking a lock or cloning the handle.
    #[inline]
    pub fn with_transaction<R>(&self, name: &str, f: impl FnOnce(&Transaction) -> R) -> R {
        self.inner.registry.with_name(name, f)
    }

    /// Like [`with_transaction`](Self::with_transaction), registering the
    /// transaction with `spec()` if this is its first use.
    #[inline]
    pub fn with_spec<R>(
        &self,
        name: &str,
        spec: impl FnOnce() -> TransactionSpec,
        f: impl FnOnce(&Transaction) -> R,
    ) -> R {
        self.inner.registry.with_spec(name, spec, f)
    }

    /// Starts timing a run of the transaction called `name`.
    pub fn start(&self, name: &str) -> TransactionGuard {
        self.with_transaction(name, Transaction::start)
    }

    /// Captures an error that happened in the transaction called `transaction`.
    pub fn capture_error(&self, transaction: &str, error: CapturedError) {
        self.with_transaction(transaction, |tx| tx.capture_error(error));
    }

    /// Takes everything recorded since the previous harvest.
    ///
    /// Every sample lands in exactly one harvest. The interval's length comes
    /// from the monotonic clock; its end from the wall clock, read only here,
    /// and its start is the end less the length.
    pub fn harvest(&self) -> Harvest {
        // Only the end is read from the wall clock; the start is the end less
        // the interval's monotonic length, so a wall-clock jump between two
        // harvests never makes an interval end before it starts.
        let (now, end, elapsed) = {
            let mut last = lock(&self.inner.last_harvest);
            let now = Stamp::now();
            let elapsed = Duration::from_nanos(now.since(std::mem::replace(&mut *last, now)));
            (now, SystemTime::now(), elapsed)
        };
        let start = end.checked_sub(elapsed).unwrap_or(end);
        let transactions = self.inner.registry.drain();
        let errors = self.inner.registry.errors.drain(now, end);
        let traces = self.inner.registry.traces.drain(now, end);
        Harvest {
            start,
            end,
            elapsed,
            transactions,
            errors,
            traces,
            stats: self.stats(),
        }
    }

    /// The agent's own health.
    pub fn stats(&self) -> AgentStats {
        let registry = &self.inner.registry;
        AgentStats {
            series: registry.len(),
            series_limit: registry.config.max_series,
            refused_registrations: registry.refused(),
            overflowed_samples: registry.overflowed_samples(),
            sharded_series: registry.sharded(),
            dropped_errors: registry.errors.dropped(),
            dropped_traces: registry.traces.dropped(),
            memory_bytes: registry.memory_bytes(),
        }
    }
}
