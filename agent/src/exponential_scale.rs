//! Bucket arithmetic of base-2 exponential histograms, as OTLP defines them:
//! which bucket holds a value at a scale, and which values a bucket holds.
//!
//! At scale `s` the base is `2^(2^-s)` and bucket `i` holds the values in
//! `(base^i, base^(i+1)]`: upper bounds are inclusive, so an exact power of
//! the base belongs to the bucket below it. Scale 7, what the agent exports
//! by default, has 128 buckets per doubling.
//!
//! Both functions are total: they take any `f64` or `i32` (the reporter
//! feeds them values and indexes from untrusted points) and saturate rather
//! than panic or overflow. The agent's OTLP export and the reporter use this
//! one implementation, so the agent's buckets and the reporter's reading of
//! them cannot drift apart. It needs no feature.

/// Index of the bucket that holds `value` (> 0) at `scale`.
///
/// Zero, negative and NaN values give `i32::MIN` and `+∞` gives `i32::MAX`
/// (callers keep such values out of the positive buckets); indexes past the
/// range of `i32` saturate.
pub fn bucket_index(value: f64, scale: i32) -> i32 {
    if value == f64::INFINITY {
        return i32::MAX;
    }
    if value.is_nan() || value <= 0.0 {
        return i32::MIN;
    }
    let scaled = value.log2() * f64::powi(2.0, scale);
    // Upper bounds are inclusive: an exact power of the base belongs to the
    // bucket below it. Computed in f64 and saturated, so no input overflows.
    (scaled.ceil() - 1.0).clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

/// Lower (exclusive) and upper (inclusive) bound of bucket `index` at `scale`.
pub fn bucket_bounds(index: i32, scale: i32) -> (f64, f64) {
    let step = f64::powi(2.0, -scale);
    // `index + 1` in floating point: in `i32` it overflows at `i32::MAX`,
    // which a crafted offset reaches.
    (
        f64::exp2(f64::from(index) * step),
        f64::exp2((f64::from(index) + 1.0) * step),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_spec() {
        // At scale 0 the buckets are (1,2], (2,4], ...: 2 is in bucket 0, 2.5 in 1.
        assert_eq!(bucket_index(2.0, 0), 0);
        assert_eq!(bucket_index(2.5, 0), 1);
        assert_eq!(bucket_index(1.0, 0), -1);
        assert_eq!(bucket_index(0.5, 1), -3);
        assert_eq!(bucket_index(0.0, 7), i32::MIN);
        assert_eq!(bucket_index(-1.0, 7), i32::MIN);
        assert_eq!(bucket_index(f64::NAN, 7), i32::MIN);
        assert_eq!(bucket_index(f64::INFINITY, 7), i32::MAX);
        assert_eq!(bucket_index(5e-324, 21), i32::MIN, "saturates rather than overflows");
        assert_eq!(bucket_index(f64::MAX, 21), i32::MAX, "saturates rather than overflows");
        let (low, high) = bucket_bounds(bucket_index(0.0123, 7), 7);
        assert!(low < 0.0123 && 0.0123 <= high);
    }

    #[test]
    fn every_value_lies_within_the_bounds_of_its_bucket() {
        for scale in [-10, -1, 0, 3, 7, 20] {
            for value in [1e-9, 0.000_731, 0.02, 1.0, 3.0, 60.0, 31_622_400.0] {
                let (low, high) = bucket_bounds(bucket_index(value, scale), scale);
                // Relative slack for the rounding of log2 and exp2.
                let slack = 1e-12 * value;
                assert!(
                    low <= value + slack && value <= high + slack,
                    "{value} at scale {scale}: ({low}, {high}]"
                );
            }
        }
    }

    /// The agent's copy computed `index + 1` in `i32`, which overflowed at
    /// `i32::MAX` (a panic in debug builds, a wrapped, tiny upper bound in
    /// release); the reporter's copy, kept here, computes it in `f64`.
    #[test]
    fn the_last_index_has_an_upper_bound_above_its_lower_one() {
        for scale in [-10, 0, 7, 20] {
            let (low, high) = bucket_bounds(i32::MAX, scale);
            assert!(high >= low, "scale {scale}: ({low}, {high}]");
            let (low, high) = bucket_bounds(i32::MIN, scale);
            assert!(high >= low && low >= 0.0, "scale {scale}: ({low}, {high}]");
        }
    }
}
