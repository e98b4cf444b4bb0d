//! Alerts: rules in `kuroko.toml`, evaluated every minute, that tell the
//! owning team once when a threshold is crossed and once when it is not any
//! more.
//!
//! ```toml
//! [[alerts]]
//! name = "checkout slow"
//! metric = "p95"                  # p95 | avg (seconds) | error_rate (0..1) | apdex (0..1)
//! transaction = "POST /checkout"  # and/or feature = "checkout"; service, environment optional
//! above = 0.8                     # or below = 0.85 (for apdex)
//! for = "5m"                      # the window the value is measured over
//! team = "payments"               # optional: else the feature's team in owners.toml
//! ```
//!
//! Each minute a rule's metric is measured over the last `for` (whole
//! minutes, ending at the current minute), over every series it matches;
//! a window without runs counts as healthy. The rule's state is a small
//! machine — ok → firing → ok — kept in the store
//! ([`DeliveryState::alert_state_put`](crate::store::state::DeliveryState::alert_state_put)), so a restart neither repeats a
//! notification nor forgets one that is firing. A transition is written
//! first, with `notified = false`, then notified through the delivery ledger
//! (kind `alert`, period `RULE@MINUTE:fired|resolved`), then marked
//! notified: a crash in between notifies on the next pass, and the ledger's
//! claim keeps that from being a duplicate.
//!
//! A firing p95 or average alert says why ([`cause`]): its window's change
//! of mean time per run against the hour before, decomposed as a
//! regression's is ([`crate::analysis::attribution`]).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::analysis::{Analysis, AnalysisError, Scope};
use crate::format;
use crate::histogram::Histogram;
use crate::owners::{Owners, Team};
use crate::report::digest::slack_escape;
pub use crate::store::state::AlertState;
use crate::store::{Filter, SeriesKey, Store, StoreError};

/// What a rule measures.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// The 95th percentile of durations, seconds.
    P95,
    /// The mean duration, seconds.
    Avg,
    /// Failed runs (`5xx` and `error` outcomes) over all runs, 0 to 1.
    ErrorRate,
    /// Apdex: (satisfied + tolerating / 2) / runs, 0 to 1.
    Apdex,
}

impl Metric {
    fn label(self) -> &'static str {
        match self {
            Metric::P95 => "p95",
            Metric::Avg => "average",
            Metric::ErrorRate => "error rate",
            Metric::Apdex => "Apdex",
        }
    }

    /// `value` as people read it.
    pub fn format(self, value: f64) -> String {
        match self {
            Metric::P95 | Metric::Avg => format::duration(value),
            Metric::ErrorRate => format::percent(value),
            Metric::Apdex => format::apdex(Some(value)),
        }
    }
}

/// One `[[alerts]]` rule.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// A unique name: the key of the rule's state.
    pub name: String,
    /// What is measured.
    pub metric: Metric,
    /// Only this service.
    #[serde(default)]
    pub service: Option<String>,
    /// Only this transaction.
    #[serde(default)]
    pub transaction: Option<String>,
    /// Only transactions of this feature (tagged, or by owners.toml).
    #[serde(default)]
    pub feature: Option<String>,
    /// Only this deployment environment.
    #[serde(default)]
    pub environment: Option<String>,
    /// Fires when the value is above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// Fires when the value is below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// The window, e.g. `5m`, `1h`: whole minutes.
    #[serde(rename = "for", default = "default_window")]
    pub window: String,
    /// The team to notify; by default the owner of `feature` or of the
    /// transaction's feature.
    #[serde(default)]
    pub team: Option<String>,
}

fn default_window() -> String {
    "5m".to_owned()
}

/// A rule that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("[[alerts]] {rule:?}: {message}")]
pub struct AlertError {
    /// The rule's name.
    pub rule: String,
    /// What is wrong.
    pub message: String,
}

impl AlertRule {
    /// The window in minutes; an error names what is expected.
    pub(crate) fn window_minutes(&self) -> Result<i64, AlertError> {
        let bad = || AlertError {
            rule: self.name.clone(),
            message: format!(
                "for = {:?}: expected whole minutes such as \"5m\", \"90m\" or \"1h\"",
                self.window
            ),
        };
        let text = self.window.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: i64 = number.parse().map_err(|_| bad())?;
        let minutes = match unit.trim() {
            "m" | "min" => number,
            "h" => number.checked_mul(60).ok_or_else(bad)?,
            "s" if number % 60 == 0 => number / 60,
            _ => return Err(bad()),
        };
        if !(1..=7 * 24 * 60).contains(&minutes) {
            return Err(bad());
        }
        Ok(minutes)
    }

