//! What every converted batch holds, whatever a client sent: the rules the
//! fuzz targets (`reporter/fuzz`) and the structured-input test hold the
//! ingest path to.
//!
//! A batch is what the store will keep and every answer is read from, so a
//! breach here is a number a user would see wrong (a negative count, a p95
//! outside its runs) or memory a client could make the reporter hold.

use crate::histogram::{Histogram, MAX_DURATION_SECONDS, MAX_POINT_COUNT};
use crate::store::{Batch, SeriesKey};

use super::metrics::Deltas;
use super::otlp::Limits;

/// The first rule a batch breaks, said in words.
pub(crate) type Breach = String;

/// Checks every point of `batch` against the rules below; `limits` are the
/// ones it was converted with.
///
/// - A histogram's count is its buckets' and zero count's sum, at most
///   [`MAX_POINT_COUNT`]; its min, max, sum and percentiles are finite,
///   non-negative, within a year, and the percentiles lie in `[min, max]`.
/// - A counter's value is finite and non-negative; an error's count is
///   positive.
/// - The strings that name a series (service, host, environment,
///   transaction, feature) and a counter's labels stay within the length a
///   point's attributes may have.
pub fn check_batch(batch: &Batch, limits: &Limits) -> Result<(), Breach> {
    for point in &batch.histograms {
        check_key(&point.key, limits)?;
        check_histogram(&point.histogram).map_err(|breach| {
            let shown: String = format!("{:?}", point.histogram).chars().take(600).collect();
            format!("{}: {breach} in {shown}", point.key.transaction)
        })?;
    }
    // A label is `k=v` pairs joined by `,`: each pair within two values.
    let labels_budget = limits
        .max_attributes
        .saturating_mul(limits.max_value_bytes.saturating_mul(2).saturating_add(2));
    for point in &batch.counters {
        check_key(&point.key, limits)?;
        if !point.value.is_finite() || point.value < 0.0 {
            return Err(format!("counter {} has the value {}", point.name, point.value));
        }
        if point.labels.len() > labels_budget {
            return Err(format!(
                "counter {} has {} bytes of labels",
                point.name,
                point.labels.len()
            ));
        }
    }
    for point in &batch.errors {
        check_key(&point.key, limits)?;
        if point.count == 0 {
            return Err(format!("error {} counted 0 times", point.error_type));
        }
    }
    Ok(())
}

/// Converts `requests` (OTLP metrics protobuf) one after the other, as one
/// reporter receiving them at `now_unix_nano` would: each batch is checked
/// ([`check_batch`]) and its cumulative streams move on before the next, so
/// that streams are followed across requests; the streams held stay within
/// `max_cumulative_streams` and `max_cumulative_stream_bytes`. Returns the points stored in all.
pub fn check_sequence(requests: &[Vec<u8>], limits: &Limits, now_unix_nano: u64) -> Result<usize, Breach> {
    let mut deltas = Deltas::default();
    let mut stored = 0;
    for (i, body) in requests.iter().enumerate() {
        let Ok(converted) = super::convert_protobuf(body, &deltas, limits, now_unix_nano) else {
            continue;
        };
        check_batch(&converted.batch, limits).map_err(|breach| format!("request {i}: {breach}"))?;
        stored += converted.batch.len();
        deltas.apply(converted.batch.streams);
        if deltas.len() > limits.max_cumulative_streams || deltas.bytes() > limits.max_cumulative_stream_bytes {
            return Err(format!(
                "request {i}: {} cumulative streams held in {} bytes, more than the limits of {} and {}",
                deltas.len(),
                deltas.bytes(),
                limits.max_cumulative_streams,
                limits.max_cumulative_stream_bytes
            ));
        }
    }
    Ok(stored)
}

fn check_key(key: &SeriesKey, limits: &Limits) -> Result<(), Breach> {
    let named = [
        ("service", &key.service),
        ("host", &key.host),
        ("environment", &key.environment),
        ("transaction", &key.transaction),
        ("feature", &key.feature),
    ];
    // A transaction is named from two attributes (`GET /route`).
    let budget = limits.max_value_bytes.saturating_mul(2).saturating_add(16);
    match named.iter().find(|(_, text)| text.len() > budget) {
        Some((what, text)) => Err(format!("a series' {what} is {} bytes long", text.len())),
        None => Ok(()),
    }
}

fn check_histogram(h: &Histogram) -> Result<(), Breach> {
    let in_buckets = h
        .iter_buckets()
        .fold(h.zero_count, |sum, (_, count)| sum.saturating_add(count));
    if in_buckets != h.count {
        return Err(format!("count {} but {in_buckets} runs in its buckets", h.count));
    }
    if h.count > MAX_POINT_COUNT {
        return Err(format!("count {} beyond {MAX_POINT_COUNT}", h.count));
    }
    if h.count == 0 {
        return Ok(());
    }
    let duration = |what: &str, value: f64| {
        if value.is_finite() && (0.0..=MAX_DURATION_SECONDS).contains(&value) {
            Ok(())
        } else {
            Err(format!("{what} is {value}"))
        }
    };
    duration("min", h.min)?;
    duration("max", h.max)?;
    if h.min > h.max {
        return Err(format!("min {} above max {}", h.min, h.max));
    }
    if !h.sum.is_finite() || h.sum < 0.0 {
        return Err(format!("sum is {}", h.sum));
    }
    for q in [0.5, 0.95, 0.99] {
        let value = h.quantile(q);
        duration("a percentile", value)?;
        if value < h.min || value > h.max {
            return Err(format!("p{} = {value} outside [{}, {}]", q * 100.0, h.min, h.max));
        }
    }
    Ok(())
}
