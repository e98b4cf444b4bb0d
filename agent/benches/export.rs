//! What one export interval costs and weighs: Kuroko's harvest + OTLP encode
//! against the OpenTelemetry SDK exporting the same data through its default
//! explicit-bucket histogram, and how accurate the percentiles a receiver
//! reads back from each payload are.
//!
//! # Workload
//!
//! 1,000 active web series (`GET /route/0` … `GET /route/999`, `http.route` =
//! `/route/{i}`), each with 200 latencies per interval drawn from a
//! log-normal distribution (median 50 ms, σ = 1.0, clamped to 1 µs – 1 h,
//! seeded so every run sees the same values). Before every timed interval
//! (untimed, in `iter_batched`'s setup) both contenders are re-filled with the
//! same 200,000 samples, so each interval exports 1,000 fresh series.
//!
//! # Contenders
//!
//! - `kuroko/harvest+encode+gzip`: exactly the exporter's per-interval work:
//!   `Agent::harvest`, `Encoder::metrics` (the OTLP message with scale 7
//!   exponential histograms plus the outcome and Apdex sums and the agent's
//!   own health metrics, encoded as protobuf) and gzip with `Compression::fast()`, as the
//!   agent's HTTP transport does.
//! - `otel-sdk/collect+encode+gzip`: an `opentelemetry_sdk` `SdkMeterProvider`
//!   with an `f64` histogram `http.server.request.duration` (seconds,
//!   attribute `http.route`) left on the SDK's *default* aggregation: explicit
//!   buckets `[0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000,
//!   7500, 10000]`, no view, no advisory boundaries. A `PeriodicReader` with a
//!   one-hour interval (it never fires on its own) drives a
//!   `PushMetricExporter` that asks for delta temporality and converts the
//!   `ResourceMetrics` it receives with `opentelemetry_proto::transform` into an
//!   `ExportMetricsServiceRequest`, then encodes and gzips it the same way.
//!   The timed unit is `SdkMeterProvider::force_flush`, which runs the
//!   collection and that export on the reader's thread and waits for it.
//!
//! # Printed once, before the criterion group
//!
//! - Accuracy: p95 and p99 of every series read back from each *decoded*
//!   payload, as a receiver would — Kuroko's with `exponential::quantile`
//!   (midpoint of the bucket holding the rank), the SDK's by linear
//!   interpolation within the explicit bucket (Prometheus'
//!   `histogram_quantile`) — against the exact percentile of the sorted raw
//!   samples (the sample at rank ⌈q·n⌉); max and mean relative error over the
//!   1,000 series. The SDK is also shown with the semantic conventions'
//!   advisory boundaries for `http.server.request.duration` (set with
//!   `with_boundaries`), which is what instrumentation that follows them gets.
//! - Payload: raw protobuf and gzip bytes per series for each, and where
//!   Kuroko's bytes go (per metric, and the histogram at scales 5–7).
//! - CPU time per interval: the process's CPU time (every thread, from
//!   `/proc/self/task/*/schedstat`, so the SDK reader thread's work counts)
//!   around the same unit as the timed benchmark, averaged over 20 intervals.
//!   Criterion itself reports wall time; both contenders do their work on one
//!   thread at a time, so the two should agree on an idle machine. Then the
//!   wall time of each of Kuroko's three steps (harvest, encode: the OTLP
//!   message and its protobuf, gzip).
//!
//! The whole run takes 20–40 s: the refill before every timed interval
//! (200,000 records) is not timed but takes wall time, so the SDK's group,
//! whose interval is much shorter than its refill, gets a shorter budget.
//!
//! # Running
//!
//! ```text
//! cargo bench -p kuroko-agent --bench export
//! cargo bench -p kuroko-agent --bench export -- kuroko    # one contender
//! ```

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use flate2::write::GzEncoder;
use flate2::Compression;
use kuroko_agent::export::exponential::{self, ExponentialBuckets};
use kuroko_agent::export::{Encoder, ExportConfig, ExportStats};
use kuroko_agent::{Agent, Outcome, Transaction};
use opentelemetry::metrics::{Histogram as OtelHistogram, MeterProvider};
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue as ProtoKeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{ExponentialHistogramDataPoint, HistogramDataPoint, Metric};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::Resource;
use prost::Message;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};

