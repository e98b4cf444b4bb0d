//! When each performance problem was first and last seen, beside the data,
//! behind [`ProblemSightings`] (both stores: `sightings.rs` in
//! [`super::sqlite`] and [`super::clickhouse`]).
//!
//! Problems are found in kept traces, which the store keeps only as long as
//! minute rows (8 days by default); a problem's first seen must outlive
//! them, as an error group's does in hour rows, or "new" would mean only
//! "not seen in the last days". So the analysis layer records what it found
//! ([`ProblemSeen`]: a group's fingerprint and the first and last instant
//! it was seen) and reads it back. A store keeps the earliest first and the
//! latest last per group, as long as hour rows; what a problem is belongs to
//! the analysis layer (`analysis/problems/`).

use super::StoreError;

/// One performance problem group, and when it was seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ProblemSeen {
    /// The group's fingerprint id, 16 hex digits.
    pub group: String,
    /// The start of its first run seen, unix nanoseconds.
    pub first_seen: u64,
    /// The end of its last run seen, unix nanoseconds.
    pub last_seen: u64,
}

/// The problem sightings a store keeps; see the [module documentation](self).
pub trait ProblemSightings: Send + Sync {
    /// Every group kept, with its earliest first and latest last seen,
    /// ordered by group.
    fn problems_seen(&self) -> Result<Vec<ProblemSeen>, StoreError>;

    /// Records `seen`: a group already kept keeps the earlier first and the
    /// later last seen.
    fn problems_seen_put(&self, seen: &[ProblemSeen]) -> Result<(), StoreError>;
}
