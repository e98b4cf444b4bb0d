//! Services' versions as they arrive: a metrics or traces resource's
//! `service.version`, recorded in the store's
//! [`Deploys`](crate::store::deploys::Deploys) at the data's own time: the
//! earliest minute of the resource's data points (a point's time, a span's
//! start) that ingest accepts. The store keeps the earliest minute per
//! version, the deploy the charts and `regressions --since-deploy` use, so
//! data that arrives late or is sent again never moves a deploy later, and
//! when the reporter saw it does not matter.
//!
//! This process remembers the earliest minute it recorded per version (at
//! most [`MAX_VERSIONS`]; past that, each sighting is recorded again: the
//! store keeps the earliest anyway), and records a version again only for
//! an earlier minute: once per version in the usual case.

use std::collections::HashMap;
use std::sync::Mutex;

use super::otlp::{get, identity, text, Attribute, Limits};
use super::wire;
use crate::store::deploys::VersionSeen;

/// Most versions remembered as recorded.
pub(crate) const MAX_VERSIONS: usize = 10_000;

/// (service, environment, version) recorded by this process, with the
/// earliest minute recorded.
#[derive(Debug, Default)]
pub(crate) struct VersionBook {
    recorded: Mutex<HashMap<(String, String, String), i64>>,
}

/// The minute of the earliest of `times` (unix nanoseconds) that ingest
/// accepts at `now` (within `max_age_seconds` before and
/// `max_future_seconds` after it); `None` when none is.
pub(crate) fn first_minute(times: impl Iterator<Item = u64>, limits: &Limits, now: u64) -> Option<i64> {
    let oldest = now.saturating_sub(limits.max_age_seconds.saturating_mul(1_000_000_000));
    let latest = now.saturating_add(limits.max_future_seconds.saturating_mul(1_000_000_000));
    times
        .filter(|t| (oldest..=latest).contains(t))
        .min()
        .map(super::otlp::minute)
}

/// The times of a metrics resource's points (each point's `time`).
pub(crate) fn point_times<'a>(resource: &'a wire::ResourceMetrics<'_>) -> impl Iterator<Item = u64> + 'a {
    resource.scopes.iter().flat_map(|s| &s.metrics).flat_map(|m| {
        let times: Box<dyn Iterator<Item = u64> + 'a> = match &m.data {
            wire::Data::Gauge(points) | wire::Data::Sum(_, points) => Box::new(points.iter().map(|p| p.time)),
            wire::Data::Histogram(_, points) => Box::new(points.iter().map(|p| p.time)),
            wire::Data::Exponential(_, points) => Box::new(points.iter().map(|p| p.time)),
            wire::Data::None | wire::Data::Summary => Box::new(std::iter::empty()),
        };
        times
    })
}

impl VersionBook {
    /// The versions of `resources` (each a resource's attributes and what
    /// gives the first minute of its data, `None` when it has none, asked
    /// only of a resource with a version) not yet recorded at that minute
    /// or earlier.
    pub(crate) fn new_in<'a, A: Attribute + 'a, F: FnOnce() -> Option<i64>>(
        &self,
        resources: impl Iterator<Item = (&'a [A], F)>,
        limits: &Limits,
    ) -> Vec<VersionSeen> {
        let recorded = crate::sync::lock(&self.recorded);
        let mut out: Vec<VersionSeen> = Vec::new();
        for (attributes, first_minute) in resources {
            let Some(version) = get(attributes, "service.version")
                .and_then(text)
                .filter(|v| !v.is_empty() && v.len() <= limits.max_value_bytes)
            else {
                continue;
            };
            let Ok(sender) = identity(attributes, limits) else {
                continue;
            };
            let Some(minute) = first_minute() else { continue };
            let key = (sender.service, sender.environment, version);
            if recorded.get(&key).is_some_and(|&earliest| earliest <= minute) {
                continue;
            }
            match out
                .iter_mut()
                .find(|v| (&v.service, &v.environment, &v.version) == (&key.0, &key.1, &key.2))
            {
                Some(seen) => seen.first_minute = seen.first_minute.min(minute),
                None => out.push(VersionSeen {
                    service: key.0,
                    environment: key.1,
                    version: key.2,
                    first_minute: minute,
                }),
            }
        }
        out
    }

    /// Remembers `seen` as recorded in the store.
    pub(crate) fn recorded(&self, seen: &[VersionSeen]) {
        let mut recorded = crate::sync::lock(&self.recorded);
        for v in seen {
            let key = (v.service.clone(), v.environment.clone(), v.version.clone());
            let full = recorded.len() >= MAX_VERSIONS;
            match recorded.get_mut(&key) {
                Some(earliest) => *earliest = (*earliest).min(v.first_minute),
                None if !full => {
                    recorded.insert(key, v.first_minute);
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

    use super::*;

    fn resource(version: &str) -> Vec<KeyValue> {
        let kv = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        };
        vec![kv("service.name", "shop"), kv("service.version", version)]
    }

    #[test]
    fn the_first_minute_is_the_earliest_accepted_time() {
        let limits = Limits::default();
        let now = 1_000_000 * 60_000_000_000;
        let minute = |m: u64| m * 60_000_000_000;
        let times = [minute(999_990), minute(999_950) + 5, minute(999_999)];
        assert_eq!(first_minute(times.into_iter(), &limits, now), Some(999_950));
        // Too old or too far ahead to be accepted: not a sighting.
        let refused = [
            now - (limits.max_age_seconds + 60) * 1_000_000_000,
            now + 7_200 * 1_000_000_000,
        ];
        assert_eq!(first_minute(refused.into_iter(), &limits, now), None);
        assert_eq!(
            first_minute(refused.into_iter().chain([minute(999_998)]), &limits, now),
            Some(999_998)
        );
    }

    #[test]
    fn a_version_is_recorded_again_only_for_an_earlier_minute() {
        let (book, limits) = (VersionBook::default(), Limits::default());
        let (one, two) = (resource("1.0"), resource("2.0"));
        let new = |resources: &[(&[KeyValue], Option<i64>)]| -> Vec<(String, i64)> {
            let seen = book.new_in(resources.iter().map(|&(r, minute)| (r, move || minute)), &limits);
            book.recorded(&seen);
            seen.into_iter().map(|v| (v.version, v.first_minute)).collect()
        };
        // Two resources of one version in a request: its earlier minute.
        assert_eq!(
            new(&[(&one, Some(100)), (&one, Some(90)), (&two, None)]),
            [("1.0".to_owned(), 90)]
        );
        // The same again, or later: nothing new.
        assert!(new(&[(&one, Some(90)), (&one, Some(500))]).is_empty());
        // Late data from before: recorded, so the store can keep it.
        assert_eq!(new(&[(&one, Some(80))]), [("1.0".to_owned(), 80)]);
        assert_eq!(new(&[(&two, Some(200))]), [("2.0".to_owned(), 200)]);
    }
}
