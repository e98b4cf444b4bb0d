//! Export over OTLP: every interval, harvest and send; never block the host.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use kuroko_agent::{export::ExportConfig, Agent};
//!
//! let agent = Agent::default();
//! // OTLP/HTTP to localhost:4318 every 60 s, unless OTEL_* variables say otherwise.
//! let exporter = agent.export(ExportConfig::default().with_env())?;
//! // … serve …
//! exporter.shutdown().await; // sends the last interval, bounded by the timeout
//! # Ok(()) }
//! ```
//!
//! The exporter runs on the host's tokio runtime when started inside one,
//! else on a thread of its own with a small runtime. Each interval it
//! harvests the agent, encodes the harvest (`encode`), and queues it. Queued
//! intervals are sent oldest first, up to 10 merged in one request; a
//! collector that is down or slow leaves
//! them queued — at most `buffer_intervals`, then the oldest is dropped and
//! its points counted in `kuroko.agent.export.dropped_points` — and is retried
//! with exponential backoff and jitter. A request the collector refuses (4xx)
//! is logged and dropped, not retried forever. Problems are logged through
//! `tracing` at warn level, at most once a minute per kind, and counted in
//! the `kuroko.agent.*` metrics the agent sends about itself.

pub mod config;
pub mod encode;
mod env;
pub mod exponential;
mod tls;
mod transport;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::oneshot;

pub use config::{Compression, ExportConfig, ExportConfigError, Protocol, SignalConfig};
pub use encode::{Encoded, Encoder, ExportStats};

use crate::Agent;
use encode::{log_records, spans};
use transport::{SendError, Transport};

/// Longest pause between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Most queued intervals merged into one metrics request.
const MERGE_INTERVALS: usize = 10;
/// Longest the last flush at shutdown may take, even with a timeout of 0
/// ("no limit"): stopping a service must not hang on its collector.
const MAX_LAST_FLUSH: Duration = Duration::from_secs(60);
/// How often one kind of warning may be logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Counters shared between the export task and its handle.
#[derive(Default)]
struct Counters {
    dropped_points: AtomicU64,
    rejected_points: AtomicU64,
    failed_exports: AtomicU64,
    sent_requests: AtomicU64,
    queued: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ExportStats {
        ExportStats {
            dropped_points: self.dropped_points.load(Ordering::Relaxed),
            rejected_points: self.rejected_points.load(Ordering::Relaxed),
            failed_exports: self.failed_exports.load(Ordering::Relaxed),
        }
    }
}

/// A running exporter. Dropping it stops the export after a last flush in
/// the background; [`shutdown`](Self::shutdown) waits for that flush.
pub struct Exporter {
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    counters: Arc<Counters>,
    timeout: Duration,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Export counters since start.
    pub fn stats(&self) -> ExportStats {
        self.counters.snapshot()
    }

    /// Intervals waiting to be sent (at most `buffer_intervals`).
    pub fn queued_intervals(&self) -> u64 {
        self.counters.queued.load(Ordering::Relaxed)
    }

    /// Requests the collector accepted, since start.
    pub fn sent_requests(&self) -> u64 {
        self.counters.sent_requests.load(Ordering::Relaxed)
    }

    /// Harvests and sends the last interval, waiting at most the export
    /// timeout (the longest of the signals', 60 s at the most) plus a second.
    pub async fn shutdown(mut self) {
        if let Some(done) = self.request_stop() {
            let _ = tokio::time::timeout(self.timeout + Duration::from_secs(1), done).await;
        }
    }

    /// Like [`shutdown`](Self::shutdown), for code outside any async runtime.
    pub fn shutdown_blocking(mut self) {
        if let Some(mut done) = self.request_stop() {
            let deadline = Instant::now() + self.timeout + Duration::from_secs(1);
            while Instant::now() < deadline {
                match done.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(10)),
                    _ => return,
                }
            }
        }
    }

    fn request_stop(&mut self) -> Option<oneshot::Receiver<()>> {
        let stop = self.stop.take()?;
        let (reply, done) = oneshot::channel();
        stop.send(reply).ok()?;
        Some(done)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.request_stop();
    }
}

