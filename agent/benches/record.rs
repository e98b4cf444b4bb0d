//! What one recorded transaction costs: Kuroko's agent against OpenTelemetry,
//! the `metrics` crate and plain HDR histograms, on the same workload.
//!
//! # Workload
//!
//! 50 routes (`GET /route/0` … `GET /route/49`), each sample a route picked
//! uniformly and a latency drawn from a log-normal distribution (median 20 ms,
//! σ = 1.0, clamped to 1 µs – 1 h, seeded so every run sees the same values).
//! Every attribute set, label set and name is built before the clock starts.
//! The samples come in two cases, each its own criterion group:
//!
//! - `record/cached/…`: 4,096 pre-generated samples that every contender
//!   cycles through, the latency precomputed as nanoseconds, as a `Duration`
//!   and as `f64` seconds, so nothing but the record call is timed. The array
//!   (160 KB) and the few thousand counters its samples hit stay in cache, and
//!   the same 4,096 records repeat over and over: this flatters every
//!   contender, and the more so the more memory it touches per record.
//! - `record/streaming/…`: what a service sees. Each recording thread has its
//!   own 2,097,152 samples (16 MB, packed as `route << 48 | nanos` in a `u64`)
//!   that it reads once per pass, continuing where the previous measurement
//!   left off, so a sample comes back only after two million others: the
//!   counters it touches have to be fetched as a service's would, and no
//!   short pattern repeats. The stream is read in order, which the prefetcher
//!   follows; the latency arrives as nanoseconds and each contender converts
//!   it to what its API takes (`f64` seconds, a `Duration`) inside the timed
//!   loop, as a service converts the `Duration` it measured.
//!
//! Each record carries two attributes: the route and the status class
//! (`http.route` and `http.response.status_code` = 200). For Kuroko the route
//! is the transaction name and the status class is the [`Outcome`].
//!
//! # Contenders
//!
//! - `kuroko/handle`: pre-resolved [`Transaction`] handles, `record_nanos`.
//!   The agent is configured with `hot_series_threshold = 0`, so every series
//!   has one shard per core from creation, as a hot series has in steady state.
//! - `kuroko/by-name`: `Agent::record_outcome(name, duration, Outcome::Ok)`,
//!   which looks the name up in a per-thread cache.
//! - `otel-sdk/unbound`: an `opentelemetry_sdk` `SdkMeterProvider` with a
//!   `PeriodicReader` whose no-op exporter would first fire after an hour
//!   (never during the run), and an `f64` histogram with the semantic
//!   conventions' bucket boundaries for `http.server.request.duration`;
//!   `histogram.record(secs, &attributes)` with the attribute slice pre-built
//!   per route.
//! - `otel-sdk/bound`: the same histogram, bound once per route with
//!   `Histogram::bind` (the `experimental_metrics_bound_instruments` feature),
//!   then `BoundHistogram::record(secs)`.
//! - `metrics/handle`: `metrics::Histogram` handles registered once per route
//!   on a `metrics-exporter-prometheus` recorder, then `handle.record(secs)`.
//!   The recorder gets the same buckets as OpenTelemetry; that only changes
//!   how its upkeep drains samples, not the recording path.
//! - `mutex-hdr`: one `Mutex<hdrhistogram::Histogram<u64>>` per route, with
//!   the agent's bounds (1 µs – 1 h, 2 significant digits).
//! - `raw-hdr`: one `hdrhistogram::Histogram<u64>` per route with no
//!   synchronisation at all: the floor. With 2 threads, each thread records
//!   into its own, unshared set.
//!
//! # Groups
//!
//! `record/{cached,streaming}/1-thread` records from the benchmark thread.
//! `record/{cached,streaming}/2-threads` starts 2 threads that record into the
//! *same* 50 series (the same handles and instruments, the contended case),
//! starting on a barrier (at different offsets of the cached array; each on
//! its own stream). The reported time is the wall time from the start to the
//! last thread's end divided by the records *each* thread made: the time per
//! record per thread under contention.
//!
//! Between measurements, never inside the timed loop, the Kuroko agents are
//! harvested (so their `u32` counters cannot overflow) and the Prometheus
//! recorder's upkeep drains the samples it buffers; the other contenders keep
//! fixed-size `u64` counters and need no draining.
//!
//! # Running
//!
//! ```text
//! cargo bench -p kuroko-agent --bench record
//! cargo bench -p kuroko-agent --bench record -- streaming    # one case
//! cargo bench -p kuroko-agent --bench record -- 2-threads    # both cases, 2 threads
//! ```
//!
//! `cargo test -p kuroko-agent --benches` runs each benchmark once, on a
//! shorter stream (generating 2 × 2 million samples unoptimised would take
//! most of the test's time).

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use hdrhistogram::Histogram as HdrHistogram;
use kuroko_agent::{Agent, AgentConfig, Outcome, Transaction};
use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;
use opentelemetry::metrics::{BoundHistogram, Histogram as OtelHistogram, MeterProvider};
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

