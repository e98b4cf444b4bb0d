//! `kuroko demo`: Kuroko doing its whole job on this machine, with nothing
//! else installed, in about a minute.
//!
//! A new user decides in five minutes, so the demo shows everything at
//! once, in one folder (`./kuroko-demo/` by default) and one process:
//!
//! 1. a synthetic past for the fleet ([`backfill`]: the two ISO weeks
//!    before this one and this week so far, marked synthetic), so that
//!    week-over-week comparisons and the weekly report have something to
//!    compare;
//! 2. the reporter itself ([`crate::serve::start`]) on loopback ports, over
//!    the embedded store in that folder;
//! 3. a fleet of instrumented services ([`fleet`]: real agents exporting
//!    OTLP) under generated traffic, carrying on the past's story: a slow
//!    endpoint, a regression that began a week ago, a database-bound
//!    transaction and a recurring error on one host;
//! 4. the weekly report per team and the morning digest ([`reports`]),
//!    delivered to a mailbox folder and a local webhook log, since a demo
//!    has no mail server.
//!
//! It prints where to look, runs until Ctrl-C (or `--minutes`), then stops
//! everything in order (traffic, last exports, reporter) and says where the
//! data stays. The folder is the demo's own: a non-empty folder it did not
//! make is refused, and a previous demo's is started over.

pub mod backfill;
pub mod fleet;
pub(crate) mod reports;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{AuthConfig, Config, Secret};
use crate::deliver::DigestDelivery;
use crate::report::mail::{Security, SmtpConfig};

/// Marks a folder as the demo's own.
const MARKER: &str = ".kuroko-demo";
/// What the demo writes into its folder, and may delete to start over.
const OWN_FILES: [&str; 8] = [
    "kuroko.db",
    "kuroko.db-wal",
    "kuroko.db-shm",
    "kuroko.db-ingest",
    "mailbox",
    "reports",
    "webhook.log",
    "owners.toml",
];
/// The ingest token the demo's fleet sends.
const TOKEN: &str = "kuroko-demo";

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The folder holds something else.
    #[error("{0} is not empty and was not made by `kuroko demo`: choose another --dir, or empty it first")]
    NotADemoFolder(PathBuf),
    /// A demo is already running in the folder.
    #[error("a demo is already running in {0}: stop it first (Ctrl-C), or choose another --dir")]
    Running(PathBuf),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The reporter could not start.
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    /// Delivery could not be set up.
    #[error(transparent)]
    Deliver(#[from] crate::deliver::DeliverError),
    /// The fleet could not start.
    #[error("starting the demo fleet: {0}")]
    Fleet(String),
    /// A report could not be made.
    #[error("making the demo's reports: {0}")]
    Report(String),
    /// Ctrl-C came before the demo was up.
    #[error("interrupted")]
    Interrupted,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How to run the demo.
#[derive(Clone, Debug)]
pub struct Options {
    /// The demo's folder.
    pub dir: PathBuf,
    /// The reporter's HTTP port (OTLP/HTTP, web UI, API) on 127.0.0.1; 0
    /// for any free one. A busy port falls back to a free one.
    pub port: u16,
    /// Stop by itself after this many minutes; `None`: at Ctrl-C.
    pub minutes: Option<f64>,
    /// How often each host exports.
    pub export_interval: Duration,
    /// The command that runs `kuroko`, for the commands the demo suggests.
    pub program: String,
}

/// Where everything is, inside the folder.
struct Paths {
    dir: PathBuf,
    store: PathBuf,
    config: PathBuf,
    owners: PathBuf,
    mailbox: PathBuf,
    reports: PathBuf,
    webhook_log: PathBuf,
}

impl Paths {
    fn in_dir(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_owned(),
            store: dir.join("kuroko.db"),
            config: dir.join("kuroko.toml"),
            owners: dir.join("owners.toml"),
            mailbox: dir.join("mailbox"),
            reports: dir.join("reports"),
            webhook_log: dir.join("webhook.log"),
        }
    }
}