const SERIES: usize = 1_000;
const SAMPLES_PER_SERIES: usize = 200;
const SEED: u64 = 0x6b75_726f_6b6f;
const MEDIAN_NS: f64 = 50_000_000.0;
const SIGMA: f64 = 1.0;
const LOWEST_NS: u64 = 1_000;
const HIGHEST_NS: u64 = 3_600_000_000_000;
const SERVICE: &str = "bench-svc";
const METRIC_NAME: &str = "http.server.request.duration";
const ROUTE_KEY: &str = "http.route";
/// Bucket boundaries the OpenTelemetry semantic conventions recommend for
/// `http.server.request.duration`, in seconds (an advisory, not the default).
const SEMCONV_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const QUANTILES: [f64; 2] = [0.95, 0.99];
/// Intervals averaged for the printed CPU time.
const CPU_INTERVALS: u32 = 20;

struct Workload {
    /// Kuroko transaction names: `GET /route/{i}`.
    names: Vec<String>,
    /// Route templates: `/route/{i}`.
    routes: Vec<String>,
    /// Per series, the interval's latencies in nanoseconds.
    nanos: Vec<Vec<u64>>,
    /// The same latencies in seconds.
    secs: Vec<Vec<f64>>,
}

impl Workload {
    fn new() -> Self {
        let routes: Vec<String> = (0..SERIES).map(|i| format!("/route/{i}")).collect();
        let names = routes.iter().map(|route| format!("GET {route}")).collect();
        let mut rng = StdRng::seed_from_u64(SEED);
        let latency = LogNormal::new(MEDIAN_NS.ln(), SIGMA).expect("valid log-normal parameters");
        let nanos: Vec<Vec<u64>> = (0..SERIES)
            .map(|_| {
                (0..SAMPLES_PER_SERIES)
                    .map(|_| (latency.sample(&mut rng) as u64).clamp(LOWEST_NS, HIGHEST_NS))
                    .collect()
            })
            .collect();
        let secs = nanos
            .iter()
            .map(|series| series.iter().map(|&ns| ns as f64 / 1e9).collect())
            .collect();
        Workload {
            names,
            routes,
            nanos,
            secs,
        }
    }

    /// Exact percentile `q` of each series, in seconds: the sample at rank ⌈q·n⌉.
    fn exact(&self, q: f64) -> Vec<f64> {
        self.secs
            .iter()
            .map(|series| {
                let mut sorted = series.clone();
                sorted.sort_by(f64::total_cmp);
                sorted[((q * sorted.len() as f64).ceil() as usize).max(1) - 1]
            })
            .collect()
    }

    fn route_index(&self) -> BTreeMap<&str, usize> {
        self.routes.iter().enumerate().map(|(i, r)| (r.as_str(), i)).collect()
    }
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(raw.len() / 4), Compression::fast());
    encoder.write_all(raw).expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Sizes of one exported payload, and the raw protobuf when asked for.
#[derive(Clone, Default)]
struct Payload {
    raw_bytes: usize,
    gzip_bytes: usize,
    raw: Option<Vec<u8>>,
}

struct Kuroko {
    agent: Agent,
    handles: Vec<Transaction>,
    encoder: Encoder,
    started: SystemTime,
}

impl Kuroko {
    fn new(workload: &Workload) -> Self {
        let agent = Agent::default();
        let handles = workload.names.iter().map(|name| agent.transaction(name)).collect();
        Kuroko {
            agent,
            handles,
            encoder: Encoder::new(&ExportConfig::default(), SERVICE),
            started: SystemTime::now(),
        }
    }

    fn fill(&self, workload: &Workload) {
        for (handle, samples) in self.handles.iter().zip(&workload.nanos) {
            for &ns in samples {
                handle.record_nanos(ns, Outcome::Ok);
            }
        }
    }

    /// The exporter's per-interval work.
    fn export(&self, keep: bool) -> Payload {
        let harvest = self.agent.harvest();
        let raw = self
            .encoder
            .metrics(&harvest, ExportStats::default(), self.started)
            .into_bytes();
        let compressed = gzip(&raw);
        Payload {
            raw_bytes: raw.len(),
            gzip_bytes: compressed.len(),
            raw: keep.then_some(raw),
        }
    }
}

