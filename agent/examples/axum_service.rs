//! An instrumented axum service that prints its live percentiles.
//!
//! ```text
//! cargo run --release -p kuroko-agent --example axum_service
//! ```
//!
//! It serves a small card-payments API on 127.0.0.1:3000, timed by Kuroko's
//! tower layer, runs a background job timed through Kuroko's tracing layer,
//! drives itself with a built-in load generator (turn it off with
//! `--no-load` and use `curl` instead), and every few seconds prints each
//! transaction's count, error rate, percentiles and Apdex since the start.
//! `POST /cards/{id}/scan` is deliberately slow; `POST /payments` fails one
//! time in ten. Stop it with Ctrl-C.
//!
//! With `--export` (or `OTEL_EXPORTER_OTLP_ENDPOINT` set) it sends what it
//! records to a Kuroko reporter or any OTLP backend instead of printing it,
//! reading the standard `OTEL_*` variables (`OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES=host.name=web-1`, ...):
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
//!   cargo run --release -p kuroko-agent --example axum_service -- --export --export-every 5
//! ```
//!
//! `--regress-after 60` makes `GET /cards/{id}`'s database query twice as
//! slow after a minute: a regression to find.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use kuroko_agent::tower_layer::{CurrentTransaction, KurokoLayer};
use kuroko_agent::{
    clamp_quantile, tracing_layer, Agent, AgentConfig, CapturedError, HistogramSnapshot, SegmentKind, TransactionSpec,
};
use rand::Rng;
use rand_distr::{Distribution, LogNormal};
use tracing_subscriber::prelude::*;

/// An example service instrumented with Kuroko, printing its live percentiles.
#[derive(Parser, Debug)]
#[command(after_help = "Try: curl -X POST http://127.0.0.1:3000/cards/42/scan")]
struct Args {
    /// Address to serve on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Seconds between two printed tables.
    #[arg(long, default_value_t = 2)]
    every: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long = "for")]
    run_for: Option<u64>,
    /// Concurrent clients of the built-in load generator.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Serve only; send no traffic of our own.
    #[arg(long)]
    no_load: bool,
    /// Export over OTLP (configured by the OTEL_* variables) instead of
    /// printing; on by default when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long)]
    export: bool,
    /// Seconds between two exports (an agent's default is 60; shorter here,
    /// so that a short run shows up in the reporter while it runs).
    #[arg(long, default_value_t = 10)]
    export_every: u64,
    /// After this many seconds, GET /cards/{id}'s database query gets twice
    /// as slow.
    #[arg(long)]
    regress_after: Option<u64>,
}

/// When `GET /cards/{id}` starts to regress (`--regress-after`).
static REGRESS_AT: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// A latency drawn from a log-normal distribution with this median.
fn latency(median_ms: f64, sigma: f64) -> Duration {
    let distribution = LogNormal::new(median_ms.ln(), sigma).expect("valid log-normal parameters");
    Duration::from_secs_f64(distribution.sample(&mut rand::rng()).min(5_000.0) / 1_000.0)
}

async fn show_card(Path(id): Path<u64>, Extension(tx): Extension<CurrentTransaction>) -> String {
    let query = tx.segment(SegmentKind::Database, "SELECT cards").start();
    let regressed = REGRESS_AT.get().is_some_and(|at| Instant::now() >= *at);
    tokio::time::sleep(latency(if regressed { 6.0 } else { 3.0 }, 0.5)).await;
    drop(query);
    format!("card {id}\n")
}

async fn scan_card(Path(id): Path<u64>, Extension(tx): Extension<CurrentTransaction>) -> String {
    let ocr = tx.segment(SegmentKind::External, "POST ocr.internal/v1/scan").start();
    tokio::time::sleep(latency(350.0, 0.4)).await;
    drop(ocr);
    format!("scanned card {id}\n")
}

async fn pay(Extension(tx): Extension<CurrentTransaction>) -> (StatusCode, &'static str) {
    let charge = tx
        .segment(SegmentKind::External, "POST payments.internal/charges")
        .start();
    tokio::time::sleep(latency(40.0, 0.6)).await;
    drop(charge);
    if rand::rng().random_ratio(1, 10) {
        tx.capture_error(CapturedError::new("PaymentDeclined", "issuer declined the charge"));
        return (StatusCode::BAD_GATEWAY, "declined\n");
    }
    (StatusCode::CREATED, "paid\n")
}