/// Progress on stderr: one line rewritten in place on a terminal, a line
/// per quarter otherwise.
struct Progress {
    terminal: bool,
    shown: Option<u64>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            shown: None,
        }
    }

    fn update(&mut self, what: &str, done: u64, total: u64) {
        let percent = done * 100 / total.max(1);
        let step = if self.terminal { 1 } else { 25 };
        if self.shown.is_some_and(|shown| percent < shown + step) && percent < 100 {
            return;
        }
        self.shown = Some(percent);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{what}: {percent:>3}%");
            if percent >= 100 {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{what}: {percent}%");
        }
        let _ = err.flush();
    }
}

/// Makes `dir` the demo's: creates it, or starts a previous demo's over;
/// refuses a folder with anything else in it. True when a previous demo
/// was replaced.
fn prepare(dir: &Path) -> Result<bool, DemoError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries.count(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
        Err(error) => return Err(io(dir)(error)),
    };
    let marker = dir.join(MARKER);
    let previous = entries > 0 && marker.exists();
    if entries > 0 && !previous {
        return Err(DemoError::NotADemoFolder(dir.to_owned()));
    }
    if previous {
        // The journal's lock is held while a demo runs.
        let lock = dir.join("kuroko.db-ingest").join("lock");
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&lock) {
            if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
                return Err(DemoError::Running(dir.to_owned()));
            }
        }
        for name in OWN_FILES.iter().chain(["kuroko.toml"].iter()) {
            let path = dir.join(name);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io(&path)(error)),
                _ => {}
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::write(
        &marker,
        "This folder is kuroko demo's: running `kuroko demo` here again starts it over.\n",
    )
    .map_err(io(&marker))?;
    Ok(previous)
}

/// A free loopback address: `port` if it is free, else any free one.
fn free_address(port: u16) -> Result<SocketAddr, DemoError> {
    let bind = |port| std::net::TcpListener::bind(("127.0.0.1", port)).and_then(|l| l.local_addr());
    bind(port).or_else(|_| bind(0)).map_err(io(Path::new("127.0.0.1")))
}

/// The reporter's configuration for the demo.
fn config(paths: &Paths, http: SocketAddr, grpc: SocketAddr) -> Config {
    Config {
        store: paths.store.clone(),
        grpc_listen: grpc,
        http_listen: http,
        auth: AuthConfig {
            ingest_token: Some(Secret::new(TOKEN)),
            ..AuthConfig::default()
        },
        owners: Some(paths.owners.clone()),
        base_url: format!("http://{http}"),
        smtp: Some(SmtpConfig {
            host: "localhost".to_owned(),
            port: None,
            security: Security::None,
            username: None,
            password_file: None,
            password_env: None,
            from: "Kuroko demo <kuroko@demo.invalid>".to_owned(),
            timeout_seconds: 30,
            file_dir: Some(paths.mailbox.clone()),
        }),
        digest: DigestDelivery {
            webhook_env: Some(reports::WEBHOOK_ENV.to_owned()),
            email: vec!["everyone@demo.invalid".to_owned()],
        },
        ..Config::default()
    }
}

/// `kuroko.toml` for `config`, so the CLI can be pointed at the demo.
fn config_toml(config: &Config) -> String {
    let path = |p: &Path| format!("{:?}", p.display().to_string());
    let smtp_dir = config
        .smtp
        .as_ref()
        .and_then(|s| s.file_dir.as_deref())
        .map(path)
        .unwrap_or_default();
    format!(
        "# Written by `kuroko demo`; use it with e.g. `kuroko report status --config <this file>`.\n\
         store = {store}\n\
         grpc_listen = \"{grpc}\"\n\
         http_listen = \"{http}\"\n\
         owners = {owners}\n\
         base_url = \"{base}\"\n\n\
         [auth]\n\
         ingest_token = \"{TOKEN}\"\n\n\
         # No mail server in a demo: each email is written as an .eml file instead.\n\
         [smtp]\n\
         host = \"localhost\"\n\
         security = \"none\"\n\
         from = \"Kuroko demo <kuroko@demo.invalid>\"\n\
         file_dir = {smtp_dir}\n\n\
         # The digest's chat messages go to the demo's local webhook (its URL is in this variable while the demo runs).\n\
         [digest]\n\
         webhook_env = \"{env}\"\n\
         email = [\"everyone@demo.invalid\"]\n",
        store = path(&config.store),
        grpc = config.grpc_listen,
        http = config.http_listen,
        owners = config.owners.as_deref().map(path).unwrap_or_default(),
        base = config.base_url,
        env = reports::WEBHOOK_ENV,
    )
}

