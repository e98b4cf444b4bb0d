//! Why it got slower: a regression's (or improvement's) change of mean time
//! per run, decomposed into what it is made of, and its cause named when one
//! part explains most of it.
//!
//! The mean time per run is additive in three ways, each exact:
//!
//! - **Segments.** Mean = Σ over segments of their exclusive time per run +
//!   the transaction's own time per run (time in no segment). The change of
//!   the mean is the sum of each segment's change of exclusive time per run
//!   (from the stored segment counters; for an SDK's spans, per *traced* run).
//! - **Hosts** (and, for a feature, **routes**). Mean = Σ_g w_g·m_g over
//!   groups `g` with `w_g` their share of the runs and `m_g` their mean. The
//!   symmetric shift-share split `Δ = Σ w̄_g·Δm_g + Σ m̄_g·Δw_g` (bars: the
//!   two windows' average) gives each group's own slowdown (*within*) and
//!   the change of the traffic mix (*mix*: runs moving toward a slower host
//!   or route), with no remainder.
//! - **Release** (`service.version`). Each block's runs are counted under
//!   the version its service ran then (the store's deploys: a version runs
//!   from its first minute until the next one's). The same shift-share
//!   split over versions gives the *release* part: runs moving to a slower
//!   version ([`Release`]). When it explains most of the change the cause
//!   says "since version 2.14.0"; when nothing else does, the version is
//!   the cause.
//!
//! Each part's share of the change comes with an interval from the
//! variability between blocks (the hourly blocks the regression test uses,
//! [`super::blocks`]): the blocks of each window are resampled with
//! replacement ([`BOOTSTRAP_ROUNDS`] times, from a fixed seed) and the
//! 5th–95th percentiles of the share are taken. A part is named as the cause
//! when the change itself is clear of zero by the same resampling (its
//! 0.5th–99.5th percentiles: [`CLEAR_MISS`]) and the part surely explains
//! most of it: the lower end of its share's interval is at least [`MOST`]
//! (so with 95% confidence, one-sided). The traffic mix is named first (a
//! mix shift moves segments and hosts too), then a segment, a route, a
//! host, the release. Otherwise the answer is "no single cause", with the
//! largest parts listed.

use std::collections::BTreeMap;

use super::blocks::block_minutes;
use super::breakdown::{SEGMENT_DURATION, SEGMENT_EXCLUSIVE};
use super::endpoints::label;
use super::evidence::SideBySide;
use super::regressions::{Group, RegressionRow};
use super::{Analysis, AnalysisError, Scope};
use crate::format;
use crate::ingest::traces::{TRACED_DURATION, TRACED_RUNS};
use crate::store::deploys::VersionSeen;

/// "Most of the change": a cause's share, the lower end of its interval;
/// a host carrying this much of the change places it on that host.
pub const MOST: f64 = 0.5;

/// Resamples of the blocks behind every interval.
pub const BOOTSTRAP_ROUNDS: usize = 1_000;

/// The intervals shown miss the resampled value this often (5th to 95th percentile).
pub const SHOWN_MISS: f64 = 0.10;

/// A cause is named only when the change's interval at this miss rate (0.5th
/// to 99.5th percentile) excludes zero.
pub const CLEAR_MISS: f64 = 0.01;

/// The name of the time in no segment.
pub const OWN_CODE: &str = "own code";

/// Which decomposition a part belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// A segment's exclusive time per run (or the transaction's own code).
    Segment,
    /// One host's own change of mean, weighted by its share of the runs.
    Host,
    /// One route's own change of mean (a feature's transactions).
    Route,
    /// The change of the traffic mix between hosts or routes.
    Mix,
    /// Runs moving to a new `service.version`.
    Release,
}

/// One part of the change.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Part {
    /// Its decomposition.
    pub axis: Axis,
    /// A segment's kind (`database`, `external`, `code`; `own` for own
    /// code), `host`, `route`, what the mix is of (`hosts`, `routes`), or
    /// `version`.
    pub kind: String,
    /// The segment, host or route; for the mix, the group whose share of
    /// the runs moved most; for the release, the new version.
    pub name: String,
    /// Before: a segment's seconds per run, a host's or route's mean, the
    /// mix's group's share of the runs; for the release, the previous
    /// version's mean (its runs in both windows).
    pub previous: f64,
    /// Now, the same.
    pub current: f64,
    /// Its contribution to the change of mean time per run, seconds.
    pub seconds_per_run: f64,
    /// That contribution over the change (1 is all of it).
    pub share: f64,
    /// The share's interval (5th to 95th percentile of the resampled blocks).
    pub low: f64,
    /// Its upper end.
    pub high: f64,
}

/// Where the change happened.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "on", content = "host")]
pub enum Place {
    /// Every host that ran it changed the same way.
    AllHosts,
    /// One host carries most of it.
    Host(String),
    /// The data came from one host.
    OnlyHost(String),
    /// Neither: some hosts more than others.
    Uneven,
}

/// The part that explains most of the change, and where.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Cause {
    /// The part.
    #[serde(flatten)]
    pub part: Part,
    /// Where the change happened.
    pub place: Place,
    /// The `service.version` the change came with, when the release part
    /// explains most of it too ("since version 2.14.0").
    pub since: Option<String>,
}

