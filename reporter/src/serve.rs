//! `kuroko serve`: the receivers in front of the store, and the query API
//! (`/api/v1`) on the OTLP/HTTP port.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::app::App;
use crate::config::Config;
use crate::ingest::{grpc, http, Receiver};
use crate::owners::Owners;
use crate::store::clickhouse::ClickHouseStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// Why the reporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration could not be used.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// `owners.toml` is wrong: every problem with its file and line.
    #[error(transparent)]
    Owners(#[from] crate::owners::OwnersError),
    /// Delivery (schedule, owners, alerts) could not be set up.
    #[error(transparent)]
    Deliver(#[from] crate::deliver::DeliverError),
    /// `[tls]` could not be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The gRPC server refused its TLS configuration.
    #[error("OTLP/gRPC with TLS: {0}")]
    GrpcTls(#[source] tonic::transport::Error),
    /// An address could not be listened on.
    #[error("cannot listen on {address} ({what}); is another reporter or collector running there?")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Which server.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// A running reporter.
pub struct Running {
    /// Where OTLP/gRPC is served.
    pub grpc: SocketAddr,
    /// Where OTLP/HTTP is served.
    pub http: SocketAddr,
    /// Whether both ports speak TLS (`[tls]`).
    pub tls: bool,
    /// The receiver, with its counts.
    pub receiver: Arc<Receiver>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The store's background threads (roll-ups or retention, flushes),
    /// stopped in this order.
    background: Vec<Background>,
}

impl Running {
    /// Stops accepting, finishes the requests under way, and returns.
    pub async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for task in self.tasks {
            let _ = task.await;
        }
        for (stop, thread) in self.background {
            let _ = stop.send(());
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

async fn listener(address: SocketAddr, what: &'static str) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Listen { address, what, source })
}

/// Opens the store the configuration names (a `clickhouse://` URL, else the
/// embedded store's file) with its background work: roll-ups and retention
/// for the embedded store, retention for ClickHouse (whose roll-ups are
/// materialised views).
fn open_store(config: &Config) -> Result<(Arc<dyn Store>, Vec<Background>), ServeError> {
    let location = config.store.to_string_lossy();
    if ClickHouseStore::is_url(&location) {
        let store = Arc::new(ClickHouseStore::connect(&location)?);
        store.start_spool(&crate::store::clickhouse::SpoolSettings {
            dir: config.journal.dir.clone(),
            fsync: config.journal.fsync == crate::config::Fsync::Batch,
            max_bytes: config.journal.max_bytes,
        })?;
        let journal = std::path::absolute(&config.journal.dir).unwrap_or_else(|_| config.journal.dir.clone());
        tracing::info!(
            journal = %journal.display(),
            max_bytes = config.journal.max_bytes,
            "ClickHouse replica: a request is acknowledged once in this journal ([journal] dir), then sent to ClickHouse in blocks"
        );
        let sender = start_spool_sender(store.clone(), config)?;
        let retention = start_retention(store.clone(), config)?;
        return Ok((store, vec![sender, retention]));
    }
    let store = Arc::new(SqliteStore::open_to_serve(&config.store)?);
    store.set_min_free_bytes(config.limits.min_free_bytes);
    store.set_journal_fsync(config.journal.fsync == crate::config::Fsync::Batch)?;
    if let Some(free) = store
        .health()
        .free_bytes
        .filter(|free| *free < config.limits.min_free_bytes)
    {
        tracing::error!(
            free_bytes = free,
            min_free_bytes = config.limits.min_free_bytes,
            store = %config.store.display(),
            "starting on a nearly full disk: reads are served, writes are refused (503) until space is freed"
        );
    }
    let roller = start_roller(store.clone(), config)?;
    let flusher = start_flusher(store.clone(), config)?;
    Ok((store, vec![roller, flusher]))
}

/// A background thread and what stops it.
type Background = (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>);

/// Opens the store and starts both receivers.
pub async fn start(config: &Config) -> Result<Running, ServeError> {
    config.check()?;
    // Before the store: a wrong file is refused before anything starts.
    let handshake = std::time::Duration::from_secs(config.limits.header_timeout_seconds.max(1));
    let tls = crate::tls::load(&config.tls, handshake)?;
    let (store, mut background) = open_store(config)?;
    // Stopped last: its last pass reads what the others wrote at stopping
    // (ClickHouse's journal sent).
    background.push(start_sightings(store.clone(), config)?);
    let state = app(config, store.clone())?.with_tls(tls.is_some());
    let (delivery_stop, delivery_task) = start_delivery(store.clone(), config)?;
    let token = config.ingest_token()?;
    if token.is_none() {
        tracing::warn!(
            "no ingest token set: anyone who can reach the OTLP ports can write (set [auth] ingest_token_file)"
        );
    }
    let receiver = Arc::new(Receiver::new(store, config.limits.clone(), token)?);
    let grpc_listener = listener(config.grpc_listen, "OTLP/gRPC").await?;
    let http_listener = listener(config.http_listen, "OTLP/HTTP").await?;
    let (grpc_address, http_address) = (
        grpc_listener.local_addr().map_err(|source| ServeError::Listen {
            address: config.grpc_listen,
            what: "OTLP/gRPC",
            source,
        })?,
        http_listener.local_addr().map_err(|source| ServeError::Listen {
            address: config.http_listen,
            what: "OTLP/HTTP",
            source,
        })?,
    );

    let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
    let grpc_router = grpc::router(
        receiver.clone(),
        config.max_body_bytes,
        &config.limits,
        tls.as_ref().map(|tls| tls.grpc.clone()),
    )
    .map_err(ServeError::GrpcTls)?;
    let grpc_task = tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let shutdown = async {
            let _ = grpc_stopped.await;
        };
        if let Err(error) = grpc_router.serve_with_incoming_shutdown(incoming, shutdown).await {
            tracing::error!(%error, "the OTLP/gRPC server stopped");
        }
    });
    let (http_stop, http_stopped) = oneshot::channel::<()>();
    let throttle = Arc::new(crate::ui::throttle::LoginThrottle::new(
        crate::ui::throttle::LoginLimits {
            per_address: config.limits.max_login_failures_per_address,
            total: config.limits.max_login_failures,
            window: std::time::Duration::from_secs(60),
        },
    ));
    let extras = crate::ui::Extras {
        throttle: throttle.clone(),
        agents: receiver.agents.clone(),
    };
    // Everything that takes the query token counts its wrong guesses.
    let guarded = crate::self_metrics::router(
        receiver.clone(),
        throttle.clone(),
        state.clone(),
        config.auth.public_metrics,
    )
    .merge(crate::api::router(state.clone()))
    .merge(crate::ui::router_with(state.clone(), config.dashboards.clone(), extras))
    .layer(axum::middleware::from_fn_with_state(
        (state.clone(), throttle),
        crate::ui::throttle::guard,
    ));
    let app = http::router(receiver.clone(), config.max_body_bytes).merge(guarded);
    let http_receiver = receiver.clone();
    let acceptor = tls.as_ref().map(|tls| tls.http.clone());
    let http_task = tokio::spawn(async move {
        let shutdown = async {
            let _ = http_stopped.await;
        };
        crate::http_port::serve(http_listener, app, http_receiver, acceptor, shutdown).await;
    });
    tracing::info!(
        grpc = %grpc_address,
        http = %http_address,
        store = %config.store.display(),
        tls = tls.is_some(),
        client_certificates = tls.as_ref().is_some_and(|tls| tls.mutual),
        "receiving OTLP"
    );
    Ok(Running {
        grpc: grpc_address,
        http: http_address,
        tls: tls.is_some(),
        receiver,
        stops: vec![grpc_stop, http_stop, delivery_stop],
        tasks: vec![grpc_task, http_task, delivery_task],
        background,
    })
}

/// What the API and UI read: the store, `owners.toml` (refused with every
/// problem's file and line; patterns matching no stored transaction are
/// logged as warnings) and the query token.
fn app(config: &Config, store: Arc<dyn Store>) -> Result<App, ServeError> {
    let owners = match &config.owners {
        Some(path) => Owners::load(path)?,
        None => Owners::empty(),
    };
    let series: Vec<(String, String, String)> = store
        .series()?
        .into_iter()
        .map(|key| (key.service, key.transaction, key.feature))
        .collect();
    if !series.is_empty() {
        for warning in owners.unmatched_patterns(&series) {
            tracing::warn!("{warning}");
        }
    }
    let token = config.query_token()?;
    if token.is_none() {
        tracing::warn!(
            "no query token set: anyone who can reach the HTTP port can read the API and the web UI (set [auth] query_token_file)"
        );
    }
    Ok(App::new(store, Arc::new(owners), config.base_url.clone(), token)
        .with_problem_thresholds(config.problems.clone()))
}

/// Drops ClickHouse partitions past retention every `rollup_interval_seconds`
/// (every replica may: dropping a dropped partition does nothing).
fn start_retention(store: Arc<ClickHouseStore>, config: &Config) -> Result<Background, ServeError> {
    let retention = config.retention.clone();
    let every = std::time::Duration::from_secs(config.rollup_interval_seconds.max(1));
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("kuroko-retention".to_owned())
        .spawn(move || loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() / 60);
            match store.retain(&retention, now as i64) {
                Ok(0) => {}
                Ok(dropped) => tracing::info!(dropped, "dropped partitions past retention"),
                Err(error) => tracing::error!(%error, "retention failed; trying again next pass"),
            }
            if !matches!(
                stopped.recv_timeout(every),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            ) {
                return;
            }
        })
        .map_err(|source| ServeError::Listen {
            address: config.http_listen,
            what: "the retention thread",
            source,
        })?;
    Ok((stop, thread))
}

/// How often `kuroko serve` records the problems its kept traces show.
const SIGHTINGS_EVERY: std::time::Duration = std::time::Duration::from_secs(3_600);

/// Records when each performance problem was seen
/// ([`Analysis::record_sightings`](crate::analysis::Analysis::record_sightings)),
/// so that first seen outlives the kept traces: at start over the
/// `[problems] history_days` of traces kept, then every hour and at
/// shutdown from the start of the day the previous pass ran in.
fn start_sightings(store: Arc<dyn Store>, config: &Config) -> Result<Background, ServeError> {
    let thresholds = config.problems.clone();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("kuroko-problems".to_owned())
        .spawn(move || {
            let owners = Owners::empty();
            let analysis = crate::analysis::Analysis::new(store.as_ref(), &owners).with_problem_thresholds(&thresholds);
            let now = || jiff::Timestamp::now().as_second().div_euclid(60);
            let mut from = now() - thresholds.history_days * 1_440;
            loop {
                let at = now();
                match analysis.record_sightings(from, at + 1) {
                    Ok(groups) => {
                        tracing::debug!(groups, "recorded the performance problems seen");
                        from = at.div_euclid(1_440) * 1_440;
                    }
                    Err(error) => {
                        tracing::error!(%error, "recording performance problems failed; trying again next pass")
                    }
                }
                match stopped.recv_timeout(SIGHTINGS_EVERY) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => {
                        if let Err(error) = analysis.record_sightings(from, now() + 1) {
                            tracing::error!(%error, "recording performance problems at shutdown failed");
                        }
                        return;
                    }
                }
            }
        })
        .map_err(|source| ServeError::Listen {
            address: config.http_listen,
            what: "the performance problems thread",
            source,
        })?;
    Ok((stop, thread))
}

