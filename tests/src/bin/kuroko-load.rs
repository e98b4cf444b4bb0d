//! `kuroko-load`: a load generator and ingest benchmark for `kuroko serve`.
//!
//! It simulates N hosts running Kuroko's agent: each host records M web
//! transactions (log-normal latencies, a few 4xx and 5xx, database and
//! external segments) and harvests them once per interval; every harvest is
//! encoded with the agent's own OTLP encoder, so the payloads are exactly what
//! agents send (one `http.server.request.duration` exponential histogram point
//! per transaction, plus outcome, Apdex and segment sums, plus the agent's
//! health metrics). The pool of requests is generated up front (stamped with
//! the current time; a run must stay under the reporter's 1 h / 8 days
//! timestamp window) and then replayed over loopback by C concurrent clients
//! for the duration, over OTLP/HTTP (the default) or OTLP/gRPC.
//!
//! It reports requests and data points per second, the per-request ingest
//! latency (send to response, which the reporter gives after its commit), the
//! errors, and, as the ceiling, how fast this machine merely gunzips and
//! decodes the same payloads with one and with two threads.
//!
//! Over 800 lines on purpose: one program read top to bottom (options,
//! workload, pool, clients, measurement, report) whose parts serve nothing else.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::{ArgAction, Parser};
use hdrhistogram::Histogram;
use kuroko_agent::export::{Encoder as OtlpEncoder, ExportConfig, ExportStats};
use kuroko_agent::{Agent, Outcome, SegmentKind, TransactionSpec};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::bytes::{BufMut, Bytes};
use prost::Message;
use rand::{rngs::SmallRng, Rng as _, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use tonic::codec::{CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};

/// Replays agent-shaped OTLP metrics from simulated hosts against a Kuroko
/// reporter over loopback, and measures what it sustains.
#[derive(Parser, Debug)]
#[command(
    name = "kuroko-load",
    version,
    long_about = "Replays agent-shaped OTLP metrics from simulated hosts against a Kuroko reporter over \
loopback, and measures what it sustains.

Each simulated host is a real kuroko-agent: every interval it records --transactions-per-host web \
transactions and its harvest is encoded with the agent's own OTLP encoder, one request per host per \
interval (one http.server.request.duration exponential-histogram point per transaction, plus outcome, \
Apdex and segment sums). A pool of --intervals x --hosts requests is built first, stamped with the \
current time, then sent in a loop by --concurrency clients, each on its own connection, for --warmup \
seconds (not counted) and then --duration seconds (measured).

The report gives requests/s, histogram data points/s, all data points/s, ingest latency per request \
(from send to response; the reporter answers after its commit), errors by status, and the decode-only \
ceiling: gunzip + ExportMetricsServiceRequest::decode of the same payloads with 1 and 2 threads. With \
--spawn-reporter it starts `kuroko serve` itself (a temporary store, 127.0.0.1:0) and adds the \
reporter's CPU use and resident memory (VmRSS, and VmHWM, the peak).",
    after_help = "Examples:
  # Build, then benchmark a reporter of its own, over OTLP/HTTP with gzip:
  cargo build --release -p kuroko-reporter
  target/release/kuroko-load --spawn-reporter
  # The same over OTLP/gRPC:
  target/release/kuroko-load --spawn-reporter --grpc
  # Against a reporter already running on the default ports, uncompressed:
  target/release/kuroko-load --target http://127.0.0.1:4318 --gzip=false
  # SQLite beside ClickHouse (one replica, then two, then three), 64 requests in flight:
  target/release/kuroko-load --compare-stores clickhouse://127.0.0.1:8123/kuroko_load --concurrency 64"
)]
struct Cli {
    /// The reporter's OTLP/HTTP base URL (requests go to its /v1/metrics), or
    /// with --grpc its OTLP/gRPC URL. Default: http://127.0.0.1:4318, or
    /// http://127.0.0.1:4317 with --grpc. Not used with --spawn-reporter.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Send over OTLP/gRPC (MetricsService/Export) instead of OTLP/HTTP.
    #[arg(long)]
    grpc: bool,
    /// Simulated hosts, each with its own agent (10 services of hosts/10 hosts).
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    hosts: u64,
    /// Web transactions per host: histogram data points per request.
    #[arg(long, default_value_t = 40, value_name = "M", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    transactions_per_host: u64,
    /// Requests in flight at once, each client on its own connection.
    #[arg(long, default_value_t = 8, value_name = "C", value_parser = clap::value_parser!(u64).range(1..=4_096))]
    concurrency: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3_000))]
    duration: u64,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 2, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup: u64,
    /// Harvest intervals pre-generated per host: the pool holds intervals x hosts requests.
    #[arg(long, default_value_t = 20, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    intervals: u64,
    /// Compress requests with gzip (`--gzip=false` to send them plain).
    #[arg(
        long,
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    gzip: bool,
    /// Threads of the load generator's own runtime (it shares the machine with the reporter).
    #[arg(long, default_value_t = 1, value_name = "T", value_parser = clap::value_parser!(u64).range(1..=64))]
    client_threads: u64,
    /// Bearer token for a reporter that requires one (also read from
    /// KUROKO_INGEST_TOKEN); sent as `authorization: Bearer <token>`.
    #[arg(long, env = "KUROKO_INGEST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Start `kuroko serve` on 127.0.0.1:0 with a temporary store, send to it,
    /// and report its CPU use and resident memory; stopped at the end.
    #[arg(long)]
    spawn_reporter: bool,
    /// The `kuroko` binary for --spawn-reporter. Default: `kuroko` beside this executable.
    #[arg(long, value_name = "PATH")]
    kuroko: Option<PathBuf>,
    /// Keep the spawned reporter's store and log instead of deleting them.
    #[arg(long)]
    keep_store: bool,
    /// With --spawn-reporter: the store the reporter serves, a file or a
    /// `clickhouse://` URL (its journal goes in the temporary folder).
    /// Default: a temporary SQLite file.
    #[arg(long, value_name = "LOCATION")]
    store: Option<String>,
    /// Compare the stores in one run, with reporters of its own: one on a
    /// temporary SQLite file, one on the ClickHouse at CLICKHOUSE_URL, then
    /// two and three replicas on it (the clients split among them), each
    /// phase measured as a run is; ClickHouse's databases are
    /// DATABASE_1 to DATABASE_3 (DATABASE: the URL's), dropped before and after. Prints points/s, latency,
    /// CPU and memory side by side, with the ratios.
    #[arg(long, value_name = "CLICKHOUSE_URL", conflicts_with_all = ["target", "spawn_reporter", "store"])]
    compare_stores: Option<String>,
    /// Run the spawned reporters on these CPUs only (`taskset -c LIST`, e.g.
    /// `0`): with ClickHouse pinned to the others (`taskset -c 1
    /// clickhouse-server ...`), a reporter and ClickHouse each get cores of
    /// their own, as on separate machines.
    #[arg(long, value_name = "LIST")]
    reporter_cpus: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kuroko-load: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Payloads

