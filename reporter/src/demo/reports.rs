//! The demo's reports, delivered where a laptop can show them: email as
//! `.eml` files in `mailbox/` (`[smtp] file_dir`, lettre's file transport),
//! the digest's chat messages appended to `webhook.log` by a tiny local
//! webhook, and each team's weekly report rendered into `reports/<team>/`.
//!
//! They go out once, right after start, through the same delivery runner
//! and ledger as `kuroko report … --send` (so the reporter's own schedule
//! does not send them again): the weekly report for the last full ISO week
//! (against the one before, both backfilled) and the digest for yesterday.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::{Timestamp, ToSpan};
use tokio::sync::oneshot;

use super::DemoError;
use crate::config::Config;
use crate::deliver::ledger::{LedgerEntry, LedgerStatus};
use crate::deliver::schedule::{Period, Report};
use crate::deliver::{self, Runner, Settings};
use crate::store::sqlite::SqliteStore;

/// The variable `[digest] webhook_env` names in the demo's configuration;
/// the demo hands its value to its own delivery runner.
pub(crate) const WEBHOOK_ENV: &str = "KUROKO_DEMO_DIGEST_WEBHOOK";

/// The local webhook: appends every JSON body posted to it as one line.
pub(crate) struct WebhookLog {
    /// Its URL.
    pub url: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookLog {
    /// Listens on a free loopback port, appending to `path`.
    pub(crate) async fn start(path: &Path) -> Result<WebhookLog, DemoError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| DemoError::Io {
                path: path.to_owned(),
                source,
            })?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| DemoError::Io {
                path: path.to_owned(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| DemoError::Io {
            path: path.to_owned(),
            source,
        })?;
        let app = axum::Router::new()
            .route("/digest", axum::routing::post(append))
            .with_state(Arc::new(Mutex::new(file)));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(%error, "the demo's webhook stopped");
            }
        });
        Ok(WebhookLog {
            url: format!("http://{address}/digest"),
            stop,
            task,
        })
    }

    /// Stops listening.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// One posted body, as one line; what is not JSON is refused.
async fn append(State(file): State<Arc<Mutex<std::fs::File>>>, body: Bytes) -> StatusCode {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut file = crate::sync::lock(&file);
    match writeln!(file, "{value}") {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What was sent.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    /// The ledger rows written: one per team and channel, and the digest's.
    pub deliveries: Vec<LedgerEntry>,
    /// The weekly report's preview folders, per team.
    pub previews: Vec<PathBuf>,
}

impl Sent {
    /// The deliveries that did not go out, with their errors.
    pub(crate) fn failures(&self) -> Vec<String> {
        self.deliveries
            .iter()
            .filter(|e| e.status != LedgerStatus::Sent)
            .map(|e| {
                format!(
                    "{} to {}: {}",
                    e.kind,
                    e.target,
                    e.error.as_deref().unwrap_or("not sent")
                )
            })
            .collect()
    }
}

/// Sends each team's weekly report for the last full week and the digest
/// for yesterday (UTC, the demo's schedule) as of `now`, delivering the
/// digest's chat messages to `webhook_url`, and writes each team's preview
/// under `reports_dir`.
pub(crate) async fn send(
    config: &Config,
    webhook_url: String,
    reports_dir: &Path,
    now: Timestamp,
) -> Result<Sent, DemoError> {
    // The reporter owns the store's ingest; this opens it for reading and
    // for the delivery ledger, as `kuroko report … --send` does.
    let store = Arc::new(SqliteStore::open(&config.store)?);
    let settings = Settings::from_config(config)?;
    let owners = settings.owners.clone();
    // The content: the same producer the reporter's schedule uses.
    let producer = deliver::analysis_producer(store.clone(), Arc::new(owners.clone()));
    let runner = Runner::new(store.clone(), settings.clone(), producer, deliver::holder_id("demo"))
        .with_env(move |name| (name == WEBHOOK_ENV).then(|| webhook_url.clone()));
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let week = Period::week_of(
        today
            .checked_sub(7.days())
            .map_err(|e| DemoError::Report(e.to_string()))?,
    );
    let yesterday = Period::Day(today.yesterday().map_err(|e| DemoError::Report(e.to_string()))?);
    let mut sent = Sent::default();
    sent.deliveries
        .extend(runner.send_now(Report::Weekly, None, Some(week), false, now).await?);
    sent.deliveries.extend(
        runner
            .send_now(Report::Digest, None, Some(yesterday), false, now)
            .await?,
    );
    for team in owners.teams() {
        let dir = reports_dir.join(&team.name);
        deliver::write_preview(store.as_ref(), &settings, Report::Weekly, Some(&team.name), week, &dir)
            .map_err(|e| DemoError::Report(e.to_string()))?;
        sent.previews.push(dir);
    }
    Ok(sent)
}
