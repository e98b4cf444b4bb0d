//! `[problems]` of `kuroko.toml`: what each detector flags, with defaults
//! that leave a cheap query repeated on a fast route alone
//! (docs/problems.md lists them).

/// `[problems.n_plus_one]`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NPlusOneThresholds {
    /// Whether the detector runs. Default: true.
    pub enabled: bool,
    /// Runs of one statement in one run, at least. Default: 5.
    pub min_count: usize,
    /// Their time together, at least (seconds). Default: 0.1.
    pub min_seconds: f64,
}

/// `[problems.sequential]`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequentialThresholds {
    /// Whether the detector runs. Default: true.
    pub enabled: bool,
    /// Each call of a chain lasts at least this long (seconds). Default: 0.03.
    pub min_call_seconds: f64,
    /// Most time between one call's end and the next one's start (seconds). Default: 0.02.
    pub max_gap_seconds: f64,
    /// Time saved by running them at once, at least (seconds). Default: 0.1.
    pub min_saved_seconds: f64,
    /// And at least this share of the run (0 to 1). Default: 0.1.
    pub min_saved_share: f64,
}

/// `[problems.dominant]`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DominantThresholds {
    /// Whether the detector runs. Default: true.
    pub enabled: bool,
    /// One query's share of the run, at least (0 to 1). Default: 0.5.
    pub min_share: f64,
    /// And at least this long (seconds). Default: 0.1.
    pub min_seconds: f64,
}

/// `[problems.outside]`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutsideThresholds {
    /// Whether the detector runs. Default: true.
    pub enabled: bool,
    /// Runs at least this long (seconds). Default: 1.
    pub min_run_seconds: f64,
    /// Share of the run in no segment, at least (0 to 1). Default: 0.7.
    pub min_share: f64,
}

/// `[problems.growth]`: segments whose calls per run grew against the
/// window before.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrowthThresholds {
    /// Whether the detector runs. Default: true.
    pub enabled: bool,
    /// The transaction's runs in each window, at least. Default: 100.
    pub min_runs: u64,
    /// Calls per run now over calls per run before, at least. Default: 2.
    pub min_ratio: f64,
    /// Calls per run added, at least. Default: 1.
    pub min_added_calls: f64,
    /// Time the added calls take a run, at least (seconds). Default: 0.05.
    pub min_added_seconds: f64,
    /// One-sided p-value of the rise, below. Default: 0.001.
    pub p_value: f64,
}

/// `[problems]` of `kuroko.toml`: what the detectors flag (docs/problems.md).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Kept traces read per transaction and window, the slowest first (and
    /// as many again over the history before the window). Default: 50: a
    /// page that shows problems reads at most 100 per transaction.
    pub max_traces_per_transaction: usize,
    /// Days of kept traces a group's first seen is read over. Default: 8
    /// (the store keeps traces as long as minute rows).
    pub history_days: i64,
    /// N+1.
    pub n_plus_one: NPlusOneThresholds,
    /// Sequential calls.
    pub sequential: SequentialThresholds,
    /// A dominant query.
    pub dominant: DominantThresholds,
    /// Time outside segments.
    pub outside: OutsideThresholds,
    /// Calls per run grown.
    pub growth: GrowthThresholds,
}

impl Default for Thresholds {
    fn default() -> Self {
        DEFAULT_THRESHOLDS.clone()
    }
}

impl Default for NPlusOneThresholds {
    fn default() -> Self {
        DEFAULT_THRESHOLDS.n_plus_one.clone()
    }
}

impl Default for SequentialThresholds {
    fn default() -> Self {
        DEFAULT_THRESHOLDS.sequential.clone()
    }
}

impl Default for DominantThresholds {
    fn default() -> Self {
        DEFAULT_THRESHOLDS.dominant.clone()
    }
}

impl Default for GrowthThresholds {
    fn default() -> Self {
        DEFAULT_THRESHOLDS.growth.clone()
    }
}

impl Default for OutsideThresholds {
    fn default() -> Self {
        DEFAULT_THRESHOLDS.outside.clone()
    }
}

/// The defaults, in one place.
pub(crate) static DEFAULT_THRESHOLDS: Thresholds = Thresholds {
    max_traces_per_transaction: 50,
    history_days: 8,
    n_plus_one: NPlusOneThresholds {
        enabled: true,
        min_count: 5,
        min_seconds: 0.1,
    },
    sequential: SequentialThresholds {
        enabled: true,
        min_call_seconds: 0.03,
        max_gap_seconds: 0.02,
        min_saved_seconds: 0.1,
        min_saved_share: 0.1,
    },
    dominant: DominantThresholds {
        enabled: true,
        min_share: 0.5,
        min_seconds: 0.1,
    },
    outside: OutsideThresholds {
        enabled: true,
        min_run_seconds: 1.0,
        min_share: 0.7,
    },
    growth: GrowthThresholds {
        enabled: true,
        min_runs: 100,
        min_ratio: 2.0,
        min_added_calls: 1.0,
        min_added_seconds: 0.05,
        p_value: 0.001,
    },
};

impl Thresholds {
    /// Settings that cannot work, said so (checked at start-up).
    pub fn check(&self) -> Result<(), String> {
        let share = |name: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(format!("[problems] {name} = {value}: a share, from 0 to 1"))
            }
        };
        share("dominant.min_share", self.dominant.min_share)?;
        share("outside.min_share", self.outside.min_share)?;
        share("sequential.min_saved_share", self.sequential.min_saved_share)?;
        if self.n_plus_one.min_count < 2 {
            return Err(format!(
                "[problems] n_plus_one.min_count = {}: a statement repeats from 2 runs on",
                self.n_plus_one.min_count
            ));
        }
        let g = &self.growth;
        if !(g.min_ratio >= 1.0 && g.min_added_calls >= 0.0 && g.min_added_seconds >= 0.0) {
            return Err(format!(
                "[problems] growth: min_ratio = {} must be at least 1, min_added_calls = {} and min_added_seconds = {} at least 0",
                g.min_ratio, g.min_added_calls, g.min_added_seconds
            ));
        }
        if !(g.p_value > 0.0 && g.p_value <= 1.0) {
            return Err(format!(
                "[problems] growth.p_value = {}: a p-value, above 0 and at most 1",
                g.p_value
            ));
        }
        if self.history_days < 1 || self.max_traces_per_transaction == 0 {
            return Err("[problems] history_days and max_traces_per_transaction must be at least 1".to_owned());
        }
        Ok(())
    }
}
