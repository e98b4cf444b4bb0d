use super::*;

fn from_values(values: &[f64], scale: i32) -> Histogram {
    let mut counts = std::collections::BTreeMap::new();
    for &v in values {
        *counts.entry(bucket_index(v, scale)).or_insert(0u64) += 1;
    }
    let offset = *counts.keys().next().unwrap();
    let last = *counts.keys().next_back().unwrap();
    let dense: Vec<u64> = (offset..=last).map(|i| counts.get(&i).copied().unwrap_or(0)).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    Histogram::from_exponential(
        scale,
        0,
        0.0,
        offset,
        &dense,
        values.len() as u64,
        Some(values.iter().sum()),
        Some((min, max)),
    )
    .unwrap()
}

/// The rule against one crafted run coarsening a series: a run below a
/// nanosecond, or a point coarser than scale 0, is refused; real
/// outliers anywhere in [1 ns, 1 year] are kept and leave a 1,000-run
/// series' p50 within its scale-7 error.
#[test]
fn one_run_cannot_coarsen_a_series() {
    let runs: Vec<f64> = (0..1_000).map(|i| 0.02 * 4f64.powf(f64::from(i) / 999.0)).collect();
    let exact = runs[499];
    let series = from_values(&runs, MAX_SCALE);
    // What a crafted run did before it was refused: the series merged
    // with it at a coarse scale.
    let moved = [-20_000, -200_000, -2_000_000, i32::MIN].map(|offset| {
        let mut poisoned = series.clone();
        poisoned.merge(&Histogram {
            buckets: Buckets::from_dense(offset, &[1]).unwrap(),
            count: 1,
            ..Histogram::empty()
        });
        (poisoned.quantile(0.5) / exact - 1.0).abs()
    });
    // Measured: 0.3%, 1.8%, 2.3% and 100% (the series at scale -11).
    assert!(moved.iter().any(|m| *m > 0.05), "the attack moved p50 by {moved:?}");
    let refused = Histogram::from_exponential(7, 0, 0.0, -200_000, &[1], 1, Some(0.0), None);
    assert_eq!(refused, Err(InvalidPoint::TooShort("a bucket holding runs")));
    let coarse = Histogram::from_exponential(-1, 0, 0.0, 0, &[1], 1, Some(0.5), Some((0.5, 0.5)));
    assert_eq!(coarse, Err(InvalidPoint::TooCoarse(-1)));
    for outlier in [1e-9, 2e-9, 0.5, 86_400.0 * 365.0] {
        let mut merged = series.clone();
        merged.merge(&from_values(&[outlier], MAX_SCALE));
        assert_eq!(merged.scale, MAX_SCALE, "an outlier at {outlier} s");
        let read = merged.quantile(0.5);
        assert!(
            (read / exact - 1.0).abs() < 0.01,
            "{outlier}: p50 {read} against {exact}"
        );
    }
    // Explicit buckets reaching down to a microsecond are kept; one
    // wholly below a nanosecond is not.
    assert!(Histogram::from_explicit(&[1e-6, 0.01], &[2, 1, 0], 3, Some(0.005), None).is_ok());
    let below = Histogram::from_explicit(&[1e-300, 1.0], &[1, 0, 0], 1, Some(0.0), None);
    assert_eq!(below, Err(InvalidPoint::TooShort("a bucket holding runs")));
}

/// A sum that puts the mean outside the point's own min and max is
/// refused; one within them (up to rounding), or no sum, is kept.
#[test]
fn the_mean_lies_within_min_and_max() {
    let point = |sum: Option<f64>| Histogram::from_explicit(&[0.05], &[3, 0], 3, sum, Some((0.01, 0.03)));
    assert!(matches!(point(Some(300.0)), Err(InvalidPoint::MeanOutside { .. })));
    assert!(matches!(point(Some(0.01)), Err(InvalidPoint::MeanOutside { .. })));
    for kept in [Some(0.06), Some(0.03), Some(0.09), None] {
        assert!(point(kept).is_ok(), "{kept:?}");
    }
}