impl Agent {
    /// Starts exporting this agent's harvests over OTLP; see the
    /// [`export`](crate::export) module. Only one exporter should run per
    /// agent: each harvest goes to whoever takes it.
    pub fn export(&self, config: ExportConfig) -> Result<Exporter, ExportConfigError> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = oneshot::channel();
        let task = Task {
            agent: self.clone(),
            resource: config.resource(&self.config().service_name),
            started: SystemTime::now(),
            counters: counters.clone(),
            queue: VecDeque::new(),
            warnings: Warnings::default(),
            config: config.clone(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let transport = {
                    let _entered = runtime.enter();
                    Transport::new(&config)?
                };
                runtime.spawn(task.run(transport, stopped));
            }
            Err(_) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|_| ExportConfigError::Zero("runtime"))?;
                let transport = {
                    let _entered = runtime.enter();
                    Transport::new(&config)?
                };
                std::thread::Builder::new()
                    .name("kuroko-export".to_owned())
                    .spawn(move || runtime.block_on(task.run(transport, stopped)))
                    .map_err(|_| ExportConfigError::Zero("thread"))?;
            }
        }
        Ok(Exporter {
            stop: Some(stop),
            counters,
            timeout: config.longest_timeout().min(MAX_LAST_FLUSH),
        })
    }
}

/// One harvest, encoded, waiting to be sent.
struct Queued {
    metrics: Option<ExportMetricsServiceRequest>,
    logs: Option<ExportLogsServiceRequest>,
    traces: Option<ExportTraceServiceRequest>,
    points: u64,
}

/// Warnings logged at most once per [`WARN_EVERY`] per kind, with a count of
/// the ones held back.
#[derive(Default)]
struct Warnings {
    last: [Option<Instant>; 5],
    held_back: [u64; 5],
}

#[derive(Clone, Copy)]
enum Warning {
    Unreachable = 0,
    Refused = 1,
    Partial = 2,
    Dropped = 3,
    Tls = 4,
}

impl Warnings {
    fn warn(&mut self, kind: Warning, message: &str) {
        let (last, held_back) = (&mut self.last[kind as usize], &mut self.held_back[kind as usize]);
        if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            *held_back += 1;
            return;
        }
        *last = Some(Instant::now());
        let held = std::mem::take(held_back);
        tracing::warn!(target: "kuroko_agent::export", held_back = held, "{message}");
    }
}

struct Task {
    agent: Agent,
    config: ExportConfig,
    resource: Resource,
    started: SystemTime,
    counters: Arc<Counters>,
    queue: VecDeque<Queued>,
    warnings: Warnings,
}

