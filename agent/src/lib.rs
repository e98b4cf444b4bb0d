//! Kuroko's agent: times every transaction of a Rust service into HDR
//! histograms at a cost of nanoseconds.
//!
//! A *transaction* is a named unit of work — a web request
//! (`GET /cards/{id}`, always the route template, never the raw path) or a
//! background job — optionally tagged with a product feature, ended with an
//! [`Outcome`], and split into *segments* (database, external, code) that tell
//! where its time went.
//!
//! # Recording
//!
//! ```
//! use std::time::Duration;
//! use kuroko_agent::{Agent, SegmentKind, TransactionSpec};
//!
//! let agent = Agent::default();
//!
//! // A pre-resolved handle: the cheapest way to record (a few atomic adds).
//! let scan = agent.register(TransactionSpec::web("POST", "/cards/{id}/scan").feature("card-scan"));
//! scan.record(Duration::from_millis(140));
//!
//! // A guard that records when dropped, with a timed database segment.
//! {
//!     let mut run = scan.start();
//!     let _query = run.segment(SegmentKind::Database, "SELECT cards");
//!     run.set_status(201);
//! }
//!
//! // By name, when there is no handle at hand (a per-thread cache, no lock).
//! agent.record("nightly-rollup", Duration::from_secs(2));
//!
//! // Everything since the last harvest, with percentiles.
//! let harvest = agent.harvest();
//! let scans = harvest.transaction("POST /cards/{id}/scan").unwrap();
//! assert_eq!(scans.count, 2);
//! assert!(scans.histogram.value_at_quantile(0.99) >= 139_000_000);
//! ```
//!
//! Futures are timed with [`Transaction::time`] and
//! [`Transaction::time_result`]. With the `tracing` feature,
//! `tracing_layer::KurokoLayer` turns marked spans into transactions and
//! their children into segments; with the `tower` feature,
//! `tower_layer::KurokoLayer` times every request of a tower/hyper service
//! (the `axum` feature adds naming by axum's matched route); with `otlp`,
//! `Agent::export` sends everything to an OpenTelemetry collector or Kuroko's
//! reporter.
//!
//! # Features and stability
//!
//! The core (recording, harvest, snapshots, W3C trace context) needs no
//! feature and no async runtime. The public API uses this crate's own types
//! and the standard library's, with these exceptions, each the point of its
//! feature:
//!
//! | Feature | Adds | Foreign crates in the public API |
//! |---|---|---|
//! | `tracing` | `tracing_layer` | `tracing-subscriber` 0.3 and `tracing` 0.1: `KurokoLayer` implements `tracing_subscriber::Layer` |
//! | `tower` | `tower_layer` | `tower` 0.5 and `http` 1: `KurokoLayer`/`KurokoClientLayer` implement `tower::Layer`, their services `tower::Service<http::Request<B>>`; `KurokoLayer::route_fn` takes an `&http::Uri`, `OutgoingCall::headers`/`inject` an `http::HeaderMap` |
//! | `axum` (implies `tower`) | requests named by axum's `MatchedPath` | none beyond `tower`'s: axum is used, never exposed |
//! | `otlp` | `export` | none: `ExportConfig`, `Exporter`, `Encoder` and `Encoded` are this crate's; opentelemetry-proto, prost, tonic, reqwest and tokio stay private, so upgrading them is not a breaking change |
//! | `tls` (implies `otlp`) | `https://` endpoints | none (rustls stays private) |
//! | `opentelemetry` (implies `tracing`) | ids of `tracing-opentelemetry` spans | none (read inside the layers) |
//! | `hdrhistogram` | `HistogramSnapshot::to_hdrhistogram` | `hdrhistogram` 7's `Histogram<u64>` |
//!
//! The defaults are `tracing`, `axum`, `otlp` and `tls`. The config
//! structs ([`AgentConfig`], `export::ExportConfig`, `export::SignalConfig`)
//! are `#[non_exhaustive]`: build them from `default()` with their `with_*`
//! methods, so that a new setting is not a breaking change.
//!
//! # Cost and memory
//!
//! The recording path reads the monotonic clock (guards and spans only; the
//! invariant TSC where the CPU has one), then does one atomic counter
//! increment in the current thread's shard and adds to the sum, with a plain
//! store where the thread owns the shard (one thread per shard of a hot
//! series), else atomically; rare outcomes (slow, failed) add one more atomic
//! increment. No lock, no allocation, no system call. Every series shares one bucket [`Layout`]: 3,456 `u32` counters
//! (13.5 KiB) for the default 1 µs – 1 h range at 2 significant digits. Hot
//! series get one such shard per core (at most 8), so that threads do not
//! share cache lines; see `docs/architecture.md` for the budget.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod agent;
mod clock;
mod config;
mod errors;
pub mod exponential_scale;
mod layout;
#[cfg(feature = "opentelemetry")]
mod otel;
mod registry;
mod segments;
mod series;
mod setters;
mod snapshot;
mod sync;
pub mod trace_context;
mod traces;
mod transaction;

#[cfg(feature = "otlp")]
pub mod export;
#[cfg(feature = "tower")]
pub mod tower_layer;
#[cfg(feature = "tracing")]
pub mod tracing_layer;

pub use agent::Agent;
pub use config::{AgentConfig, ConfigError};
pub use errors::{CapturedError, ErrorSnapshot};
pub use layout::Layout;
pub use registry::{MAX_NAME_BYTES, OVERFLOW_TRANSACTION};
pub use segments::{SegmentSnapshot, OVERFLOW_SEGMENT};
pub use snapshot::{
    clamp_quantile, AgentStats, Apdex, Bucket, Harvest, HistogramSnapshot, LayoutMismatch, OutcomeCounts,
    TransactionSnapshot,
};
pub use trace_context::TraceContext;
pub use traces::{TraceSegment, TraceSnapshot};
pub use transaction::{
    Outcome, Segment, SegmentGuard, SegmentKind, Timed, Transaction, TransactionGuard, TransactionKind,
    TransactionMeta, TransactionSpec,
};

/// The README's examples, compiled and run as doc tests (they use the
/// default features).
#[cfg(all(doctest, feature = "tracing", feature = "axum", feature = "otlp"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