/// Sends a ClickHouse replica's journal to ClickHouse in blocks (see
/// `store/clickhouse/spool.rs`); once stopped, sends what is left for up to
/// ten seconds (the rest is replayed by the next start).
fn start_spool_sender(store: Arc<ClickHouseStore>, config: &Config) -> Result<Background, ServeError> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("kuroko-clickhouse-blocks".to_owned())
        .spawn(move || store.run_spool(&stopped, std::time::Duration::from_secs(10)))
        .map_err(|source| ServeError::Listen {
            address: config.http_listen,
            what: "the ClickHouse block writer",
            source,
        })?;
    Ok((stop, thread))
}

/// Rolls up and applies retention every `rollup_interval_seconds`, on a
/// thread of its own (its own connection: ingest goes on meanwhile).
fn start_roller(store: Arc<SqliteStore>, config: &Config) -> Result<Background, ServeError> {
    let mut roller = store.roller(config.retention.clone())?;
    let every = std::time::Duration::from_secs(config.rollup_interval_seconds.max(1));
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("kuroko-rollup".to_owned())
        .spawn(move || loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() / 60);
            // Roll what ingest has acknowledged so far (a failure is logged
            // by the store, once per spell).
            let _ = store.flush();
            // Roll-ups can wait, flushes of what was acknowledged cannot:
            // a pass (its rows, those across hosts, and the WAL they go
            // through) runs only while the disk holds the headroom twice
            // over, so that it spends the second share, not the flushes'.
            let low = crate::store::Store::health(store.as_ref()).rolls_wait();
            match if low {
                Ok(Default::default())
            } else {
                roller.run(now as i64)
            } {
                // A period still in quarantine was logged when it entered.
                Ok(pass) if pass.hours + pass.days + pass.deleted > 0 => tracing::info!(?pass, "rolled up"),
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "roll-up pass stopped; trying again next pass"),
            }
            match stopped.recv_timeout(every) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                _ => {
                    if let Err(error) = store.flush() {
                        tracing::error!(%error, "flushing at shutdown failed; the inbox is replayed at the next start");
                    }
                    return;
                }
            }
        })
        .map_err(|source| ServeError::Listen {
            address: config.http_listen,
            what: "the roll-up thread",
            source,
        })?;
    Ok((stop, thread))
}

