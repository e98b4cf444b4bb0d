//! Bucket counts of a [`Histogram`](crate::histogram::Histogram), held
//! densely: the count of bucket `offset + i` is `counts[i]`.
//!
//! OTLP sends buckets this way, and merging dense arrays is a run of
//! additions, where a map pays a search and often an allocation per bucket:
//! ingest merges every point into its series-minute, and queries merge
//! thousands of rows. The first and last counts are never zero (an empty
//! `Buckets` holds nothing), so equal contents compare equal.
//!
//! Dense storage costs memory in proportion to the span of indexes, which
//! is small for durations (scale 7 spans 1 µs to 60 s in 3,300 buckets) but
//! not bounded for hostile values; the histogram keeps the span under
//! [`MAX_SPAN`] by downscaling, as OpenTelemetry SDKs do with their
//! maximum size.

/// Most buckets a histogram spans before it is downscaled: at scale 7,
/// durations over a range of 2^64 (1 ns to 584 years).
pub(crate) const MAX_SPAN: usize = 8_192;

/// Counts of consecutive buckets; see the [module documentation](self).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "Packed")]
pub struct Buckets {
    offset: i32,
    counts: Vec<u64>,
}

/// How [`Buckets`] serialize (the ingest journal writes every point): the
/// offset and the counts as one run of LEB128 varints, which postcard copies
/// as bytes rather than visiting count by count.
#[derive(serde::Serialize, serde::Deserialize)]
struct Packed {
    offset: i32,
    #[serde(with = "serde_bytes_compat")]
    counts: Vec<u8>,
}

/// Bytes as one serde byte string (what the `serde_bytes` crate does).
pub(crate) mod serde_bytes_compat {
    /// Writes `bytes` as a byte string.
    pub(crate) fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// Reads a byte string (or, from JSON, an array of numbers).
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            // Formats without byte strings (JSON) write an array of numbers.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(byte) = seq.next_element::<u8>()? {
                    bytes.push(byte);
                }
                Ok(bytes)
            }
        }
        deserializer.deserialize_byte_buf(Visit)
    }
}

#[cfg(test)]
mod serde_tests {
    use super::*;

    #[test]
    fn buckets_round_trip_through_the_journal_format_and_json() {
        let buckets: Buckets = [(-3, 1), (0, 300), (5, u64::MAX)].into_iter().collect();
        let bytes = postcard::to_allocvec(&buckets).unwrap();
        assert_eq!(postcard::from_bytes::<Buckets>(&bytes).unwrap(), buckets);
        let json = serde_json::to_string(&buckets).unwrap();
        assert_eq!(serde_json::from_str::<Buckets>(&json).unwrap(), buckets);
        let truncated = Packed {
            offset: 0,
            counts: vec![0x80],
        };
        assert!(Buckets::try_from(truncated).is_err());
    }
}

/// As `Packed`, without the copy of the counts that serde's `into` makes.
impl serde::Serialize for Buckets {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Packed::from(self).serialize(serializer)
    }
}

impl From<&Buckets> for Packed {
    fn from(buckets: &Buckets) -> Packed {
        let mut counts = Vec::with_capacity(buckets.counts.len() + 8);
        for &count in &buckets.counts {
            let mut value = count;
            while value >= 0x80 {
                counts.push((value as u8) | 0x80);
                value >>= 7;
            }
            counts.push(value as u8);
        }
        Packed {
            offset: buckets.offset,
            counts,
        }
    }
}

impl TryFrom<Packed> for Buckets {
    type Error = String;

    fn try_from(packed: Packed) -> Result<Buckets, String> {
        let mut counts = Vec::with_capacity(packed.counts.len());
        let (mut value, mut shift) = (0u64, 0u32);
        for &byte in &packed.counts {
            if shift >= 64 {
                return Err("a bucket count overflows".to_owned());
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                counts.push(value);
                (value, shift) = (0, 0);
            } else {
                shift += 7;
            }
        }
        if shift != 0 || counts.len() > MAX_SPAN {
            return Err("bucket counts are truncated or span too many buckets".to_owned());
        }
        let mut buckets = Buckets::from_dense(packed.offset, &counts).ok_or("bucket indexes past i32")?;
        buckets.trim();
        Ok(buckets)
    }
}

