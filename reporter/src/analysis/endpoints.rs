//! Slowest endpoints and Apdex: one row per transaction (or per feature) over
//! a window, with the numbers an APM's transaction table shows.
//!
//! A row merges the transaction's histograms across hosts and environments in
//! scope (the store merges per series, this module across series), so its
//! percentiles are read from one histogram of every run: exact merging, not an
//! average of per-host percentiles. From the agent (exponential buckets at
//! scale 7) a percentile is within 0.66% of the exact sample; from an SDK's
//! explicit buckets it is a guess inside a bucket, and the row says
//! `estimated`.
//!
//! Errors come from the outcome counters (`5xx` and `error` runs), Apdex from
//! the Apdex counters the agent counts against its own T. A series without
//! Apdex counters (an OpenTelemetry SDK) has its Apdex read from its histogram
//! at T = [`DEFAULT_APDEX_T`], without knowing which runs failed; a row says
//! which it used in `apdex_source`.
//!
//! Ranking by "time consumed" orders by total time (average × throughput):
//! where the fleet's time goes, which is often not the slowest endpoint but a
//! fast one called a million times.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{stats, Analysis, AnalysisError, Scope};
use crate::histogram::{bucket_bounds, Histogram};
use crate::owners::Owners;
use crate::store::{Filter, SeriesKey};

/// Apdex T (seconds) for series that sent no Apdex counters: the agent's default.
pub(crate) const DEFAULT_APDEX_T: f64 = 0.5;

/// The outcome counter: label `kuroko.outcome`.
pub(crate) const OUTCOMES: &str = crate::ingest::otlp::OUTCOMES;

/// The Apdex counter: labels `kuroko.apdex.threshold` and `kuroko.apdex.zone`.
pub const APDEX: &str = "kuroko.transaction.apdex";

/// What the slowest table is ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Rank {
    /// Median, slowest first.
    P50,
    /// 95th percentile, slowest first.
    P95,
    /// 99th percentile, slowest first.
    P99,
    /// Mean, slowest first.
    Average,
    /// Apdex, worst first.
    Apdex,
    /// Total time (average × throughput), most first.
    TimeConsumed,
}

/// What one row stands for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// One row per service and transaction.
    #[default]
    Transaction,
    /// One row per feature (tagged by the agent or assigned by `owners.toml`).
    Feature,
}

/// Where a row's Apdex came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApdexSource {
    /// The agent's Apdex counters: exact, failed runs frustrated.
    Counters,
    /// Read from the histogram at [`DEFAULT_APDEX_T`]: failed runs not known.
    Histogram,
    /// Counters for some transaction series (a series key without its
    /// host: rows are read across hosts), the histogram for others.
    Mixed,
}

/// One row of the slowest table. Durations in seconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EndpointRow {
    /// The service; empty in a feature row.
    pub service: String,
    /// The transaction; empty in a feature row.
    pub transaction: String,
    /// Its feature, `None` when neither tagged nor assigned.
    pub feature: Option<String>,
    /// The team owning the feature, per `owners.toml`.
    pub team: Option<String>,
    /// `web` or `job`; empty in a feature row.
    pub kind: String,
    /// Runs in the window.
    pub count: u64,
    /// Runs per minute of the window.
    pub throughput: f64,
    /// Mean (exact: sum over count).
    pub mean: f64,
    /// Standard deviation, estimated from the buckets; `None` under two runs.
    pub stddev: Option<f64>,
    /// Fastest run.
    pub min: f64,
    /// Slowest run.
    pub max: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Time spent in all runs.
    pub total_seconds: f64,
    /// `total_seconds` over the total of the row's service in the window (over
    /// all rows' total in a feature row), 0 to 1.
    pub share: f64,
    /// Failed runs (`5xx` and `error` outcomes).
    pub errors: u64,
    /// `errors` over the runs the outcome counters saw; `None` without them.
    pub error_rate: Option<f64>,
    /// Apdex, 0 to 1: (satisfied + tolerating / 2) / runs.
    pub apdex: Option<f64>,
    /// Apdex T in seconds; `None` when series used different ones.
    pub apdex_threshold: Option<f64>,
    /// Where the Apdex came from.
    pub apdex_source: ApdexSource,
    /// Some histogram came from explicit buckets: percentiles are estimates.
    pub estimated: bool,
}