/// The release part: runs moving from one `service.version` to another.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Release {
    /// The part (`axis` `release`, `name` the new version, `previous` and
    /// `current` the two versions' means per run).
    #[serde(flatten)]
    pub part: Part,
    /// The version before it.
    pub previous_version: String,
    /// When the new version was first seen, unix minutes.
    pub minute: i64,
    /// The rest of the change: within versions (each version's own change,
    /// weighted by its runs), seconds per run.
    pub within_seconds_per_run: f64,
}

/// A change of mean time per run, decomposed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Attribution {
    /// Mean time per run before (all runs), seconds.
    pub previous_mean: f64,
    /// Now.
    pub current_mean: f64,
    /// `current_mean − previous_mean`.
    pub change: f64,
    /// The change's interval (5th to 95th percentile of the resampled blocks).
    pub change_low: f64,
    /// Its upper end.
    pub change_high: f64,
    /// Blocks with runs, `[current, previous]`.
    pub blocks: [usize; 2],
    /// Length of a block, minutes.
    pub block_minutes: i64,
    /// Segments come from an SDK's spans: they are per traced run.
    pub traced: bool,
    /// The change is clear of zero (its interval at [`CLEAR_MISS`]
    /// excludes 0): only then is a cause named.
    pub clear: bool,
    /// Segments' parts (with own code), largest contribution first.
    pub segments: Vec<Part>,
    /// Hosts' own changes, largest first.
    pub hosts: Vec<Part>,
    /// A feature's routes' own changes, largest first (empty for a transaction).
    pub routes: Vec<Part>,
    /// The traffic mix's parts: between hosts, and for a feature between routes.
    pub mix: Vec<Part>,
    /// The release part, when the windows' runs ran more than one
    /// `service.version` of the stored deploys.
    pub release: Option<Release>,
    /// The cause, when one part explains most of the change.
    pub cause: Option<Cause>,
    /// For people: "`SELECT orders` +31 ms per run, 84% of the change
    /// (78% to 90%), on all hosts", or "no single cause: …".
    pub summary: String,
    /// The same, short enough for a table cell: "`SELECT orders` +31 ms/run
    /// (84%), all hosts", or "no single cause".
    pub headline: String,
    /// The slowest kept traces before and after, aligned by segment; `None`
    /// when neither window kept one.
    pub evidence: Option<SideBySide>,
}

/// One block's sums: runs and seconds per group, segment seconds, traced runs.
#[derive(Clone, Debug, Default)]
struct BlockSums {
    /// Per host: (runs, seconds).
    hosts: BTreeMap<String, (f64, f64)>,
    /// Per route: (runs, seconds).
    routes: BTreeMap<String, (f64, f64)>,
    /// Per segment (kind, name): exclusive seconds.
    segments: BTreeMap<(String, String), f64>,
    /// Traced runs and their seconds (an SDK's spans).
    traced: (f64, f64),
    /// Per version (its index in the versions given): (runs, seconds).
    versions: BTreeMap<usize, (f64, f64)>,
}

/// What one decomposition of two windows' (resampled) blocks gives:
/// contributions per part, in a fixed order.
struct Split {
    /// Change of the mean over all runs.
    change: f64,
    /// Change of the mean the segments add up to (per traced run for spans).
    segment_change: f64,
    /// Segments then own code: (before per run, now per run).
    segments: Vec<(f64, f64)>,
    /// Each host's shift-share parts, in the order of the host names.
    hosts: Vec<GroupPart>,
    /// Each route's, the same.
    routes: Vec<GroupPart>,
    /// Each version's, the same.
    versions: Vec<GroupPart>,
}

/// One group's (host's or route's) place in the shift-share split.
#[derive(Clone, Copy, Default)]
struct GroupPart {
    /// Its mean, `[current, previous]`.
    mean: [f64; 2],
    /// Its share of the runs, `[current, previous]`.
    weight: [f64; 2],
    /// Its own change, weighted by its average share: `w̄·Δm`.
    within: f64,
    /// Its part of the mix: `m̄·Δw`.
    mix: f64,
}

/// Sums over blocks, dense: per host, route and segment in a fixed order.
#[derive(Clone)]
struct Totals {
    hosts: Vec<(f64, f64)>,
    routes: Vec<(f64, f64)>,
    segments: Vec<f64>,
    traced: (f64, f64),
    versions: Vec<(f64, f64)>,
}

/// The names a block's sums are laid out by.
struct Layout {
    hosts: Vec<String>,
    routes: Vec<String>,
    segments: Vec<(String, String)>,
    versions: Vec<usize>,
}

/// One block's sums, laid out as [`Totals`] in the order of `layout`
/// (looked up once, not once per resample).
fn dense(block: &BlockSums, layout: &Layout) -> Totals {
    let Layout {
        hosts,
        routes,
        segments,
        versions,
    } = layout;
    let pair = |map: &BTreeMap<String, (f64, f64)>, name: &String| map.get(name).copied().unwrap_or((0.0, 0.0));
    Totals {
        versions: versions
            .iter()
            .map(|v| block.versions.get(v).copied().unwrap_or((0.0, 0.0)))
            .collect(),
        hosts: hosts.iter().map(|h| pair(&block.hosts, h)).collect(),
        routes: routes.iter().map(|r| pair(&block.routes, r)).collect(),
        segments: segments
            .iter()
            .map(|id| block.segments.get(id).copied().unwrap_or(0.0))
            .collect(),
        traced: block.traced,
    }
}

