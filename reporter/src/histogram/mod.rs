//! The reporter's canonical histogram: base-2 exponential buckets, as OTLP
//! defines them, at scale 7 at most.
//!
//! Bucket `i` at scale `s` holds values in `(2^(i/2^s), 2^((i+1)/2^s)]`.
//! Points arrive at any scale: above 7 they are downscaled on arrival
//! (exactly: index >> (scale - 7)); at or below 7 they are kept at their own
//! scale. Merging two histograms downscales the finer to the coarser scale and
//! adds counts, so merging across hosts, minutes and weeks is exact summation
//! (at the coarsest scale involved). Kuroko's agent sends scale 7, where a
//! percentile is within 0.66% of the exact sample.
//!
//! Explicit-bucket histograms (the default of most OpenTelemetry SDKs) are
//! converted by placing each bucket's count at a representative value inside
//! it; such histograms are flagged `estimated`, and so is anything merged
//! with them.
//!
//! About 850 lines: one type and the arithmetic that keeps it exact (record,
//! merge across scales, downscale, percentiles); its tests are in `tests.rs`.

pub use crate::buckets::Buckets;
use crate::buckets::MAX_SPAN;
/// The bucket arithmetic, shared with the agent that produces the buckets.
pub use kuroko_agent::exponential_scale::{bucket_bounds, bucket_index};

/// Finest scale kept.
pub(crate) const MAX_SCALE: i32 = 7;
/// Coarsest scale accepted (OTLP allows -10).
pub(crate) const MIN_SCALE: i32 = -10;

/// The longest duration a point may hold, in seconds: a year. No service
/// times a request or a job that long; a point that claims it (buckets,
/// bounds holding runs, min, max or mean beyond it) is refused rather than
/// let it top every "slowest" answer with a number of hours no one can read.
pub(crate) const MAX_DURATION_SECONDS: f64 = 366.0 * 86_400.0;

/// The shortest duration a bucket holding runs may reach up to, in
/// seconds: a nanosecond, the finest any clock an SDK reads resolves. Runs
/// shorter than that are zero-duration runs (the zero region). A bucket
/// wholly below it is refused: with [`MAX_DURATION_SECONDS`], it keeps every
/// run in [1 ns, 1 year], 55 octaves, which a histogram holds at scale 7
/// (7,040 of [`crate::buckets::MAX_SPAN`]'s buckets). One crafted run at
/// 2^-1562 s made every merge of its series coarse enough (scale 1) to move
/// a real series' p50 by several percent.
pub(crate) const MIN_DURATION_SECONDS: f64 = 1e-9;

/// The coarsest scale a duration point may have: at scale 0 the buckets
/// double, and 55 of them cover [1 ns, 1 year], within the 160 buckets an
/// OpenTelemetry SDK keeps by default, so no SDK needs a coarser one; a
/// coarser point would only coarsen every merge of its series (at scale
/// -10 one bucket spans 2^1024).
pub(crate) const MIN_DURATION_SCALE: i32 = 0;

/// The most runs one stored row (a series' minute, hour or day) counts:
/// 2^49. A read sums at most the rows retention keeps of one series (8 days
/// of minutes, 90 days of hours, 2 years of days: under 2^14 rows), so its
/// sums stay below 2^63, the stores' largest integer; a row past it
/// saturates. No real series reaches it (2^49 runs in a minute is ten
/// trillion a second); thousands of points of 2^53 runs in one minute used
/// to store a count of -1.
pub(crate) const MAX_STORED_COUNT: u64 = 1 << 49;

/// The most runs one point may count: 2^53, the most an `f64` holds exactly
/// (sums and rates are computed in `f64`), far beyond any real interval's
/// and any cumulative stream's, and far enough below `i64::MAX` (the stores'
/// integers) that merged counts cannot reach it.
pub(crate) const MAX_POINT_COUNT: u64 = 1 << 53;