/// One pre-generated request.
struct Payload {
    /// The protobuf `ExportMetricsServiceRequest`.
    raw: Bytes,
    /// The same, gzipped (with --gzip).
    gzip: Option<Bytes>,
    /// Exponential-histogram data points in it.
    histogram_points: u64,
    /// All data points in it.
    points: u64,
}

/// The workload's randomness: `rand`'s small generator, seeded, so runs repeat.
type Rng = SmallRng;

/// (histogram data points, all data points) of a metrics request.
fn count_points(request: &ExportMetricsServiceRequest) -> (u64, u64) {
    let (mut histograms, mut points) = (0, 0);
    for metric in request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        let (histogram, n) = match &metric.data {
            Some(metric::Data::ExponentialHistogram(h)) => (true, h.data_points.len()),
            Some(metric::Data::Histogram(h)) => (false, h.data_points.len()),
            Some(metric::Data::Sum(sum)) => (false, sum.data_points.len()),
            Some(metric::Data::Gauge(gauge)) => (false, gauge.data_points.len()),
            Some(metric::Data::Summary(summary)) => (false, summary.data_points.len()),
            None => (false, 0),
        };
        points += n as u64;
        if histogram {
            histograms += n as u64;
        }
    }
    (histograms, points)
}

fn gzip(bytes: &[u8]) -> Bytes {
    // What the agent does: gzip at the fast level.
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to a Vec cannot fail");
    Bytes::from(encoder.finish().expect("writing to a Vec cannot fail"))
}

/// One simulated host: an agent, its transactions, its resource.
struct Host {
    agent: Agent,
    transactions: Vec<(kuroko_agent::Transaction, f64)>,
    encoder: OtlpEncoder,
}

fn hosts(count: u64, transactions: u64) -> Vec<Host> {
    const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
    (0..count)
        .map(|h| {
            let service = h % 10;
            let agent = Agent::default();
            let transactions = (0..transactions)
                .map(|i| {
                    let route = format!("/api/v1/resource{i}/{{id}}");
                    let spec = TransactionSpec::web(METHODS[(i % 4) as usize], &route).feature(format!("f{}", i % 8));
                    // The same route is equally slow on every host of a service:
                    // a median between 2 ms and 200 ms.
                    let median_ms = 2.0 * 100f64.powf(Rng::seed_from_u64(service * 1_000_003 + i).random::<f64>());
                    (agent.register(spec), median_ms * 1e6)
                })
                .collect();
            let config = ExportConfig::default()
                .with_service_name(format!("svc-{service}"))
                .with_host_name(format!("host-{h}"));
            Host {
                agent,
                transactions,
                encoder: OtlpEncoder::new(&config, "kuroko-load"),
            }
        })
        .collect()
}

/// One interval of one host: 20–200 runs of every transaction, then the harvest.
fn interval(host: &Host, rng: &mut Rng, started: SystemTime) -> Vec<u8> {
    for (i, (transaction, median_ns)) in host.transactions.iter().enumerate() {
        let database = (i % 2 == 0).then(|| transaction.segment(SegmentKind::Database, "SELECT resource"));
        let external = (i % 3 == 0).then(|| transaction.segment(SegmentKind::External, "GET billing-api"));
        for _ in 0..20 + rng.random_range(0..181) {
            let z: f64 = StandardNormal.sample(rng);
            let ns = (median_ns * (0.6 * z).exp()).clamp(1e3, 60e9) as u64;
            let roll = rng.random_range(0..1_000);
            let outcome = Outcome::Status(match roll {
                0..=9 => 500,
                10..=29 => 404,
                _ => 200,
            });
            transaction.record_nanos(ns, outcome);
            if let Some(segment) = &database {
                segment.record(Duration::from_nanos(ns * 2 / 5));
            }
            if let Some(segment) = &external {
                segment.record(Duration::from_nanos(ns / 4));
            }
        }
    }
    let harvest = host.agent.harvest();
    host.encoder
        .metrics(&harvest, ExportStats::default(), started)
        .into_bytes()
}

/// The pool: interval-major (every host's interval 0, then interval 1, ...).
fn generate(cli: &Cli) -> Vec<Payload> {
    let started = SystemTime::now();
    let hosts = hosts(cli.hosts, cli.transactions_per_host);
    let mut rng = Rng::seed_from_u64(0x6b75_726f_6b6f);
    let mut pool = Vec::with_capacity((cli.intervals * cli.hosts) as usize);
    for _ in 0..cli.intervals {
        for host in &hosts {
            let raw = interval(host, &mut rng, started);
            let request = ExportMetricsServiceRequest::decode(raw.as_slice()).expect("the agent's own protobuf");
            let (histogram_points, points) = count_points(&request);
            pool.push(Payload {
                gzip: cli.gzip.then(|| gzip(&raw)),
                raw: Bytes::from(raw),
                histogram_points,
                points,
            });
        }
    }
    pool
}

