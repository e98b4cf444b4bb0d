//! Kuroko agents' own health: the `kuroko.agent.*` metrics an agent sends
//! about itself with every export (points it dropped because its buffer
//! was full, points the reporter rejected, failed exports, errors it could
//! not keep, runs folded by its series limit, its series and memory).
//!
//! They name no transaction, so they are not stored with the series; each
//! agent's latest values are kept here, in memory, for the web UI's
//! `/health` page. The counters are cumulative since the agent started, so
//! the latest value is the agent's whole count: after a reporter restart
//! the page is whole again at each agent's next export. An agent is one
//! `service.name`, `host.name` and `service.instance.id`; at most
//! [`MAX_AGENTS`] are kept (past that, the one heard from longest ago
//! makes room). Only the metrics of [`METRICS`] are read, so a client
//! cannot grow an entry.

use std::collections::HashMap;
use std::sync::Mutex;

use super::otlp::{get, identity, text, Limits};
use super::wire::{Data, Request};

/// Most agents remembered at once.
pub(crate) const MAX_AGENTS: usize = 10_000;

/// The scope name Kuroko's agent exports under.
pub(crate) const AGENT_SCOPE: &str = "kuroko-agent";

/// The agent's health metrics, in the order the page shows them.
pub(crate) const METRICS: [&str; 7] = [
    "kuroko.agent.export.dropped_points",
    "kuroko.agent.export.rejected_points",
    "kuroko.agent.export.failures",
    "kuroko.agent.dropped_errors",
    "kuroko.agent.overflowed_samples",
    "kuroko.agent.series",
    "kuroko.agent.memory",
];

/// One agent's latest health.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentHealth {
    /// `service.name`.
    pub service: String,
    /// `host.name`.
    pub host: String,
    /// `service.instance.id`, empty when none.
    pub instance: String,
    /// The deployment environment, empty when none.
    pub environment: String,
    /// When its latest point was taken, Unix nanoseconds.
    pub time_unix_nano: u64,
    /// The latest value of each of [`METRICS`] (None until sent).
    pub values: [Option<f64>; METRICS.len()],
}

impl AgentHealth {
    /// The latest value of `metric`, one of [`METRICS`].
    pub fn value(&self, metric: &str) -> Option<f64> {
        METRICS.iter().position(|m| *m == metric).and_then(|at| self.values[at])
    }
}

type AgentKey = (String, String, String);

/// Every agent's latest health.
#[derive(Debug, Default)]
pub struct AgentBoard {
    agents: Mutex<HashMap<AgentKey, AgentHealth>>,
}

impl AgentBoard {
    /// Notes the `kuroko.agent.*` points of `request`.
    pub(crate) fn note(&self, request: &Request<'_>, limits: &Limits) {
        for resource in &request.resources {
            let ours = resource.scopes.iter().filter(|s| s.name == AGENT_SCOPE);
            let mut points = Vec::new();
            for metric in ours.flat_map(|s| &s.metrics) {
                let Some(at) = METRICS.iter().position(|m| *m == metric.name) else {
                    continue;
                };
                let (Data::Gauge(numbers) | Data::Sum(_, numbers)) = &metric.data else {
                    continue;
                };
                let latest = numbers
                    .iter()
                    .filter(|p| p.value.is_some_and(f64::is_finite))
                    .max_by_key(|p| p.time);
                if let Some(point) = latest {
                    points.push((at, point.time, point.value.unwrap_or(0.0)));
                }
            }
            if points.is_empty() {
                continue;
            }
            let Ok(sender) = identity(resource.attributes.as_slice(), limits) else {
                continue;
            };
            let instance = get(&resource.attributes, "service.instance.id")
                .and_then(text)
                .filter(|i| i.len() <= limits.max_value_bytes)
                .unwrap_or_default();
            self.update((sender.service, sender.host, instance), sender.environment, &points);
        }
    }

    fn update(&self, key: AgentKey, environment: String, points: &[(usize, u64, f64)]) {
        let mut agents = crate::sync::lock(&self.agents);
        if !agents.contains_key(&key) && agents.len() >= MAX_AGENTS {
            let oldest = agents
                .iter()
                .min_by_key(|(_, a)| a.time_unix_nano)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                agents.remove(&oldest);
            }
        }
        let (service, host, instance) = key.clone();
        let entry = agents.entry(key).or_insert_with(|| AgentHealth {
            service,
            host,
            instance,
            environment: String::new(),
            time_unix_nano: 0,
            values: [None; METRICS.len()],
        });
        entry.environment = environment;
        for &(at, time, value) in points {
            // A late, older export does not overwrite a newer one.
            if time >= entry.time_unix_nano || entry.values[at].is_none() {
                entry.values[at] = Some(value);
            }
        }
        let newest = points.iter().map(|p| p.1).max().unwrap_or(0);
        entry.time_unix_nano = entry.time_unix_nano.max(newest);
    }

    /// Every agent, by service, host and instance.
    pub fn snapshot(&self) -> Vec<AgentHealth> {
        let agents = crate::sync::lock(&self.agents);
        let mut all: Vec<AgentHealth> = agents.values().cloned().collect();
        all.sort_by(|a, b| (&a.service, &a.host, &a.instance).cmp(&(&b.service, &b.host, &b.instance)));
        all
    }
}
