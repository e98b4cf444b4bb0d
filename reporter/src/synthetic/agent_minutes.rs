//! Agent-shaped minutes for the size measurements.

use super::Rng;
use crate::histogram::Histogram;
use crate::store::{Batch, CounterPoint, HistogramPoint, SeriesKey};

/// Agent-shaped minutes for the size measurements (`examples/store_size.rs`
/// and ClickHouse's in `tests/clickhouse_store.rs`): per series and minute,
/// one histogram of 100 log-normal runs (median 50 ms) and five counters
/// (outcomes, Apdex, one database segment), as an agent's harvest gives.
pub struct AgentMinutes {
    rng: Rng,
}

impl Default for AgentMinutes {
    fn default() -> Self {
        AgentMinutes {
            rng: Rng::new(&[0x2545_f491_4f6c_dd1d]),
        }
    }
}

impl AgentMinutes {
    /// Minute `minute` of `series` series: 20 services, 50 hosts, 30 features.
    pub fn batch(&mut self, series: usize, minute: i64) -> Batch {
        let mut batch = Batch::default();
        for s in 0..series {
            let key = SeriesKey {
                service: format!("svc-{}", s % 20),
                host: format!("host-{}", s % 50),
                transaction: format!("GET /api/v1/resource-{s}/{{id}}"),
                feature: format!("feature-{}", s % 30),
                kind: "web".into(),
                environment: "production".into(),
            };
            let mut histogram = Histogram::empty();
            for _ in 0..100 {
                // Log-normal: median 50 ms, sigma 0.8.
                let normal = self.rng.normal();
                // Finite and positive: always recorded.
                let _ = histogram.record(0.050 * (0.8 * normal).exp());
            }
            batch.histograms.push(HistogramPoint {
                key: key.clone().into(),
                minute,
                histogram,
            });
            for (name, labels, value) in [
                ("kuroko.transaction.outcomes", "kuroko.outcome=ok", 98.0),
                ("kuroko.transaction.outcomes", "kuroko.outcome=5xx", 2.0),
                ("kuroko.transaction.apdex", "kuroko.apdex.zone=satisfied", 97.0),
                (
                    "kuroko.segment.calls",
                    "kuroko.segment.kind=database,kuroko.segment.name=SELECT",
                    100.0,
                ),
                (
                    "kuroko.segment.duration",
                    "kuroko.segment.kind=database,kuroko.segment.name=SELECT",
                    2.1,
                ),
            ] {
                batch.counters.push(CounterPoint {
                    key: key.clone().into(),
                    minute,
                    name: name.into(),
                    labels: labels.into(),
                    value,
                });
            }
        }
        batch
    }
}