fn write_file(path: &Path, text: &str) -> Result<(), DemoError> {
    std::fs::write(path, text).map_err(io(path))
}

/// Runs the demo; see the [module documentation](self).
pub async fn run(options: &Options) -> Result<(), DemoError> {
    let started = Instant::now();
    let paths = Paths::in_dir(&options.dir);
    if prepare(&paths.dir)? {
        eprintln!(
            "kuroko demo: starting over in {} (a previous demo's folder)",
            paths.dir.display()
        );
    }
    let (http, grpc) = (free_address(options.port)?, free_address(0)?);
    if options.port != 0 && http.port() != options.port {
        eprintln!(
            "kuroko demo: port {} is busy; using {} instead",
            options.port,
            http.port()
        );
    }
    // Absolute paths in the configuration, so that kuroko.toml works from anywhere.
    let absolute = Paths::in_dir(&std::fs::canonicalize(&paths.dir).map_err(io(&paths.dir))?);
    let config = config(&absolute, http, grpc);
    write_file(&paths.owners, &fleet::owners_toml())?;
    write_file(&paths.config, &config_toml(&config))?;

    // Ctrl-C from here on stops the demo cleanly, whatever it is doing.
    let cancel = Arc::new(AtomicBool::new(false));
    let (interrupted, mut interrupt) = tokio::sync::watch::channel(false);
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.store(true, Ordering::Relaxed);
                let _ = interrupted.send(true);
            }
        });
    }

    // 1. The past.
    let now = jiff::Timestamp::now();
    let window = backfill::Window::ending_at(now.as_second().div_euclid(60));
    let generator = backfill::generator(&window);
    let what = format!(
        "kuroko demo: backfilling {} days of synthetic history",
        (window.to - window.from + 1_439) / 1_440
    );
    let written = {
        let (store, generator, cancel) = (paths.store.clone(), generator.clone(), cancel.clone());
        tokio::task::spawn_blocking(move || {
            let mut progress = Progress::new();
            backfill::write(&store, &generator, &window, &cancel, |done, total| {
                progress.update(&what, done, total)
            })
        })
        .await
        .map_err(|e| DemoError::Fleet(e.to_string()))?
    };
    match written {
        Err(DemoError::Interrupted) => {
            println!(
                "kuroko demo: stopped while backfilling; the partial data stays in {} (run `kuroko demo` again to start over)",
                paths.dir.display()
            );
            return Ok(());
        }
        other => other?,
    };

    // 2. The reporter, 3. the fleet.
    eprintln!("kuroko demo: starting the reporter and the fleet");
    let running = crate::serve::start(&config).await?;
    let webhook = reports::WebhookLog::start(&paths.webhook_log).await?;
    let endpoint = format!("http://{}", running.http);
    let fleet = fleet::Fleet::start(
        &generator.models(),
        &generator.planted(),
        &fleet::Target {
            endpoint: &endpoint,
            token: TOKEN,
            interval: options.export_interval,
        },
    )?;
    print_ready(options, &paths, &running, &window, started.elapsed());

    // 4. The reports, while the fleet runs.
    let sending = {
        let (config, url, dir) = (config.clone(), webhook.url.clone(), paths.reports.clone());
        tokio::spawn(async move { reports::send(&config, url, &dir, now).await })
    };

    let until = options
        .minutes
        .map(|m| Duration::from_secs_f64((m * 60.0).clamp(0.0, 1e9)));
    let waited = async {
        match until {
            Some(until) => tokio::time::sleep(until).await,
            None => std::future::pending().await,
        }
    };
    let cancelled = async {
        while !*interrupt.borrow_and_update() {
            if interrupt.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = waited => println!("kuroko demo: {} minute(s) are up; stopping", options.minutes.unwrap_or(0.0)),
        () = cancelled => println!("kuroko demo: stopping (a few seconds more if the reporter is still rolling up the backfill)"),
    }

    // Stop in order: traffic and the hosts' last exports, the reports
    // under way, the reporter (which flushes the store), the webhook.
    fleet.stop().await;
    match sending.await {
        Ok(Ok(sent)) => {
            for failure in sent.failures() {
                println!("kuroko demo: not delivered: {failure}");
            }
        }
        Ok(Err(error)) => println!("kuroko demo: the reports failed: {error}"),
        Err(error) => println!("kuroko demo: the reports failed: {error}"),
    }
    running.stop().await;
    webhook.stop().await;
    println!(
        "kuroko demo: stopped; the data stays in {} (store {}). Run `kuroko demo` again to start over.",
        paths.dir.display(),
        paths.store.display()
    );
    Ok(())
}

