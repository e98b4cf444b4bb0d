//! `kuroko`, the reporter's command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kuroko_reporter::config::Config;
use kuroko_reporter::store::sql::Format;

/// Kuroko's reporter: receives OTLP from Kuroko's agent and any OpenTelemetry
/// SDK, and keeps it in an embedded store.
#[derive(Parser, Debug)]
#[command(name = "kuroko", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Receive OTLP metrics, traces and logs over gRPC (4317) and HTTP (4318) into the store.
    ///
    /// Settings come from the TOML file given with --config (every key
    /// optional: store, grpc_listen, http_listen, max_body_bytes,
    /// rollup_interval_seconds, [limits], [retention], [auth], and for reports
    /// owners, base_url, [schedule], [smtp], [digest], [[alerts]]; unknown keys
    /// are refused with their line), then from KUROKO_STORE,
    /// KUROKO_GRPC_LISTEN, KUROKO_HTTP_LISTEN and KUROKO_INGEST_TOKEN, then
    /// from the flags below. With a token set, clients must send
    /// `authorization: Bearer <token>`. Roll-ups and retention run in the
    /// background; GET /metrics on the HTTP port reports the reporter's own
    /// health. Stop with Ctrl-C: requests under way finish, and everything
    /// acknowledged is in the store.
    #[command(after_help = "Example:\n  kuroko serve --store ./kuroko.db\n  \
                      OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 ./your-service\n\n\
                      A kuroko.toml:\n  store = \"/var/lib/kuroko/kuroko.db\"\n  [auth]\n  \
                      ingest_token_file = \"/run/secrets/kuroko-ingest\"\n  [retention]\n  \
                      minute_days = 8\n  hour_days = 90\n  day_days = 730")]
    Serve {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The store's file (overrides the configuration).
        #[arg(long)]
        store: Option<PathBuf>,
        /// OTLP/gRPC address, e.g. 0.0.0.0:4317.
        #[arg(long)]
        grpc: Option<std::net::SocketAddr>,
        /// OTLP/HTTP address, e.g. 0.0.0.0:4318.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
    },
    /// Run one read-only SQL query against the store, with histogram functions and convenience views.
    ///
    /// The store is opened read-only, so this is safe while `kuroko serve`
    /// writes to it. The store's file comes from --store, else --config's
    /// `store`, else KUROKO_STORE, else ./kuroko.db.
    #[command(after_help = kuroko_reporter::store::sql::HELP)]
    Sql {
        /// TOML configuration file (its `store` key).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The store's file (overrides the configuration).
        #[arg(long)]
        store: Option<PathBuf>,
        /// How to print the rows.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// The query, or `-` to read it from standard input.
        #[arg(allow_hyphen_values = true)]
        query: String,
    },
    /// See Kuroko do its whole job on this machine: a reporter, a fleet of instrumented services under
    /// traffic, a synthetic past, and the weekly report and digest, in one folder.
    ///
    /// Writes everything into --dir (a new or empty folder, or a previous
    /// demo's, which is started over): the store, kuroko.toml, owners.toml,
    /// the emails as .eml files in mailbox/, the digest's chat messages in
    /// webhook.log, and each team's weekly report in reports/<team>/. The
    /// history before now is synthetic (hosts synthetic-*). Prints where to
    /// look; stop with Ctrl-C, the data stays in the folder.
    #[command(after_help = "Example:\n  cargo run --release -p kuroko-reporter -- demo")]
    Demo {
        /// The demo's folder.
        #[arg(long, default_value = "kuroko-demo")]
        dir: PathBuf,
        /// The reporter's HTTP port on 127.0.0.1 (OTLP/HTTP, web UI, API); 0 for any free one.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Stop by itself after this many minutes (fractions allowed) instead of at Ctrl-C.
        #[arg(long)]
        minutes: Option<f64>,
        /// Seconds between two exports of each host.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
        export_interval: u64,
    },
    /// Reports: send one now, or see what was sent.
    Report {
        #[command(subcommand)]
        what: ReportCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ReportCommand {
    /// What was sent when, what was late, and what failed with its error (the delivery ledger).
    Status {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Days back to show.
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// The weekly performance report, per team in the owners file.
    Weekly(SendArgs),
    /// The company-wide morning error digest.
    Digest(SendArgs),
}

/// For a scheduler outside kuroko (cron, a Kubernetes CronJob): the
/// delivery is claimed in the store's ledger, so it is never sent twice,
/// even with `kuroko serve` running on the same store.
#[derive(clap::Args, Debug)]
struct SendArgs {
    /// TOML configuration file (owners, [smtp], [digest], [schedule]).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Send it (required: there is no preview here yet).
    #[arg(long)]
    send: bool,
    /// Only this team (weekly).
    #[arg(long)]
    team: Option<String>,
    /// The period: an ISO week such as 2026-W11 (weekly) or a day such as
    /// 2026-03-15 (digest). Default: the latest scheduled one.
    #[arg(long)]
    period: Option<String>,
    /// Send even if the ledger says it was sent.
    #[arg(long)]
    force: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs go to stderr; stdout carries only what the command itself says.
    // The demo prints its own progress, so only warnings are logged there.
    let default_filter = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    match cli.command {
        Command::Serve {
            config,
            store,
            grpc,
            http,
        } => {
            let mut settings = Config::load(config.as_deref())?;
            settings.store = store.unwrap_or(settings.store);
            settings.grpc_listen = grpc.unwrap_or(settings.grpc_listen);
            settings.http_listen = http.unwrap_or(settings.http_listen);
            let running = kuroko_reporter::serve::start(&settings)
                .await
                .context("starting the reporter")?;
            println!(
                "kuroko: OTLP/gRPC on {}, OTLP/HTTP on {}, store {}",
                running.grpc,
                running.http,
                settings.store.display()
            );
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
            running.stop().await;
            println!("kuroko: stopped; the data stays in {}", settings.store.display());
            Ok(())
        }
        Command::Sql {
            config,
            store,
            format,
            query,
        } => {
            let mut settings = Config::load(config.as_deref())?;
            settings.store = store.unwrap_or(settings.store);
            let query = if query == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the query from standard input")?
            } else {
                query
            };
            print!("{}", kuroko_reporter::store::sql::run(&settings.store, &query, format)?);
            Ok(())
        }
        Command::Report { what } => report(what).await,
        Command::Demo {
            dir,
            port,
            minutes,
            export_interval,
        } => {
            let options = kuroko_reporter::demo::Options {
                dir,
                port,
                minutes,
                export_interval: std::time::Duration::from_secs(export_interval),
                program: program_name(),
            };
            kuroko_reporter::demo::run(&options).await?;
            Ok(())
        }
    }
}

/// How to run this `kuroko` again: `kuroko` when that is what the shell
/// finds, else the path it was started by (e.g. `target/release/kuroko`).
fn program_name() -> String {
    let invoked = std::env::args().next().unwrap_or_else(|| "kuroko".to_owned());
    if !invoked.contains(std::path::MAIN_SEPARATOR) {
        return invoked;
    }
    let here = std::env::current_dir().ok();
    let shown = here
        .as_deref()
        .and_then(|here| std::path::Path::new(&invoked).strip_prefix(here).ok())
        .map(|p| p.display().to_string())
        // A shell runs a relative path only when it has a separator.
        .map(|p| {
            if p.contains(std::path::MAIN_SEPARATOR) {
                p
            } else {
                format!(".{}{p}", std::path::MAIN_SEPARATOR)
            }
        });
    shown.unwrap_or(invoked)
}

async fn report(what: ReportCommand) -> anyhow::Result<()> {
    use kuroko_reporter::deliver::{self, ledger, schedule::Report};
    use kuroko_reporter::store::Store;
    let (args, kind) = match what {
        ReportCommand::Status { config, days } => {
            let settings = Config::load(config.as_deref())?;
            let schedule = deliver::schedule::Schedule::from_config(&settings.schedule)?;
            let store = kuroko_reporter::store::sqlite::SqliteStore::open(&settings.store)
                .with_context(|| format!("opening the store {}", settings.store.display()))?;
            let since = jiff::Timestamp::now().as_second() - days.max(0) * 86_400;
            print!("{}", ledger::render_status(&store.ledger(since)?, &schedule.time_zone));
            return Ok(());
        }
        ReportCommand::Weekly(args) => (args, Report::Weekly),
        ReportCommand::Digest(args) => (args, Report::Digest),
    };
    if !args.send {
        anyhow::bail!("pass --send to deliver the {kind} report now");
    }
    let settings = Config::load(args.config.as_deref())?;
    let period = args.period.as_deref().map(str::parse).transpose()?;
    let store = std::sync::Arc::new(
        kuroko_reporter::store::sqlite::SqliteStore::open(&settings.store)
            .with_context(|| format!("opening the store {}", settings.store.display()))?,
    );
    let runner = deliver::Runner::new(
        store,
        deliver::Settings::from_config(&settings)?,
        deliver::placeholder_producer(),
        deliver::holder_id("cli"),
    );
    let rows = runner
        .send_now(kind, args.team.as_deref(), period, args.force, jiff::Timestamp::now())
        .await?;
    if rows.is_empty() {
        println!("nothing sent: already sent or being sent (see `kuroko report status`; --force resends)");
        return Ok(());
    }
    let schedule = &runner.settings().schedule;
    print!("{}", ledger::render_status(&rows, &schedule.time_zone));
    let failed = rows.iter().filter(|r| r.status != ledger::LedgerStatus::Sent).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} deliveries failed", rows.len());
    }
    Ok(())
}