/// The slowest endpoints over a scope.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SlowestTable {
    /// What was asked about.
    pub scope: Scope,
    /// The order of `rows`.
    pub rank: Rank,
    /// What a row stands for.
    pub group: Group,
    /// The first rows, in `rank` order.
    pub rows: Vec<EndpointRow>,
    /// Rows in scope before the limit.
    pub total_rows: usize,
    /// Some row is estimated.
    pub estimated: bool,
    /// What the senders of transactions in scope should change in their
    /// instrumentation for their numbers to be right.
    pub advice: Vec<Advice>,
}

/// A change a service's instrumentation needs, found in what it sent
/// (`kuroko.sdk.advice` counters): which transactions, how many of their
/// runs, and what to do.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Advice {
    /// The service.
    pub service: String,
    /// Its transactions affected.
    pub transactions: Vec<String>,
    /// What is wrong, e.g. `seconds_in_millisecond_bounds`.
    pub problem: String,
    /// Runs in the window it affected.
    pub runs: f64,
    /// What it means and what to change, for a person.
    pub message: String,
}

/// What a person should read about `problem`.
pub(crate) fn advice_message(problem: &str) -> String {
    match problem {
        crate::ingest::metrics::SECONDS_IN_MILLISECOND_BOUNDS => "recorded seconds into millisecond bucket bounds \
            (the SDK's default 0, 5, 10 … 10000, meant for ms): every run under 5 s fell in one bucket, (0, 5], \
            so its percentiles are only spread between the runs' min and max. Record seconds with the bounds \
            the semantic conventions advise: explicit_bucket_boundaries_advisory=[0.005, 0.01, 0.025, 0.05, \
            0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10] when creating the histogram (Python; \
            advice.explicitBucketBoundaries in Node.js, setExplicitBucketBoundariesAdvice in Java), or a View \
            with those boundaries (ExplicitBucketHistogramAggregation); percentiles are then within a \
            bucket's width (0.25 s between 0.25 and 0.5 s). For percentiles within a few percent, use an \
            exponential histogram (ExponentialBucketHistogramAggregation)"
            .to_owned(),
        other => format!("sent data Kuroko flags as {other}"),
    }
}

/// Apdex of one transaction or feature, with its zones.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ApdexRow {
    /// The service; empty in a feature row.
    pub service: String,
    /// The transaction; empty in a feature row.
    pub transaction: String,
    /// Its feature.
    pub feature: Option<String>,
    /// The owning team.
    pub team: Option<String>,
    /// Runs counted in the zones.
    pub runs: f64,
    /// Runs within T.
    pub satisfied: f64,
    /// Runs within 4 T.
    pub tolerating: f64,
    /// Slower runs, and (from counters) failed ones.
    pub frustrated: f64,
    /// (satisfied + tolerating / 2) / runs; `None` without runs.
    pub apdex: Option<f64>,
    /// Apdex T in seconds; `None` when series used different ones.
    pub threshold: Option<f64>,
    /// Where the zones came from.
    pub source: ApdexSource,
    /// Some histogram came from explicit buckets.
    pub estimated: bool,
}

/// Runs per Apdex zone: satisfied, tolerating, frustrated.
pub(crate) type Zones = [f64; 3];

/// The Apdex score of `zones`, `None` when empty.
pub(crate) fn score(zones: Zones) -> Option<f64> {
    let runs: f64 = zones.iter().sum();
    (runs > 0.0).then(|| (zones[0] + zones[1] / 2.0) / runs)
}

/// Zones read from a histogram at T = `threshold`: each bucket whole in the
/// zone of its middle (clamped into min..max), as quantiles are read; the zero
/// region is satisfied.
pub(crate) fn histogram_zones(histogram: &Histogram, threshold: f64) -> Zones {
    let mut zones = [histogram.zero_count as f64, 0.0, 0.0];
    for (index, count) in histogram.iter_buckets() {
        let (low, high) = bucket_bounds(index, histogram.scale);
        let value = ((low + high) / 2.0).clamp(histogram.min, histogram.max.max(histogram.min));
        let zone = if value <= threshold {
            0
        } else if value <= 4.0 * threshold {
            1
        } else {
            2
        };
        zones[zone] += count as f64;
    }
    zones
}