/// Flushes acknowledged points to the store's file once they have waited
/// [`FLUSH_EVERY`](crate::store::sqlite::FLUSH_EVERY), on a thread of its
/// own: writes flush too, but only when one comes, so after a burst the
/// file (which `kuroko query` and `kuroko sql` read from other processes)
/// would otherwise lag until the next roll-up pass, up to a minute.
fn start_flusher(store: Arc<SqliteStore>, config: &Config) -> Result<Background, ServeError> {
    // Nothing waiting: look again this soon (a point arriving meanwhile is
    // flushed FLUSH_EVERY after it arrived, as the wait is then computed).
    const IDLE: std::time::Duration = std::time::Duration::from_secs(1);
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("kuroko-flush".to_owned())
        .spawn(move || loop {
            // While flushes fail (a full disk), one try per IDLE.
            let wait = match store.flush_failing() {
                true => IDLE,
                false => store.flush_due_in().unwrap_or(IDLE).min(IDLE),
            };
            if !matches!(
                stopped.recv_timeout(wait),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            ) {
                return;
            }
            // A failure is logged by the store, once per spell.
            let _ = store.flush_if_due();
        })
        .map_err(|source| ServeError::Listen {
            address: config.http_listen,
            what: "the flush thread",
            source,
        })?;
    Ok((stop, thread))
}