/// The sum of the `picked` blocks of `all` (each block as often as picked).
fn totals(all: &[Totals], picked: &[usize], empty: &Totals) -> Totals {
    let add = |into: &mut [(f64, f64)], from: &[(f64, f64)]| {
        for (slot, (n, s)) in into.iter_mut().zip(from) {
            slot.0 += n;
            slot.1 += s;
        }
    };
    let mut t = empty.clone();
    for block in picked.iter().filter_map(|&i| all.get(i)) {
        add(&mut t.hosts, &block.hosts);
        add(&mut t.routes, &block.routes);
        add(&mut t.versions, &block.versions);
        for (slot, x) in t.segments.iter_mut().zip(&block.segments) {
            *slot += x;
        }
        t.traced.0 += block.traced.0;
        t.traced.1 += block.traced.1;
    }
    t
}

impl Totals {
    fn runs(&self) -> (f64, f64) {
        self.hosts.iter().fold((0.0, 0.0), |(n, s), (bn, bs)| (n + bn, s + bs))
    }

    /// Runs and seconds the segments are shares of: the traced runs when
    /// spans gave the segments, else every run.
    fn segment_base(&self) -> (f64, f64) {
        if self.traced.0 > 0.0 {
            self.traced
        } else {
            self.runs()
        }
    }
}

fn ratio(x: f64, n: f64) -> f64 {
    if n > 0.0 {
        x / n
    } else {
        0.0
    }
}

/// The shift-share split of groups' (runs, seconds) in both windows.
fn shift_share(now: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<GroupPart> {
    let total = |side: &[(f64, f64)]| side.iter().map(|g| g.0).sum::<f64>();
    let (n_now, n_before) = (total(now), total(before));
    now.iter()
        .zip(before)
        .map(|(&(nn, sn), &(nb, sb))| {
            let weight = [ratio(nn, n_now), ratio(nb, n_before)];
            // A group absent from one window: its mean there is taken as the
            // other's, so its whole effect is mix.
            let (m_now, m_before) = match (nn > 0.0, nb > 0.0) {
                (true, true) => (sn / nn, sb / nb),
                (true, false) => (sn / nn, sn / nn),
                (false, true) => (sb / nb, sb / nb),
                (false, false) => (0.0, 0.0),
            };
            let w_bar = (weight[0] + weight[1]) / 2.0;
            let m_bar = (m_now + m_before) / 2.0;
            GroupPart {
                mean: [m_now, m_before],
                weight,
                within: w_bar * (m_now - m_before),
                mix: m_bar * (weight[0] - weight[1]),
            }
        })
        .collect()
}

fn split(now: &Totals, before: &Totals) -> Split {
    let (n_now, s_now) = now.runs();
    let (n_before, s_before) = before.runs();
    let (bn_now, bs_now) = now.segment_base();
    let (bn_before, bs_before) = before.segment_base();
    let mut segments: Vec<(f64, f64)> = now
        .segments
        .iter()
        .zip(&before.segments)
        .map(|(&x_now, &x_before)| (ratio(x_before, bn_before), ratio(x_now, bn_now)))
        .collect();
    let own = |base: (f64, f64), segs: &[f64]| ratio((base.1 - segs.iter().sum::<f64>()).max(0.0), base.0);
    segments.push((
        own((bn_before, bs_before), &before.segments),
        own((bn_now, bs_now), &now.segments),
    ));
    Split {
        change: ratio(s_now, n_now) - ratio(s_before, n_before),
        segment_change: segments.iter().map(|(b, n)| n - b).sum(),
        segments,
        hosts: shift_share(&now.hosts, &before.hosts),
        routes: shift_share(&now.routes, &before.routes),
        versions: shift_share(&now.versions, &before.versions),
    }
}

/// A small deterministic generator for resampling (SplitMix64).
struct Resampler(u64);

impl Resampler {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n.max(1)
    }

    fn resample(&mut self, n: usize) -> Vec<usize> {
        (0..n).map(|_| self.below(n)).collect()
    }
}

/// The `miss / 2` and `1 − miss / 2` quantiles of `values` (NaNs left out).
fn interval(mut values: Vec<f64>, miss: f64) -> (f64, f64) {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(miss / 2.0), at(1.0 - miss / 2.0))
}

