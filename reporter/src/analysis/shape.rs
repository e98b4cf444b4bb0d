//! Where a slow transaction's time goes, against the typical shape of its
//! kind: "82% database, 70% in `SELECT orders` alone; typical for shop: 35%
//! database (6 web transactions)".
//!
//! A transaction's **shape** is the share of its time in each segment kind
//! (`database`, `external`, `code`, …) and in its own code (time in no
//! segment), from the same exclusive segment time the breakdown and the
//! attribution read (for an SDK's spans, of the traced runs' time). The
//! **typical** shape is, per kind, the median share over its *peers*: the
//! transactions of the same service and the same kind of transaction
//! (`web`, `background`…) that recorded segments in the window, itself
//! included; when the service has fewer than [`MIN_PEERS`] of them, every
//! transaction of that kind read (the fleet, or the service asked about).
//! The median, not the time-weighted mean, so one busy transaction does not
//! make itself typical.

use std::collections::BTreeMap;

use super::breakdown::{SEGMENT_DURATION, SEGMENT_EXCLUSIVE};
use super::endpoints::label;
use super::{Analysis, AnalysisError, Scope};
use crate::format;
use crate::ingest::traces::TRACED_DURATION;

/// Fewer peers than this in a service: the typical shape is the fleet's.
pub const MIN_PEERS: usize = 3;

/// The name of the time in no segment.
pub const OWN: &str = "own code";

/// One kind's share of the time.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KindShare {
    /// `database`, `external`, `code`, … or [`OWN`].
    pub kind: String,
    /// Its share of the time, 0 to 1.
    pub share: f64,
}

/// Where one transaction's time goes, against the typical shape.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Shape {
    /// `service.name`.
    pub service: String,
    /// The transaction.
    pub transaction: String,
    /// Its kinds (and own code), most time first.
    pub kinds: Vec<KindShare>,
    /// Its segment with the most time: (kind, name, share of all its time).
    pub top_segment: Option<(String, String, f64)>,
    /// The typical share of each of its kinds, in the same order.
    pub typical: Vec<KindShare>,
    /// The transactions the typical shape is the median of.
    pub peers: usize,
    /// Whose they are: the service's name, or "the fleet".
    pub peers_of: String,
    /// "82% database, 70% in `SELECT orders` alone; typical for shop: 35%
    /// database (6 web transactions)".
    pub summary: String,
    /// Short: "82% database (`SELECT orders` 70%); typical 35%".
    pub headline: String,
}

/// One transaction's sums over the window.
#[derive(Default)]
struct Sums {
    /// The transaction's kind (`web`, …).
    kind: String,
    /// Seconds of all its runs (or of the traced runs, for spans).
    seconds: f64,
    /// Traced runs' seconds, when an SDK's spans gave the segments.
    traced: f64,
    /// Exclusive seconds per segment (kind, name).
    segments: BTreeMap<(String, String), f64>,
    /// Some series of it is in the scope asked about (not only a peer).
    asked: bool,
}

impl Sums {
    fn base(&self) -> f64 {
        if self.traced > 0.0 {
            self.traced
        } else {
            self.seconds
        }
    }