/// Sends scheduled reports and evaluates alerts once a minute (see
/// [`crate::deliver`]). Each pass runs on its own task, so a slow mail
/// server never delays the next minute; the ledger keeps overlapping passes
/// from sending anything twice. The content comes from the analysis layer
/// over the same store.
fn start_delivery(
    store: Arc<dyn Store>,
    config: &Config,
) -> Result<(oneshot::Sender<()>, tokio::task::JoinHandle<()>), ServeError> {
    let settings = crate::deliver::Settings::from_config(config)?;
    let sends = settings.smtp.is_some()
        || settings.digest.webhook_env.is_some()
        || settings
            .owners
            .teams()
            .any(|team| team.chat_webhook.is_some() || team.chat_webhook_env.is_some());
    if sends && settings.base_url.is_empty() {
        tracing::warn!(
            "no base_url set: links in emails and chat messages are paths without a host (/errors?…), which \
             readers cannot open (set base_url to the address people reach this web UI at, e.g. \
             https://kuroko.example.com)"
        );
    }
    let producer = crate::deliver::analysis_producer_with(
        store.clone(),
        Arc::new(settings.owners.clone()),
        Arc::new(settings.problems.clone()),
    );
    let runner = crate::deliver::Runner::new(store, settings, producer, crate::deliver::holder_id("serve"));
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let now = jiff::Timestamp::now();
            let pass = runner.clone();
            tokio::spawn(async move {
                let written = pass.tick(now).await;
                tracing::debug!(at = %now, written = written.len(), "delivery pass finished");
            });
            // Wake at the start of the next minute.
            let into_minute = u64::try_from(now.as_millisecond().rem_euclid(60_000)).unwrap_or(0);
            let wait = std::time::Duration::from_millis(60_000 - into_minute);
            tokio::select! {
                _ = &mut stopped => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    });
    Ok((stop, task))
}