/// The decomposition of two windows' blocks (`[current, previous]`).
///
/// `versions` are the versions the blocks' `versions` index (the row's
/// services', ordered by service, environment, first minute).
fn attribute_blocks(
    windows: [&[BlockSums]; 2],
    block_minutes: i64,
    feature: bool,
    versions: &[VersionSeen],
) -> Attribution {
    let mut hosts: Vec<String> = Vec::new();
    let mut routes: Vec<String> = Vec::new();
    let mut segments: Vec<(String, String)> = Vec::new();
    let mut version_ids: Vec<usize> = Vec::new();
    for block in windows.iter().flat_map(|w| w.iter()) {
        hosts.extend(block.hosts.keys().cloned());
        routes.extend(block.routes.keys().cloned());
        segments.extend(block.segments.keys().cloned());
        version_ids.extend(block.versions.keys().copied());
    }
    for list in [&mut hosts, &mut routes] {
        list.sort();
        list.dedup();
    }
    segments.sort();
    segments.dedup();
    version_ids.sort_unstable();
    version_ids.dedup();
    let traced = windows.iter().flat_map(|w| w.iter()).any(|b| b.traced.0 > 0.0);
    let all: [Vec<usize>; 2] = windows.map(|w| (0..w.len()).collect());
    let layout = Layout {
        hosts,
        routes,
        segments,
        versions: version_ids,
    };
    let laid: [Vec<Totals>; 2] = windows.map(|w| w.iter().map(|b| dense(b, &layout)).collect());
    let Layout {
        hosts,
        routes,
        segments,
        versions: version_ids,
    } = layout;
    let empty = Totals {
        hosts: vec![(0.0, 0.0); hosts.len()],
        routes: vec![(0.0, 0.0); routes.len()],
        segments: vec![0.0; segments.len()],
        traced: (0.0, 0.0),
        versions: vec![(0.0, 0.0); version_ids.len()],
    };
    let whole = |picked: &[Vec<usize>; 2]| {
        let now = totals(&laid[0], &picked[0], &empty);
        let before = totals(&laid[1], &picked[1], &empty);
        (split(&now, &before), now, before)
    };
    let (point, now, before) = whole(&all);

    // Resampled shares, per part, in the order of `shares_of`.
    let shares_of = |s: &Split| -> Vec<f64> {
        let mut out = Vec::new();
        out.push(s.change);
        out.extend(s.segments.iter().map(|(b, n)| (n - b) / s.segment_change));
        out.extend(s.hosts.iter().map(|g| g.within / s.change));
        out.extend(s.routes.iter().map(|g| g.within / s.change));
        out.push(s.hosts.iter().map(|g| g.mix).sum::<f64>() / s.change);
        out.push(s.routes.iter().map(|g| g.mix).sum::<f64>() / s.change);
        out.push(s.versions.iter().map(|g| g.mix).sum::<f64>() / s.change);
        out
    };
    let mut rng = Resampler(0x6b75_726f_6b6f);
    let mut draws: Vec<Vec<f64>> = Vec::with_capacity(BOOTSTRAP_ROUNDS);
    if windows.iter().all(|w| w.len() >= 2) {
        for _ in 0..BOOTSTRAP_ROUNDS {
            let picked = [rng.resample(windows[0].len()), rng.resample(windows[1].len())];
            draws.push(shares_of(&whole(&picked).0));
        }
    }
    let bounds = |i: usize| interval(draws.iter().map(|d| d[i]).collect(), SHOWN_MISS);
    let (change_low, change_high) = bounds(0);
    // A cause is named only for a change clear of zero at 99%.
    let (sure_low, sure_high) = interval(draws.iter().map(|d| d[0]).collect(), CLEAR_MISS);
    let mut index = 1;
    let mut part = |axis: Axis, kind: &str, name: &str, previous: f64, current: f64, contribution: f64, total: f64| {
        let (low, high) = bounds(index);
        index += 1;
        Part {
            axis,
            kind: kind.to_owned(),
            name: name.to_owned(),
            previous,
            current,
            seconds_per_run: contribution,
            share: contribution / total,
            low,
            high,
        }
    };
    let mut segment_parts: Vec<Part> = Vec::new();
    for (i, &(b, n)) in point.segments.iter().enumerate() {
        let (kind, name) = match segments.get(i) {
            Some((kind, name)) => (kind.as_str(), name.as_str()),
            None => ("own", OWN_CODE),
        };
        segment_parts.push(part(Axis::Segment, kind, name, b, n, n - b, point.segment_change));
    }
    let mut host_parts: Vec<Part> = hosts
        .iter()
        .zip(&point.hosts)
        .map(|(h, g)| part(Axis::Host, "host", h, g.mean[1], g.mean[0], g.within, point.change))
        .collect();
    let mut route_parts: Vec<Part> = routes
        .iter()
        .zip(&point.routes)
        .map(|(r, g)| part(Axis::Route, "route", r, g.mean[1], g.mean[0], g.within, point.change))
        .collect();
    // The mix is named for the group whose share moved the mean most the
    // way it changed (a slow route that grew, for a slowdown).
    let direction = point.change.signum();
    let mix_of = |names: &[String], groups: &[GroupPart]| -> (String, f64, f64) {
        names
            .iter()
            .zip(groups)
            .max_by(|a, b| (a.1.mix * direction).total_cmp(&(b.1.mix * direction)))
            .map(|(name, g)| (name.clone(), g.weight[1], g.weight[0]))
            .unwrap_or_default()
    };
    let mut mix_parts = Vec::new();
    let (name, b, n) = mix_of(&hosts, &point.hosts);
    let host_mix = part(
        Axis::Mix,
        "hosts",
        &name,
        b,
        n,
        point.hosts.iter().map(|g| g.mix).sum(),
        point.change,
    );
    let (name, b, n) = mix_of(&routes, &point.routes);
    let route_mix = part(
        Axis::Mix,
        "routes",
        &name,
        b,
        n,
        point.routes.iter().map(|g| g.mix).sum(),
        point.change,
    );
    // The release is named for the version whose share moved the mean most
    // (the new, slower one, for a slowdown), against the one before it.
    let released = |i: usize| versions.get(version_ids.get(i).copied()?);
    let newest = (0..version_ids.len())
        .max_by(|&a, &b| (point.versions[a].mix * direction).total_cmp(&(point.versions[b].mix * direction)));
    let pooled = |i: Option<usize>| {
        i.map_or(f64::NAN, |i| {
            let (n, s) = (
                now.versions[i].0 + before.versions[i].0,
                now.versions[i].1 + before.versions[i].1,
            );
            ratio(s, n)
        })
    };
    let release_part = newest.and_then(released).map(|new| {
        let at = newest.unwrap_or_default();
        // The version before it: the one its service ran just before, if
        // its runs are in the windows.
        let earlier = (0..version_ids.len())
            .filter(|&i| {
                released(i).is_some_and(|v| {
                    (&v.service, &v.environment) == (&new.service, &new.environment)
                        && v.first_minute < new.first_minute
                })
            })
            .max_by_key(|&i| released(i).map(|v| v.first_minute));
        let part = part(
            Axis::Release,
            "version",
            &new.version,
            pooled(earlier),
            pooled(Some(at)),
            point.versions.iter().map(|g| g.mix).sum(),
            point.change,
        );
        Release {
            part,
            previous_version: earlier
                .and_then(released)
                .map(|v| v.version.clone())
                .unwrap_or_default(),
            minute: new.first_minute,
            within_seconds_per_run: point.versions.iter().map(|g| g.within).sum(),
        }
    });
    let release = release_part.filter(|_| version_ids.len() > 1);
    if hosts.len() > 1 {
        mix_parts.push(host_mix);
    }
    if feature && routes.len() > 1 {
        mix_parts.push(route_mix);
    } else {
        route_parts.clear();
    }
    let by_size = |a: &Part, b: &Part| b.seconds_per_run.abs().total_cmp(&a.seconds_per_run.abs());
    for list in [&mut segment_parts, &mut host_parts, &mut route_parts, &mut mix_parts] {
        list.sort_by(by_size);
    }

    let clear = sure_low > 0.0 || sure_high < 0.0;
    let qualifies = |p: &&Part| clear && p.share >= MOST && p.low >= MOST;
    // Each host's share of the runs, the two windows' average.
    let weights: BTreeMap<&str, f64> = hosts
        .iter()
        .map(String::as_str)
        .zip(point.hosts.iter().map(|g| (g.weight[0] + g.weight[1]) / 2.0))
        .collect();
    let place = place_of(&host_parts, &weights, point.change);
    let concentrated = match &place {
        Place::Host(h) => host_parts.iter().find(|p| &p.name == h),
        _ => None,
    };
    let cause = mix_parts
        .iter()
        .find(qualifies)
        .or_else(|| segment_parts.first().filter(qualifies))
        .or_else(|| route_parts.first().filter(qualifies))
        .or_else(|| concentrated.filter(qualifies))
        .or_else(|| release.as_ref().map(|r| &r.part).filter(qualifies))
        .map(|part| Cause {
            part: part.clone(),
            place: place.clone(),
            since: release
                .as_ref()
                .filter(|r| qualifies(&&r.part) && part.axis != Axis::Release)
                .map(|r| r.part.name.clone()),
        });
    let (n_now, s_now) = now.runs();
    let (n_before, s_before) = before.runs();
    let mut attribution = Attribution {
        previous_mean: ratio(s_before, n_before),
        current_mean: ratio(s_now, n_now),
        change: point.change,
        change_low,
        change_high,
        blocks: windows.map(|w| w.iter().filter(|b| b.hosts.values().any(|(n, _)| *n > 0.0)).count()),
        block_minutes,
        traced,
        clear,
        segments: segment_parts,
        hosts: host_parts,
        routes: route_parts,
        mix: mix_parts,
        release,
        cause,
        summary: String::new(),
        headline: String::new(),
        evidence: None,
    };
    attribution.summary = summary(&attribution);
    attribution.headline = headline(&attribution);
    attribution
}