    /// Checks the rule: a name, one threshold, a window, something to match.
    pub fn check(&self) -> Result<(), AlertError> {
        let fail = |message: &str| {
            Err(AlertError {
                rule: self.name.clone(),
                message: message.to_owned(),
            })
        };
        if self.name.trim().is_empty() {
            return fail("name must not be empty");
        }
        match (self.above, self.below) {
            (Some(_), Some(_)) | (None, None) => return fail("give exactly one of `above` or `below`"),
            (Some(t), None) | (None, Some(t)) if !t.is_finite() => return fail("the threshold must be a number"),
            _ => {}
        }
        if self.transaction.is_none() && self.feature.is_none() && self.service.is_none() {
            return fail("give a `transaction`, a `feature` or a `service` to watch");
        }
        self.window_minutes().map(|_| ())
    }

    /// Whether `value` breaks the threshold.
    pub(crate) fn breached(&self, value: f64) -> bool {
        match (self.above, self.below) {
            (Some(above), _) => value > above,
            (None, Some(below)) => value < below,
            (None, None) => false,
        }
    }

    fn threshold_text(&self) -> String {
        match (self.above, self.below) {
            (Some(t), _) => format!("above {}", self.metric.format(t)),
            (None, Some(t)) => format!("below {}", self.metric.format(t)),
            (None, None) => String::new(),
        }
    }

    fn subject_text(&self) -> String {
        match (&self.transaction, &self.feature, &self.service) {
            (Some(t), _, _) => t.clone(),
            (None, Some(f), _) => format!("feature {f}"),
            (None, None, Some(s)) => format!("service {s}"),
            (None, None, None) => "everything".to_owned(),
        }
    }

    fn filter(&self) -> Filter {
        Filter {
            service: self.service.clone(),
            host: None,
            transaction: self.transaction.clone(),
            feature: None,
            environment: self.environment.clone(),
            across_hosts: false,
        }
    }

    /// Whether the rule covers series `key` (the feature through `owners`).
    pub fn matches(&self, key: &SeriesKey, owners: &Owners) -> bool {
        let Some(feature) = &self.feature else {
            return true;
        };
        owners.feature_of(&key.service, &key.transaction, Some(&key.feature)) == Some(feature.as_str())
    }
}

/// Checks every rule, and that names are unique.
pub(crate) fn check_all(rules: &[AlertRule]) -> Result<(), AlertError> {
    let mut seen = BTreeMap::new();
    for rule in rules {
        rule.check()?;
        if seen.insert(rule.name.as_str(), ()).is_some() {
            return Err(AlertError {
                rule: rule.name.clone(),
                message: "two rules have this name; names must be unique".to_owned(),
            });
        }
    }
    Ok(())
}

/// A change of state worth telling people about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// ok → firing.
    Fired,
    /// firing → ok.
    Resolved,
}

impl Transition {
    /// `fired` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Fired => "fired",
            Transition::Resolved => "resolved",
        }
    }
}

/// The state machine: the next state after measuring `value` at `minute`
/// (`breached` when it breaks the threshold), and the transition if any.
/// Staying in a state is never a transition, so nothing repeats.
pub fn step(
    previous: Option<&AlertState>,
    value: Option<f64>,
    breached: bool,
    minute: i64,
) -> (AlertState, Option<Transition>) {
    let firing = previous.is_some_and(|p| p.firing);
    match (previous, firing, breached) {
        (Some(previous), true, true) | (Some(previous), false, false) => (previous.clone(), None),
        (None, _, false) => (
            AlertState {
                firing: false,
                since: minute,
                value,
                notified: true,
            },
            None,
        ),
        (_, was_firing, now_firing) => (
            AlertState {
                firing: now_firing,
                since: minute,
                value,
                notified: false,
            },
            Some(if was_firing {
                Transition::Resolved
            } else {
                Transition::Fired
            }),
        ),
    }
}

/// The value of `label` among canonical `k=v,k=v` labels.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels
        .split(',')
        .find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