impl Task {
    async fn run(mut self, mut transport: Transport, mut stop: oneshot::Receiver<oneshot::Sender<()>>) {
        let interval = self.config.harvest_interval();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => self.harvest(),
                _ = retry => {}
                reply = &mut stop => {
                    self.harvest();
                    let deadline = self.config.longest_timeout().min(MAX_LAST_FLUSH);
                    let _ = tokio::time::timeout(deadline, self.flush(&mut transport)).await;
                    if let Ok(reply) = reply {
                        let _ = reply.send(());
                    }
                    return;
                }
            }
            let flushed = self.flush(&mut transport).await;
            self.note_queue();
            match flushed {
                Ok(()) => {
                    failures = 0;
                    retry_at = None;
                }
                Err(()) => {
                    failures = failures.saturating_add(1);
                    retry_at = Some(tokio::time::Instant::now() + backoff(failures));
                }
            }
        }
    }

    /// Takes the agent's interval into the queue, dropping the oldest
    /// interval when the queue is full.
    fn harvest(&mut self) {
        let harvest = self.agent.harvest();
        let stats = self.counters.snapshot();
        let metrics = encode::metrics_request(
            &harvest,
            &self.resource,
            self.config.histogram_scale,
            stats,
            self.started,
        );
        let logs = encode::logs_request(&harvest, &self.resource);
        let traces = encode::traces_request(&harvest, &self.resource);
        let points =
            encode::data_points(&metrics) + logs.as_ref().map_or(0, log_records) + traces.as_ref().map_or(0, spans);
        self.queue.push_back(Queued {
            metrics: Some(metrics),
            logs,
            traces,
            points,
        });
        while self.queue.len() > self.config.buffer_intervals {
            if let Some(dropped) = self.queue.pop_front() {
                self.counters
                    .dropped_points
                    .fetch_add(dropped.points, Ordering::Relaxed);
                let message = format!(
                    "export buffer full ({} intervals): dropped the oldest interval's {} points",
                    self.config.buffer_intervals, dropped.points
                );
                self.warnings.warn(Warning::Dropped, &message);
            }
        }
        self.note_queue();
    }

    fn note_queue(&self) {
        self.counters.queued.store(
            self.queue.len().min(self.config.buffer_intervals) as u64,
            Ordering::Relaxed,
        );
    }

    /// Sends queued intervals oldest first; stops at the first retryable
    /// failure, leaving what is unsent queued.
    async fn flush(&mut self, transport: &mut Transport) -> Result<(), ()> {
        // Metrics first, queued intervals merged: after an outage the backlog
        // goes in a few requests, each point keeping its own time range.
        loop {
            let batch: Vec<usize> = (0..self.queue.len())
                .filter(|&i| self.queue[i].metrics.is_some())
                .take(MERGE_INTERVALS)
                .collect();
            let request = match batch.as_slice() {
                [] => break,
                [only] => self.queue[*only].metrics.take().unwrap_or_default(),
                _ => ExportMetricsServiceRequest {
                    resource_metrics: batch
                        .iter()
                        .filter_map(|&i| self.queue[i].metrics.as_ref())
                        .flat_map(|m| m.resource_metrics.iter().cloned())
                        .collect(),
                },
            };
            let outcome = transport.metrics(&request).await;
            if self.settle(outcome, encode::data_points(&request), "metrics").is_err() {
                if let [only] = batch.as_slice() {
                    self.queue[*only].metrics = Some(request);
                }
                return Err(());
            }
            for i in batch {
                self.queue[i].metrics = None;
            }
        }
        // Then errors and traces, interval by interval, oldest first.
        while let Some(mut front) = self.queue.pop_front() {
            if let Some(logs) = front.logs.take() {
                let outcome = transport.logs(&logs).await;
                if self.settle(outcome, log_records(&logs), "error log").is_err() {
                    front.logs = Some(logs);
                    self.queue.push_front(front);
                    return Err(());
                }
            }
            if let Some(traces) = front.traces.take() {
                let outcome = transport.traces(&traces).await;
                if self.settle(outcome, spans(&traces), "trace span").is_err() {
                    front.traces = Some(traces);
                    self.queue.push_front(front);
                    return Err(());
                }
            }
        }
        Ok(())
    }

    /// Books the outcome of one request: `Ok` when it is done with (accepted,
    /// or refused for good), `Err` when it should be retried.
    fn settle(&mut self, outcome: Result<transport::Accepted, SendError>, points: u64, what: &str) -> Result<(), ()> {
        match outcome {
            Ok(accepted) => {
                self.counters.sent_requests.fetch_add(1, Ordering::Relaxed);
                if accepted.rejected > 0 {
                    self.counters
                        .rejected_points
                        .fetch_add(accepted.rejected, Ordering::Relaxed);
                    let message = format!(
                        "collector rejected {} of {points} {what} points: {}",
                        accepted.rejected, accepted.message
                    );
                    self.warnings.warn(Warning::Partial, &message);
                }
                Ok(())
            }
            Err(SendError::Permanent(reason)) => {
                self.counters.failed_exports.fetch_add(1, Ordering::Relaxed);
                self.counters.rejected_points.fetch_add(points, Ordering::Relaxed);
                let message = format!("collector refused {points} {what} points, not retrying: {reason}");
                self.warnings.warn(Warning::Refused, &message);
                Ok(())
            }
            Err(SendError::Retryable(reason)) => self.retry_later(Warning::Unreachable, what, &reason),
            Err(SendError::Tls(reason)) => self.retry_later(Warning::Tls, what, &reason),
        }
    }
}

impl Task {
    /// Books a failure worth retrying; `Err` leaves the request queued.
    fn retry_later(&mut self, kind: Warning, what: &str, reason: &str) -> Result<(), ()> {
        self.counters.failed_exports.fetch_add(1, Ordering::Relaxed);
        let queued = self.queue.len() + 1;
        let message = format!("cannot export {what} ({queued} intervals queued, retrying): {reason}");
        self.warnings.warn(kind, &message);
        Err(())
    }
}

/// Exponential backoff from 1 s, doubling to [`MAX_BACKOFF`], with ±20% jitter
/// so a fleet that lost its collector does not come back in step.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1)
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(MAX_BACKOFF);
    let noise = {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(failures);
        hasher.finish() % 1_000
    };
    base.mul_f64(0.8 + 0.4 * noise as f64 / 1_000.0).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps_with_jitter() {
        for _ in 0..200 {
            for (failures, low, high) in [(1, 0.8, 1.2), (2, 1.6, 2.4), (4, 6.4, 9.6), (20, 48.0, 60.0)] {
                let pause = backoff(failures).as_secs_f64();
                assert!((low..=high).contains(&pause), "{failures} failures: {pause} s");
            }
        }
    }
}