/// A push exporter that turns what the SDK collected into the OTLP request
/// an OTLP exporter would send, encodes and gzips it, and keeps the sizes.
struct OtlpGzipExporter {
    last: Arc<Mutex<Payload>>,
    keep: Arc<AtomicBool>,
}

impl PushMetricExporter for OtlpGzipExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let request = ExportMetricsServiceRequest::from(metrics);
        let raw = request.encode_to_vec();
        let compressed = gzip(&raw);
        let keep = self.keep.load(Ordering::Relaxed);
        *self.last.lock().expect("no exporter panics") = Payload {
            raw_bytes: raw.len(),
            gzip_bytes: compressed.len(),
            raw: keep.then_some(raw),
        };
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Delta
    }
}

struct Otel {
    provider: SdkMeterProvider,
    histogram: OtelHistogram<f64>,
    attributes: Vec<[KeyValue; 1]>,
    last: Arc<Mutex<Payload>>,
    keep: Arc<AtomicBool>,
}

impl Otel {
    /// `boundaries`: `None` for the SDK's default aggregation.
    fn new(workload: &Workload, boundaries: Option<&[f64]>) -> Self {
        let last = Arc::new(Mutex::new(Payload::default()));
        let keep = Arc::new(AtomicBool::new(false));
        let exporter = OtlpGzipExporter {
            last: last.clone(),
            keep: keep.clone(),
        };
        let reader = PeriodicReader::builder(exporter)
            .with_interval(Duration::from_secs(3_600))
            .build();
        let provider = SdkMeterProvider::builder()
            .with_resource(Resource::builder().with_service_name(SERVICE).build())
            .with_reader(reader)
            .build();
        let meter = provider.meter("kuroko-bench");
        let builder = meter
            .f64_histogram(METRIC_NAME)
            .with_unit("s")
            .with_description("Duration of HTTP server requests.");
        let histogram = match boundaries {
            Some(boundaries) => builder.with_boundaries(boundaries.to_vec()).build(),
            None => builder.build(),
        };
        let attributes = workload
            .routes
            .iter()
            .map(|route| [KeyValue::new(ROUTE_KEY, route.clone())])
            .collect();
        Otel {
            provider,
            histogram,
            attributes,
            last,
            keep,
        }
    }

    fn fill(&self, workload: &Workload) {
        for (attributes, samples) in self.attributes.iter().zip(&workload.secs) {
            for &secs in samples {
                self.histogram.record(secs, attributes);
            }
        }
    }

    /// Collection, conversion, encoding and gzip, on the reader's thread.
    fn export(&self, keep: bool) -> Payload {
        self.keep.store(keep, Ordering::Relaxed);
        self.provider.force_flush().expect("the SDK exports");
        std::mem::take(&mut *self.last.lock().expect("no exporter panics"))
    }
}

impl Drop for Otel {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

fn metrics(request: &ExportMetricsServiceRequest) -> impl Iterator<Item = &Metric> {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
}

fn route_of(attributes: &[ProtoKeyValue]) -> Option<&str> {
    attributes
        .iter()
        .find(|kv| kv.key == ROUTE_KEY)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(route) => Some(route.as_str()),
            _ => None,
        })
}

fn decode(payload: &Payload) -> ExportMetricsServiceRequest {
    let raw = payload.raw.as_deref().expect("the payload was kept");
    ExportMetricsServiceRequest::decode(raw).expect("a valid OTLP request")
}

/// Reads percentile `q` of every series back from a decoded request.
type QuantileReader = fn(&ExportMetricsServiceRequest, &Workload, f64) -> Vec<f64>;

