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
    /// rollup_interval_seconds, [limits], [retention], [auth]; unknown keys
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr; stdout carries only what the command itself says.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
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
    }
}