/// Sends every `--export-every` seconds until the deadline or Ctrl-C, then
/// sends the last interval.
async fn export(agent: &Agent, args: &Args, deadline: Option<Instant>) -> anyhow::Result<()> {
    let config = kuroko_agent::export::ExportConfig::default()
        .with_interval(Duration::from_secs(args.export_every.max(1)))
        .with_env();
    let exporter = agent.export(config)?;
    println!("exporting every {} s", args.export_every.max(1));
    match deadline {
        Some(deadline) => tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    exporter.shutdown().await;
    println!("exported; stopped");
    Ok(())
}

/// A background job, timed through the tracing layer.
async fn settle_ledger() {
    loop {
        let job = tracing::info_span!(
            "settle",
            kuroko.transaction = "settle-ledger",
            kuroko.feature = "payments"
        );
        {
            let _job = job.enter();
            let _query = tracing::info_span!("UPDATE ledger", db.system = "postgresql").entered();
            std::thread::sleep(latency(8.0, 0.3));
        }
        drop(job);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn generate_load(base: String) {
    let client = reqwest::Client::new();
    loop {
        let (id, roll) = {
            let mut rng = rand::rng();
            (rng.random_range(1..10_000u32), rng.random_range(0..100u32))
        };
        let request = match roll {
            0..=69 => client.get(format!("{base}/cards/{id}")),
            70..=89 => client.post(format!("{base}/payments")),
            _ => client.post(format!("{base}/cards/{id}/scan")),
        };
        if request.send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Totals since the start, per transaction.
#[derive(Default)]
struct Totals {
    histogram: Option<HistogramSnapshot>,
    count: u64,
    errors: u64,
    max_ns: u64,
    apdex: (u64, u64, u64),
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn print_table(totals: &BTreeMap<String, Totals>, elapsed: Duration) {
    println!(
        "\n[{:>4.0}s] {:<26} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9} {:>6}",
        elapsed.as_secs_f64(),
        "transaction",
        "count",
        "err%",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "apdex"
    );
    for (name, t) in totals {
        let Some(h) = &t.histogram else { continue };
        let (s, tol, f) = t.apdex;
        let apdex = (s as f64 + tol as f64 / 2.0) / (s + tol + f).max(1) as f64;
        println!(
            "        {:<26} {:>7} {:>6.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6.2}",
            name,
            t.count,
            100.0 * t.errors as f64 / t.count.max(1) as f64,
            ms(clamp_quantile(h.value_at_quantile(0.50), 0, t.max_ns)),
            ms(clamp_quantile(h.value_at_quantile(0.95), 0, t.max_ns)),
            ms(clamp_quantile(h.value_at_quantile(0.99), 0, t.max_ns)),
            ms(t.max_ns),
            apdex
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let agent = Agent::new(AgentConfig::default().with_service_name("cards-api"))?;
    tracing_subscriber::registry()
        .with(tracing_layer::KurokoLayer::new(agent.clone()))
        .init();

    // The first registration fixes a transaction's feature.
    agent.register(TransactionSpec::web("GET", "/cards/{id}").feature("cards"));
    agent.register(TransactionSpec::web("POST", "/cards/{id}/scan").feature("card-scan"));
    agent.register(TransactionSpec::web("POST", "/payments").feature("payments"));

    let app = Router::new()
        .route("/cards/{id}", get(show_card))
        .route("/cards/{id}/scan", post(scan_card))
        .route("/payments", post(pay))
        .layer(KurokoLayer::new(agent.clone()));
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e} (try --addr 127.0.0.1:0)", args.addr))?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("listening on {base}");
    tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::spawn(settle_ledger());
    if !args.no_load {
        for _ in 0..args.clients {
            tokio::spawn(generate_load(base.clone()));
        }
    }

    let started = Instant::now();
    if let Some(after) = args.regress_after {
        let _ = REGRESS_AT.set(started + Duration::from_secs(after));
    }
    let deadline = args.run_for.map(|s| started + Duration::from_secs(s));
    if args.export || std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        return export(&agent, &args, deadline).await;
    }
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(args.every.max(1)));
    tick.tick().await;
    loop {
        let stop = tokio::select! {
            _ = tick.tick() => deadline.is_some_and(|d| Instant::now() >= d),
            _ = tokio::signal::ctrl_c() => true,
        };
        for tx in agent.harvest().transactions {
            let t = totals.entry(tx.meta.name.to_string()).or_default();
            match &mut t.histogram {
                Some(h) => h.merge(&tx.histogram)?,
                None => t.histogram = Some(tx.histogram.clone()),
            }
            t.count += tx.count;
            t.errors += tx.error_count;
            t.max_ns = t.max_ns.max(tx.max_ns);
            t.apdex.0 += tx.apdex.satisfied;
            t.apdex.1 += tx.apdex.tolerating;
            t.apdex.2 += tx.apdex.frustrated;
        }
        print_table(&totals, started.elapsed());
        if stop {
            println!("stopped after {:.0}s", started.elapsed().as_secs_f64());
            return Ok(());
        }
    }
}