/// Where the change happened, from the hosts' own changes.
fn place_of(hosts: &[Part], weights: &BTreeMap<&str, f64>, change: f64) -> Place {
    let weight = |name: &str| weights.get(name).copied().unwrap_or(0.0);
    match hosts {
        [] => Place::Uneven,
        [only] => Place::OnlyHost(only.name.clone()),
        [top, ..] => {
            if top.share >= MOST && top.share >= 1.5 * weight(&top.name) {
                return Place::Host(top.name.clone());
            }
            // Every host with a visible share of the runs moved the same way.
            let same_way = hosts
                .iter()
                .filter(|p| weight(&p.name) >= 0.05)
                .all(|p| p.seconds_per_run * change > 0.0);
            if same_way {
                Place::AllHosts
            } else {
                Place::Uneven
            }
        }
    }
}

/// `` `SELECT orders` ``, `own code`, `host web-2`, `` route `GET /x` ``.
fn part_name(part: &Part) -> String {
    match part.axis {
        Axis::Segment if part.kind == "own" => OWN_CODE.to_owned(),
        Axis::Segment => format!("`{}`", part.name),
        Axis::Host => format!("host {}", part.name),
        Axis::Route => format!("`{}`", part.name),
        Axis::Mix => format!("traffic mix ({})", part.kind),
        Axis::Release => format!("version {}", part.name),
    }
}