    /// Share per kind, own code included.
    fn kinds(&self) -> BTreeMap<String, f64> {
        let base = self.base();
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        if base <= 0.0 {
            return out;
        }
        for ((kind, _), seconds) in &self.segments {
            *out.entry(kind.clone()).or_default() += seconds / base;
        }
        let in_segments: f64 = out.values().sum();
        out.insert(OWN.to_owned(), (1.0 - in_segments).max(0.0));
        out
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The shape of `me` against `peers` (each a transaction's kind shares).
fn shape_of((service, transaction): (&str, &str), me: &Sums, peers: &[BTreeMap<String, f64>], peers_of: &str) -> Shape {
    let shares = me.kinds();
    let mut kinds: Vec<KindShare> = shares
        .iter()
        .map(|(kind, &share)| KindShare {
            kind: kind.clone(),
            share,
        })
        .collect();
    kinds.sort_by(|a, b| b.share.total_cmp(&a.share));
    let typical: Vec<KindShare> = kinds
        .iter()
        .map(|k| KindShare {
            kind: k.kind.clone(),
            share: median(peers.iter().map(|p| p.get(&k.kind).copied().unwrap_or(0.0)).collect()),
        })
        .collect();
    let base = me.base();
    let top_segment = me
        .segments
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .filter(|_| base > 0.0)
        .map(|((kind, name), seconds)| (kind.clone(), name.clone(), seconds / base));
    let (main, usual) = match (kinds.first(), typical.first()) {
        (Some(m), Some(u)) => (m.clone(), u.share),
        _ => (
            KindShare {
                kind: OWN.to_owned(),
                share: 0.0,
            },
            0.0,
        ),
    };
    // The top segment is named when it is of the main kind.
    let alone = top_segment
        .as_ref()
        .filter(|(kind, _, _)| *kind == main.kind)
        .map(|(_, name, share)| (name.clone(), *share));
    let whose = peers_of.to_owned();
    let summary = format!(
        "{} {}{}; typical for {whose}: {} {} ({} {} transactions)",
        format::percent(main.share),
        main.kind,
        alone
            .as_ref()
            .map(|(name, share)| format!(", {} in `{name}` alone", format::percent(*share)))
            .unwrap_or_default(),
        format::percent(usual),
        main.kind,
        peers.len(),
        me.kind,
    );
    let headline = format!(
        "{} {}{}; typical {}",
        format::percent(main.share),
        main.kind,
        alone
            .as_ref()
            .map(|(name, share)| format!(" (`{name}` {})", format::percent(*share)))
            .unwrap_or_default(),
        format::percent(usual),
    );
    Shape {
        service: service.to_owned(),
        transaction: transaction.to_owned(),
        kinds,
        top_segment,
        typical,
        peers: peers.len(),
        peers_of: whose,
        summary,
        headline,
    }
}

impl Analysis<'_> {
    /// The shape of every transaction in `scope` that recorded segments,
    /// against its peers' typical shape (read over `scope` without its
    /// transaction, feature, team and host filters), by (service,
    /// transaction).
    pub fn shapes(&self, scope: &Scope) -> Result<BTreeMap<(String, String), Shape>, AnalysisError> {
        let wide = Scope {
            transaction: None,
            feature: None,
            team: None,
            host: None,
            ..scope.clone()
        };
        let filter = wide.transactions_filter(self.owners);
        let mut sums: BTreeMap<(String, String), Sums> = BTreeMap::new();
        for (key, histogram) in self.store.histograms(&filter, wide.from, wide.to)? {
            if wide.matches(&key, self.owners) {
                let s = sums.entry((key.service.clone(), key.transaction.clone())).or_default();
                s.kind = key.kind.clone();
                s.seconds += histogram.sum;
                s.asked |= scope.matches(&key, self.owners);
            }
        }
        let counters = |name: &str| -> Result<Vec<_>, AnalysisError> {
            Ok(self
                .store
                .counters(&filter, name, wide.from, wide.to)?
                .into_iter()
                .filter(|(key, _, _)| wide.matches(key, self.owners))
                .collect())
        };
        let mut exclusive = counters(SEGMENT_EXCLUSIVE)?;
        if exclusive.is_empty() {
            exclusive = counters(SEGMENT_DURATION)?;
        }
        for (key, labels, value) in exclusive {
            let kind = label(&labels, "kuroko.segment.kind").unwrap_or("code").to_owned();
            let name = label(&labels, "kuroko.segment.name").unwrap_or("").to_owned();
            if let Some(s) = sums.get_mut(&(key.service, key.transaction)) {
                *s.segments.entry((kind, name)).or_default() += value;
            }
        }
        for (key, _, value) in counters(TRACED_DURATION)? {
            if let Some(s) = sums.get_mut(&(key.service, key.transaction)) {
                s.traced += value;
            }
        }
        sums.retain(|_, s| !s.segments.is_empty() && s.base() > 0.0);
        let shares: BTreeMap<&(String, String), BTreeMap<String, f64>> =
            sums.iter().map(|(id, s)| (id, s.kinds())).collect();
        let mut out = BTreeMap::new();
        for (id, me) in &sums {
            let (service, transaction) = (id.0.as_str(), id.1.as_str());
            if !me.asked {
                continue;
            }
            let of_kind = |same_service: bool| -> Vec<BTreeMap<String, f64>> {
                sums.iter()
                    .filter(|(other, s)| s.kind == me.kind && (!same_service || other.0 == id.0))
                    .filter_map(|(other, _)| shares.get(other).cloned())
                    .collect()
            };
            let mine = of_kind(true);
            let (peers, peers_of) = if mine.len() >= MIN_PEERS {
                (mine, service.to_owned())
            } else {
                (of_kind(false), "the fleet".to_owned())
            };
            out.insert(id.clone(), shape_of((service, transaction), me, &peers, &peers_of));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(kind: &str, seconds: f64, segments: &[(&str, &str, f64)]) -> Sums {
        Sums {
            kind: kind.into(),
            seconds,
            traced: 0.0,
            asked: true,
            segments: segments
                .iter()
                .map(|&(k, n, s)| ((k.to_owned(), n.to_owned()), s))
                .collect(),
        }
    }

    #[test]
    fn a_database_heavy_route_against_its_service() {
        let me = sums(
            "web",
            100.0,
            &[("database", "SELECT orders", 70.0), ("database", "SELECT users", 12.0)],
        );
        let peers: Vec<BTreeMap<String, f64>> = [0.30, 0.35, 0.40]
            .iter()
            .map(|&db| sums("web", 100.0, &[("database", "q", db * 100.0)]).kinds())
            .chain([me.kinds()])
            .collect();
        let s = shape_of(("shop", "GET /orders"), &me, &peers, "shop");
        assert_eq!(
            s.summary,
            "82% database, 70% in `SELECT orders` alone; typical for shop: 38% database (4 web transactions)"
        );
        assert_eq!(s.headline, "82% database (`SELECT orders` 70%); typical 38%");
        assert_eq!(s.kinds[1].kind, OWN);
    }
}