const ROUTES: usize = 50;
/// Samples in the cached case, cycled by every thread.
const SAMPLES: usize = 4_096;
/// Samples in each thread's stream in the streaming case (16 MB of `u64`s);
/// unoptimised builds (`cargo test --benches`) use a shorter one.
const STREAM_SAMPLES: usize = if cfg!(debug_assertions) { 1 << 16 } else { 1 << 21 };
/// A streamed sample is `route << ROUTE_SHIFT | nanos`; `HIGHEST_NS` < 2^42.
const ROUTE_SHIFT: u32 = 48;
const SEED: u64 = 0x6b75_726f_6b6f;
const MEDIAN_NS: f64 = 20_000_000.0;
const SIGMA: f64 = 1.0;
const LOWEST_NS: u64 = 1_000;
const HIGHEST_NS: u64 = 3_600_000_000_000;
const SIGNIFICANT_DIGITS: u8 = 2;
/// Bucket boundaries the OpenTelemetry semantic conventions recommend for
/// `http.server.request.duration`, in seconds.
const SECONDS_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const METRIC_NAME: &str = "http.server.request.duration";
const STATUS_CODE: i64 = 200;

#[derive(Clone, Copy)]
struct Sample {
    route: usize,
    nanos: u64,
    secs: f64,
    duration: Duration,
}

impl Sample {
    fn new(route: usize, nanos: u64) -> Self {
        Sample {
            route,
            nanos,
            secs: nanos as f64 / 1e9,
            duration: Duration::from_nanos(nanos),
        }
    }

    /// Unpacks a streamed sample. Inlined into the timed loop, where only the
    /// fields the contender reads are computed.
    #[inline(always)]
    fn unpack(packed: u64) -> Self {
        Sample::new((packed >> ROUTE_SHIFT) as usize, packed & ((1 << ROUTE_SHIFT) - 1))
    }
}

/// Where the samples come from: see the module documentation.
#[derive(Clone, Copy)]
enum Case {
    Cached,
    Streaming,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Cached => "cached",
            Case::Streaming => "streaming",
        }
    }
}

/// One thread's stream of packed samples and how far it has been read.
struct Stream {
    packed: Vec<u64>,
    /// Where the next measurement starts; only the stream's own thread moves it.
    cursor: AtomicUsize,
}

struct Workload {
    /// Kuroko transaction names: `GET /route/{i}`.
    names: Vec<String>,
    /// Route templates for the `http.route` attribute: `/route/{i}`.
    routes: Vec<String>,
    /// The cached case's samples.
    samples: Vec<Sample>,
    /// The streaming case's samples, one stream per recording thread.
    streams: Vec<Stream>,
}