/// "`SELECT orders` +31 ms/run (84%), all hosts"; "no single cause".
fn headline(a: &Attribution) -> String {
    let Some(cause) = &a.cause else {
        return "no single cause".to_owned();
    };
    let p = &cause.part;
    let share = format::percent(p.share);
    if p.axis == Axis::Mix {
        let name = if p.kind == "hosts" {
            format!("host {}", p.name)
        } else {
            format!("`{}`", p.name)
        };
        return format!("traffic mix toward {name} ({share})");
    }
    let place = match &cause.place {
        Place::Host(h) if p.axis == Axis::Host && &p.name == h => String::new(),
        Place::AllHosts => ", all hosts".to_owned(),
        Place::Host(h) => format!(", host {h}"),
        Place::OnlyHost(_) | Place::Uneven => String::new(),
    };
    let since = cause.since.as_ref().map(|v| format!(", since {v}")).unwrap_or_default();
    format!(
        "{} {}/run ({share}){since}{place}",
        part_name(p),
        format::signed_duration(p.seconds_per_run)
    )
}

/// "`SELECT orders` +31 ms per run, 84% of the change (78% to 90%), on all hosts".
fn summary(a: &Attribution) -> String {
    let per_run = |p: &Part| format!("{} per run", format::signed_duration(p.seconds_per_run));
    let share = |p: &Part| {
        if p.low.is_finite() && p.high.is_finite() {
            format!(
                "{} of the change ({} to {})",
                format::percent(p.share),
                format::percent(p.low),
                format::percent(p.high)
            )
        } else {
            format!("{} of the change", format::percent(p.share))
        }
    };
    match &a.cause {
        Some(cause) => {
            let p = &cause.part;
            let what = match p.axis {
                Axis::Mix => {
                    let group = if p.kind == "hosts" { "host " } else { "" };
                    let name = if p.kind == "hosts" {
                        p.name.clone()
                    } else {
                        format!("`{}`", p.name)
                    };
                    format!(
                        "traffic mix: {group}{name} went from {} to {} of the runs, {} per run, {}",
                        format::percent(p.previous),
                        format::percent(p.current),
                        format::signed_duration(p.seconds_per_run),
                        share(p)
                    )
                }
                Axis::Release => match a.release.as_ref().map(|r| r.previous_version.as_str()) {
                    Some(before) if !before.is_empty() => {
                        format!("{} (after {before}) {}, {}", part_name(p), per_run(p), share(p))
                    }
                    _ => format!("{} {}, {}", part_name(p), per_run(p), share(p)),
                },
                _ => format!("{} {}, {}", part_name(p), per_run(p), share(p)),
            };
            // "since version 2.14.0 on all hosts": the release and the place
            // read as one clause.
            let (since, comma) = match &cause.since {
                Some(v) => (format!(", since version {v}"), ""),
                None => (String::new(), ","),
            };
            let place = match (&cause.place, p.axis) {
                (_, Axis::Mix) => String::new(),
                (Place::AllHosts, _) => format!("{comma} on all hosts"),
                (Place::Host(h), Axis::Host) if h == &p.name => " only".to_owned(),
                (Place::Host(h), _) => format!("{comma} on host {h}"),
                (Place::OnlyHost(h), _) => format!("{comma} on its one host {h}"),
                (Place::Uneven, _) => String::new(),
            };
            format!("{what}{since}{place}")
        }
        None => {
            let mut parts: Vec<&Part> = a.segments.iter().chain(&a.mix).chain(&a.routes).collect();
            parts.sort_by(|x, y| y.share.abs().total_cmp(&x.share.abs()));
            let listed: Vec<String> = parts
                .iter()
                .filter(|p| p.share.is_finite())
                .take(2)
                .map(|p| format!("{} {} ({})", part_name(p), per_run(p), format::percent(p.share)))
                .collect();
            if listed.is_empty() || !a.clear {
                "no single cause: the mean per run did not move clearly".to_owned()
            } else {
                format!("no single cause: {}", listed.join(", "))
            }
        }
    }
}

/// Which version each service ran when: the stored versions (ordered by
/// service, environment, first minute), each from its first minute on.
struct VersionsRunning<'a> {
    /// Per (service, environment): (first minute, index in the list).
    by_service: BTreeMap<(&'a str, &'a str), Vec<(i64, usize)>>,
}

impl<'a> VersionsRunning<'a> {
    fn new(versions: &'a [VersionSeen]) -> Self {
        let mut by_service: BTreeMap<(&str, &str), Vec<(i64, usize)>> = BTreeMap::new();
        for (i, v) in versions.iter().enumerate() {
            by_service
                .entry((&v.service, &v.environment))
                .or_default()
                .push((v.first_minute, i));
        }
        for list in by_service.values_mut() {
            list.sort_unstable();
        }
        VersionsRunning { by_service }
    }

    /// The index of the version `service` ran in `environment` at `minute`,
    /// if one was seen by then.
    fn at(&self, service: &str, environment: &str, minute: i64) -> Option<usize> {
        let list = self.by_service.get(&(service, environment))?;
        let after = list.partition_point(|&(first, _)| first <= minute);
        after.checked_sub(1).and_then(|i| list.get(i)).map(|&(_, index)| index)
    }
}

