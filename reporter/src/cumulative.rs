//! Cumulative streams: what turns an OpenTelemetry SDK's cumulative points
//! into the per-minute deltas the store keeps.
//!
//! Most SDKs export cumulative temporality by default: each point carries
//! everything since its stream started (`start_time_unix_nano`). The
//! reporter stores what was added since the stream's previous point, so it
//! must remember, per stream, that point: its start, its time and its value
//! ([`StreamState`]). That state is written with the batch it produced (the
//! same journal record, the same flush), so a restarted reporter, or another
//! replica on a shared store, continues each stream where the last point
//! left it instead of counting its whole history again.
//!
//! A point relates to its stream's last one in one of three ways
//! ([`relate`]):
//! - **whole**: the stream is new, or its start time moved forward (the
//!   process restarted, or the SDK reset it): the point's value is all new;
//! - **since**: same start, later time: the delta is the difference (and a
//!   value that went down is a reset, counted whole);
//! - **stale**: same start and not later (a duplicate, a retry, a point
//!   overtaken by a later one), or an older start: it adds nothing, since
//!   the later point already holds it. Duplicates and out-of-order points
//!   are therefore idempotent.

use crate::histogram::Histogram;
use crate::stable_hash::Fnv1a;

/// Identifies a stream across restarts and replicas: a 64-bit FNV-1a hash of
/// everything that names it (sender, scope, metric, attributes). Stable by
/// construction: it must never change with a dependency or a Rust release.
pub(crate) type StreamId = u64;

/// A stream's id from the texts that name it, hashed at once (what
/// [`StreamIds`] must equal).
#[cfg(test)]
pub(crate) fn stream_id(fields: &[&[u8]]) -> StreamId {
    crate::stable_hash::fnv1a64(fields)
}

/// The ids of one sender's streams: what names the sender (its resource's
/// attributes, its scope) is hashed once, and each stream's id continues
/// from it, equal to hashing all the fields at once. A resource's
/// attributes have no length limit (they name no series and are never
/// kept), so hashing them again for each point would cost a hostile
/// request's size once per point.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamIds(Fnv1a);

impl StreamIds {
    /// The streams named first by `fields`.
    pub(crate) fn of(fields: &[&[u8]]) -> Self {
        StreamIds(fields.iter().fold(Fnv1a::new(), |hash, field| hash.field(field)))
    }

    /// Continued with more fields (a scope's name after its resource's).
    #[must_use]
    pub(crate) fn and(self, field: &[u8]) -> Self {
        StreamIds(self.0.field(field))
    }

    /// The id of the stream named further by `fields`.
    pub(crate) fn id(self, fields: &[&[u8]]) -> StreamId {
        fields.iter().fold(self.0, |hash, field| hash.field(field)).finish()
    }
}

/// A cumulative stream's last point.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamState {
    /// The stream's start, unix nanoseconds (`start_time_unix_nano`).
    pub start: u64,
    /// The point's time, unix nanoseconds.
    pub time: u64,
    /// Its cumulative value.
    pub value: StreamValue,
}

impl StreamState {
    /// Whether `self` is a later point of its stream than `other` (the
    /// state to keep when both are at hand).
    pub(crate) fn is_after(&self, other: &StreamState) -> bool {
        (self.start, self.time) > (other.start, other.time)
    }

    /// Bytes the state takes in memory, its id included: what
    /// `[limits] max_cumulative_stream_bytes` counts. A histogram's is its
    /// buckets (up to [`MAX_SPAN`](crate::buckets::MAX_SPAN) of them), an
    /// explicit point's its bounds and counts (as many as were sent).
    pub(crate) fn footprint(&self) -> usize {
        let heap = match &self.value {
            StreamValue::Histogram(histogram) => histogram.buckets.span() * size_of::<u64>(),
            StreamValue::Explicit(explicit) => {
                explicit.bounds.len() * size_of::<f64>() + explicit.counts.len() * size_of::<u64>()
            }
            StreamValue::Counter(_) => 0,
        };
        size_of::<(StreamId, StreamState)>() + heap
    }

    /// The state as stored: postcard bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// A state read back; `None` when the bytes are not one.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<StreamState> {
        postcard::from_bytes(bytes).ok()
    }
}

/// Keeps the latest state of each stream of `states` in `streams`: a state
/// older than the one held (a replica's read back late, a replayed record)
/// is ignored. Returns how the states' [footprint](StreamState::footprint)
/// changed, in bytes.
pub(crate) fn keep_latest<S: std::hash::BuildHasher>(
    streams: &mut std::collections::HashMap<StreamId, StreamState, S>,
    states: impl IntoIterator<Item = (StreamId, StreamState)>,
) -> i64 {
    let bytes = |state: &StreamState| i64::try_from(state.footprint()).unwrap_or(i64::MAX);
    let mut change = 0_i64;
    for (id, state) in states {
        match streams.get_mut(&id) {
            Some(held) if !state.is_after(held) => {}
            Some(held) => {
                change = change.saturating_add(bytes(&state)).saturating_sub(bytes(held));
                *held = state;
            }
            None => {
                change = change.saturating_add(bytes(&state));
                streams.insert(id, state);
            }
        }
    }
    change
}

