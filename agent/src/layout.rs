//! The HDR bucket layout shared by every series of an agent.
//!
//! The `hdrhistogram` crate owns the format; what it does not offer is a
//! histogram that many threads can record into without a lock (its
//! `SyncHistogram` keeps one full histogram per recorder, per series). So the
//! recording path keeps plain atomic counters laid out exactly as
//! `hdrhistogram::Histogram` lays out its `counts` array, and this module holds
//! the few lines of index arithmetic that map a value to a counter. The layout
//! is validated by building an `hdrhistogram::Histogram` with the same bounds,
//! and a test checks every index against the crate's own equivalence ranges.

use hdrhistogram::Histogram;

use crate::config::ConfigError;

/// Index arithmetic of a `hdrhistogram::Histogram` with fixed bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    lowest: u64,
    highest: u64,
    significant_digits: u8,
    unit_magnitude: u8,
    sub_bucket_half_count_magnitude: u8,
    sub_bucket_half_count: u32,
    sub_bucket_mask: u64,
    leading_zero_count_base: u8,
    len: usize,
}

impl Layout {
    /// The layout of `Histogram::new_with_bounds(lowest, highest, significant_digits)`.
    pub fn new(lowest: u64, highest: u64, significant_digits: u8) -> Result<Self, ConfigError> {
        let probe = Histogram::<u8>::new_with_bounds(lowest, highest, significant_digits)
            .map_err(|e| ConfigError::HistogramBounds(format!("{e:?}")))?;
        let largest = 2 * 10_u32.pow(u32::from(significant_digits));
        let unit_magnitude = (lowest as f64).log2().floor() as u8;
        let sub_bucket_count_magnitude = f64::from(largest).log2().ceil() as u8;
        let sub_bucket_count = 1_u32 << sub_bucket_count_magnitude;
        Ok(Layout {
            lowest,
            highest,
            significant_digits,
            unit_magnitude,
            sub_bucket_half_count_magnitude: sub_bucket_count_magnitude - 1,
            sub_bucket_half_count: sub_bucket_count / 2,
            sub_bucket_mask: (u64::from(sub_bucket_count) - 1) << unit_magnitude,
            leading_zero_count_base: 64 - unit_magnitude - sub_bucket_count_magnitude,
            len: probe.distinct_values(),
        })
    }

    /// Number of counters in the layout.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a layout has at least one counter.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lowest discernible value (values below share the first counters).
    pub fn lowest(&self) -> u64 {
        self.lowest
    }

    /// Highest trackable value; larger values are clamped to it.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Significant decimal digits kept.
    pub fn significant_digits(&self) -> u8 {
        self.significant_digits
    }

    /// Counter index of `value`, clamped into the trackable range.
    #[inline(always)]
    pub fn index_for(&self, value: u64) -> usize {
        let value = if value > self.highest { self.highest } else { value };
        let bucket = self.leading_zero_count_base - (value | self.sub_bucket_mask).leading_zeros() as u8;
        let sub_bucket = (value >> (bucket + self.unit_magnitude)) as usize;
        let base = (usize::from(bucket) + 1) << self.sub_bucket_half_count_magnitude;
        base + sub_bucket - self.sub_bucket_half_count as usize
    }

    /// Lowest value that maps to counter `index`.
    pub fn value_for(&self, index: usize) -> u64 {
        let mut bucket = (index >> self.sub_bucket_half_count_magnitude) as i64 - 1;
        let mut sub_bucket =
            (index as u64 & (u64::from(self.sub_bucket_half_count) - 1)) + u64::from(self.sub_bucket_half_count);
        if bucket < 0 {
            sub_bucket -= u64::from(self.sub_bucket_half_count);
            bucket = 0;
        }
        sub_bucket << (bucket as u64 + u64::from(self.unit_magnitude))
    }

    /// Highest value that maps to counter `index`.
    pub fn highest_for(&self, index: usize) -> u64 {
        let low = self.value_for(index);
        let bucket = self.leading_zero_count_base - (low | self.sub_bucket_mask).leading_zeros() as u8;
        low + (1u64 << (self.unit_magnitude + bucket)) - 1
    }

    /// An empty `hdrhistogram::Histogram` with this layout's bounds.
    #[cfg(any(test, feature = "hdrhistogram"))]
    pub(crate) fn new_histogram(&self) -> Histogram<u64> {
        Histogram::new_with_bounds(self.lowest, self.highest, self.significant_digits)
            .expect("bounds were validated by Layout::new")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_matches_hdrhistogram() {
        for (low, high, digits) in [
            (1_000, 3_600_000_000_000, 2),
            (1, 60_000_000, 3),
            (1_000, 60_000_000_000, 2),
        ] {
            let layout = Layout::new(low, high, digits).unwrap();
            let mut reference = layout.new_histogram();
            assert_eq!(reference.distinct_values(), layout.len());
            for index in 0..layout.len() {
                let value = layout.value_for(index);
                if value > high {
                    continue;
                }
                assert_eq!(layout.index_for(value), index, "value {value}");
                assert_eq!(reference.lowest_equivalent(value), value);
                assert_eq!(reference.highest_equivalent(value), layout.highest_for(index));
                assert_eq!(layout.index_for(layout.highest_for(index).min(high)), index);
            }
            // Values beyond the range are clamped to the last trackable counter.
            assert_eq!(layout.index_for(u64::MAX), layout.index_for(high));
            reference.record(high).unwrap();
        }
    }

    #[test]
    fn default_layout_size() {
        let layout = Layout::new(1_000, 3_600_000_000_000, 2).unwrap();
        assert_eq!(layout.len(), 3456);
    }
}