// ---------------------------------------------------------------------------
// Sending

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// A gRPC codec that sends already-encoded protobuf bytes (the wire is the
/// same as the generated client's; the load generator just does not re-encode
/// every message) and decodes the OTLP response.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;

struct ResponseDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportMetricsServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportMetricsServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ExportMetricsServiceResponse>, tonic::Status> {
        ExportMetricsServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("the response is not OTLP: {e}")))
    }
}

/// One client: its own connection.
enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
        gzip: bool,
        authorization: Option<String>,
    },
    Grpc(tonic::client::Grpc<Channel>, Option<String>),
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Sender {
    async fn new(target: &Target, gzip: bool, token: Option<&str>) -> anyhow::Result<Sender> {
        let authorization = token.map(|t| format!("Bearer {t}"));
        match target {
            Target::Http(url) => Ok(Sender::Http {
                client: reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .connect_timeout(Duration::from_secs(5))
                    .build()
                    .context("building the HTTP client")?,
                url: url.clone(),
                gzip,
                authorization,
            }),
            Target::Grpc(url) => {
                let channel = Endpoint::from_shared(url.clone())
                    .with_context(|| format!("{url} is not a gRPC endpoint URL"))?
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(REQUEST_TIMEOUT)
                    .connect()
                    .await
                    .with_context(|| format!("cannot connect to {url} over gRPC"))?;
                let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(16 << 20);
                if gzip {
                    grpc = grpc
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                Ok(Sender::Grpc(grpc, authorization))
            }
        }
    }

    /// Sends one payload; `Ok` is the number of points the reporter rejected
    /// (partial success), `Err` what went wrong, as an error class.
    async fn send(&mut self, payload: &Payload) -> Result<u64, String> {
        match self {
            Sender::Http {
                client,
                url,
                gzip,
                authorization,
            } => {
                let mut request = client
                    .post(url.as_str())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf");
                if let Some(authorization) = authorization {
                    request = request.header(reqwest::header::AUTHORIZATION, authorization.as_str());
                }
                let body = match (&payload.gzip, *gzip) {
                    (Some(compressed), true) => {
                        request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
                        compressed.clone()
                    }
                    _ => payload.raw.clone(),
                };
                let response = request.body(body).send().await.map_err(|e| http_error(&e))?;
                let status = response.status();
                let bytes = response.bytes().await.map_err(|e| http_error(&e))?;
                if !status.is_success() {
                    return Err(format!("HTTP {status}"));
                }
                let response = ExportMetricsServiceResponse::decode(bytes)
                    .map_err(|_| "HTTP 2xx, body not OTLP protobuf".to_owned())?;
                Ok(rejected(&response))
            }
            Sender::Grpc(grpc, authorization) => {
                grpc.ready().await.map_err(|e| format!("gRPC transport: {e}"))?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH);
                let mut request = tonic::Request::new(payload.raw.clone());
                if let Some(value) = authorization.as_deref().and_then(|a| a.parse().ok()) {
                    request.metadata_mut().insert("authorization", value);
                }
                let response = grpc
                    .unary(request, path, RawCodec)
                    .await
                    .map_err(|status| format!("gRPC {:?}", status.code()))?;
                Ok(rejected(response.get_ref()))
            }
        }
    }
}

fn rejected(response: &ExportMetricsServiceResponse) -> u64 {
    response
        .partial_success
        .as_ref()
        .map_or(0, |p| u64::try_from(p.rejected_data_points).unwrap_or(0))
}

fn http_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "HTTP timeout".to_owned()
    } else if error.is_connect() {
        "HTTP connect error".to_owned()
    } else {
        "HTTP transport error".to_owned()
    }
}

// ---------------------------------------------------------------------------
// The run

/// Where the requests go.
enum Target {
    /// The full /v1/metrics URL.
    Http(String),
    /// The gRPC endpoint URL.
    Grpc(String),
}

impl Target {
    fn url(&self) -> &str {
        match self {
            Target::Http(url) | Target::Grpc(url) => url,
        }
    }
}

/// What the clients share.
struct Run {
    pool: Arc<Vec<Payload>>,
    next: AtomicUsize,
    measure_from: Instant,
    end: Instant,
    /// Histogram points acknowledged, per measured second.
    per_second: Vec<AtomicU64>,
}

/// What one client counted (only requests answered inside the measured window).
struct Tally {
    latency_us: Histogram<u64>,
    requests: u64,
    histogram_points: u64,
    points: u64,
    rejected: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            requests: 0,
            histogram_points: 0,
            points: 0,
            rejected: 0,
            errors: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency_us.add(&other.latency_us).expect("same bounds");
        self.requests += other.requests;
        self.histogram_points += other.histogram_points;
        self.points += other.points;
        self.rejected += other.rejected;
        for (error, count) in other.errors {
            *self.errors.entry(error).or_default() += count;
        }
    }
}