impl Buckets {
    /// No buckets.
    pub fn new() -> Self {
        Buckets::default()
    }

    /// From OTLP's form: `counts[i]` is bucket `offset + i`'s count. Indexes
    /// past `i32::MAX` are refused (`None`).
    pub(crate) fn from_dense(offset: i32, counts: &[u64]) -> Option<Self> {
        let first = counts.iter().position(|&c| c > 0);
        let last = counts.iter().rposition(|&c| c > 0);
        let (Some(first), Some(last)) = (first, last) else {
            return Some(Buckets::new());
        };
        let offset = offset.checked_add(i32::try_from(first).ok()?)?;
        offset.checked_add(i32::try_from(last - first).ok()?)?;
        Some(Buckets {
            offset,
            counts: counts[first..=last].to_vec(),
        })
    }

    /// True when every count is zero.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Buckets from the first non-empty one to the last.
    pub fn span(&self) -> usize {
        self.counts.len()
    }

    /// The lowest non-empty bucket's index.
    pub fn first(&self) -> Option<i32> {
        (!self.is_empty()).then_some(self.offset)
    }

    /// The highest non-empty bucket's index.
    pub fn last(&self) -> Option<i32> {
        (!self.is_empty()).then(|| self.offset + (self.counts.len() - 1) as i32)
    }

    /// Bucket `index`'s count.
    pub fn get(&self, index: i32) -> u64 {
        let at = i64::from(index) - i64::from(self.offset);
        usize::try_from(at)
            .ok()
            .and_then(|at| self.counts.get(at))
            .copied()
            .unwrap_or(0)
    }

    /// The non-empty buckets, `(index, count)`, ascending.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        let offset = self.offset;
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(move |(i, &c)| (offset + i as i32, c))
    }

    /// Makes room for indexes `low..=high` (`low <= high`), so that adding
    /// within them does not reallocate.
    pub(crate) fn cover(&mut self, low: i32, high: i32) {
        if self.counts.is_empty() {
            self.offset = low;
            self.counts = vec![0; (i64::from(high) - i64::from(low) + 1) as usize];
            return;
        }
        if low < self.offset {
            let grow = (i64::from(self.offset) - i64::from(low)) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = low;
        }
        let end = i64::from(self.offset) + self.counts.len() as i64 - 1;
        if i64::from(high) > end {
            let grow = (i64::from(high) - end) as usize;
            self.counts.resize(self.counts.len() + grow, 0);
        }
    }

    /// Adds `count` to bucket `index`.
    pub fn add(&mut self, index: i32, count: u64) {
        if count == 0 {
            return;
        }
        self.cover(index, index);
        let at = (i64::from(index) - i64::from(self.offset)) as usize;
        self.counts[at] = self.counts[at].saturating_add(count);
    }

    /// Adds every bucket of `other`, its indexes shifted right by `shift`
    /// (brought `shift` scales coarser: `>>` floors, as downscaling does).
    pub(crate) fn add_all(&mut self, other: &Buckets, shift: u32) {
        let (Some(low), Some(high)) = (other.first(), other.last()) else {
            return;
        };
        self.cover(low >> shift, high >> shift);
        if shift == 0 {
            // Same scale (the usual merge): a slice-wise add, vectorised.
            let at = (i64::from(low) - i64::from(self.offset)) as usize;
            for (mine, &count) in self.counts[at..at + other.counts.len()].iter_mut().zip(&other.counts) {
                *mine = mine.saturating_add(count);
            }
            return;
        }
        for (i, &count) in other.counts.iter().enumerate() {
            let index = (other.offset + i as i32) >> shift;
            let at = (i64::from(index) - i64::from(self.offset)) as usize;
            self.counts[at] = self.counts[at].saturating_add(count);
        }
    }

    /// Brings the buckets `shift` scales coarser, exactly.
    pub(crate) fn downscale(&mut self, shift: u32) {
        if shift == 0 || self.is_empty() {
            return;
        }
        let mut coarser = Buckets::new();
        coarser.add_all(self, shift);
        *self = coarser;
    }

    /// Moves every bucket `by` indexes (saturating at the ends of `i32`).
    pub(crate) fn shift_indexes(&mut self, by: i32) {
        if self.is_empty() {
            return;
        }
        let highest = i64::from(i32::MAX) - (self.counts.len() as i64 - 1);
        self.offset = (i64::from(self.offset) + i64::from(by)).clamp(i64::from(i32::MIN), highest) as i32;
    }

    /// Subtracts `earlier` bucket by bucket: `None` when any bucket of
    /// `earlier` is more than this one's (a reset of a cumulative stream).
    pub fn checked_sub(&self, earlier: &Buckets) -> Option<Buckets> {
        let mut delta = self.clone();
        for (index, count) in earlier.iter() {
            let at = usize::try_from(i64::from(index) - i64::from(delta.offset)).ok()?;
            let slot = delta.counts.get_mut(at)?;
            *slot = slot.checked_sub(count)?;
        }
        delta.trim();
        Some(delta)
    }

    /// Drops empty buckets at both ends.
    fn trim(&mut self) {
        let Some(first) = self.counts.iter().position(|&c| c > 0) else {
            self.counts.clear();
            return;
        };
        let last = self.counts.iter().rposition(|&c| c > 0).unwrap_or(first);
        self.counts.truncate(last + 1);
        self.counts.drain(..first);
        self.offset += first as i32;
    }
}

