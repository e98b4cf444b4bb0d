//! Agent configuration: histogram range and precision, limits, Apdex thresholds.

use std::collections::HashMap;
use std::time::Duration;

/// Why an [`AgentConfig`] was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The histogram range or precision cannot be represented.
    #[error("invalid histogram bounds ({0}): the lowest value must be at least 1 ns, the highest at least twice the lowest, and significant digits at most 5")]
    HistogramBounds(String),
    /// A limit was set to zero.
    #[error("`{0}` must be at least 1")]
    ZeroLimit(&'static str),
    /// An Apdex threshold of zero would make every transaction frustrated.
    #[error("Apdex threshold for {0:?} must be greater than zero")]
    ZeroApdex(String),
}

/// Everything an [`Agent`](crate::Agent) can be tuned with.
///
/// Start from [`AgentConfig::default`] and change what you need with the
/// `with_*` methods (or by assigning fields); every field has a documented
/// default. The struct is `#[non_exhaustive]`, so that new settings are not
/// a breaking change: other crates cannot build it with a struct literal.
///
/// ```
/// use std::time::Duration;
/// use kuroko_agent::{Agent, AgentConfig};
///
/// let config = AgentConfig::default()
///     .with_service_name("cards-api")
///     .with_apdex_t(Duration::from_millis(200))
///     .with_apdex_override("POST /cards/{id}/scan", Duration::from_millis(50));
/// let agent = Agent::new(config)?;
/// # Ok::<(), kuroko_agent::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AgentConfig {
    /// Name of the service (`service.name`). Default: `"unknown_service"`.
    pub service_name: String,
    /// Smallest duration told apart from zero. Default: 1 µs.
    pub lowest_discernible: Duration,
    /// Largest duration tracked; longer ones are clamped to it (their exact
    /// value still counts in sum and max). Default: 1 h.
    pub highest_trackable: Duration,
    /// Decimal digits of precision kept by every histogram. Default: 2
    /// (each bucket is at most 1% wide).
    pub significant_digits: u8,
    /// Most distinct transactions tracked; past it, samples are folded into
    /// one overflow series. Default: 2,000.
    pub max_series: usize,
    /// Most distinct segments kept per transaction; past it, segments are
    /// folded into one `(other)` segment of their kind. Default: 200.
    pub max_segments_per_transaction: usize,
    /// Most distinct errors kept per harvest interval; more are counted as
    /// dropped. Default: 500.
    pub max_errors_per_interval: usize,
    /// Longest error message kept, in bytes; longer ones are cut at a
    /// character boundary. Default: 2,048.
    pub max_error_message_bytes: usize,
    /// Apdex threshold T for transactions without their own. Default: 500 ms.
    pub apdex_t: Duration,
    /// Apdex thresholds per transaction name.
    pub apdex_overrides: HashMap<String, Duration>,
    /// A series that records at least this many samples in one harvest
    /// interval gets one recording shard per core from then on, so threads
    /// stop sharing cache lines. 0 shards every series from its creation.
    /// Default: 1,000.
    pub hot_series_threshold: u64,
    /// Most recording shards per hot series (rounded up to a power of two).
    /// Default: the number of cores, at most 8.
    pub max_shards: usize,
    /// A run at least this many times its Apdex threshold is slow, and kept
    /// as a trace (within the budget below). Default: 4.
    pub slow_factor: u32,
    /// Most slow traces kept per transaction per minute. Default: 10.
    pub max_slow_traces_per_minute: u32,
    /// Most segments kept in one trace. Default: 32.
    pub max_trace_segments: usize,
    /// Most slow traces kept per harvest interval, over all transactions.
    /// Default: 200.
    pub max_traces_per_interval: usize,
    /// Most memory, in bytes, spent on the extra shards of hot series; once
    /// spent, further series stay on one shard. Default: 32 MiB, which with
    /// 2,000 unsharded series (27 MiB) keeps the agent under 64 MiB.
    pub shard_memory_budget: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        AgentConfig {
            service_name: "unknown_service".to_owned(),
            lowest_discernible: Duration::from_micros(1),
            highest_trackable: Duration::from_secs(3600),
            significant_digits: 2,
            max_series: 2_000,
            max_segments_per_transaction: 200,
            max_errors_per_interval: 500,
            max_error_message_bytes: 2_048,
            apdex_t: Duration::from_millis(500),
            apdex_overrides: HashMap::new(),
            hot_series_threshold: 1_000,
            max_shards: cores.min(8),
            shard_memory_budget: 32 << 20,
            slow_factor: 4,
            max_slow_traces_per_minute: 10,
            max_trace_segments: 32,
            max_traces_per_interval: 200,
        }
    }
}

impl AgentConfig {
    crate::setters::setters! {
        with_service_name => service_name: into String,
        with_lowest_discernible => lowest_discernible: value Duration,
        with_highest_trackable => highest_trackable: value Duration,
        with_significant_digits => significant_digits: value u8,
        with_max_series => max_series: value usize,
        with_max_segments_per_transaction => max_segments_per_transaction: value usize,
        with_max_errors_per_interval => max_errors_per_interval: value usize,
        with_max_error_message_bytes => max_error_message_bytes: value usize,
        with_apdex_t => apdex_t: value Duration,
        with_hot_series_threshold => hot_series_threshold: value u64,
        with_max_shards => max_shards: value usize,
        with_slow_factor => slow_factor: value u32,
        with_max_slow_traces_per_minute => max_slow_traces_per_minute: value u32,
        with_max_trace_segments => max_trace_segments: value usize,
        with_max_traces_per_interval => max_traces_per_interval: value usize,
        with_shard_memory_budget => shard_memory_budget: value usize,
    }

    /// Sets the Apdex threshold of one transaction (see
    /// [`apdex_overrides`](Self::apdex_overrides)).
    #[must_use]
    pub fn with_apdex_override(mut self, transaction: impl Into<String>, threshold: Duration) -> Self {
        self.apdex_overrides.insert(transaction.into(), threshold);
        self
    }

    /// Checks every field, naming the first that is unusable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("max_series", self.max_series),
            ("max_segments_per_transaction", self.max_segments_per_transaction),
            ("max_errors_per_interval", self.max_errors_per_interval),
            ("max_error_message_bytes", self.max_error_message_bytes),
            ("max_shards", self.max_shards),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        if self.apdex_t.is_zero() {
            return Err(ConfigError::ZeroApdex("the default".to_owned()));
        }
        if let Some((name, _)) = self.apdex_overrides.iter().find(|(_, t)| t.is_zero()) {
            return Err(ConfigError::ZeroApdex(name.clone()));
        }
        Ok(())
    }

    /// Apdex threshold of the named transaction.
    pub fn apdex_for(&self, transaction: &str) -> Duration {
        self.apdex_overrides.get(transaction).copied().unwrap_or(self.apdex_t)
    }
}

/// Saturating conversion of a duration to whole nanoseconds.
#[inline]
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