/// A stored row's counts saturate at 2^49 runs; real ones are borrowed.
#[test]
fn stored_counts_saturate() {
    let real = from_values(&[0.01, 0.02], MAX_SCALE);
    assert!(matches!(real.for_store(), std::borrow::Cow::Borrowed(_)));
    let mut huge = real.clone();
    for _ in 0..20 {
        let copy = huge.clone();
        huge.merge(&copy);
        huge.count = huge.count.saturating_mul(1 << 3);
    }
    let stored = huge.for_store();
    assert_eq!(stored.count, MAX_STORED_COUNT);
    assert!(stored.iter_buckets().all(|(_, c)| c <= MAX_STORED_COUNT));
}

#[test]
fn mixed_scales_merge_by_downscaling_exactly() {
    let a: Vec<f64> = (1..500).map(|i| 0.001 * f64::from(i)).collect();
    let b: Vec<f64> = (1..300).map(|i| 0.002 * f64::from(i)).collect();
    let mut merged = from_values(&a, 12); // arrives at 12, kept at 7
    assert_eq!(merged.scale, MAX_SCALE);
    merged.merge(&from_values(&b, 3));
    assert_eq!(merged.scale, 3);
    let mut all = a.clone();
    all.extend(&b);
    assert_eq!(merged, {
        let mut direct = from_values(&all, 3);
        direct.sum = merged.sum; // float summation order
        direct
    });
}

#[test]
fn recorded_values_equal_an_exported_point() {
    let values = [0.0004, 0.003, 0.0031, 0.2, 2.0];
    let mut h = Histogram::empty();
    for v in values {
        h.record(v).unwrap();
    }
    assert_eq!(h, from_values(&values, 7));
    assert_eq!(h.record(-1.0), Err(InvalidPoint::Negative("value")));
    assert_eq!(h.record(f64::NAN), Err(InvalidPoint::NotFinite("value")));
    h.record(0.0).unwrap();
    assert_eq!(
        (h.count, h.zero_count, h.min),
        (6, 1, 0.0),
        "refused values leave no trace"
    );
}

#[test]
fn refuses_inconsistent_points() {
    let bad = Histogram::from_exponential(7, 0, 0.0, 0, &[1, 2], 4, Some(1.0), None);
    assert_eq!(bad, Err(InvalidPoint::CountMismatch { buckets: 3, count: 4 }));
    assert_eq!(
        Histogram::from_exponential(7, 0, 0.0, 0, &[1], 1, Some(f64::NAN), None),
        Err(InvalidPoint::NotFinite("sum"))
    );
    assert_eq!(
        Histogram::from_exponential(25, 0, 0.0, 0, &[1], 1, None, None),
        Err(InvalidPoint::Scale(25))
    );
    assert_eq!(
        Histogram::from_explicit(&[1.0, 0.5], &[1, 1, 1], 3, None, None),
        Err(InvalidPoint::Bounds)
    );
    assert!(matches!(
        Histogram::from_exponential(7, 0, 0.0, 0, &[1], 1, Some(1.0), Some((2.0, 1.0))),
        Err(InvalidPoint::MinMax { .. })
    ));
}

#[test]
fn explicit_buckets_without_min_and_max_use_their_edges() {
    let h = Histogram::from_explicit(&[0.01, 0.05, 0.1], &[0, 4, 2, 0], 6, Some(0.2), None).unwrap();
    assert!(
        h.min > 0.0 && h.min < 0.05 && h.max > 0.05 && h.max <= 0.11,
        "{} {}",
        h.min,
        h.max
    );
    let p50 = h.quantile(0.5);
    assert!((0.01..=0.05).contains(&p50), "{p50}");
}