impl FromIterator<(i32, u64)> for Buckets {
    fn from_iter<I: IntoIterator<Item = (i32, u64)>>(pairs: I) -> Self {
        let mut buckets = Buckets::new();
        for (index, count) in pairs {
            buckets.add(index, count);
        }
        buckets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_counts_add_merge_and_compare_by_content() {
        let a = Buckets::from_dense(10, &[0, 3, 0, 2, 0]).unwrap();
        assert_eq!(a.iter().collect::<Vec<_>>(), [(11, 3), (13, 2)]);
        assert_eq!((a.first(), a.last(), a.span()), (Some(11), Some(13), 3));
        let mut b: Buckets = [(13, 2), (11, 3)].into_iter().collect();
        assert_eq!(a, b, "the same contents compare equal however built");
        b.add(-4, 1);
        assert_eq!(b.get(-4), 1);
        assert_eq!(b.get(12), 0);
        // Two scales coarser: -4 >> 2 = -1 (floor), 11 >> 2 = 13 >> 2 = 2 and 3.
        let mut coarse = Buckets::new();
        coarse.add_all(&b, 2);
        assert_eq!(coarse.iter().collect::<Vec<_>>(), [(-1, 1), (2, 3), (3, 2)]);
        b.downscale(2);
        assert_eq!(b, coarse);
        assert_eq!(Buckets::from_dense(0, &[0, 0]), Some(Buckets::new()));
        assert_eq!(Buckets::from_dense(i32::MAX, &[0, 1]), None, "index past i32::MAX");
    }

    #[test]
    fn subtraction_finds_resets() {
        let now: Buckets = [(1, 5), (2, 5)].into_iter().collect();
        let then: Buckets = [(1, 5), (2, 1)].into_iter().collect();
        assert_eq!(now.checked_sub(&then), Some([(2, 4)].into_iter().collect()));
        assert_eq!(then.checked_sub(&now), None, "a count went down");
        let outside: Buckets = [(9, 1)].into_iter().collect();
        assert_eq!(now.checked_sub(&outside), None, "a bucket vanished");
    }
}