/// Percentiles read back from Kuroko's exponential histograms, per series.
fn kuroko_quantiles(request: &ExportMetricsServiceRequest, workload: &Workload, q: f64) -> Vec<f64> {
    let index = workload.route_index();
    let mut out = vec![f64::NAN; SERIES];
    for metric in metrics(request).filter(|m| m.name == METRIC_NAME) {
        if let Some(Data::ExponentialHistogram(histogram)) = &metric.data {
            for point in &histogram.data_points {
                let ExponentialHistogramDataPoint {
                    scale,
                    zero_count,
                    zero_threshold,
                    positive,
                    ..
                } = point;
                let positive = positive.clone().unwrap_or_default();
                let buckets = ExponentialBuckets {
                    scale: *scale,
                    zero_count: *zero_count,
                    zero_threshold: *zero_threshold,
                    offset: positive.offset,
                    counts: positive.bucket_counts,
                };
                if let Some(&i) = route_of(&point.attributes).and_then(|route| index.get(route)) {
                    out[i] = exponential::quantile(&buckets, q);
                }
            }
        }
    }
    out
}

/// Prometheus' `histogram_quantile`: linear interpolation within the bucket
/// that holds rank q·n; the lowest bucket starts at 0, and a rank in the
/// overflow bucket reads as the highest finite bound.
fn interpolated_quantile(point: &HistogramDataPoint, q: f64) -> f64 {
    let bounds = &point.explicit_bounds;
    let counts = &point.bucket_counts;
    let total: u64 = counts.iter().sum();
    if total == 0 || bounds.is_empty() {
        return f64::NAN;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &count) in counts.iter().enumerate() {
        let cumulative = below + count;
        if cumulative as f64 >= rank && count > 0 {
            let Some(&end) = bounds.get(i) else {
                return bounds[bounds.len() - 1];
            };
            if i == 0 && end <= 0.0 {
                return end;
            }
            let start = if i == 0 { 0.0 } else { bounds[i - 1] };
            return start + (end - start) * (rank - below as f64) / count as f64;
        }
        below = cumulative;
    }
    bounds[bounds.len() - 1]
}

/// Percentiles read back from the SDK's explicit-bucket histograms, per series.
fn otel_quantiles(request: &ExportMetricsServiceRequest, workload: &Workload, q: f64) -> Vec<f64> {
    let index = workload.route_index();
    let mut out = vec![f64::NAN; SERIES];
    for metric in metrics(request).filter(|m| m.name == METRIC_NAME) {
        if let Some(Data::Histogram(histogram)) = &metric.data {
            for point in &histogram.data_points {
                if let Some(&i) = route_of(&point.attributes).and_then(|route| index.get(route)) {
                    out[i] = interpolated_quantile(point, q);
                }
            }
        }
    }
    out
}

/// Max and mean relative error of `estimates` against `exact`; NaN when a
/// series is missing from the payload.
fn errors(estimates: &[f64], exact: &[f64]) -> (f64, f64, usize) {
    let mut max = 0.0f64;
    let mut total = 0.0;
    let mut within = 0;
    for (&estimate, &exact) in estimates.iter().zip(exact) {
        let error = (estimate - exact).abs() / exact;
        if error.is_nan() {
            return (f64::NAN, f64::NAN, 0);
        }
        max = max.max(error);
        total += error;
        within += usize::from(error <= 0.01);
    }
    (max, total / exact.len() as f64, within)
}