/// The rule's metric over the minutes `now_minute - window .. now_minute`;
/// `None` when no run happened in it.
pub(crate) fn measure(
    store: &dyn Store,
    owners: &Owners,
    rule: &AlertRule,
    now_minute: i64,
) -> Result<Option<f64>, StoreError> {
    let window = rule.window_minutes().unwrap_or(5);
    let (from, to) = (now_minute - window, now_minute);
    let filter = rule.filter();
    match rule.metric {
        Metric::P95 | Metric::Avg => {
            let mut merged: Option<Histogram> = None;
            for (key, histogram) in store.histograms(&filter, from, to)? {
                if rule.matches(&key, owners) {
                    match &mut merged {
                        Some(total) => total.merge(&histogram),
                        None => merged = Some(histogram),
                    }
                }
            }
            Ok(merged.filter(|h| h.count > 0).map(|h| {
                if rule.metric == Metric::P95 {
                    h.quantile(0.95)
                } else {
                    h.mean()
                }
            }))
        }
        Metric::ErrorRate | Metric::Apdex => {
            let (name, key) = if rule.metric == Metric::ErrorRate {
                ("kuroko.transaction.outcomes", "kuroko.outcome")
            } else {
                ("kuroko.transaction.apdex", "kuroko.apdex.zone")
            };
            let mut by_value: BTreeMap<String, f64> = BTreeMap::new();
            for (series, labels, value) in store.counters(&filter, name, from, to)? {
                if rule.matches(&series, owners) {
                    *by_value
                        .entry(label(&labels, key).unwrap_or_default().to_owned())
                        .or_default() += value;
                }
            }
            let total: f64 = by_value.values().sum();
            if total <= 0.0 {
                return Ok(None);
            }
            let of = |v: &str| by_value.get(v).copied().unwrap_or(0.0);
            Ok(Some(if rule.metric == Metric::ErrorRate {
                (of("5xx") + of("error")) / total
            } else {
                (of("satisfied") + of("tolerating") / 2.0) / total
            }))
        }
    }
}

/// The team to notify: the rule's `team`, else the owner of its feature,
/// else the owner of the first known series it watches.
pub(crate) fn owning_team<'a>(rule: &AlertRule, owners: &'a Owners, series: &[SeriesKey]) -> Option<&'a Team> {
    if let Some(team) = &rule.team {
        return owners.team(team);
    }
    if let Some(feature) = &rule.feature {
        return owners.team_of_feature(feature);
    }
    series
        .iter()
        .filter(|k| rule.transaction.as_ref().is_none_or(|t| *t == k.transaction))
        .filter(|k| rule.service.as_ref().is_none_or(|s| *s == k.service))
        .find_map(|k| owners.team_of(&k.service, &k.transaction, Some(&k.feature)))
}

/// How long before a latency alert's window its cause is looked for, at
/// least: the hour before the window (or as long as the window, if longer).
pub const CAUSE_BASELINE_MINUTES: i64 = 60;

/// Why a latency rule (p95, average) fires: the change of mean time per
/// run from the hour before its window to its window, attributed
/// ([`crate::analysis::attribution`]): its cause, or "no single cause…".
/// `None` for the other metrics, or when either window had no runs.
pub(crate) fn cause(
    store: &dyn Store,
    owners: &Owners,
    rule: &AlertRule,
    now_minute: i64,
) -> Result<Option<String>, AnalysisError> {
    if !matches!(rule.metric, Metric::P95 | Metric::Avg) {
        return Ok(None);
    }
    let window = rule.window_minutes().unwrap_or(5);
    let scope = Scope {
        service: rule.service.clone(),
        transaction: rule.transaction.clone(),
        feature: rule.feature.clone(),
        environment: rule.environment.clone(),
        ..Scope::window(now_minute - window, now_minute)
    };
    let baseline = Scope {
        from: scope.from - window.max(CAUSE_BASELINE_MINUTES),
        to: scope.from,
        ..scope.clone()
    };
    let a = Analysis::new(store, owners).attribute_windows(&scope, &baseline, rule.transaction.is_none())?;
    Ok((a.previous_mean > 0.0 && a.current_mean > 0.0).then_some(a.summary))
}

/// What the notification says: a subject line and a body, plain text; a
/// firing latency alert says why (`cause`, from [`cause`]).
pub(crate) fn message_text(
    rule: &AlertRule,
    transition: Transition,
    value: Option<f64>,
    window: i64,
    cause: Option<&str>,
) -> (String, String) {
    let what = format!("{} of {}", rule.metric.label(), rule.subject_text());
    let value_text = value.map_or_else(|| "no runs".to_owned(), |v| rule.metric.format(v));
    match transition {
        Transition::Fired => (
            format!("[Kuroko] FIRING: {}", rule.name),
            format!(
                "Alert \"{}\" is firing: {what} is {value_text} over the last {window} min ({}).{}",
                rule.name,
                rule.threshold_text(),
                cause
                    .map(|c| format!(
                        " Why, against the {} min before: {c}.",
                        window.max(CAUSE_BASELINE_MINUTES)
                    ))
                    .unwrap_or_default()
            ),
        ),
        Transition::Resolved => (
            format!("[Kuroko] resolved: {}", rule.name),
            format!(
                "Alert \"{}\" is resolved: {what} is {value_text} over the last {window} min (alerting {}).",
                rule.name,
                rule.threshold_text()
            ),
        ),
    }
}