#[test]
fn explicit_buckets_are_interpolated_within_the_bucket_and_the_streams_extremes() {
    // 1,000 runs: 100 in (0, 5 ms] (min 2 ms), 800 in (5, 10 ms], 100 in (10, 25 ms] (max 20 ms).
    let h = Histogram::from_explicit(
        &[0.005, 0.01, 0.025],
        &[100, 800, 100, 0],
        1_000,
        Some(8.0),
        Some((0.002, 0.02)),
    )
    .unwrap();
    // Linear interpolation, as Prometheus' histogram_quantile reads buckets,
    // with the open ends cut at min and max.
    let interpolated = |q: f64| -> f64 {
        let rank = q * 1_000.0;
        match rank {
            r if r <= 100.0 => 0.002 + r / 100.0 * 0.003,
            r if r <= 900.0 => 0.005 + (r - 100.0) / 800.0 * 0.005,
            r => 0.01 + (r - 900.0) / 100.0 * 0.01,
        }
    };
    for q in [0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99] {
        let (read, expected) = (h.quantile(q), interpolated(q));
        assert!(
            (read / expected - 1.0).abs() < 0.01,
            "q{q}: read {read}, interpolated {expected}"
        );
    }
    // Every percentile stays inside the bucket of its rank: p90 (rank 900,
    // the last run of (5, 10 ms]) is not read from the bucket above.
    assert!(h.quantile(0.9) <= 0.01 && h.quantile(0.901) > 0.01);
    // The median is no longer the bucket's middle but its interpolation.
    assert!((h.quantile(0.5) - 0.0075).abs() < 0.0001, "{}", h.quantile(0.5));
    // Shares above a threshold and Apdex zones read the same spread.
    assert!(
        (h.fraction_above(0.0075) - 0.5).abs() < 0.01,
        "{}",
        h.fraction_above(0.0075)
    );
    assert!(
        (h.fraction_above(0.015) - 0.05).abs() < 0.01,
        "{}",
        h.fraction_above(0.015)
    );
    // Without min and max the first bucket starts at 0 (its 10 runs at
    // 5, 15 … 95 ms, so the 5th is at 45 ms), and the open last one
    // holds its runs at its lower bound.
    let open = Histogram::from_explicit(&[0.1], &[10, 10], 20, Some(1.5), None).unwrap();
    assert!(
        (open.quantile(0.25) / 0.045 - 1.0).abs() < 0.01,
        "{}",
        open.quantile(0.25)
    );
    assert!((open.quantile(1.0) / 0.1 - 1.0).abs() < 0.01, "{}", open.quantile(1.0));
}

#[test]
fn explicit_buckets_are_estimates() {
    let h = Histogram::from_explicit(
        &[0.005, 0.01, 0.025, 0.05, 0.1],
        &[0, 10, 80, 8, 2, 0],
        100,
        Some(2.0),
        Some((0.006, 0.09)),
    )
    .unwrap();
    assert!(h.estimated);
    let p50 = h.quantile(0.5);
    assert!(p50 > 0.01 && p50 <= 0.025, "{p50}");
    let mut exact = from_values(&[0.02], 7);
    exact.merge(&h);
    assert!(exact.estimated, "anything merged with an estimate is one");
}

#[test]
fn whole_histogram_blob_round_trips_and_refuses_garbage() {
    let mut h = from_values(&[0.0004, 0.003, 0.2, 2.0], 5);
    h.estimated = true;
    h.zero_threshold = 1e-9;
    h.record(0.0).unwrap();
    let blob = h.to_blob();
    assert_eq!(Histogram::from_blob(&blob), Ok(h.clone()));
    assert_eq!(
        Histogram::from_blob(&Histogram::empty().to_blob()),
        Ok(Histogram::empty())
    );
    for cut in 0..blob.len() {
        assert!(
            Histogram::from_blob(&blob[..cut]).is_err(),
            "truncated at {cut} is refused"
        );
    }
    assert_eq!(Histogram::from_blob(&h.encode_buckets()), Err(InvalidBlob::Format));
    // Whatever follows the magic, reading and using it never panics.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2_000 {
        let mut garbage = BLOB_MAGIC.to_vec();
        for _ in 0..(seed % 64) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            garbage.push(seed as u8);
        }
        if let Ok(read) = Histogram::from_blob(&garbage) {
            let mut merged = h.clone();
            merged.merge(&read);
            let _ = (
                read.quantile(0.99),
                read.stddev(),
                read.fraction_above(0.5),
                merged.to_blob(),
            );
        }
    }
    let mut lying = h.clone();
    lying.count += 1;
    assert!(matches!(
        Histogram::from_blob(&lying.to_blob()),
        Err(InvalidBlob::Inconsistent(InvalidPoint::CountMismatch { .. }))
    ));
}