/// The value of `key=` in canonical `k=v,k=v` labels.
pub(crate) fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Whether an outcome is a failure: `5xx` or `error`.
pub(crate) fn is_failure(outcome: &str) -> bool {
    matches!(outcome, "5xx" | "error")
}

/// Per series: Apdex zones from counters and the thresholds they used.
#[derive(Default)]
pub(crate) struct ApdexCounts {
    zones: Zones,
    thresholds: BTreeSet<String>,
}

/// Apdex counters per series.
pub(crate) fn apdex_counts(rows: Vec<(SeriesKey, String, f64)>) -> HashMap<SeriesKey, ApdexCounts> {
    let mut out: HashMap<SeriesKey, ApdexCounts> = HashMap::new();
    for (key, labels, value) in rows {
        let zone = match label(&labels, "kuroko.apdex.zone") {
            Some("satisfied") => 0,
            Some("tolerating") => 1,
            Some("frustrated") => 2,
            _ => continue,
        };
        let counts = out.entry(key).or_default();
        counts.zones[zone] += value;
        if let Some(t) = label(&labels, "kuroko.apdex.threshold") {
            counts.thresholds.insert(t.to_owned());
        }
    }
    out
}

/// (runs, failures) per series from the outcome counters.
pub(crate) fn outcome_counts(rows: Vec<(SeriesKey, String, f64)>) -> HashMap<SeriesKey, (f64, f64)> {
    let mut out: HashMap<SeriesKey, (f64, f64)> = HashMap::new();
    for (key, labels, value) in rows {
        let entry = out.entry(key).or_default();
        entry.0 += value;
        if label(&labels, "kuroko.outcome").is_some_and(is_failure) {
            entry.1 += value;
        }
    }
    out
}

/// What a row is keyed by: (service, transaction), or ("", "") and the feature.
pub(crate) type RowId = (String, String, Option<String>);

/// The row `key` belongs to in `group`, with its feature.
pub(crate) fn row_id(key: &SeriesKey, group: Group, owners: &Owners) -> RowId {
    let tagged = Some(key.feature.as_str()).filter(|f| !f.is_empty());
    let feature = owners
        .feature_of(&key.service, &key.transaction, tagged)
        .map(str::to_owned);
    match group {
        Group::Transaction => (key.service.clone(), key.transaction.clone(), feature),
        Group::Feature => (String::new(), String::new(), feature),
    }
}

/// One row being summed over its series.
struct Accumulator {
    kind: String,
    histogram: Histogram,
    outcomes: (f64, f64),
    zones: Zones,
    thresholds: BTreeSet<String>,
    from_counters: bool,
    from_histogram: bool,
}