async fn client(run: Arc<Run>, mut sender: Sender) -> Tally {
    let mut tally = Tally::new();
    let pool = &run.pool;
    loop {
        let sent = Instant::now();
        if sent >= run.end {
            break;
        }
        let payload = &pool[run.next.fetch_add(1, Ordering::Relaxed) % pool.len()];
        let result = sender.send(payload).await;
        let done = Instant::now();
        if done < run.measure_from || done > run.end {
            continue;
        }
        tally
            .latency_us
            .saturating_record(done.duration_since(sent).as_micros().max(1) as u64);
        tally.requests += 1;
        match result {
            Ok(rejected) => {
                tally.histogram_points += payload.histogram_points;
                tally.points += payload.points;
                tally.rejected += rejected;
                let second = done.duration_since(run.measure_from).as_secs() as usize;
                if let Some(slot) = run.per_second.get(second) {
                    slot.fetch_add(payload.histogram_points, Ordering::Relaxed);
                }
            }
            Err(error) => *tally.errors.entry(error).or_default() += 1,
        }
    }
    tally
}

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted after the command's closing
    // parenthesis; in clock ticks, 100 per second on Linux.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds the whole machine has spent busy (every process, the kernel,
/// steal), from the first line of /proc/stat.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy = fields.get(..8)?.iter().sum::<u64>() - fields[3] - fields[4];
    Some(busy as f64 / 100.0)
}

/// A `Vm*:` line of /proc/PID/status, in kB.
fn vm_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What the measured window gave.
struct Measured {
    tally: Tally,
    per_second: Vec<u64>,
    client_cpu: Option<f64>,
    reporter_cpu: Option<f64>,
    /// The whole machine's busy CPU.
    machine_cpu: Option<f64>,
}

/// Sends the pool to `targets` (the clients split evenly among them) and
/// measures; `reporters` are the processes whose CPU is counted.
async fn load(cli: &Cli, targets: &[Target], pool: Arc<Vec<Payload>>, reporters: &[u32]) -> anyhow::Result<Measured> {
    // One request first: each target must be an OTLP receiver that accepts these.
    for target in targets {
        let mut probe = Sender::new(target, cli.gzip, cli.token.as_deref()).await?;
        if let Err(error) = probe.send(&pool[0]).await {
            bail!(
                "the first request to {} failed ({error}); is it a Kuroko reporter (or another OTLP receiver)?",
                target.url()
            );
        }
    }

    let mut senders = Vec::new();
    for (_, target) in (0..cli.concurrency).zip(targets.iter().cycle()) {
        senders.push(Sender::new(target, cli.gzip, cli.token.as_deref()).await?);
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(cli.warmup);
    let end = measure_from + Duration::from_secs(cli.duration);
    let run = Arc::new(Run {
        pool,
        next: AtomicUsize::new(0),
        measure_from,
        end,
        per_second: (0..cli.duration).map(|_| AtomicU64::new(0)).collect(),
    });
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|sender| tokio::spawn(client(run.clone(), sender)))
        .collect();

    // The reporters' CPU, summed (`None` when there are none).
    let reporters_cpu = || -> Option<f64> {
        if reporters.is_empty() {
            return None;
        }
        reporters.iter().map(|pid| cpu_seconds(&pid.to_string())).sum()
    };
    tokio::time::sleep_until(measure_from.into()).await;
    let client_before = cpu_seconds("self");
    let reporter_before = reporters_cpu();
    let machine_before = machine_busy_seconds();
    eprintln!("kuroko-load: measuring for {} s", cli.duration);
    tokio::time::sleep_until(end.into()).await;
    let client_after = cpu_seconds("self");
    let reporter_after = reporters_cpu();
    let machine_after = machine_busy_seconds();

    let mut tally = Tally::new();
    for task in tasks {
        tally.merge(task.await.context("a client task panicked")?);
    }
    let seconds = cli.duration as f64;
    let rate = |before: Option<f64>, after: Option<f64>| Some((after? - before?) / seconds);
    Ok(Measured {
        tally,
        per_second: run.per_second.iter().map(|s| s.load(Ordering::Relaxed)).collect(),
        client_cpu: rate(client_before, client_after),
        reporter_cpu: rate(reporter_before, reporter_after),
        machine_cpu: rate(machine_before, machine_after),
    })
}

// ---------------------------------------------------------------------------
// The spawned reporter

struct Spawned {
    child: Child,
    http: SocketAddr,
    grpc: SocketAddr,
    dir: PathBuf,
    keep: bool,
}