/// CPU time of every thread of this process so far. The calling thread
/// yields first so that the kernel books its running time before it is read.
fn process_cpu() -> Option<Duration> {
    std::thread::yield_now();
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Mean CPU and wall time of `export` over [`CPU_INTERVALS`] intervals, each
/// after an untimed `fill`.
fn cpu_per_interval(fill: impl Fn(), export: impl Fn() -> Payload) -> (Option<Duration>, Duration) {
    let (mut cpu, mut wall) = (Some(Duration::ZERO), Duration::ZERO);
    for _ in 0..CPU_INTERVALS {
        fill();
        let (cpu_start, wall_start) = (process_cpu(), Instant::now());
        black_box(export());
        let wall_end = Instant::now();
        let cpu_end = process_cpu();
        wall += wall_end - wall_start;
        cpu = match (cpu, cpu_start, cpu_end) {
            (Some(total), Some(start), Some(end)) => Some(total + end.saturating_sub(start)),
            _ => None,
        };
    }
    (cpu.map(|c| c / CPU_INTERVALS), wall / CPU_INTERVALS)
}

fn per_series(bytes: usize) -> f64 {
    bytes as f64 / SERIES as f64
}

/// Where Kuroko's bytes go: per metric, and the duration histograms alone at
/// scales 5 to 7.
fn kuroko_breakdown(kuroko: &Kuroko, workload: &Workload) {
    kuroko.fill(workload);
    let harvest = kuroko.agent.harvest();
    let request = |scale| {
        let encoder = Encoder::new(&ExportConfig::default().with_histogram_scale(scale), SERVICE);
        let encoded = encoder.metrics(&harvest, ExportStats::default(), kuroko.started);
        ExportMetricsServiceRequest::decode(encoded.as_bytes()).expect("Kuroko's metrics decode")
    };
    let full = request(exponential::DEFAULT_SCALE);
    println!(
        "kuroko raw bytes per series, by metric (scale {}):",
        exponential::DEFAULT_SCALE
    );
    for metric in metrics(&full) {
        let points = match &metric.data {
            Some(Data::Sum(sum)) => sum.data_points.len(),
            Some(Data::Gauge(gauge)) => gauge.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        };
        println!(
            "  {:<38} {:>5} points  {:>8.1} B/series",
            metric.name,
            points,
            per_series(metric.encoded_len())
        );
    }
    for scale in [exponential::DEFAULT_SCALE, 6, 5] {
        let mut only = request(scale);
        for scope in only.resource_metrics.iter_mut().flat_map(|r| &mut r.scope_metrics) {
            scope.metrics.retain(|m| m.name == METRIC_NAME);
        }
        let (mut buckets, mut zeros, mut bucket_bytes, mut attribute_bytes, mut points) = (0, 0, 0, 0, 0);
        for metric in metrics(&only) {
            if let Some(Data::ExponentialHistogram(histogram)) = &metric.data {
                for point in &histogram.data_points {
                    let positive = point.positive.clone().unwrap_or_default();
                    buckets += positive.bucket_counts.len();
                    zeros += positive.bucket_counts.iter().filter(|&&c| c == 0).count();
                    bucket_bytes += positive.encoded_len();
                    attribute_bytes += point.attributes.iter().map(|kv| kv.encoded_len() + 2).sum::<usize>();
                    points += 1;
                }
            }
        }
        let raw = only.encode_to_vec();
        let points = points.max(1) as f64;
        println!(
            "  {METRIC_NAME} alone, scale {scale}: {:>6.1} B raw, {:>6.1} B gzip per series; per point {:>5.1} buckets \
             ({:>4.1} empty) = {:>5.1} B, attributes {:>5.1} B",
            per_series(raw.len()),
            per_series(gzip(&raw).len()),
            buckets as f64 / points,
            zeros as f64 / points,
            bucket_bytes as f64 / points,
            attribute_bytes as f64 / points,
        );
    }
}

/// Wall time of each step of Kuroko's interval, mean over [`CPU_INTERVALS`].
fn kuroko_steps(kuroko: &Kuroko, workload: &Workload) {
    let mut steps = [Duration::ZERO; 3];
    for _ in 0..CPU_INTERVALS {
        kuroko.fill(workload);
        let t0 = Instant::now();
        let harvest = kuroko.agent.harvest();
        let t1 = Instant::now();
        let raw = kuroko
            .encoder
            .metrics(&harvest, ExportStats::default(), kuroko.started)
            .into_bytes();
        let t2 = Instant::now();
        black_box(gzip(&raw));
        let t3 = Instant::now();
        for (step, took) in steps.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
            *step += took;
        }
    }
    let [harvest, encode, gzip] = steps.map(|step| step.as_secs_f64() * 1e3 / f64::from(CPU_INTERVALS));
    println!(
        "  kuroko steps (wall): harvest {harvest:.2} ms, encode (message + protobuf) {encode:.2} ms, gzip {gzip:.2} ms"
    );
}

