//! Kuroko's reporter: receives OTLP from Kuroko's agent and from any
//! OpenTelemetry SDK, stores it, and answers questions about it.
//!
//! The data path inside the reporter: [`ingest`] (OTLP in, validated and
//! converted) → [`store`] (durable, merged per minute) → [`analysis`]
//! (slow endpoints, regressions, error groups, breakdowns) → [`report`] and
//! [`deliver`] (weekly email, morning digest, alerts) and the questions'
//! answers ([`api`], [`ui`]). [`histogram`] is the canonical histogram every
//! stage shares; [`serve`] runs the receivers; [`config`] reads
//! `kuroko.toml`; docs/architecture.md maps every module.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]
// The library is the reporter's inside, public only as far as its tests and
// fuzzing need (`unreachable_pub` keeps it so). Its docs are for the people
// who work on it and link to private items freely: read them with
// `cargo doc -p kuroko-reporter --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod analysis;
pub mod api;
pub mod app;
pub(crate) mod buckets;
pub mod config;
pub(crate) mod cumulative;
pub mod deliver;
#[cfg(feature = "demo")]
pub mod demo;
pub(crate) mod errors;
pub mod format;
pub mod histogram;
mod http_port;
pub mod ingest;
pub mod owners;
pub mod report;
pub(crate) mod self_metrics;
pub mod serve;
pub(crate) mod spell;
pub(crate) mod stable_hash;
pub mod store;
pub(crate) mod sync;
#[cfg(feature = "demo")]
pub mod synthetic;
pub mod tls;
pub mod ui;