/// `count` samples from the workload's distribution, seeded with `seed`.
fn draw(seed: u64, count: usize) -> impl Iterator<Item = (usize, u64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let latency = LogNormal::new(MEDIAN_NS.ln(), SIGMA).expect("valid log-normal parameters");
    (0..count).map(move |_| {
        let route = rng.random_range(0..ROUTES);
        let nanos = (latency.sample(&mut rng) as u64).clamp(LOWEST_NS, HIGHEST_NS);
        (route, nanos)
    })
}

impl Workload {
    fn new(threads: usize) -> Self {
        let routes: Vec<String> = (0..ROUTES).map(|i| format!("/route/{i}")).collect();
        let names = routes.iter().map(|route| format!("GET {route}")).collect();
        let samples = draw(SEED, SAMPLES)
            .map(|(route, nanos)| Sample::new(route, nanos))
            .collect();
        let streams = (1..=threads as u64)
            .map(|thread| Stream {
                packed: draw(SEED.wrapping_add(thread), STREAM_SAMPLES)
                    .map(|(route, nanos)| ((route as u64) << ROUTE_SHIFT) | nanos)
                    .collect(),
                cursor: AtomicUsize::new(0),
            })
            .collect();
        Workload {
            names,
            routes,
            samples,
            streams,
        }
    }

    fn otel_attributes(&self) -> Vec<[KeyValue; 2]> {
        self.routes
            .iter()
            .map(|route| {
                [
                    KeyValue::new("http.route", route.clone()),
                    KeyValue::new("http.response.status_code", STATUS_CODE),
                ]
            })
            .collect()
    }