/// Every row in scope, unordered, with its Apdex zones.
fn endpoints(analysis: &Analysis<'_>, scope: &Scope, group: Group) -> Result<Vec<(EndpointRow, Zones)>, AnalysisError> {
    // The service's total (for `share`) includes its other transactions,
    // whatever their feature.
    let filter = Filter {
        transaction: None,
        feature: None,
        ..scope.transactions_filter(analysis.owners)
    };
    // Three independent reads that wait mostly on the store: side by side,
    // the counters' (a few round trips each) hide behind the histograms'.
    let (histograms, outcomes, apdex) = std::thread::scope(|threads| {
        let outcomes = threads.spawn(|| analysis.counters(&filter, OUTCOMES, scope.from, scope.to));
        let apdex = threads.spawn(|| analysis.counters(&filter, APDEX, scope.from, scope.to));
        let histograms = analysis.histograms(&filter, scope.from, scope.to);
        (histograms, crate::sync::joined(outcomes), crate::sync::joined(apdex))
    });
    let histograms = histograms?;
    let mut outcomes = outcome_counts(outcomes?);
    let mut apdex = apdex_counts(apdex?);
    let mut service_totals: HashMap<String, f64> = HashMap::new();
    let mut rows: BTreeMap<RowId, Accumulator> = BTreeMap::new();
    for (key, histogram) in histograms {
        *service_totals.entry(key.service.clone()).or_default() += histogram.sum;
        if histogram.count == 0 || !scope.matches(&key, analysis.owners) {
            continue;
        }
        let id = row_id(&key, group, analysis.owners);
        let row = rows.entry(id).or_insert_with(|| Accumulator {
            kind: match group {
                Group::Transaction => key.transaction_kind().to_owned(),
                Group::Feature => String::new(),
            },
            histogram: Histogram::empty(),
            outcomes: (0.0, 0.0),
            zones: [0.0; 3],
            thresholds: BTreeSet::new(),
            from_counters: false,
            from_histogram: false,
        });
        row.histogram.merge(&histogram);
        if let Some((runs, failures)) = outcomes.remove(&key) {
            row.outcomes.0 += runs;
            row.outcomes.1 += failures;
        }
        match apdex.remove(&key).filter(|a| a.zones.iter().sum::<f64>() > 0.0) {
            Some(counts) => {
                row.zones.iter_mut().zip(counts.zones).for_each(|(z, c)| *z += c);
                row.thresholds.extend(counts.thresholds);
                row.from_counters = true;
            }
            None => {
                let zones = histogram_zones(&histogram, DEFAULT_APDEX_T);
                row.zones.iter_mut().zip(zones).for_each(|(z, c)| *z += c);
                row.thresholds.insert(DEFAULT_APDEX_T.to_string());
                row.from_histogram = true;
            }
        }
    }
    let all: f64 = service_totals.values().sum();
    let minutes = scope.minutes().max(1) as f64;
    Ok(rows
        .into_iter()
        .map(|((service, transaction, feature), acc)| {
            let h = &acc.histogram;
            let whole = match group {
                Group::Transaction => service_totals.get(&service).copied().unwrap_or(0.0),
                Group::Feature => all,
            };
            let team = feature
                .as_deref()
                .and_then(|f| analysis.owners.team_of_feature(f))
                .map(|t| t.name.clone());
            let threshold = match acc.thresholds.len() {
                1 => acc.thresholds.first().and_then(|t| t.parse().ok()),
                _ => None,
            };
            let row = EndpointRow {
                service,
                transaction,
                feature,
                team,
                kind: acc.kind,
                count: h.count,
                throughput: h.count as f64 / minutes,
                mean: h.mean(),
                stddev: stats::bucket_variance(h).map(f64::sqrt),
                min: h.min,
                max: h.max,
                p50: h.quantile(0.50),
                p95: h.quantile(0.95),
                p99: h.quantile(0.99),
                total_seconds: h.sum,
                share: if whole > 0.0 { h.sum / whole } else { 0.0 },
                errors: acc.outcomes.1.round() as u64,
                error_rate: (acc.outcomes.0 > 0.0).then(|| acc.outcomes.1 / acc.outcomes.0),
                apdex: score(acc.zones),
                apdex_threshold: threshold,
                apdex_source: match (acc.from_counters, acc.from_histogram) {
                    (true, false) => ApdexSource::Counters,
                    (false, _) => ApdexSource::Histogram,
                    (true, true) => ApdexSource::Mixed,
                },
                estimated: h.estimated,
            };
            (row, acc.zones)
        })
        .collect())
}

/// The value a row is ranked by, larger first.
fn rank_value(row: &EndpointRow, rank: Rank) -> f64 {
    match rank {
        Rank::P50 => row.p50,
        Rank::P95 => row.p95,
        Rank::P99 => row.p99,
        Rank::Average => row.mean,
        // Worst first; rows without a score last.
        Rank::Apdex => row.apdex.map_or(f64::NEG_INFINITY, |a| -a),
        Rank::TimeConsumed => row.total_seconds,
    }
}