#[test]
fn fraction_above_is_exact_at_bucket_edges_and_stddev_is_close() {
    let values: Vec<f64> = (1..=1000).map(|i| 0.004 * f64::from(i)).collect();
    let h = from_values(&values, 7);
    assert_eq!(h.fraction_above(1.0), 0.75, "1 s is a bucket edge");
    assert_eq!((h.fraction_above(0.0), h.fraction_above(4.0)), (1.0, 0.0));
    let third = h.fraction_above(4.0 / 3.0);
    assert!((third - 2.0 / 3.0).abs() < 0.002, "{third}");
    let mean = values.iter().sum::<f64>() / 1000.0;
    let exact = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 1000.0).sqrt();
    assert!((h.stddev() - exact).abs() < 0.005 * exact, "{} vs {exact}", h.stddev());
}

#[test]
fn bucket_blob_round_trips() {
    let h = from_values(&[1e-6, 0.003, 0.0031, 2.0, 3600.0], 7);
    let blob = h.encode_buckets();
    assert_eq!(Histogram::decode_buckets(&blob), Some(h.buckets.clone()));
    assert!(blob.len() < 20, "{} bytes", blob.len());
    assert_eq!(Histogram::decode_buckets(&[0x80]), None, "a truncated blob is refused");
}

#[test]
fn hostile_ranges_are_downscaled_not_allocated() {
    let mut tiny = Histogram::empty();
    tiny.record(1e-300).unwrap();
    let mut huge = Histogram::empty();
    huge.record(1e300).unwrap();
    tiny.merge(&huge);
    assert!(tiny.buckets.span() <= MAX_SPAN, "{} buckets", tiny.buckets.span());
    assert!(tiny.scale < MAX_SCALE);
    assert_eq!((tiny.count, tiny.min, tiny.max), (2, 1e-300, 1e300));
    // One point from 2^-781 s to 2^23 s (97 days) is refused: its first
    // run lies below a nanosecond.
    let mut counts = vec![0u64; 103_001];
    counts[0] = 1;
    counts[103_000] = 1;
    let wide = Histogram::from_exponential(7, 0, 0.0, -100_000, &counts, 2, Some(1.0), None);
    assert_eq!(wide, Err(InvalidPoint::TooShort("a bucket holding runs")));
    // From 2^-29.7 s to 97 days, it is kept at scale 7.
    counts[0] = 0;
    counts[100_000 - 3_800] = 1;
    let wide = Histogram::from_exponential(7, 0, 0.0, -100_000, &counts, 2, Some(1.0), None).unwrap();
    assert!(wide.buckets.span() <= MAX_SPAN && wide.scale == 7);
    // Runs beyond a year are no durations: refused, not stored.
    assert_eq!(
        Histogram::from_exponential(7, 0, 0.0, 4_000, &[1], 1, Some(1.0), None),
        Err(InvalidPoint::TooLong("a bucket holding runs"))
    );
    assert_eq!(
        Histogram::from_exponential(0, 0, 0.0, i32::MAX, &[0, 1], 1, Some(1.0), None),
        Err(InvalidPoint::Offset(i32::MAX))
    );
}