/// The chat message: one short line, the rule's names escaped for Slack.
pub(crate) fn chat_message(
    rule: &AlertRule,
    transition: Transition,
    value: Option<f64>,
    window: i64,
    cause: Option<&str>,
    link: &str,
) -> serde_json::Value {
    let (_, body) = message_text(rule, transition, value, window, cause);
    let icon = match transition {
        Transition::Fired => ":rotating_light:",
        Transition::Resolved => ":white_check_mark:",
    };
    let mut text = format!("{icon} {}", slack_escape(&body));
    if !link.is_empty() {
        text.push_str(&format!(" <{}|open in Kuroko>", slack_escape(link)));
    }
    serde_json::json!({ "text": text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::state::DeliveryState;
    use crate::store::{Batch, CounterPoint, HistogramPoint};

    fn rule(toml_text: &str) -> AlertRule {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn rules_are_checked_with_the_rule_named() {
        let ok = rule("name = \"slow\"\nmetric = \"p95\"\ntransaction = \"GET /\"\nabove = 0.8\nfor = \"1h\"");
        ok.check().unwrap();
        assert_eq!(ok.window_minutes().unwrap(), 60);
        let both = rule("name = \"x\"\nmetric = \"apdex\"\nfeature = \"f\"\nabove = 1\nbelow = 0.5");
        assert!(both.check().unwrap_err().to_string().contains("exactly one"));
        let bad_for = rule("name = \"y\"\nmetric = \"avg\"\nservice = \"s\"\nabove = 1\nfor = \"5 minutes\"");
        let e = bad_for.check().unwrap_err().to_string();
        assert!(e.contains("\"y\"") && e.contains("for = \"5 minutes\""), "{e}");
        assert!(toml::from_str::<AlertRule>("name = \"z\"\nmetric = \"p99\"\nabove = 1").is_err());
        assert!(check_all(&[ok.clone(), ok]).unwrap_err().to_string().contains("unique"));
    }

    #[test]
    fn fires_once_does_not_repeat_and_resolves_once() {
        let mut state = None;
        let mut transitions = Vec::new();
        for (minute, breached) in [false, true, true, true, false, false, true].into_iter().enumerate() {
            let (next, transition) = step(state.as_ref(), Some(1.0), breached, minute as i64);
            transitions.extend(transition.map(|t| (minute, t)));
            state = Some(next);
        }
        assert_eq!(
            transitions,
            [
                (1, Transition::Fired),
                (4, Transition::Resolved),
                (6, Transition::Fired)
            ]
        );
        // A first evaluation that breaches fires.
        assert_eq!(step(None, Some(2.0), true, 9).1, Some(Transition::Fired));
    }

    fn key(transaction: &str) -> SeriesKey {
        SeriesKey {
            service: "shop".into(),
            host: "h1".into(),
            transaction: transaction.into(),
            feature: "checkout".into(),
            kind: "web".into(),
            environment: String::new(),
        }
    }

    #[test]
    fn measures_each_metric_over_the_window() {
        let dir = std::env::temp_dir().join(format!("kuroko-alerts-measure-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("k.db")).unwrap();
        let mut histogram = Histogram::empty();
        for v in [0.1, 0.1, 0.1, 2.0] {
            histogram.record(v).unwrap();
        }
        let counter = |labels: &str, value: f64| CounterPoint {
            key: key("POST /checkout").into(),
            minute: 1_000,
            name: if labels.starts_with("kuroko.outcome") {
                "kuroko.transaction.outcomes".into()
            } else {
                "kuroko.transaction.apdex".into()
            },
            labels: labels.into(),
            value,
        };
        store
            .write(&Batch {
                histograms: vec![HistogramPoint {
                    key: key("POST /checkout").into(),
                    minute: 1_000,
                    histogram,
                }],
                counters: vec![
                    counter("kuroko.outcome=ok", 3.0),
                    counter("kuroko.outcome=5xx", 1.0),
                    counter("kuroko.apdex.threshold=0.5,kuroko.apdex.zone=satisfied", 2.0),
                    counter("kuroko.apdex.threshold=0.5,kuroko.apdex.zone=tolerating", 2.0),
                ],
                ..Batch::default()
            })
            .unwrap();
        let owners = Owners::empty();
        let of = |metric: &str, now: i64| {
            let r = rule(&format!(
                "name = \"r\"\nmetric = \"{metric}\"\ntransaction = \"POST /checkout\"\nabove = 1\nfor = \"5m\""
            ));
            measure(&store, &owners, &r, now).unwrap()
        };
        let p95 = of("p95", 1_001).unwrap();
        assert!((p95 - 2.0).abs() < 0.02, "{p95}");
        assert!((of("avg", 1_001).unwrap() - 0.575).abs() < 1e-9);
        assert_eq!(of("error_rate", 1_001), Some(0.25));
        assert_eq!(of("apdex", 1_001), Some(0.75));
        assert_eq!(of("p95", 1_006), None, "the minute is out of the window");
        assert_eq!(of("error_rate", 1_000), None, "the current minute is not complete");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_firing_latency_alert_says_why() {
        use crate::store::deploys::{Deploys, VersionSeen};
        let dir = std::env::temp_dir().join(format!("kuroko-alerts-cause-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("k.db")).unwrap();
        // An hour of 20 runs a minute, `SELECT orders` 30 ms and 20 ms of
        // own code; then, with version 2.0.0 from minute 1_060, the query
        // takes 300 ms.
        let mut batch = Batch::default();
        for minute in 1_000..1_065 {
            let db = if minute >= 1_060 { 0.300 } else { 0.030 };
            let mut histogram = Histogram::empty();
            let mut db_seconds = 0.0;
            for run in 0..20 {
                let wobble = 1.0 + 0.1 * ((run * 7 + minute) % 5) as f64 / 4.0;
                histogram.record(db * wobble + 0.020).unwrap();
                db_seconds += db * wobble;
            }
            batch.histograms.push(HistogramPoint {
                key: key("POST /checkout").into(),
                minute,
                histogram,
            });
            batch.counters.push(CounterPoint {
                key: key("POST /checkout").into(),
                minute,
                name: "kuroko.segment.exclusive_duration".into(),
                labels: "kuroko.segment.kind=database,kuroko.segment.name=SELECT orders".into(),
                value: db_seconds,
            });
        }
        store.write(&batch).unwrap();
        let seen = |version: &str, first_minute| VersionSeen {
            service: "shop".into(),
            environment: String::new(),
            version: version.into(),
            first_minute,
        };
        store
            .versions_seen(&[seen("1.0.0", 900), seen("2.0.0", 1_060)])
            .unwrap();
        let owners = Owners::empty();
        let p95 =
            rule("name = \"slow\"\nmetric = \"p95\"\ntransaction = \"POST /checkout\"\nabove = 0.2\nfor = \"5m\"");
        let why = cause(&store, &owners, &p95, 1_065).unwrap().expect("a cause sentence");
        assert!(
            why.starts_with("`SELECT orders` +") && why.ends_with("since version 2.0.0 on its one host h1"),
            "{why}"
        );
        let (_, body) = message_text(&p95, Transition::Fired, Some(0.35), 5, Some(&why));
        assert!(
            body.ends_with(&format!("(above 200 ms). Why, against the 60 min before: {why}.")),
            "{body}"
        );
        let errors = rule("name = \"e\"\nmetric = \"error_rate\"\ntransaction = \"POST /checkout\"\nabove = 0.1");
        assert_eq!(cause(&store, &owners, &errors, 1_065).unwrap(), None);
        // No runs before the window: nothing to compare with.
        assert_eq!(cause(&store, &owners, &p95, 1_001).unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_state_survives_reopening_the_store() {
        let dir = std::env::temp_dir().join(format!("kuroko-alerts-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.db");
        let (firing, transition) = step(None, Some(3.0), true, 100);
        assert_eq!(transition, Some(Transition::Fired));
        {
            let store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.alert_state_get("slow").unwrap(), None);
            store
                .alert_state_put(
                    "slow",
                    &AlertState {
                        notified: true,
                        ..firing
                    },
                )
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let restored = store.alert_state_get("slow").unwrap().unwrap();
        assert!(restored.firing && restored.notified && restored.since == 100);
        // Still breached after the restart: no second notification.
        assert_eq!(step(Some(&restored), Some(3.0), true, 101).1, None);
        assert_eq!(
            step(Some(&restored), Some(0.1), false, 102).1,
            Some(Transition::Resolved)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