/// The accuracy table, payload sizes and CPU time per interval, printed once.
fn summary(workload: &Workload, kuroko: &Kuroko, otel: &Otel) {
    let semconv = Otel::new(workload, Some(&SEMCONV_BOUNDARIES));
    kuroko.fill(workload);
    otel.fill(workload);
    semconv.fill(workload);
    let kuroko_payload = kuroko.export(true);
    let otel_payload = otel.export(true);
    let semconv_payload = semconv.export(true);
    drop(semconv);
    let (kuroko_request, otel_request, semconv_request) =
        (decode(&kuroko_payload), decode(&otel_payload), decode(&semconv_payload));

    println!();
    println!(
        "export: {SERIES} series x {SAMPLES_PER_SERIES} samples, log-normal median {} ms, sigma {SIGMA}",
        MEDIAN_NS / 1e6
    );
    println!(
        "relative error of percentiles read back from the payload, vs the exact sample \
         (max / mean over the series; series within 1%):"
    );
    let rows: [(&str, &ExportMetricsServiceRequest, QuantileReader); 3] = [
        ("kuroko (exponential, scale 7)", &kuroko_request, kuroko_quantiles),
        ("otel-sdk (default buckets)", &otel_request, otel_quantiles),
        ("otel-sdk (semconv advisory buckets)", &semconv_request, otel_quantiles),
    ];
    let exact: Vec<Vec<f64>> = QUANTILES.iter().map(|&q| workload.exact(q)).collect();
    for (name, request, read) in rows {
        let mut line = format!("  {name:<36}");
        for (q, exact) in QUANTILES.iter().zip(&exact) {
            let (max, mean, within) = errors(&read(request, workload, *q), exact);
            line += &format!(
                "  p{:.0}: max {:>8.2}% mean {:>8.2}% ({within:>4}/{SERIES})",
                q * 100.0,
                max * 100.0,
                mean * 100.0
            );
        }
        println!("{line}");
    }
    println!("payload per series (raw protobuf / gzip):");
    for (name, payload) in [
        ("kuroko (full request)", &kuroko_payload),
        ("otel-sdk (default buckets)", &otel_payload),
        ("otel-sdk (semconv advisory buckets)", &semconv_payload),
    ] {
        println!(
            "  {name:<36} {:>7.1} B / {:>6.1} B   (request {} B / {} B)",
            per_series(payload.raw_bytes),
            per_series(payload.gzip_bytes),
            payload.raw_bytes,
            payload.gzip_bytes
        );
    }
    kuroko_breakdown(kuroko, workload);

    println!("CPU time per interval ({SERIES} series; process CPU, all threads; mean of {CPU_INTERVALS}):");
    let kuroko_cost = cpu_per_interval(|| kuroko.fill(workload), || kuroko.export(false));
    let otel_cost = cpu_per_interval(|| otel.fill(workload), || otel.export(false));
    for (name, (cpu, wall)) in [
        ("kuroko/harvest+encode+gzip", kuroko_cost),
        ("otel-sdk/collect+encode+gzip", otel_cost),
    ] {
        let cpu = cpu.map_or_else(|| "n/a".to_owned(), |cpu| format!("{:.2} ms", cpu.as_secs_f64() * 1e3));
        println!("  {name:<36} cpu {cpu:>9}  wall {:>6.2} ms", wall.as_secs_f64() * 1e3);
    }
    kuroko_steps(kuroko, workload);
    println!();
}

fn export(c: &mut Criterion) {
    let workload = Workload::new();
    let kuroko = Kuroko::new(&workload);
    let otel = Otel::new(&workload, None);
    if !std::env::args().any(|arg| arg == "--list") {
        summary(&workload, &kuroko, &otel);
    }

    let mut group = c.benchmark_group("export");
    group
        .throughput(Throughput::Elements(SERIES as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("kuroko/harvest+encode+gzip", |b| {
        b.iter_batched(
            || kuroko.fill(&workload),
            |()| {
                let payload = kuroko.export(false);
                (payload.raw_bytes, payload.gzip_bytes)
            },
            BatchSize::PerIteration,
        )
    });
    // The refill before every interval takes longer than the SDK's export.
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("otel-sdk/collect+encode+gzip", |b| {
        b.iter_batched(
            || otel.fill(&workload),
            |()| {
                let payload = otel.export(false);
                (payload.raw_bytes, payload.gzip_bytes)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, export);
criterion_main!(benches);