/// Where to look.
fn print_ready(
    options: &Options,
    paths: &Paths,
    running: &crate::serve::Running,
    window: &backfill::Window,
    took: Duration,
) {
    let dir = paths.dir.display();
    let store = paths.store.display();
    let program = &options.program;
    let regression = jiff::Timestamp::from_second(window.regression_start * 60)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%a %d %b %H:%M")
                .to_string()
        })
        .unwrap_or_default();
    let teams: Vec<&str> = fleet::TEAMS.iter().map(|(team, _, _)| *team).collect();
    println!(
        "\nkuroko demo: ready in {:.1} s.\n\n\
         Web UI          http://{http}/\n\
         Try a query     {program} query regressions --store {store}\n\
         \x20               {program} query consumers --store {store} --since 1h\n\
         \x20               {program} sql --store {store} \"SELECT service, host, count(*) FROM series GROUP BY 1, 2\"\n\
         Weekly reports  {reports}/<team>/report.html for {teams}; the emails in {mailbox}/\n\
         Morning digest  {mailbox}/ and {webhook}\n\
         Configuration   {config} (use it with {program} report status --config {config})\n\n\
         The fleet: {services}, {hosts} hosts each ({host_example}…), exporting OTLP/HTTP to {http}\n\
         every {interval} s (OTLP/gRPC is on {grpc}). What to look for:\n\
         - a slow endpoint: shop-api GET /account/orders/export (and billing-worker render-invoice-pdf)\n\
         - a performance problem: its N+1 queries (12 x SELECT report_rows a run), first on the overview\n\
         - a regression: shop-api GET /products/{{id}}, p95 +40% since {regression}, a week ago, with shop-api {version}\n\
         \x20 (the web UI's Regressions page and `query regressions` compare the last 7 days with the 7 before;\n\
         \x20 `query regressions --service shop-api --since-deploy` compares around the deploy)\n\
         - a database-bound transaction: shop-api GET /account/payment-cards\n\
         - a recurring error on one host: shop-api-1 GET /orders/{{id}}, \"order <id> not found\"\n\
         History before now is synthetic (hosts synthetic-*; {marking}).\n\n\
         Press Ctrl-C to stop; the data stays in {dir}.",
        took.as_secs_f64(),
        http = running.http,
        grpc = running.grpc,
        reports = paths.reports.display(),
        mailbox = paths.mailbox.display(),
        webhook = paths.webhook_log.display(),
        config = paths.config.display(),
        teams = teams.join(", "),
        services = fleet::SERVICES.join(", "),
        hosts = fleet::HOSTS,
        host_example = fleet::live_host(fleet::SERVICES[0], 0),
        interval = options.export_interval.as_secs(),
        marking = window.marking(),
        version = fleet::version(fleet::SERVICES[0], true),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("kuroko-demo-{name}-{}", std::process::id()))
    }

    #[test]
    fn only_an_empty_or_previous_demo_folder_is_used() {
        let dir = temp("prepare");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!prepare(&dir).unwrap(), "a new folder");
        std::fs::write(dir.join("webhook.log"), "old\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "mine\n").unwrap();
        assert!(prepare(&dir).unwrap(), "a previous demo's");
        assert!(!dir.join("webhook.log").exists(), "the demo's own files go");
        assert!(dir.join("notes.txt").exists(), "nothing else does");

        let other = temp("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("thesis.tex"), "…").unwrap();
        assert!(matches!(prepare(&other), Err(DemoError::NotADemoFolder(_))));
        assert!(other.join("thesis.tex").exists());
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&other).unwrap();
    }

    #[test]
    fn the_written_configuration_is_the_one_in_force() {
        let paths = Paths::in_dir(Path::new("/tmp/kuroko-demo"));
        let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let grpc: SocketAddr = "127.0.0.1:4317".parse().unwrap();
        let config = config(&paths, http, grpc);
        let parsed = Config::parse(&config_toml(&config)).unwrap();
        assert_eq!(parsed, config);
    }
}