/// Why a data point was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidPoint {
    /// A count, sum, min or max is NaN or infinite.
    #[error("{0} is not a finite number")]
    NotFinite(&'static str),
    /// Durations cannot be negative.
    #[error("{0} is negative")]
    Negative(&'static str),
    /// The buckets do not add up to the point's count.
    #[error("bucket counts add up to {buckets}, but count is {count}")]
    CountMismatch {
        /// Sum of the buckets (and the zero count).
        buckets: u64,
        /// The point's count.
        count: u64,
    },
    /// Explicit bounds must be finite and strictly increasing, one fewer than buckets.
    #[error("explicit bounds are not strictly increasing finite values, one fewer than the buckets")]
    Bounds,
    /// The scale is outside what OTLP allows.
    #[error("scale {0} is outside -10..=20")]
    Scale(i32),
    /// Bucket indexes beyond what a histogram can hold.
    #[error("bucket offset {0} puts bucket indexes past the range of a 32-bit integer")]
    Offset(i32),
    /// min is greater than max.
    #[error("min {min} is greater than max {max}")]
    MinMax {
        /// min
        min: f64,
        /// max
        max: f64,
    },
    /// Runs, or min, max or mean, beyond [`MAX_DURATION_SECONDS`].
    #[error("{0} lies beyond a year ({MAX_DURATION_SECONDS} s): not a duration of a run")]
    TooLong(&'static str),
    /// More runs than [`MAX_POINT_COUNT`].
    #[error("count {0} is more than 2^53 runs in one point")]
    TooMany(u64),
    /// A bucket holding runs below [`MIN_DURATION_SECONDS`].
    #[error("{0} lies below a nanosecond: no clock times a run that short")]
    TooShort(&'static str),
    /// A scale coarser than [`MIN_DURATION_SCALE`].
    #[error("scale {0} is coarser than any duration histogram needs (0 covers 1 ns to a year in 55 buckets)")]
    TooCoarse(i32),
    /// The mean (sum / count) outside the point's own min and max.
    #[error("sum {sum} over {count} runs puts their mean outside [min, max] = [{min}, {max}]")]
    MeanOutside {
        /// The point's sum.
        sum: f64,
        /// Its count.
        count: u64,
        /// Its min.
        min: f64,
        /// Its max.
        max: f64,
    },
}

/// A histogram of durations in seconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Histogram {
    /// Scale of `buckets`.
    pub scale: i32,
    /// Values in `[0, zero_threshold]`.
    pub zero_count: u64,
    /// Upper edge of the zero region.
    pub zero_threshold: f64,
    /// Bucket index → count, no zero counts.
    pub buckets: Buckets,
    /// Number of values.
    pub count: u64,
    /// Sum of values.
    pub sum: f64,
    /// Smallest value (exact when the source sent it).
    pub min: f64,
    /// Largest value (exact when the source sent it).
    pub max: f64,
    /// Built from explicit buckets: percentiles are estimates.
    pub estimated: bool,
}

fn finite(name: &'static str, value: f64) -> Result<f64, InvalidPoint> {
    if !value.is_finite() {
        return Err(InvalidPoint::NotFinite(name));
    }
    if value < 0.0 {
        return Err(InvalidPoint::Negative(name));
    }
    Ok(value)
}

impl Histogram {
    /// An empty histogram at the finest scale.
    pub fn empty() -> Self {
        Histogram {
            scale: MAX_SCALE,
            zero_count: 0,
            zero_threshold: 0.0,
            buckets: Buckets::new(),
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: 0.0,
            estimated: false,
        }
    }

    /// From an OTLP exponential point (positive buckets; durations have no
    /// negative ones), checked and brought to at most [`MAX_SCALE`].
    #[allow(clippy::too_many_arguments)]
    pub fn from_exponential(
        scale: i32,
        zero_count: u64,
        zero_threshold: f64,
        offset: i32,
        counts: &[u64],
        count: u64,
        sum: Option<f64>,
        min_max: Option<(f64, f64)>,
    ) -> Result<Self, InvalidPoint> {
        if !(MIN_SCALE..=20).contains(&scale) {
            return Err(InvalidPoint::Scale(scale));
        }
        if scale < MIN_DURATION_SCALE && counts.iter().any(|c| *c > 0) {
            return Err(InvalidPoint::TooCoarse(scale));
        }
        let total = counts.iter().try_fold(zero_count, |acc, c| acc.checked_add(*c));
        match total {
            Some(total) if total == count => {}
            other => {
                return Err(InvalidPoint::CountMismatch {
                    buckets: other.unwrap_or(u64::MAX),
                    count,
                })
            }
        }
        let zero_threshold = finite("zero_threshold", zero_threshold)?;
        let buckets = Buckets::from_dense(offset, counts).ok_or(InvalidPoint::Offset(offset))?;
        let mut histogram = Histogram {
            scale,
            zero_count,
            zero_threshold,
            buckets,
            count,
            sum: 0.0,
            min: f64::INFINITY,
            max: 0.0,
            estimated: false,
        };
        histogram.set_totals(sum, min_max)?;
        let (low, high) = (histogram.buckets.first(), histogram.buckets.last());
        let fit = low.zip(high).map_or(0, |(low, high)| shift_to_fit(low, high));
        histogram.downscale((scale - fit as i32).min(MAX_SCALE));
        histogram.check_physical()?;
        Ok(histogram)
    }

    /// Refuses what no run's duration can be: more than [`MAX_POINT_COUNT`]
    /// runs, a bucket holding runs beyond [`MAX_DURATION_SECONDS`] (a
    /// crafted offset at a fine scale reaches 2^2048 s) or wholly below
    /// [`MIN_DURATION_SECONDS`], or a min, max or mean beyond a year.
    pub(crate) fn check_physical(&self) -> Result<(), InvalidPoint> {
        if self.count > MAX_POINT_COUNT {
            return Err(InvalidPoint::TooMany(self.count));
        }
        let highest_of_first = self.buckets.first().map_or(1.0, |i| bucket_bounds(i, self.scale).1);
        if highest_of_first < MIN_DURATION_SECONDS {
            return Err(InvalidPoint::TooShort("a bucket holding runs"));
        }
        let lowest_of_last = self.buckets.last().map_or(0.0, |i| bucket_bounds(i, self.scale).0);
        for (what, value) in [
            ("a bucket holding runs", lowest_of_last),
            ("zero_threshold", self.zero_threshold),
            ("max", if self.count > 0 { self.max } else { 0.0 }),
            ("the mean", self.mean()),
        ] {
            // NaN is refused too.
            if value.is_nan() || value > MAX_DURATION_SECONDS {
                return Err(InvalidPoint::TooLong(what));
            }
        }
        Ok(())
    }

    /// From an OTLP explicit-bucket point, at [`MAX_SCALE`], flagged
    /// `estimated`. Each bucket's runs are spread evenly over the part of the
    /// bucket inside `[min, max]` (the stream's extremes, when the point
    /// carries them), as linear interpolation would place them: the `j`-th of
    /// `c` runs at `low + (j + ½)·(high − low)/c`. Percentiles, Apdex and
    /// shares above a threshold read from the result are thus interpolated
    /// within the explicit bucket, and never leave the bucket that holds the
    /// true value (the exponential buckets used are those inside it, 0.54%
    /// wide). The first bucket starts at 0 (durations are not negative), the
    /// last one, open-ended, ends at `max`; without `max`, its runs sit at its
    /// lower bound.
    pub fn from_explicit(
        bounds: &[f64],
        counts: &[u64],
        count: u64,
        sum: Option<f64>,
        min_max: Option<(f64, f64)>,
    ) -> Result<Self, InvalidPoint> {
        if counts.len() != bounds.len() + 1
            || bounds.iter().any(|b| !b.is_finite())
            || bounds.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(InvalidPoint::Bounds);
        }
        let total = counts.iter().try_fold(0u64, |acc, c| acc.checked_add(*c));
        if total != Some(count) {
            return Err(InvalidPoint::CountMismatch {
                buckets: total.unwrap_or(u64::MAX),
                count,
            });
        }
        // A bucket holding runs that starts beyond a year holds no duration.
        let beyond = |i: usize| i > 0 && bounds[i - 1] >= MAX_DURATION_SECONDS;
        if counts.iter().enumerate().any(|(i, &c)| c > 0 && beyond(i)) {
            return Err(InvalidPoint::TooLong("a bucket holding runs"));
        }
        // One wholly below a nanosecond (and above 0, the zero region) holds none either.
        let below = |i: usize| {
            bounds
                .get(i)
                .is_some_and(|&high| high > 0.0 && high < MIN_DURATION_SECONDS)
        };
        if counts.iter().enumerate().any(|(i, &c)| c > 0 && below(i)) {
            return Err(InvalidPoint::TooShort("a bucket holding runs"));
        }
        let mut histogram = Histogram {
            estimated: true,
            ..Histogram::empty()
        };
        histogram.count = count;
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let low = if i == 0 { 0.0 } else { bounds[i - 1].max(0.0) };
            let high = bounds.get(i).copied();
            if high.is_some_and(|high| high <= 0.0) {
                // (−∞, ≤ 0]: durations of zero.
                histogram.zero_count += c;
                continue;
            }
            // A bound beyond a year is an open end (some senders write 1e300 for infinity).
            let high = high.filter(|high| *high < MAX_DURATION_SECONDS);
            let (low, high) = match (min_max, high) {
                (Some((min, max)), Some(high)) => (low.max(min).min(high), high.min(max).max(low)),
                (Some((min, max)), None) => (low.max(min), max.max(low)),
                (None, Some(high)) => (low, high),
                (None, None) => (low, low),
            };
            histogram.spread(low, high, c);
        }
        // After the buckets: without min and max, their edges stand in.
        histogram.set_totals(sum, min_max)?;
        histogram.check_physical()?;
        Ok(histogram)
    }

    /// Adds `count` runs spread evenly over `(low, high]`, into the
    /// exponential buckets that lie inside it (the one holding the middle
    /// when none does); runs at 0 go to the zero region.
    fn spread(&mut self, low: f64, high: f64, count: u64) {
        if high <= 0.0 {
            self.zero_count += count;
            return;
        }
        let scale = self.scale;
        // The buckets wholly inside: from the one above `low`'s to the one
        // ending at or below `high`. Near 0 the first bucket is cut at a
        // thousandth of `high`, so a bucket from 0 spans at most ten octaves.
        let low = low.max(high / 1_024.0).max(MIN_DURATION_SECONDS);
        let first = bucket_index(low, scale).saturating_add(1);
        let last = match bucket_index(high, scale) {
            // `high` is the upper edge of its bucket only when it is an edge.
            index if bucket_bounds(index, scale).1 <= high => index,
            index => index.saturating_sub(1),
        };
        if first > last {
            self.add_bucket(bucket_index((low + high) / 2.0, scale), count);
            return;
        }
        let (from, to) = (bucket_bounds(first, scale).0, bucket_bounds(last, scale).1);
        let width = to - from;
        // Runs at or below `x`: ⌊(x − from)·c/width + ½⌋, clamped.
        let below = |x: f64| (((x - from) / width * count as f64 + 0.5).floor().max(0.0) as u64).min(count);
        let mut placed = 0;
        for index in first..=last {
            let upto = if index == last {
                count
            } else {
                below(bucket_bounds(index, scale).1)
            };
            if upto > placed {
                // Coarser indexes after a downscale: `add_bucket` shifts.
                let shift = (scale - self.scale) as u32;
                self.add_bucket(index >> shift, upto - placed);
                placed = upto;
            }
        }
    }

    fn set_totals(&mut self, sum: Option<f64>, min_max: Option<(f64, f64)>) -> Result<(), InvalidPoint> {
        self.sum = finite("sum", sum.unwrap_or(0.0))?;
        match min_max {
            Some((min, max)) => {
                let (min, max) = (finite("min", min)?, finite("max", max)?);
                if min > max {
                    return Err(InvalidPoint::MinMax { min, max });
                }
                // The runs' exact extremes bound their mean (up to rounding),
                // when the point has a sum (OTLP lets it leave it out).
                let (mean, slack) = (self.mean(), 1e-6 * max + 1e-12);
                if sum.is_some() && self.count > 0 && (mean > max + slack || mean < min - slack) {
                    return Err(InvalidPoint::MeanOutside {
                        sum: self.sum,
                        count: self.count,
                        min,
                        max,
                    });
                }
                self.min = min;
                self.max = max;
            }
            None => {
                // Without them, the edges of the outermost buckets.
                self.min = self.buckets.first().map_or(0.0, |i| bucket_bounds(i, self.scale).0);
                self.max = self.buckets.last().map_or(0.0, |i| bucket_bounds(i, self.scale).1);
            }
        }
        Ok(())
    }

    /// Brings the buckets to `scale` (coarser or equal): exact.
    pub(crate) fn downscale(&mut self, scale: i32) {
        if scale >= self.scale {
            return;
        }
        self.buckets.downscale((self.scale - scale) as u32);
        self.scale = scale;
    }

    /// Adds `other`'s values, at the coarser of the two scales.
    pub fn merge(&mut self, other: &Histogram) {
        let mut scale = self.scale.min(other.scale);
        // Both at `scale`, then coarser still if together they span too many buckets.
        let ends = |h: &Histogram| {
            let shift = (h.scale - scale) as u32;
            h.buckets
                .first()
                .zip(h.buckets.last())
                .map(|(a, b)| (a >> shift, b >> shift))
        };
        if let Some((low, high)) = match (ends(self), ends(other)) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (a, b) => a.or(b),
        } {
            scale -= shift_to_fit(low, high) as i32;
        }
        self.downscale(scale);
        self.buckets.add_all(&other.buckets, (other.scale - scale) as u32);
        self.zero_count = self.zero_count.saturating_add(other.zero_count);
        self.zero_threshold = self.zero_threshold.max(other.zero_threshold);
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
        if other.count > 0 {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.estimated |= other.estimated;
    }

    /// What was added since `earlier` (a previous cumulative value of the same
    /// stream), or `None` when something went down: a reset. The delta's min
    /// and max are this one's where they moved since `earlier`, else the
    /// edges of its outermost buckets, within this one's.
    pub fn since(&self, earlier: &Histogram) -> Option<Histogram> {
        let (mut now, mut then) = (self.clone(), earlier.clone());
        let scale = now.scale.min(then.scale);
        now.downscale(scale);
        then.downscale(scale);
        let buckets = now.buckets.checked_sub(&then.buckets)?;
        let mut delta = Histogram {
            scale,
            zero_count: now.zero_count.checked_sub(then.zero_count)?,
            zero_threshold: now.zero_threshold,
            buckets,
            count: now.count.checked_sub(then.count)?,
            sum: (now.sum - then.sum).max(0.0),
            min: 0.0,
            max: 0.0,
            estimated: now.estimated,
        };
        // Exact where the stream's extremes moved (that run is in the
        // delta), else the edges of the delta's outermost buckets.
        delta.min = match delta.buckets.first() {
            _ if self.min < earlier.min && delta.count > 0 => self.min,
            Some(i) if delta.zero_count == 0 => bucket_bounds(i, scale).0.clamp(self.min, self.max),
            _ => 0.0,
        };
        delta.max = match delta.buckets.last() {
            _ if self.max > earlier.max && delta.count > 0 => self.max,
            last => last.map_or(0.0, |i| bucket_bounds(i, scale).1.clamp(self.min, self.max)),
        };
        Some(delta)
    }

    /// The value at `quantile`, read at the middle of the bucket holding it
    /// and clamped into `[min, max]`.
    pub fn quantile(&self, quantile: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let target = ((quantile.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = self.zero_count;
        if seen >= target {
            return 0.0f64.max(self.min.min(self.zero_threshold));
        }
        for (index, count) in self.buckets.iter() {
            seen += count;
            if seen >= target {
                let (low, high) = bucket_bounds(index, self.scale);
                return ((low + high) / 2.0).clamp(self.min, self.max.max(self.min));
            }
        }
        self.max
    }

    /// The lowest and highest values the buckets allow: the zero region's
    /// bottom or the first bucket's lower edge, and the last bucket's upper edge.
    pub(crate) fn bucket_extremes(&self) -> (f64, f64) {
        let low = match self.buckets.first() {
            Some(first) if self.zero_count == 0 => bucket_bounds(first, self.scale).0,
            _ => 0.0,
        };
        let high = self
            .buckets
            .last()
            .map_or(self.zero_threshold, |last| bucket_bounds(last, self.scale).1);
        (low, high)
    }

    /// Adds one value (a duration in seconds), as an exporter would: into the
    /// zero region when at most `zero_threshold`, else into its bucket at this
    /// histogram's scale; count, sum, min and max stay exact. Refuses a value
    /// that is NaN, infinite or negative, leaving the histogram unchanged.
    pub fn record(&mut self, value: f64) -> Result<(), InvalidPoint> {
        let value = finite("value", value)?;
        if value <= self.zero_threshold {
            self.zero_count += 1;
        } else {
            self.add_bucket(bucket_index(value, self.scale), 1);
        }
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        Ok(())
    }

    /// The non-empty buckets, `(index, count)` in ascending index order, at
    /// [`Histogram::scale`]; the zero region is [`Histogram::zero_count`].
    pub fn iter_buckets(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.buckets.iter()
    }

    /// Adds `count` to bucket `index` (at this histogram's scale), first
    /// downscaling if the buckets would span more than [`MAX_SPAN`].
    fn add_bucket(&mut self, index: i32, count: u64) {
        let (low, high) = match (self.buckets.first(), self.buckets.last()) {
            (Some(first), Some(last)) => (first.min(index), last.max(index)),
            _ => (index, index),
        };
        let shift = shift_to_fit(low, high);
        self.downscale(self.scale - shift as i32);
        self.buckets.add(index >> shift, count);
    }

    /// This histogram as a store keeps it: its count, zero count and each
    /// bucket at most [`MAX_STORED_COUNT`] (borrowed when already so, as
    /// every real one is).
    pub(crate) fn for_store(&self) -> std::borrow::Cow<'_, Histogram> {
        // Every part is at most the count (saturating adds keep it so).
        if self.count <= MAX_STORED_COUNT {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut buckets = Buckets::new();
        if let Some((low, high)) = self.buckets.first().zip(self.buckets.last()) {
            buckets.cover(low, high);
        }
        for (index, count) in self.buckets.iter() {
            buckets.add(index, count.min(MAX_STORED_COUNT));
        }
        std::borrow::Cow::Owned(Histogram {
            buckets,
            count: MAX_STORED_COUNT,
            zero_count: self.zero_count.min(MAX_STORED_COUNT),
            ..self.clone()
        })
    }

    /// Mean value.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The buckets as a compact blob: pairs of varints (index delta, zigzag
    /// encoded, then count).
    pub(crate) fn encode_buckets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buckets.span() * 3);
        let mut previous = 0i64;
        for (index, count) in self.buckets.iter() {
            let delta = i64::from(index) - previous;
            previous = i64::from(index);
            put_varint(&mut out, ((delta << 1) ^ (delta >> 63)) as u64);
            put_varint(&mut out, count);
        }
        out
    }

    /// Reads [`encode_buckets`](Self::encode_buckets)'s blob; `None` when
    /// it is corrupt (or spans more buckets than a histogram keeps).
    pub(crate) fn decode_buckets(blob: &[u8]) -> Option<Buckets> {
        // Two passes: the first finds the span (and checks the blob), so the
        // second fills buckets allocated once.
        let mut span: Option<(i32, i32)> = None;
        each_bucket(blob, |index, count| {
            if count > 0 {
                span = Some(span.map_or((index, index), |(low, high)| (low.min(index), high.max(index))));
            }
        })?;
        let mut buckets = Buckets::new();
        if let Some((low, high)) = span {
            if (i64::from(high) - i64::from(low)) as usize >= MAX_SPAN {
                return None;
            }
            buckets.cover(low, high);
            each_bucket(blob, |index, count| buckets.add(index, count))?;
        }
        Some(buckets)
    }
}