impl Spawned {
    /// Starts `kuroko serve` on 127.0.0.1:0 in a temporary folder named
    /// after `name`, serving `store` (default: a SQLite file there); its
    /// ClickHouse journal, if any, is kept there too.
    fn start(
        binary: Option<&Path>,
        keep: bool,
        store: Option<&str>,
        name: &str,
        cpus: Option<&str>,
    ) -> anyhow::Result<Spawned> {
        let binary = match binary {
            Some(path) => path.to_owned(),
            None => std::env::current_exe()
                .context("finding this executable")?
                .with_file_name("kuroko"),
        };
        if !binary.is_file() {
            bail!(
                "{} does not exist: build it with `cargo build --release -p kuroko-reporter`, \
                 or name it with --kuroko PATH",
                binary.display()
            );
        }
        let dir = std::env::temp_dir().join(format!("kuroko-load-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join("reporter.log");
        let store = store.map_or_else(|| dir.join("store.db").into_os_string(), Into::into);
        // taskset sets the CPUs, then becomes the reporter (same pid).
        let mut command = match cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.args(["-c", cpus]).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let mut child = command
            .arg("serve")
            .arg("--store")
            .arg(store)
            .env("KUROKO_JOURNAL_DIR", dir.join("journal"))
            .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).with_context(|| format!("creating {}", log.display()))?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines, first) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = reader.next() {
                let _ = lines.send(line);
            }
            // Drain the rest, so that the reporter never blocks on a full pipe.
            reader.for_each(drop);
        });
        let mut spawned = Spawned {
            child,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            keep,
        };
        let line = first.recv_timeout(Duration::from_secs(20)).map_err(|_| {
            anyhow::anyhow!(
                "`{} serve` did not say where it listens within 20 s; its log:\n{}",
                binary.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
        let address = |after: &str| -> anyhow::Result<SocketAddr> {
            line.split_once(after)
                .and_then(|(_, rest)| rest.split(',').next())
                .and_then(|a| a.trim().parse().ok())
                .with_context(|| format!("cannot read the address after {after:?} in the reporter's line {line:?}"))
        };
        spawned.grpc = address("OTLP/gRPC on ")?;
        spawned.http = address("OTLP/HTTP on ")?;
        Ok(spawned)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the reporter (SIGINT, as Ctrl-C; SIGKILL after 10 s); returns the
    /// store's size in bytes.
    fn stop(&mut self) -> u64 {
        let _ = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("store.db"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.keep {
            eprintln!("kuroko-load: kept the store and log in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------
// The decode-only ceiling

/// Gunzips (when `gunzip` and the pool is gzipped) and decodes the pool with
/// `threads` threads: the best of three passes of at least a second each (this
/// machine's neighbours make single passes vary by tens of percent);
/// (histogram points/s, all points/s, cores other processes used meanwhile).
fn decode_ceiling(pool: &[Payload], threads: usize, gunzip: bool) -> (f64, f64, Option<f64>) {
    (0..3)
        .map(|_| decode_pass(pool, threads, gunzip))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .expect("three passes")
}

fn decode_pass(pool: &[Payload], threads: usize, gunzip: bool) -> (f64, f64, Option<f64>) {
    let machine_before = machine_busy_seconds();
    let own_before = cpu_seconds("self");
    let start = Instant::now();
    let (histograms, points) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut buffer = Vec::new();
                    let (mut histograms, mut points) = (0u64, 0u64);
                    loop {
                        for payload in pool.iter().skip(t).step_by(threads) {
                            let request = match payload.gzip.as_ref().filter(|_| gunzip) {
                                Some(compressed) => {
                                    buffer.clear();
                                    flate2::read::GzDecoder::new(&compressed[..])
                                        .read_to_end(&mut buffer)
                                        .expect("our own gzip");
                                    ExportMetricsServiceRequest::decode(buffer.as_slice())
                                }
                                None => ExportMetricsServiceRequest::decode(&payload.raw[..]),
                            }
                            .expect("our own protobuf");
                            let (h, p) = count_points(&request);
                            histograms += h;
                            points += p;
                        }
                        if start.elapsed() >= Duration::from_secs(1) {
                            break;
                        }
                    }
                    (histograms, points)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a decode thread panicked"))
            .fold((0, 0), |(a, b), (h, p)| (a + h, b + p))
    });
    let seconds = start.elapsed().as_secs_f64();
    let others =
        (|| Some((machine_busy_seconds()? - machine_before? - (cpu_seconds("self")? - own_before?)) / seconds))();
    (
        histograms as f64 / seconds,
        points as f64 / seconds,
        others.map(|o| o.max(0.0)),
    )
}

// ---------------------------------------------------------------------------
// Reporting

/// 1234567.8 as "1,234,568".
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn millis(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1_000.0)
}

fn megabytes(kb: u64) -> String {
    format!("{:.0} MB", kb as f64 / 1_000.0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT MET"
    }
}

// ---------------------------------------------------------------------------
// Stores compared

/// One phase of --compare-stores: what it measured, each reporter's peak
/// memory, and how long its ClickHouse journals took to empty once the
/// load stopped.
struct Phase {
    name: &'static str,
    measured: Measured,
    peaks_kb: Vec<Option<u64>>,
    drained: Option<Duration>,
}

/// The parts of `clickhouse://[user[:password]@]host[:port]/database[?options]`
/// that --compare-stores needs.
struct ClickHouseUrl {
    /// `user[:password]@host[:port]`, as given.
    authority: String,
    /// `http://host:port/`.
    endpoint: String,
    /// User and password, for Basic authentication.
    credentials: Option<(String, String)>,
    database: String,
    /// What follows `?`, empty when nothing does.
    options: String,
}

impl ClickHouseUrl {
    fn parse(url: &str) -> anyhow::Result<ClickHouseUrl> {
        let rest = url
            .strip_prefix("clickhouse://")
            .with_context(|| format!("--compare-stores {url:?}: expected clickhouse://host:8123/database"))?;
        let (authority, path) = rest
            .split_once('/')
            .with_context(|| format!("--compare-stores {url:?}: no database"))?;
        let (database, options) = path.split_once('?').unwrap_or((path, ""));
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((credentials, host)) => {
                let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
                (Some((user.to_owned(), password.to_owned())), host)
            }
            None => (None, authority),
        };
        let host = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:8123")
        };
        Ok(ClickHouseUrl {
            authority: authority.to_owned(),
            endpoint: format!("http://{host}/"),
            credentials,
            database: database.to_owned(),
            options: options.to_owned(),
        })
    }

    /// The store URL of database `db` on the same server, with the same options.
    fn store(&self, db: &str) -> String {
        let query = if self.options.is_empty() {
            String::new()
        } else {
            format!("?{}", self.options)
        };
        format!("clickhouse://{}/{db}{query}", self.authority)
    }

    /// Runs `sql` on the server.
    async fn execute(&self, sql: String) -> anyhow::Result<()> {
        clickhouse_execute(&self.endpoint, &self.credentials, sql).await
    }
}

/// Runs `sql` on the ClickHouse at `endpoint`.
async fn clickhouse_execute(endpoint: &str, credentials: &Option<(String, String)>, sql: String) -> anyhow::Result<()> {
    let mut request = reqwest::Client::new().post(endpoint).body(sql.clone());
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach ClickHouse at {endpoint}: start it, or fix --compare-stores"))?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "ClickHouse at {endpoint} refused {sql:?}: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Bytes the reporter at `http` holds in its ClickHouse journal (`/metrics`).
async fn journal_waiting(http: SocketAddr) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .context("asking the reporter's /metrics")?
        .text()
        .await
        .context("reading the reporter's /metrics")?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("kuroko_reporter_journal_waiting_bytes ")?
                .trim()
                .parse()
                .ok()
        })
        .context("no kuroko_reporter_journal_waiting_bytes in the reporter's /metrics")
}