impl Analysis<'_> {
    /// The slowest transactions (or features) in `scope` by `rank`, the first
    /// `limit` of them.
    pub fn slowest(&self, scope: &Scope, by: Rank, limit: usize) -> Result<SlowestTable, AnalysisError> {
        self.slowest_grouped(scope, Group::Transaction, by, limit)
    }

    /// [`Analysis::slowest`] with rows per transaction or per feature.
    pub fn slowest_grouped(
        &self,
        scope: &Scope,
        group: Group,
        by: Rank,
        limit: usize,
    ) -> Result<SlowestTable, AnalysisError> {
        // The advice is read beside the rows: independent reads.
        let (rows, advice) = std::thread::scope(|threads| {
            let advice = threads.spawn(|| self.advice(scope));
            (endpoints(self, scope, group), crate::sync::joined(advice))
        });
        let advice = advice?;
        let mut rows: Vec<EndpointRow> = rows?.into_iter().map(|(r, _)| r).collect();
        rows.sort_by(|a, b| {
            rank_value(b, by)
                .total_cmp(&rank_value(a, by))
                .then_with(|| (&a.service, &a.transaction, &a.feature).cmp(&(&b.service, &b.transaction, &b.feature)))
        });
        let total_rows = rows.len();
        let estimated = rows.iter().any(|r| r.estimated);
        rows.truncate(limit);
        Ok(SlowestTable {
            scope: scope.clone(),
            rank: by,
            group,
            rows,
            total_rows,
            estimated,
            advice,
        })
    }

    /// What the senders of transactions in `scope` should change in their
    /// instrumentation, most runs first.
    pub(crate) fn advice(&self, scope: &Scope) -> Result<Vec<Advice>, AnalysisError> {
        let filter = scope.transactions_filter(self.owners);
        let mut found: BTreeMap<(String, String), (BTreeSet<String>, f64)> = BTreeMap::new();
        for (key, labels, value) in self.counters(&filter, crate::ingest::metrics::ADVICE, scope.from, scope.to)? {
            if !scope.matches(&key, self.owners) {
                continue;
            }
            let problem = label(&labels, "kuroko.advice").unwrap_or("unknown").to_owned();
            let (transactions, runs) = found.entry((key.service, problem)).or_default();
            transactions.insert(key.transaction);
            *runs += value;
        }
        let mut advice: Vec<Advice> = found
            .into_iter()
            .map(|((service, problem), (transactions, runs))| Advice {
                message: advice_message(&problem),
                service,
                transactions: transactions.into_iter().collect(),
                problem,
                runs,
            })
            .collect();
        advice.sort_by(|a, b| b.runs.total_cmp(&a.runs));
        Ok(advice)
    }

    /// Apdex per transaction or feature in `scope`, worst first.
    pub fn apdex(&self, scope: &Scope, group: Group) -> Result<Vec<ApdexRow>, AnalysisError> {
        let mut rows: Vec<ApdexRow> = endpoints(self, scope, group)?
            .into_iter()
            .map(|(row, zones)| ApdexRow {
                service: row.service,
                transaction: row.transaction,
                feature: row.feature,
                team: row.team,
                runs: zones.iter().sum(),
                satisfied: zones[0],
                tolerating: zones[1],
                frustrated: zones[2],
                apdex: row.apdex,
                threshold: row.apdex_threshold,
                source: row.apdex_source,
                estimated: row.estimated,
            })
            .collect();
        let key = |r: &ApdexRow| r.apdex.unwrap_or(f64::INFINITY);
        rows.sort_by(|a, b| key(a).total_cmp(&key(b)));
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apdex_zones_from_a_histogram_follow_the_threshold() {
        let mut h = Histogram::empty();
        for v in [0.1, 0.2, 0.4, 0.9, 1.5, 2.5, 4.0] {
            h.record(v).unwrap();
        }
        assert_eq!(histogram_zones(&h, 0.5), [3.0, 2.0, 2.0]);
        assert_eq!(score([3.0, 2.0, 2.0]), Some(4.0 / 7.0));
        assert_eq!(score([0.0; 3]), None);
    }

    #[test]
    fn labels_are_read_by_key() {
        let labels = "kuroko.apdex.threshold=0.5,kuroko.apdex.zone=tolerating";
        assert_eq!(label(labels, "kuroko.apdex.zone"), Some("tolerating"));
        assert_eq!(label(labels, "kuroko.apdex.threshold"), Some("0.5"));
        assert_eq!(label(labels, "kuroko.outcome"), None);
    }
}