/// Calls `visit` with each `(index, count)` of an
/// [`encode_buckets`](Histogram::encode_buckets) blob; `None` when it is corrupt.
fn each_bucket(blob: &[u8], mut visit: impl FnMut(i32, u64)) -> Option<()> {
    let (mut at, mut previous) = (0usize, 0i64);
    while at < blob.len() {
        let zigzag = get_varint(blob, &mut at)?;
        let delta = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        let count = get_varint(blob, &mut at)?;
        previous = previous.checked_add(delta)?;
        visit(i32::try_from(previous).ok()?, count);
    }
    Some(())
}

/// How many scales coarser buckets `low..=high` must go to span at most
/// [`MAX_SPAN`] buckets.
fn shift_to_fit(low: i32, high: i32) -> u32 {
    (0..32)
        .find(|&shift| (i64::from(high >> shift) - i64::from(low >> shift)) < MAX_SPAN as i64)
        .unwrap_or(32)
}

/// Why a stored histogram (a [`Histogram::to_blob`] blob, or a row's
/// columns) could not be read back.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidBlob {
    /// Not a blob [`Histogram::to_blob`] wrote: wrong magic, unknown version or truncated.
    #[error("not a Kuroko histogram blob (make one with hist_merge)")]
    Format,
    /// The bucket blob (see [`Histogram::encode_buckets`]) cannot be decoded.
    #[error("the buckets blob is corrupt")]
    Buckets,
    /// The parts decode but do not make a histogram.
    #[error("inconsistent histogram: {0}")]
    Inconsistent(#[from] InvalidPoint),
}