/// Waits until every reporter of `https` has sent its journal (at most 10 minutes).
async fn journals_sent(https: &[SocketAddr]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for http in https {
        while journal_waiting(*http).await? > 0.0 {
            if started.elapsed() > Duration::from_secs(600) {
                bail!("the reporters' journals were not sent to ClickHouse within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(started.elapsed())
}

/// The first figure of /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// --compare-stores: SQLite, one ClickHouse replica and two, in one run.
fn compare_stores(cli: &Cli, url: &str) -> anyhow::Result<()> {
    let clickhouse = ClickHouseUrl::parse(url)?;
    let load_before = load_average();
    eprintln!(
        "kuroko-load: generating {} x {} requests of {} transactions each",
        cli.intervals, cli.hosts, cli.transactions_per_host
    );
    let pool = Arc::new(generate(cli));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.client_threads as usize)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let plans: [(&'static str, Option<String>, usize); 4] = [
        ("SQLite, 1 reporter", None, 1),
        ("ClickHouse, 1 replica", Some(format!("{}_1", clickhouse.database)), 1),
        ("ClickHouse, 2 replicas", Some(format!("{}_2", clickhouse.database)), 2),
        ("ClickHouse, 3 replicas", Some(format!("{}_3", clickhouse.database)), 3),
    ];
    let mut phases = Vec::new();
    for (name, clickhouse_database, replicas) in plans {
        let store = match &clickhouse_database {
            Some(db) => {
                runtime.block_on(clickhouse.execute(format!("DROP DATABASE IF EXISTS {db}")))?;
                Some(clickhouse.store(db))
            }
            None => None,
        };
        eprintln!("kuroko-load: {name}");
        let mut spawned = Vec::new();
        for replica in 0..replicas {
            let label = format!("{}-{replica}", name.split(',').next().unwrap_or("phase").to_lowercase());
            spawned.push(Spawned::start(
                cli.kuroko.as_deref(),
                cli.keep_store,
                store.as_deref(),
                &label,
                cli.reporter_cpus.as_deref(),
            )?);
        }
        let targets: Vec<Target> = spawned
            .iter()
            .map(|s| {
                if cli.grpc {
                    Target::Grpc(format!("http://{}", s.grpc))
                } else {
                    Target::Http(format!("http://{}/v1/metrics", s.http))
                }
            })
            .collect();
        let pids: Vec<u32> = spawned.iter().map(Spawned::pid).collect();
        let measured = runtime.block_on(load(cli, &targets, pool.clone(), &pids))?;
        let peaks_kb = pids.iter().map(|pid| vm_kb(*pid, "VmHWM:")).collect();
        let drained = match clickhouse_database {
            Some(_) => {
                let https: Vec<SocketAddr> = spawned.iter().map(|s| s.http).collect();
                Some(runtime.block_on(journals_sent(&https))?)
            }
            None => None,
        };
        for reporter in &mut spawned {
            reporter.stop();
        }
        drop(spawned);
        if let Some(db) = clickhouse_database {
            runtime.block_on(clickhouse.execute(format!("DROP DATABASE IF EXISTS {db}")))?;
        }
        phases.push(Phase {
            name,
            measured,
            peaks_kb,
            drained,
        });
    }

    let seconds = cli.duration as f64;
    // What the store took, not only what the journal acknowledged: for
    // ClickHouse, the window's points over the window and the time its
    // journals then took to empty (a lower bound: the warm-up's points were
    // sent in that time too).
    let rate = |phase: &Phase| {
        let taking = seconds + phase.drained.map_or(0.0, |d| d.as_secs_f64());
        phase.measured.tally.histogram_points as f64 / taking
    };
    println!(
        "kuroko-load: stores compared over {}, {} in flight, {} hosts x {} transactions, {} s measured per phase, \
         reporters on CPUs {} (load average before: {load_before})",
        if cli.grpc { "OTLP/gRPC" } else { "OTLP/HTTP protobuf" },
        cli.concurrency,
        cli.hosts,
        cli.transactions_per_host,
        cli.duration,
        cli.reporter_cpus.as_deref().unwrap_or("any")
    );
    println!();
    println!(
        "  {:<24} {:>13} {:>13} {:>13} {:>19} {:>9} {:>9} {:>10} {:>22}",
        "",
        "acknowledged",
        "into store",
        "all points/s",
        "latency p50 / p99",
        "reporter",
        "others",
        "peak RSS",
        "journal sent"
    );
    for phase in &phases {
        let m = &phase.measured;
        let latency = &m.tally.latency_us;
        let others = m
            .machine_cpu
            .zip(m.client_cpu)
            .map(|(machine, client)| (machine - client - m.reporter_cpu.unwrap_or(0.0)).max(0.0));
        let peak = phase.peaks_kb.iter().flatten().max().copied();
        println!(
            "  {:<24} {:>13} {:>13} {:>13} {:>19} {:>9} {:>9} {:>10} {:>22}",
            phase.name,
            thousands(m.tally.histogram_points as f64 / seconds),
            thousands(rate(phase)),
            thousands(m.tally.points as f64 / seconds),
            if latency.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "{} / {}",
                    millis(latency.value_at_quantile(0.5)),
                    millis(latency.value_at_quantile(0.99))
                )
            },
            m.reporter_cpu.map_or("?".to_owned(), |c| format!("{c:.2} c")),
            others.map_or("?".to_owned(), |c| format!("{c:.2} c")),
            peak.map_or("?".to_owned(), megabytes),
            phase
                .drained
                .map_or("-".to_owned(), |d| format!("{:.1} s after the load", d.as_secs_f64())),
        );
        if !m.tally.errors.is_empty() {
            println!("  {:<24} errors: {:?}", "", m.tally.errors);
        }
    }
    println!();
    println!(
        "  (acknowledged, into store: histogram points/s answered, and taken by the store: for ClickHouse, \
         over the window and the time its journals then took to empty; all points/s: histograms and sums \
         answered; reporter: the reporters' CPU in cores; others: every other process, ClickHouse included)"
    );
    println!();
    println!("goals:");
    let goal = |label: &str, value: String, met: bool| println!("  {label:<50} {value:<22} {}", verdict(met));
    let (sqlite, one, two) = (rate(&phases[0]), rate(&phases[1]), rate(&phases[2]));
    goal(
        "ClickHouse ingest >= 80% of SQLite's (into store)",
        format!("{:.0}%", 100.0 * one / sqlite.max(1.0)),
        one >= 0.8 * sqlite,
    );
    goal(
        "2 replicas on one ClickHouse >= 1.6x one replica",
        format!("{:.2}x", two / one.max(1.0)),
        two >= 1.6 * one,
    );
    let peak = phases
        .iter()
        .flat_map(|p| p.peaks_kb.iter().flatten())
        .max()
        .copied()
        .unwrap_or(0);
    goal(
        &format!("reporter RSS < 500 MB at {} in flight", cli.concurrency),
        format!("peak {}", megabytes(peak)),
        peak < 500_000,
    );
    println!("  (load average after: {})", load_average());
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(url) = cli.compare_stores.clone() {
        return compare_stores(&cli, &url);
    }
    let mut spawned = if cli.spawn_reporter {
        let spawned = Spawned::start(
            cli.kuroko.as_deref(),
            cli.keep_store,
            cli.store.as_deref(),
            "reporter",
            cli.reporter_cpus.as_deref(),
        )?;
        eprintln!(
            "kuroko-load: spawned `kuroko serve` (pid {}): OTLP/HTTP on {}, OTLP/gRPC on {}, store in {}",
            spawned.pid(),
            spawned.http,
            spawned.grpc,
            spawned.dir.display()
        );
        Some(spawned)
    } else {
        None
    };
    let base = match (&spawned, &cli.target) {
        (Some(s), _) => format!("http://{}", if cli.grpc { s.grpc } else { s.http }),
        (None, Some(target)) => target.trim_end_matches('/').to_owned(),
        (None, None) if cli.grpc => "http://127.0.0.1:4317".to_owned(),
        (None, None) => "http://127.0.0.1:4318".to_owned(),
    };
    let target = if cli.grpc {
        Target::Grpc(base.clone())
    } else if base.ends_with("/v1/metrics") {
        Target::Http(base.clone())
    } else {
        Target::Http(format!("{base}/v1/metrics"))
    };

    // Unreachable? Say so before spending seconds on payloads.
    let url = reqwest::Url::parse(&base).with_context(|| format!("--target {base:?} is not a URL"))?;
    let host = url
        .host_str()
        .with_context(|| format!("--target {base:?} has no host"))?;
    let port = url
        .port_or_known_default()
        .with_context(|| format!("--target {base:?} has no port"))?;
    let addresses: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    let reachable = addresses
        .iter()
        .any(|a| std::net::TcpStream::connect_timeout(a, Duration::from_secs(3)).is_ok());
    if !reachable {
        bail!(
            "cannot reach {base}: nothing accepts connections on {host}:{port}. Start `kuroko serve` there, \
             point --target at a running reporter, or use --spawn-reporter"
        );
    }

    eprintln!(
        "kuroko-load: generating {} x {} requests of {} transactions each",
        cli.intervals, cli.hosts, cli.transactions_per_host
    );
    let generated = Instant::now();
    let pool = generate(&cli);
    let generation_seconds = generated.elapsed().as_secs_f64();
    let n = pool.len() as f64;
    let raw_bytes: usize = pool.iter().map(|p| p.raw.len()).sum();
    let gzip_bytes: usize = pool.iter().filter_map(|p| p.gzip.as_ref()).map(|p| p.len()).sum();
    let histograms_per_request = pool.iter().map(|p| p.histogram_points).sum::<u64>() as f64 / n;
    let points_per_request = pool.iter().map(|p| p.points).sum::<u64>() as f64 / n;

    let threads = cli.client_threads as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    eprintln!(
        "kuroko-load: {} s warm-up, then {} s at {} in flight against {}",
        cli.warmup,
        cli.duration,
        cli.concurrency,
        target.url()
    );
    let pool = Arc::new(pool);
    let reporters: Vec<u32> = spawned.iter().map(Spawned::pid).collect();
    let measured = runtime.block_on(load(&cli, std::slice::from_ref(&target), pool.clone(), &reporters));
    drop(runtime);

    // The reporter's memory, then stop it.
    let memory = spawned
        .as_ref()
        .map(|s| (vm_kb(s.pid(), "VmRSS:"), vm_kb(s.pid(), "VmHWM:")));
    let store_bytes = spawned.as_mut().map(Spawned::stop);
    let measured = measured?;

    eprintln!("kuroko-load: decoding the same payloads for the ceiling");
    let single = decode_ceiling(&pool, 1, true);
    let double = decode_ceiling(&pool, 2, true);
    let plain = cli.gzip.then(|| decode_ceiling(&pool, 1, false));

    let tally = &measured.tally;
    let seconds = cli.duration as f64;
    let histograms_per_second = tally.histogram_points as f64 / seconds;
    let transport = match (cli.grpc, cli.gzip) {
        (false, true) => "OTLP/HTTP protobuf, gzip",
        (false, false) => "OTLP/HTTP protobuf",
        (true, true) => "OTLP/gRPC, gzip",
        (true, false) => "OTLP/gRPC",
    };
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("  {label:<36} {value}\n"));
    println!("kuroko-load: {transport} -> {}", target.url());
    println!(
        "workload: {} hosts x {} transactions, {} intervals: {} requests pooled (built in {:.1} s); per request \
         {:.0} histogram points, {:.0} points in all, {:.1} KiB protobuf{}",
        cli.hosts,
        cli.transactions_per_host,
        cli.intervals,
        pool.len(),
        generation_seconds,
        histograms_per_request,
        points_per_request,
        raw_bytes as f64 / n / 1024.0,
        if cli.gzip {
            format!(", {:.1} KiB gzipped", gzip_bytes as f64 / n / 1024.0)
        } else {
            String::new()
        }
    );
    println!(
        "run: {} in flight, {} client thread(s), {} s warm-up, {} s measured",
        cli.concurrency, cli.client_threads, cli.warmup, cli.duration
    );
    println!();
    line("requests/s", thousands(tally.requests as f64 / seconds));
    line("histogram data points/s", thousands(histograms_per_second));
    line("all data points/s", thousands(tally.points as f64 / seconds));
    let busiest = measured.per_second.iter().copied().max().unwrap_or(0);
    let slowest = measured.per_second.iter().copied().min().unwrap_or(0);
    line(
        "histogram points/s, each second",
        format!("min {} / max {}", thousands(slowest as f64), thousands(busiest as f64)),
    );
    let latency = &tally.latency_us;
    line(
        "ingest latency p50 / p99 / max",
        if latency.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{} / {} / {}",
                millis(latency.value_at_quantile(0.5)),
                millis(latency.value_at_quantile(0.99)),
                millis(latency.max())
            )
        },
    );
    line(
        "errors",
        if tally.errors.is_empty() {
            "none".to_owned()
        } else {
            tally
                .errors
                .iter()
                .map(|(error, count)| format!("{error}: {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    line("points rejected (partial success)", thousands(tally.rejected as f64));
    if let Some(cpu) = measured.client_cpu {
        line("load generator CPU", format!("{cpu:.2} cores"));
    }
    if let Some(cpu) = measured.reporter_cpu {
        line("reporter CPU", format!("{cpu:.2} cores"));
    }
    let others = measured
        .machine_cpu
        .zip(measured.client_cpu)
        .map(|(machine, client)| (machine - client - measured.reporter_cpu.unwrap_or(0.0)).max(0.0));
    if let Some(others) = others {
        let label = if measured.reporter_cpu.is_some() {
            "other processes CPU (noise)"
        } else {
            "CPU of all but the load generator"
        };
        line(label, format!("{others:.2} cores"));
    }
    if let Some((rss, peak)) = memory {
        line(
            "reporter RSS at end / peak (VmHWM)",
            format!(
                "{} / {}",
                rss.map_or("?".to_owned(), megabytes),
                peak.map_or("?".to_owned(), megabytes)
            ),
        );
    }
    if let Some(bytes) = store_bytes {
        line("store on disk (db + WAL)", megabytes(bytes / 1_000));
    }
    let decode = if cli.gzip {
        "gunzip + ExportMetricsServiceRequest::decode"
    } else {
        "ExportMetricsServiceRequest::decode"
    };
    let ceiling = |c: (f64, f64, Option<f64>)| {
        let mut text = format!("{} histogram points/s, {} points/s", thousands(c.0), thousands(c.1));
        if let Some(others) = c.2.filter(|o| *o >= 0.05) {
            text.push_str(&format!(" (other processes busy: {others:.2} cores)"));
        }
        text
    };
    line("decode-only ceiling, 1 thread", ceiling(single));
    line("decode-only ceiling, 2 threads", ceiling(double));
    if let Some(plain) = plain {
        line("  the same without gunzip, 1 thread", ceiling(plain));
    }
    print!("{out}");
    println!("  (ceiling: {decode} of the same payloads, no network, no store; best of 3)");
    println!();
    println!("goals:");
    let goal = |label: &str, value: String, met: Option<bool>| {
        println!("  {label:<46} {value:<30} {}", met.map_or("", verdict));
    };
    goal(
        ">= 100,000 histogram points/s sustained",
        thousands(histograms_per_second),
        Some(histograms_per_second >= 100_000.0),
    );
    let ratio = histograms_per_second / double.0;
    goal(
        ">= 1/3 of the decode-only ceiling (2 threads)",
        format!("{ratio:.3} (of 1 thread's: {:.3})", histograms_per_second / single.0),
        Some(ratio >= 1.0 / 3.0),
    );
    match memory.and_then(|(_, peak)| peak) {
        Some(peak) => goal(
            "reporter resident memory < 500 MB",
            format!("peak {}", megabytes(peak)),
            Some(peak < 500_000),
        ),
        None => goal(
            "reporter resident memory < 500 MB",
            "(measured with --spawn-reporter)".to_owned(),
            None,
        ),
    }
    let noisy = [
        others.filter(|_| spawned.is_some()),
        single.2,
        double.2,
        plain.and_then(|p| p.2),
    ]
    .into_iter()
    .flatten()
    .any(|o| o > 0.25);
    if noisy {
        println!();
        println!(
            "warning: other processes used a noticeable share of this machine's CPU while measuring; \
             the figures above understate what it can do. Run again on a quiet machine."
        );
    }
    if tally.requests > 0 && tally.errors.values().sum::<u64>() == tally.requests {
        bail!("every measured request failed: {:?}", tally.errors);
    }
    Ok(())
}