    /// Records `iters` samples per thread with `record`, on one thread per
    /// entry of `states` (each thread owns its entry), from `case`'s samples;
    /// returns the time from the common start to the last thread's end. One
    /// state records on the calling thread.
    fn run<S, R>(&self, case: Case, states: &mut [S], iters: u64, record: R) -> Duration
    where
        S: Send,
        R: Fn(&mut S, &Sample) + Sync,
    {
        let threads = states.len();
        if let [state] = states {
            return match case {
                Case::Cached => {
                    let samples = black_box(&self.samples[..]);
                    let start = Instant::now();
                    walk(samples, 0, iters, state, &record);
                    start.elapsed()
                }
                Case::Streaming => {
                    let stream = black_box(&self.streams[0]);
                    let start = Instant::now();
                    stream_walk(stream, iters, state, &record);
                    start.elapsed()
                }
            };
        }
        let barrier = Barrier::new(threads);
        let arrived = AtomicUsize::new(0);
        let spans: Vec<(Instant, Instant)> = thread::scope(|scope| {
            let workers: Vec<_> = states
                .iter_mut()
                .enumerate()
                .map(|(t, state)| {
                    let (barrier, arrived, record) = (&barrier, &arrived, &record);
                    scope.spawn(move || {
                        let samples = black_box(&self.samples[..]);
                        let stream = black_box(&self.streams[t]);
                        let offset = t * SAMPLES / threads;
                        // Warm this thread's caches (and per-thread lookup tables) first.
                        match case {
                            Case::Cached => walk(samples, offset, SAMPLES as u64, state, record),
                            Case::Streaming => stream_walk(stream, SAMPLES as u64, state, record),
                        }
                        barrier.wait();
                        // The barrier wakes threads one by one; spin so that all start together.
                        arrived.fetch_add(1, Ordering::AcqRel);
                        while arrived.load(Ordering::Acquire) < threads {
                            std::hint::spin_loop();
                        }
                        let start = Instant::now();
                        match case {
                            Case::Cached => walk(samples, offset, iters, state, record),
                            Case::Streaming => stream_walk(stream, iters, state, record),
                        }
                        (start, Instant::now())
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("a recording thread panicked"))
                .collect()
        });
        let start = spans.iter().map(|span| span.0).min().expect("at least one thread");
        let end = spans.iter().map(|span| span.1).max().expect("at least one thread");
        end - start
    }
}

#[inline(always)]
fn walk<S>(samples: &[Sample], offset: usize, iters: u64, state: &mut S, record: &impl Fn(&mut S, &Sample)) {
    const MASK: usize = SAMPLES - 1;
    let mut index = offset;
    for _ in 0..iters {
        record(state, &samples[index & MASK]);
        index = index.wrapping_add(1);
    }
}

/// Records the next `iters` samples of `stream`, wrapping at its end.
#[inline(always)]
fn stream_walk<S>(stream: &Stream, iters: u64, state: &mut S, record: &impl Fn(&mut S, &Sample)) {
    const MASK: usize = STREAM_SAMPLES - 1;
    let packed = &stream.packed[..];
    let mut index = stream.cursor.load(Ordering::Relaxed);
    for _ in 0..iters {
        record(state, &Sample::unpack(packed[index & MASK]));
        index = index.wrapping_add(1);
    }
    stream.cursor.store(index & MASK, Ordering::Relaxed);
}

// `AgentConfig` is `#[non_exhaustive]`: struct-update syntax is not available here.
#[allow(clippy::field_reassign_with_default)]
fn new_agent() -> Agent {
    let mut config = AgentConfig::default();
    config.hot_series_threshold = 0;
    Agent::new(config).expect("valid agent configuration")
}

fn new_hdr() -> HdrHistogram<u64> {
    HdrHistogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS).expect("valid histogram bounds")
}

/// An exporter that drops everything; its reader never fires during a run.
struct NoopExporter;

impl PushMetricExporter for NoopExporter {
    async fn export(&self, _metrics: &ResourceMetrics) -> OTelSdkResult {
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

fn otel_histogram() -> (SdkMeterProvider, OtelHistogram<f64>) {
    // `ManualReader` needs the `experimental_metrics_custom_reader` feature; a
    // periodic reader that would first fire after an hour is just as idle.
    let reader = PeriodicReader::builder(NoopExporter)
        .with_interval(Duration::from_secs(3_600))
        .build();
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    let histogram = provider
        .meter("kuroko-bench")
        .f64_histogram(METRIC_NAME)
        .with_unit("s")
        .with_boundaries(SECONDS_BOUNDARIES.to_vec())
        .build();
    (provider, histogram)
}

/// Nothing per thread: the contender's state is shared.
fn shared(threads: usize) -> Vec<()> {
    vec![(); threads]
}

fn kuroko_handle(group: &mut BenchmarkGroup<'_, WallTime>, workload: &Workload, case: Case, threads: usize) {
    let agent = new_agent();
    let handles: Vec<Transaction> = workload.names.iter().map(|name| agent.transaction(name)).collect();
    let mut states = shared(threads);
    group.bench_function("kuroko/handle", |b| {
        b.iter_custom(|iters| {
            drop(agent.harvest());
            workload.run(case, &mut states, iters, |_, sample| {
                handles[sample.route].record_nanos(sample.nanos, Outcome::Ok)
            })
        })
    });
}

fn kuroko_by_name(group: &mut BenchmarkGroup<'_, WallTime>, workload: &Workload, case: Case, threads: usize) {
    let agent = new_agent();
    let names = &workload.names;
    let mut states = shared(threads);
    group.bench_function("kuroko/by-name", |b| {
        b.iter_custom(|iters| {
            drop(agent.harvest());
            workload.run(case, &mut states, iters, |_, sample| {
                agent.record_outcome(&names[sample.route], sample.duration, Outcome::Ok)
            })
        })
    });
}

fn otel_unbound(group: &mut BenchmarkGroup<'_, WallTime>, workload: &Workload, case: Case, threads: usize) {
    let (provider, histogram) = otel_histogram();
    let attributes = workload.otel_attributes();
    let mut states = shared(threads);
    group.bench_function("otel-sdk/unbound", |b| {
        b.iter_custom(|iters| {
            workload.run(case, &mut states, iters, |_, sample| {
                histogram.record(sample.secs, &attributes[sample.route])
            })
        })
    });
    provider.shutdown().expect("the meter provider shuts down");
}

fn otel_bound(group: &mut BenchmarkGroup<'_, WallTime>, workload: &Workload, case: Case, threads: usize) {
    let (provider, histogram) = otel_histogram();
    let bound: Vec<BoundHistogram<f64>> = workload
        .otel_attributes()
        .iter()
        .map(|attributes| histogram.bind(attributes))
        .collect();
    let mut states = shared(threads);
    group.bench_function("otel-sdk/bound", |b| {
        b.iter_custom(|iters| {
            workload.run(case, &mut states, iters, |_, sample| {
                bound[sample.route].record(sample.secs)
            })
        })
    });
    drop(bound);
    provider.shutdown().expect("the meter provider shuts down");
}

fn metrics_handle(group: &mut BenchmarkGroup<'_, WallTime>, workload: &Workload, case: Case, threads: usize) {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&SECONDS_BOUNDARIES)
        .expect("valid buckets")
        .build_recorder();
    let prometheus = recorder.handle();
    let metadata = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
    let handles: Vec<metrics::Histogram> = workload
        .routes
        .iter()
        .map(|route| {
            let labels = vec![
                Label::new("http.route", route.clone()),
                Label::new("http.response.status_code", STATUS_CODE.to_string()),
            ];
            recorder.register_histogram(&Key::from_parts(METRIC_NAME, labels), &metadata)
        })
        .collect();
    let mut states = shared(threads);
    group.bench_function("metrics/handle", |b| {
        b.iter_custom(|iters| {
            // The recorder keeps every sample until upkeep drains them.
            prometheus.run_upkeep();
            workload.run(case, &mut states, iters, |_, sample| {
                handles[sample.route].record(sample.secs)
            })
        })
    });
    prometheus.run_upkeep();
}

fn mutex_hdr(group: &mut BenchmarkGroup<'_, WallTime>, workload: &Workload, case: Case, threads: usize) {
    let histograms: Vec<Mutex<HdrHistogram<u64>>> = (0..ROUTES).map(|_| Mutex::new(new_hdr())).collect();
    let mut states = shared(threads);
    group.bench_function("mutex-hdr", |b| {
        b.iter_custom(|iters| {
            workload.run(case, &mut states, iters, |_, sample| {
                histograms[sample.route]
                    .lock()
                    .expect("no recording thread panics")
                    .record(sample.nanos)
                    .expect("samples are within the histogram's bounds")
            })
        })
    });
    black_box(&histograms);
}

fn raw_hdr(group: &mut BenchmarkGroup<'_, WallTime>, workload: &Workload, case: Case, threads: usize) {
    let mut states: Vec<Vec<HdrHistogram<u64>>> =
        (0..threads).map(|_| (0..ROUTES).map(|_| new_hdr()).collect()).collect();
    group.bench_function("raw-hdr", |b| {
        b.iter_custom(|iters| {
            workload.run(case, &mut states, iters, |histograms, sample| {
                histograms[sample.route]
                    .record(sample.nanos)
                    .expect("samples are within the histogram's bounds")
            })
        })
    });
    black_box(&states);
}

fn record(c: &mut Criterion) {
    const MAX_THREADS: usize = 2;
    let workload = Workload::new(MAX_THREADS);
    for case in [Case::Cached, Case::Streaming] {
        for (threads_name, threads) in [("1-thread", 1), ("2-threads", MAX_THREADS)] {
            let mut group = c.benchmark_group(format!("record/{}/{threads_name}", case.name()));
            kuroko_handle(&mut group, &workload, case, threads);
            kuroko_by_name(&mut group, &workload, case, threads);
            otel_unbound(&mut group, &workload, case, threads);
            otel_bound(&mut group, &workload, case, threads);
            metrics_handle(&mut group, &workload, case, threads);
            mutex_hdr(&mut group, &workload, case, threads);
            raw_hdr(&mut group, &workload, case, threads);
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = record
}
criterion_main!(benches);