/// A cumulative value.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum StreamValue {
    /// An exponential histogram, as converted.
    Histogram(Histogram),
    /// An explicit-bucket histogram, raw.
    Explicit(Explicit),
    /// A monotonic sum.
    Counter(f64),
}

/// An explicit-bucket point as sent (seconds), kept per cumulative stream:
/// deltas are taken on these raw counts, before conversion, since the
/// conversion spreads each bucket's runs between the stream's moving min and
/// max.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Explicit {
    /// Bucket bounds, seconds.
    pub bounds: Vec<f64>,
    /// Counts, one more than the bounds.
    pub counts: Vec<u64>,
    /// Runs.
    pub count: u64,
    /// Their sum, seconds.
    pub sum: f64,
    /// The stream's min and max so far, seconds, when sent.
    pub extremes: Option<(f64, f64)>,
}

impl Explicit {
    /// What was added since `earlier`, or `None` when something went down or
    /// the bounds changed: a reset.
    pub fn since(&self, earlier: &Explicit) -> Option<Explicit> {
        if self.bounds != earlier.bounds || self.counts.len() != earlier.counts.len() {
            return None;
        }
        let counts = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(now, then)| now.checked_sub(*then))
            .collect::<Option<Vec<u64>>>()?;
        Some(Explicit {
            bounds: self.bounds.clone(),
            counts,
            count: self.count.checked_sub(earlier.count)?,
            sum: (self.sum - earlier.sum).max(0.0),
            extremes: self.extremes,
        })
    }

    /// The exact min and max of what was added since `earlier`, where the
    /// stream's extremes moved: a min that went down, or a max that went up,
    /// belongs to a run added since.
    pub(crate) fn moved_extremes(&self, earlier: &Explicit) -> (Option<f64>, Option<f64>) {
        match (self.extremes, earlier.extremes) {
            (Some((min, max)), Some((was_min, was_max))) => {
                ((min < was_min).then_some(min), (max > was_max).then_some(max))
            }
            _ => (None, None),
        }
    }
}

/// How a point relates to its stream's last one; see the [module
/// documentation](self).
#[derive(Debug, PartialEq)]
pub(crate) enum Relation<'a> {
    /// All of the point's value is new.
    Whole,
    /// The point follows this value of the same run of the stream.
    Since(&'a StreamValue),
    /// The point adds nothing: a duplicate, or overtaken by a later one.
    Stale,
}

/// How a point started at `start` and taken at `time` relates to `last`.
pub(crate) fn relate(last: Option<&StreamState>, start: u64, time: u64) -> Relation<'_> {
    match last {
        None => Relation::Whole,
        Some(last) if start > last.start => Relation::Whole,
        Some(last) if start < last.start || time <= last.time => Relation::Stale,
        Some(last) => Relation::Since(&last.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(start: u64, time: u64, value: f64) -> StreamState {
        StreamState {
            start,
            time,
            value: StreamValue::Counter(value),
        }
    }

    #[test]
    fn points_relate_by_start_then_time() {
        let last = state(100, 200, 5.0);
        assert_eq!(relate(None, 100, 150), Relation::Whole);
        assert_eq!(
            relate(Some(&last), 100, 260),
            Relation::Since(&StreamValue::Counter(5.0))
        );
        assert_eq!(relate(Some(&last), 100, 200), Relation::Stale, "a duplicate");
        assert_eq!(relate(Some(&last), 100, 150), Relation::Stale, "overtaken");
        assert_eq!(
            relate(Some(&last), 90, 300),
            Relation::Stale,
            "an older run of the stream"
        );
        assert_eq!(relate(Some(&last), 250, 260), Relation::Whole, "a restart");
    }

    #[test]
    fn states_round_trip_and_ids_are_stable() {
        let explicit = StreamState {
            start: 1,
            time: 2,
            value: StreamValue::Explicit(Explicit {
                bounds: vec![0.005, 0.01],
                counts: vec![1, 2, 3],
                count: 6,
                sum: 0.1,
                extremes: Some((0.001, 0.02)),
            }),
        };
        assert_eq!(StreamState::from_bytes(&explicit.to_bytes()), Some(explicit));
        assert_eq!(StreamState::from_bytes(b"\xff\xff"), None);
        // Fields cannot run into each other.
        assert_ne!(stream_id(&[b"ab"]), stream_id(&[b"a", b"b"]));
        // Continued from a sender's prefix, the same ids as before.
        let sender = StreamIds::of(&[b"service.name=shop"]).and(b"scope");
        assert_eq!(
            sender.id(&[b"metric", b"route=/"]),
            stream_id(&[b"service.name=shop", b"scope", b"metric", b"route=/"])
        );
    }
}