/// First bytes of a [`Histogram::to_blob`] blob: "KH" and the format version.
const BLOB_MAGIC: [u8; 3] = [b'K', b'H', 1];

/// A stored histogram's parts, the way `to_blob` lays them out and the
/// store's histogram rows hold them (for [`Histogram::from_stored`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct StoredParts<'a> {
    /// Number of values.
    pub count: u64,
    /// Sum of values.
    pub sum: f64,
    /// Smallest value (`+inf` when there is none).
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Scale of the buckets.
    pub scale: i32,
    /// Values in the zero region.
    pub zero_count: u64,
    /// Upper edge of the zero region.
    pub zero_threshold: f64,
    /// The buckets, as [`Histogram::encode_buckets`] wrote them.
    pub buckets: &'a [u8],
    /// Built from explicit buckets.
    pub estimated: bool,
}

impl Histogram {
    /// A histogram from its stored parts, checked: the scale is one OTLP
    /// allows, the numbers are finite and not negative (`min` may be `+inf`
    /// when there are no values), `min <= max`, and the buckets add up to
    /// `count`. Never panics, whatever the input.
    pub(crate) fn from_stored(parts: StoredParts<'_>) -> Result<Histogram, InvalidBlob> {
        if !(MIN_SCALE..=20).contains(&parts.scale) {
            return Err(InvalidPoint::Scale(parts.scale).into());
        }
        for (name, value) in [
            ("sum", parts.sum),
            ("max", parts.max),
            ("zero_threshold", parts.zero_threshold),
        ] {
            finite(name, value)?;
        }
        if parts.count > 0 || parts.min != f64::INFINITY {
            finite("min", parts.min)?;
            if parts.min > parts.max {
                return Err(InvalidPoint::MinMax {
                    min: parts.min,
                    max: parts.max,
                }
                .into());
            }
        }
        let buckets = Histogram::decode_buckets(parts.buckets).ok_or(InvalidBlob::Buckets)?;
        let histogram = Histogram {
            scale: parts.scale,
            zero_count: parts.zero_count,
            zero_threshold: parts.zero_threshold,
            buckets,
            count: parts.count,
            sum: parts.sum,
            min: parts.min,
            max: parts.max,
            estimated: parts.estimated,
        };
        let total = histogram
            .iter_buckets()
            .try_fold(histogram.zero_count, |acc, (_, c)| acc.checked_add(c));
        if total != Some(histogram.count) {
            return Err(InvalidPoint::CountMismatch {
                buckets: total.unwrap_or(u64::MAX),
                count: histogram.count,
            }
            .into());
        }
        Ok(histogram)
    }