impl Analysis<'_> {
    /// Why `row` (judged in `scope` against `baseline`'s window) changed:
    /// its change of mean time per run decomposed by segment, host, route
    /// (a feature's) and traffic mix, with the cause when one part explains
    /// most of it.
    pub fn attribute(
        &self,
        scope: &Scope,
        baseline: &Scope,
        row: &RegressionRow,
    ) -> Result<Attribution, AnalysisError> {
        let narrowed = |window: &Scope| match row.group {
            Group::Transaction => Scope {
                service: Some(row.service.clone()),
                transaction: Some(row.transaction.clone()),
                environment: Some(row.environment.clone()),
                from: window.from,
                to: window.to,
                ..scope.clone()
            },
            Group::Feature => Scope {
                feature: row.feature.clone(),
                environment: Some(row.environment.clone()),
                from: window.from,
                to: window.to,
                ..scope.clone()
            },
        };
        self.attribute_windows(&narrowed(scope), &narrowed(baseline), row.group == Group::Feature)
    }

    /// Why what `scope` covers changed from `baseline`'s window to its own
    /// (both already narrowed to one transaction or feature); `feature`
    /// splits by route too.
    pub fn attribute_windows(
        &self,
        scope: &Scope,
        baseline: &Scope,
        feature: bool,
    ) -> Result<Attribution, AnalysisError> {
        let block = block_minutes(scope.minutes().min(baseline.minutes()).max(1));
        let versions = self.store.versions()?;
        let now = self.block_sums(scope, block, &versions)?;
        let before = self.block_sums(baseline, block, &versions)?;
        let mut attribution = attribute_blocks([&now, &before], block, feature, &versions);
        attribution.evidence = self.side_by_side(scope, baseline)?;
        Ok(attribution)
    }

    /// [`Analysis::attribute`] for each of `rows`, set on the row.
    pub fn attribute_rows(
        &self,
        scope: &Scope,
        baseline: &Scope,
        rows: &mut [RegressionRow],
    ) -> Result<(), AnalysisError> {
        for row in rows {
            row.attribution = Some(Box::new(self.attribute(scope, baseline, row)?));
        }
        Ok(())
    }

    /// The sums of `scope`'s window per block of `block` minutes; each
    /// block's runs also under the version of `versions` (by its index) its
    /// service ran at the block's middle.
    fn block_sums(&self, scope: &Scope, block: i64, versions: &[VersionSeen]) -> Result<Vec<BlockSums>, AnalysisError> {
        let filter = scope.store_filter(self.owners);
        let mut blocks: BTreeMap<i64, BlockSums> = BTreeMap::new();
        let running = VersionsRunning::new(versions);
        for (key, start, histogram) in self.store.histogram_steps(&filter, scope.from, scope.to, block)? {
            if !scope.matches(&key, self.owners) || histogram.count == 0 {
                continue;
            }
            let sums = blocks.entry(start).or_default();
            let (n, s) = (histogram.count as f64, histogram.sum);
            let host = sums.hosts.entry(key.host.clone()).or_default();
            host.0 += n;
            host.1 += s;
            let route = sums.routes.entry(key.transaction.clone()).or_default();
            route.0 += n;
            route.1 += s;
            if let Some(version) = running.at(&key.service, &key.environment, start + block / 2) {
                let runs = sums.versions.entry(version).or_default();
                runs.0 += n;
                runs.1 += s;
            }
        }
        let counters = |name: &str| -> Result<Vec<_>, AnalysisError> {
            Ok(self
                .store
                .counter_steps(&filter, name, scope.from, scope.to, block)?
                .into_iter()
                .filter(|(key, _, _, _)| scope.matches(key, self.owners))
                .collect())
        };
        let mut exclusive = counters(SEGMENT_EXCLUSIVE)?;
        if exclusive.is_empty() {
            // An SDK that sends only durations: the inclusive time.
            exclusive = counters(SEGMENT_DURATION)?;
        }
        for (_, labels, start, value) in exclusive {
            let kind = label(&labels, "kuroko.segment.kind").unwrap_or("code").to_owned();
            let name = label(&labels, "kuroko.segment.name").unwrap_or("").to_owned();
            *blocks
                .entry(start)
                .or_default()
                .segments
                .entry((kind, name))
                .or_default() += value;
        }
        for (name, runs) in [(TRACED_RUNS, true), (TRACED_DURATION, false)] {
            for (_, _, start, value) in counters(name)? {
                let traced = &mut blocks.entry(start).or_default().traced;
                if runs {
                    traced.0 += value;
                } else {
                    traced.1 += value;
                }
            }
        }
        Ok(blocks.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block with `runs` runs per host of `mean` seconds, a database
    /// segment of `db` seconds per run.
    fn block(hosts: &[(&str, f64, f64)], db: f64) -> BlockSums {
        let mut b = BlockSums::default();
        for &(host, runs, mean) in hosts {
            b.hosts.insert(host.to_owned(), (runs, runs * mean));
            let route = b.routes.entry("GET /x".to_owned()).or_default();
            route.0 += runs;
            route.1 += runs * mean;
            *b.segments
                .entry(("database".to_owned(), "SELECT orders".to_owned()))
                .or_default() += runs * db;
        }
        b
    }

    fn wobble(i: usize) -> f64 {
        1.0 + 0.02 * ((i * 7 % 5) as f64 - 2.0)
    }

    #[test]
    fn a_grown_segment_is_the_cause_on_all_hosts() {
        let hosts = |mean: f64| [("a", 50.0, mean), ("b", 50.0, mean)];
        let before: Vec<BlockSums> = (0..48).map(|i| block(&hosts(0.100 * wobble(i)), 0.040)).collect();
        let now: Vec<BlockSums> = (0..48).map(|i| block(&hosts(0.130 * wobble(i + 1)), 0.070)).collect();
        let a = attribute_blocks([&now, &before], 60, false, &[]);
        let cause = a.cause.as_ref().expect(&a.summary);
        assert_eq!(
            (cause.part.axis, cause.part.name.as_str()),
            (Axis::Segment, "SELECT orders")
        );
        assert!(cause.part.share > 0.8, "{}", a.summary);
        assert_eq!(cause.place, Place::AllHosts);
        assert!(a.summary.contains("on all hosts"), "{}", a.summary);
        // The parts add up to the change.
        let sum: f64 = a.segments.iter().map(|p| p.seconds_per_run).sum();
        assert!((sum - a.change).abs() < 1e-9);
        let sum: f64 = a.hosts.iter().chain(&a.mix).map(|p| p.seconds_per_run).sum();
        assert!((sum - a.change).abs() < 1e-9);
    }

    #[test]
    fn a_slowdown_on_a_quiet_host_is_placed_on_it() {
        // web-1 runs 70% of the traffic, web-3 10%; only web-3 slows down, 3×.
        let hosts = |slow: f64, i: usize| {
            [
                ("web-1", 70.0, 0.1 * wobble(i)),
                ("web-2", 20.0, 0.1 * wobble(i + 1)),
                ("web-3", 10.0, slow * wobble(i + 2)),
            ]
        };
        let before: Vec<BlockSums> = (0..48).map(|i| block(&hosts(0.1, i), 0.04)).collect();
        let now: Vec<BlockSums> = (0..48).map(|i| block(&hosts(0.3, i), 0.04)).collect();
        let a = attribute_blocks([&now, &before], 60, false, &[]);
        let cause = a.cause.as_ref().expect(&a.summary);
        assert_eq!(cause.place, Place::Host("web-3".into()), "{}", a.summary);
        assert_eq!(cause.part.name, OWN_CODE, "{}", a.summary);
        assert!(a.summary.ends_with("on host web-3"), "{}", a.summary);
    }

    #[test]
    fn a_release_that_slows_every_part_is_itself_the_cause() {
        let seen = |version: &str, first_minute| VersionSeen {
            service: "shop".into(),
            environment: String::new(),
            version: version.into(),
            first_minute,
        };
        let versions = [seen("1.0.0", 0), seen("1.1.0", 100)];
        // Version 1.1.0 from the middle of the current window: its blocks
        // are a third slower, in the database and in own code alike.
        // An external call beside the database: 30 ms, then 40.
        let with_version = |mut b: BlockSums, version: usize| {
            let all = b.hosts.values().fold((0.0, 0.0), |t, h| (t.0 + h.0, t.1 + h.1));
            b.versions.insert(version, all);
            let external = all.0 * [0.030, 0.040][version];
            b.segments.insert(("external".into(), "GET api".into()), external);
            b
        };
        let hosts = |mean: f64| [("a", 50.0, mean), ("b", 50.0, mean)];
        let before: Vec<BlockSums> = (0..48)
            .map(|i| with_version(block(&hosts(0.090 * wobble(i)), 0.030), 0))
            .collect();
        let now: Vec<BlockSums> = (0..48)
            .map(|i| match i < 24 {
                true => with_version(block(&hosts(0.090 * wobble(i + 1)), 0.030), 0),
                false => with_version(block(&hosts(0.120 * wobble(i + 1)), 0.040), 1),
            })
            .collect();
        let a = attribute_blocks([&now, &before], 60, false, &versions);
        let cause = a.cause.as_ref().expect(&a.summary);
        assert_eq!(
            (cause.part.axis, cause.part.name.as_str()),
            (Axis::Release, "1.1.0"),
            "{}",
            a.summary
        );
        assert!(
            a.summary.starts_with("version 1.1.0 (after 1.0.0) +15 ms per run, 9") && cause.since.is_none(),
            "{}",
            a.summary
        );
        let release = a.release.as_ref().expect("two versions");
        assert!(release.within_seconds_per_run.abs() < 0.002, "{release:?}");
    }

    #[test]
    fn noise_claims_no_cause() {
        let hosts = |mean: f64| [("a", 50.0, mean)];
        let before: Vec<BlockSums> = (0..48).map(|i| block(&hosts(0.100 * wobble(i)), 0.04)).collect();
        let now: Vec<BlockSums> = (0..48).map(|i| block(&hosts(0.100 * wobble(i + 3)), 0.04)).collect();
        let a = attribute_blocks([&now, &before], 60, false, &[]);
        assert!(a.cause.is_none(), "{}", a.summary);
        assert!(a.summary.starts_with("no single cause"), "{}", a.summary);
    }
}