    /// The whole histogram as one self-describing blob, for `kuroko sql`'s
    /// `hist_merge` and anything else that passes histograms around as
    /// bytes: `KH`, a version byte (1), a flags byte (bit 0: estimated), the
    /// scale (zigzag varint), count and zero count (varints), sum, min, max
    /// and zero threshold (little-endian f64), then
    /// [`encode_buckets`](Self::encode_buckets) to the end.
    pub(crate) fn to_blob(&self) -> Vec<u8> {
        let buckets = self.encode_buckets();
        let mut out = Vec::with_capacity(BLOB_MAGIC.len() + 1 + 3 * 10 + 4 * 8 + buckets.len());
        out.extend_from_slice(&BLOB_MAGIC);
        out.push(u8::from(self.estimated));
        let scale = i64::from(self.scale);
        put_varint(&mut out, ((scale << 1) ^ (scale >> 63)) as u64);
        put_varint(&mut out, self.count);
        put_varint(&mut out, self.zero_count);
        for value in [self.sum, self.min, self.max, self.zero_threshold] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&buckets);
        out
    }

    /// Reads [`to_blob`](Self::to_blob)'s blob back, checked as
    /// [`from_stored`](Self::from_stored) checks; never panics.
    pub fn from_blob(blob: &[u8]) -> Result<Histogram, InvalidBlob> {
        let rest = blob.strip_prefix(&BLOB_MAGIC[..]).ok_or(InvalidBlob::Format)?;
        let (&flags, rest) = rest.split_first().ok_or(InvalidBlob::Format)?;
        if flags > 1 {
            return Err(InvalidBlob::Format);
        }
        let mut at = 0;
        let mut varint = || get_varint(rest, &mut at).ok_or(InvalidBlob::Format);
        let zigzag = varint()?;
        let (count, zero_count) = (varint()?, varint()?);
        let scale = i32::try_from(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64)).map_err(|_| InvalidBlob::Format)?;
        let float = |at: &mut usize| -> Result<f64, InvalidBlob> {
            let bytes = rest.get(*at..*at + 8).ok_or(InvalidBlob::Format)?;
            *at += 8;
            let mut array = [0u8; 8];
            array.copy_from_slice(bytes);
            Ok(f64::from_le_bytes(array))
        };
        let (sum, min, max, zero_threshold) = (float(&mut at)?, float(&mut at)?, float(&mut at)?, float(&mut at)?);
        Histogram::from_stored(StoredParts {
            count,
            sum,
            min,
            max,
            scale,
            zero_count,
            zero_threshold,
            buckets: rest.get(at..).ok_or(InvalidBlob::Format)?,
            estimated: flags == 1,
        })
    }

    /// Standard deviation of the values (population), estimated from the
    /// buckets: each bucket's values count at its middle, clamped into
    /// `[min, max]` as [`quantile`](Self::quantile) reads them, around the
    /// exact mean. Zero without values.
    pub fn stddev(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let mean = self.mean();
        let zero = 0.0f64.max(self.min.min(self.zero_threshold));
        let mut squares = self.zero_count as f64 * (zero - mean).powi(2);
        for (index, count) in self.iter_buckets() {
            let (low, high) = bucket_bounds(index, self.scale);
            let value = ((low + high) / 2.0).clamp(self.min, self.max.max(self.min));
            squares += count as f64 * (value - mean).powi(2);
        }
        (squares / self.count as f64).sqrt()
    }

    /// The share (0 to 1) of values above `threshold` seconds: whole buckets
    /// above it, plus the part of the bucket holding it by linear
    /// interpolation (within its edges narrowed to `[min, max]`). Exact when
    /// the threshold is a bucket edge (any power of two, e.g. 1 s) or outside
    /// `[min, max]`; values in the zero region count as 0. Zero without values.
    pub(crate) fn fraction_above(&self, threshold: f64) -> f64 {
        if self.count == 0 || threshold >= self.max {
            return 0.0;
        }
        if threshold < self.min {
            return 1.0;
        }
        let mut above = 0.0;
        for (index, count) in self.iter_buckets() {
            let (low, high) = bucket_bounds(index, self.scale);
            let (low, high) = (low.max(self.min), high.min(self.max));
            if low >= threshold {
                above += count as f64;
            } else if high > threshold {
                above += count as f64 * (high - threshold) / (high - low);
            }
        }
        (above / self.count as f64).clamp(0.0, 1.0)
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[inline]
fn get_varint(blob: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *blob.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests;
