//! `kuroko`, the reporter's command line.

#![forbid(unsafe_code)]
// The doc comments here are `--help` text (clap), written for a terminal:
// `[smtp]` names a section of kuroko.toml, not a rustdoc link.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kuroko_reporter::api::{self, query::Format as QueryFormat, query::Question};
use kuroko_reporter::app::App;
use kuroko_reporter::config::Config;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::sql::Format;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::Store;

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
    /// Settings come from the TOML file given with --config, else named by
    /// KUROKO_CONFIG, as for every command (every key
    /// optional: store, grpc_listen, http_listen, max_body_bytes,
    /// rollup_interval_seconds, [limits], [retention], [auth], and for reports
    /// owners, base_url, [schedule], [delivery], [smtp], [digest], [[alerts]],
    /// [journal], [tls]; unknown keys are refused with their line), then from
    /// KUROKO_STORE, KUROKO_GRPC_LISTEN, KUROKO_HTTP_LISTEN,
    /// KUROKO_INGEST_TOKEN, KUROKO_QUERY_TOKEN, KUROKO_JOURNAL_FSYNC,
    /// KUROKO_JOURNAL_DIR, KUROKO_TLS_CERT_FILE, KUROKO_TLS_KEY_FILE and
    /// KUROKO_TLS_CLIENT_CA_FILE, then from the flags below. With [tls]
    /// cert_file and key_file both ports speak TLS only (docs/security.md). With
    /// `store = "clickhouse://host:8123/database"` (docs/clickhouse.md) a
    /// request is acknowledged once it is in this replica's own journal
    /// ([journal] dir) and sent to ClickHouse in blocks. With a token set,
    /// clients must send `authorization: Bearer <token>`. [limits] bounds
    /// every size a client controls (defaults suit a company's fleet;
    /// settings that would lose data are refused at start-up); each limit,
    /// its default and its counter in /metrics: docs/security.md. Roll-ups
    /// and retention run in the background; GET /metrics on the HTTP port
    /// reports the reporter's own health. Stop with Ctrl-C: requests under
    /// way finish, and everything acknowledged is in the store (on
    /// ClickHouse: what the journal holds is sent for up to ten seconds,
    /// and what is left is sent by the next start).
    #[command(after_help = "Example:\n  kuroko serve --store ./kuroko.db\n  \
                      OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 ./your-service\n\n\
                      A kuroko.toml:\n  store = \"/var/lib/kuroko/kuroko.db\"\n  [auth]\n  \
                      ingest_token_file = \"/run/secrets/kuroko-ingest\"\n  [retention]\n  \
                      minute_days = 8\n  hour_days = 90\n  day_days = 730")]
    Serve {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The store: a file, or clickhouse://host:8123/database (overrides the configuration).
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
        /// Most rows printed; past it the query stops and says so (exit 1). 0: no limit.
        #[arg(long, default_value_t = 100_000)]
        max_rows: u64,
        /// Longest the query may run, in seconds; then it is stopped and says so (exit 1). 0: no limit.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// The query, or `-` to read it from standard input.
        #[arg(allow_hyphen_values = true)]
        query: String,
    },
    /// Ask a question: slowest endpoints, where the time goes, time series,
    /// a transaction's breakdown, regressions, error groups, Apdex or
    /// performance problems (N+1, sequential calls, a dominant query).
    ///
    /// Answered from the store directly (--store, --config or KUROKO_STORE,
    /// as for `kuroko serve`; safe while a reporter runs on it), or by a
    /// running reporter's API (--server, with --token or KUROKO_QUERY_TOKEN
    /// when it requires one): both print the same. Windows: --since and
    /// --until take a duration before now (90m, 24h, 7d, 2w), an RFC 3339
    /// instant (2026-11-23T09:00:00Z) or a date (2026-11-23, UTC). Durations
    /// print humanised in tables (12.3 ms, 1.24 s) and in seconds in JSON and
    /// CSV. See docs/api.md for every parameter and the JSON shapes.
    #[command(after_help = "Examples:\n  \
        where does the time go this week:   kuroko query consumers --since 7d\n  \
        what got slower:                    kuroko query regressions\n  \
        and why, with the tests:            kuroko query regressions --explain\n  \
        why one was not called:             kuroko query regressions --explain --service api --transaction 'GET /orders'\n  \
        N+1 queries and other problems:     kuroko query problems --since 7d\n  \
        yesterday's errors:                 kuroko query errors --since 1d\n  \
        the slowest of one team, by p99:    kuroko query slowest --team search --by p99 --config kuroko.toml\n  \
        one transaction's hourly p95:       kuroko query timeseries --service api --transaction 'GET /cards/{id}' --step hour\n  \
        where its time goes:                kuroko query breakdown --service api --transaction 'GET /cards/{id}'\n  \
        as CSV from a running reporter:     kuroko query slowest --server http://kuroko:4318 --format csv > slowest.csv")]
    Query(Box<QueryArgs>),
    /// Triage an error group or a performance problem: resolve it, reopen it, ignore it, or assign it to a team.
    ///
    /// A group is named by its id, 16 hex digits: the `id` column of
    /// `kuroko query errors` (or `kuroko query problems`), the end of its web
    /// UI address (/errors/<id>, /problems/<id>). A resolved group that occurs again is shown as
    /// regressed; an ignored group is left out of the digest and the weekly
    /// email (for good, until --until, or until it occurs --count more
    /// times). Recorded in the store (--store, --config or KUROKO_STORE; safe
    /// while a reporter runs on it), or by a running reporter (--server,
    /// with --token or KUROKO_QUERY_TOKEN when it requires one).
    #[command(after_help = "Examples:\n  \
        kuroko query errors --since 1d                   (the id column names each group)\n  \
        kuroko errors resolve 3f9a0c2b5d7e1f48\n  \
        kuroko errors ignore 3f9a0c2b5d7e1f48 --until 14d\n  \
        kuroko errors ignore 3f9a0c2b5d7e1f48 --count 1000\n  \
        kuroko errors assign 3f9a0c2b5d7e1f48 payments --config kuroko.toml\n  \
        kuroko errors reopen 3f9a0c2b5d7e1f48 --server http://kuroko:4318")]
    Errors {
        #[command(subcommand)]
        action: ErrorsAction,
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
    #[cfg(feature = "demo")]
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

/// `kuroko query`'s options; each becomes the API parameter of the same
/// name (dashes as underscores), so both ways check them alike.
#[derive(clap::Args, Debug)]
struct QueryArgs {
    /// The question.
    #[arg(value_enum)]
    question: Question,
    /// Start of the window: 7d, 24h, 2026-11-23, 2026-11-23T09:00:00Z. Default: 7d (errors: 24h).
    #[arg(long)]
    since: Option<String>,
    /// End of the window, same forms. Default: now.
    #[arg(long)]
    until: Option<String>,
    /// Only this service.
    #[arg(long)]
    service: Option<String>,
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
    /// Only this deployment environment.
    #[arg(long)]
    environment: Option<String>,
    /// Only this transaction (breakdown: required, with --service).
    #[arg(long)]
    transaction: Option<String>,
    /// Only this feature (tagged by the agent or assigned in owners.toml).
    #[arg(long)]
    feature: Option<String>,
    /// Only what this team owns, per owners.toml (needs --config with `owners`).
    #[arg(long)]
    team: Option<String>,
    /// Ranking of slowest and consumers: p50, p95 (slowest's default), p99, average, apdex, time (consumers' default).
    #[arg(long)]
    by: Option<String>,
    /// One row per `transaction` (default) or per `feature`.
    #[arg(long)]
    group: Option<String>,
    /// Time series step: minute, hour or day. Default: fits the window.
    #[arg(long)]
    step: Option<String>,
    /// Most rows shown. Default: 20.
    #[arg(long)]
    limit: Option<String>,
    /// Regressions: also list `improvements`, `too_little_traffic`, or `all`.
    #[arg(long)]
    include: Option<String>,
    /// Regressions: the false discovery rate; a test's q-value (p adjusted
    /// across the answer) must be below this. Default: 0.01.
    #[arg(long)]
    p_value: Option<String>,
    /// Regressions: the smallest change that counts, 0.1 is 10%. Default: 0.1.
    #[arg(long)]
    min_change: Option<String>,
    /// Regressions: runs each period needs to be judged. Default: 100.
    #[arg(long)]
    min_count: Option<String>,
    /// Errors: compare with the `previous` window (default) or the same window a `week` earlier.
    #[arg(long)]
    compare: Option<String>,
    /// Regressions of one --service: from its latest deploy (a new `service.version`) until
    /// --until, against as long a window before it (the API's compare=deploy).
    #[arg(long, conflicts_with_all = ["compare", "baseline_since", "baseline_until", "since"])]
    since_deploy: bool,
    /// Errors and regressions: compare with this window instead (with --baseline-until).
    #[arg(long)]
    baseline_since: Option<String>,
    /// Errors and regressions: end of the baseline window.
    #[arg(long)]
    baseline_until: Option<String>,
    /// Breakdown: slowest kept traces listed. Default: 5.
    #[arg(long)]
    traces: Option<String>,
    /// Regressions: say why each row listed was or was not called ("not
    /// called: p95 +3.1% (-1.0% to +7.0%), q = 0.410, not below 0.01"), with
    /// both periods' runs (p50/p95/p99/mean, shares per duration band), the
    /// blocks, and each metric's test (t, df, p, q, interval, the buckets'
    /// resolution, per-block values); a finding's change is decomposed by
    /// segment, host and traffic mix. With --transaction (and --service),
    /// that transaction is shown whatever its verdict, unchanged included,
    /// judged with the others of the answer without --transaction.
    #[arg(long)]
    explain: bool,
    /// How to print: an aligned table, JSON as the API returns it, or CSV.
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    format: QueryFormat,
    /// Where the answer comes from.
    #[command(flatten)]
    source: Source,
}

impl QueryArgs {
    /// The options given, as API parameters.
    fn pairs(&self) -> Vec<(String, String)> {
        let options = [
            ("since", &self.since),
            ("until", &self.until),
            ("service", &self.service),
            ("host", &self.host),
            ("environment", &self.environment),
            ("transaction", &self.transaction),
            ("feature", &self.feature),
            ("team", &self.team),
            ("by", &self.by),
            ("group", &self.group),
            ("step", &self.step),
            ("limit", &self.limit),
            ("include", &self.include),
            ("p_value", &self.p_value),
            ("min_change", &self.min_change),
            ("min_count", &self.min_count),
            ("compare", &self.compare),
            ("baseline_since", &self.baseline_since),
            ("baseline_until", &self.baseline_until),
            ("traces", &self.traces),
        ];
        let mut pairs: Vec<(String, String)> = options
            .into_iter()
            .filter_map(|(key, value)| value.as_ref().map(|v| (key.to_owned(), v.clone())))
            .collect();
        if self.explain {
            pairs.push(("explain".to_owned(), "true".to_owned()));
        }
        if self.since_deploy {
            pairs.push(("compare".to_owned(), "deploy".to_owned()));
        }
        pairs
    }
}

/// Where `kuroko query` and `kuroko errors` read and record: a running
/// reporter (`--server`), else the store the configuration (or `--store`)
/// names.
#[derive(clap::Args, Debug)]
struct Source {
    /// Ask a running reporter, e.g. http://localhost:4318, instead of opening the store.
    #[arg(long, conflicts_with_all = ["store", "config"])]
    server: Option<String>,
    /// The reporter's query token (with --server).
    #[arg(long, env = "KUROKO_QUERY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// TOML configuration file: its `store` and `owners`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The store's file or ClickHouse URL (overrides the configuration).
    #[arg(long)]
    store: Option<PathBuf>,
}

/// What `kuroko errors` does to a group.
#[derive(Subcommand, Debug)]
enum ErrorsAction {
    /// Mark it fixed: if it occurs again it is shown as regressed.
    Resolve(ErrorsTarget),
    /// Open it again (after resolving or ignoring it).
    Reopen(ErrorsTarget),
    /// Leave it out of the digest and the weekly email.
    Ignore {
        #[command(flatten)]
        target: ErrorsTarget,
        /// Until this date (2026-12-31), instant (RFC 3339) or duration from now (14d).
        #[arg(long)]
        until: Option<String>,
        /// Until it occurs this many more times.
        #[arg(long)]
        count: Option<String>,
    },
    /// Assign it to a team of owners.toml (or to nobody with --nobody).
    Assign {
        #[command(flatten)]
        target: ErrorsTarget,
        /// The team, as [teams.NAME] in owners.toml.
        #[arg(required_unless_present = "nobody")]
        team: Option<String>,
        /// Take the assignment away.
        #[arg(long, conflicts_with = "team")]
        nobody: bool,
    },
}

/// Which group, and where its triage is recorded.
#[derive(clap::Args, Debug)]
struct ErrorsTarget {
    /// The group's id (16 hex digits).
    group: String,
    /// Where the answer comes from.
    #[command(flatten)]
    source: Source,
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

/// For a scheduler outside kuroko (cron, a Kubernetes CronJob): with
/// --send the delivery is claimed in the store's ledger, so it is never sent
/// twice, even with `kuroko serve` running on the same store. With --dry-run
/// it is written to --out for preview and sent to no one.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  kuroko report weekly --team payments --dry-run --out preview/ --period 2026-W47\n  \
                  kuroko report digest --dry-run --out preview/ --period 2026-11-29\n  \
                  kuroko report weekly --send"
)]
struct SendArgs {
    /// TOML configuration file (owners, [smtp], [digest], [schedule]).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Send it.
    #[arg(long, conflicts_with = "dry_run")]
    send: bool,
    /// Write it to --out instead (weekly: HTML, text and charts; digest:
    /// text, HTML and the chat payloads) and send nothing.
    #[arg(long, requires = "out")]
    dry_run: bool,
    /// The directory --dry-run writes into (created if missing).
    #[arg(long, requires = "dry_run")]
    out: Option<PathBuf>,
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

/// mimalloc rather than the system allocator: under ingest load glibc's
/// malloc and free (and its fastbin consolidation on every large buffer)
/// were 15% of the reporter's CPU. Alternating runs of `kuroko-load`: 8-18%
/// less CPU per request; peak RSS 80 -> 170-195 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `kuroko query … | head`: the reader has what it wanted.
        Err(error) if closed_pipe(&error) => std::process::ExitCode::SUCCESS,
        // What went wrong and why, never a stack trace: that is for panics
        // (`RUST_BACKTRACE`), not for a store that is not there.
        Err(error) => {
            eprintln!("{}", user_error(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `error` for a person: `Error: …`, then each cause on a line of its own.
fn user_error(error: &anyhow::Error) -> String {
    let mut text = format!("Error: {error}");
    let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
    if !causes.is_empty() {
        text.push_str("\n\nCaused by:");
        for (i, cause) in causes.iter().enumerate() {
            text.push_str(&format!("\n    {i}: {cause}"));
        }
    }
    text
}

/// Whether `error` comes from writing to a pipe whose reader has gone.
fn closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes a command's answer to stdout; an error (a closed pipe, most
/// often) is returned, not a panic as `print!` would.
fn say(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Logs go to stderr; stdout carries only what the command itself says.
    // A question's answer is the point of `kuroko query`, and the demo prints
    // its own progress: only warnings besides.
    let quiet = match cli.command {
        Command::Query(_) | Command::Errors { .. } => true,
        #[cfg(feature = "demo")]
        Command::Demo { .. } => true,
        _ => false,
    };
    let default_level = if quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
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
            // Where a person opens it: on every interface, this machine's name for itself.
            let ui_host = match running.http.ip() {
                ip if ip.is_unspecified() => "localhost".to_owned(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            // One write (scripts read the first line and may close the pipe),
            // and a reader that has gone does not stop the reporter.
            let _ = say(&format!(
                "kuroko: OTLP/gRPC on {}, OTLP/HTTP on {}, store {}{}\nkuroko: web UI and API on {}://{ui_host}:{}/\n",
                running.grpc,
                running.http,
                settings.store.display(),
                if running.tls { ", TLS on both ports" } else { "" },
                if running.tls { "https" } else { "http" },
                running.http.port()
            ));
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
            running.stop().await;
            let _ = say(&format!(
                "kuroko: stopped; the data stays in {}\n",
                settings.store.display()
            ));
            Ok(())
        }
        Command::Sql {
            config,
            store,
            format,
            max_rows,
            timeout,
            query,
        } => {
            let mut settings = Config::load(config.as_deref())?;
            settings.store = store.unwrap_or(settings.store);
            let query = if query == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the query from standard input")?
            } else {
                query
            };
            let limits = kuroko_reporter::store::sql::SqlLimits {
                max_rows,
                timeout: std::time::Duration::from_secs(timeout),
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let ran = kuroko_reporter::store::sql::run_to(&settings.store, &query, format, limits, &mut out);
            std::io::Write::flush(&mut out).context("writing the rows")?;
            Ok(ran?)
        }
        Command::Report { what } => report(what).await,
        Command::Query(args) => query(*args).await,
        Command::Errors { action } => triage(action).await,
        #[cfg(feature = "demo")]
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

/// `kuroko query`: the answer as JSON, from the store or a reporter, then
/// rendered the same way whichever it came from.
async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let pairs = args.pairs();
    let answer = match &args.source.server {
        Some(server) => {
            let body = fetch(server, args.question, &pairs, args.source.token.as_deref()).await?;
            serde_json::from_str(&body).with_context(|| format!("reading the answer of {server}"))?
        }
        None => {
            let mut settings = Config::load(args.source.config.as_deref())?;
            settings.store = args.source.store.clone().unwrap_or(settings.store);
            if args.team.is_some() && settings.owners.is_none() {
                return Err(no_owners(args.source.config.as_deref(), "--team"));
            }
            let store = open_store(&settings.store, false)?;
            let owners = match &settings.owners {
                Some(path) => Owners::load(path)?,
                None => Owners::empty(),
            };
            let app = App::new(store, std::sync::Arc::new(owners), settings.base_url.clone(), None)
                .with_problem_thresholds(settings.problems.clone());
            api::answer_now(&app, args.question, &pairs)
                .map_err(|e| anyhow::anyhow!(e.message()))?
                .1
        }
    };
    say(&api::render::render(args.question, &answer, args.format))
}

/// `kuroko errors`: records a decision about a group, in the store or by a
/// reporter, and says what it is now.
async fn triage(action: ErrorsAction) -> anyhow::Result<()> {
    let (name, target, pairs) = match action {
        ErrorsAction::Resolve(target) => ("resolve", target, Vec::new()),
        ErrorsAction::Reopen(target) => ("reopen", target, Vec::new()),
        ErrorsAction::Ignore { target, until, count } => {
            let pairs = [("until", until), ("count", count)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
                .collect();
            ("ignore", target, pairs)
        }
        ErrorsAction::Assign { target, team, .. } => {
            ("assign", target, vec![("team".to_owned(), team.unwrap_or_default())])
        }
    };
    let decision: serde_json::Value = match &target.source.server {
        Some(server) => {
            let url = format!(
                "{}/api/v1/errors/{}/{name}",
                server.trim_end_matches('/'),
                percent_encoding::utf8_percent_encode(&target.group, percent_encoding::NON_ALPHANUMERIC)
            );
            let (server, token) = (server.clone(), target.source.token.clone());
            let body = tokio::task::spawn_blocking(move || post_form(&server, &url, &pairs, token.as_deref()))
                .await
                .context("asking the reporter")??;
            serde_json::from_str(&body).context("reading the reporter's answer")?
        }
        None => {
            let mut settings = Config::load(target.source.config.as_deref())?;
            settings.store = target.source.store.clone().unwrap_or(settings.store);
            if name == "assign" && settings.owners.is_none() && pairs.iter().any(|(_, team)| !team.is_empty()) {
                return Err(no_owners(
                    target.source.config.as_deref(),
                    "assigning a group to a team",
                ));
            }
            let store = open_store(&settings.store, false)?;
            let owners = match &settings.owners {
                Some(path) => Owners::load(path)?,
                None => Owners::empty(),
            };
            let app = App::new(store, std::sync::Arc::new(owners), settings.base_url.clone(), None)
                .with_problem_thresholds(settings.problems.clone());
            let group = target.group.clone();
            let decision = tokio::task::spawn_blocking(move || api::decide_now(&app, &group, name, &pairs, "cli"))
                .await
                .context("recording the decision")??;
            serde_json::to_value(decision)?
        }
    };
    let text = |key: &str| {
        decision
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let team = match text("team") {
        team if team.is_empty() => "assigned to no team".to_owned(),
        team => format!("assigned to {team}"),
    };
    say(&format!("error group {}: {}, {team}\n", text("group"), text("status")))
}

/// POSTs `pairs` as a form to `url` of the reporter at `server`; its answer's body.
fn post_form(server: &str, url: &str, pairs: &[(String, String)], token: Option<&str>) -> anyhow::Result<String> {
    let agent = client(server)?;
    let mut request = agent.post(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut response = request
        .send_form(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|error| unreachable(server, error))?;
    answer_body(server, &mut response)
}

/// The HTTP client asking the reporter at `server`: statuses are answers;
/// an `https://` server is trusted through the system's store (or the
/// file `SSL_CERT_FILE` names).
fn client(server: &str) -> anyhow::Result<ureq::Agent> {
    let mut config = ureq::Agent::config_builder().http_status_as_error(false);
    if server.starts_with("https://") {
        config = config.tls_config(kuroko_reporter::tls::client_config()?);
    }
    Ok(config.build().into())
}

/// Why the reporter at `server` could not be asked, with what to do.
fn unreachable(server: &str, error: ureq::Error) -> anyhow::Error {
    let untrusted = server.starts_with("https://") && error.to_string().contains("certificate");
    let next = if untrusted {
        "its certificate is not trusted here: set SSL_CERT_FILE to the PEM file of the CA that signed it"
    } else {
        "is it running there?"
    };
    anyhow::Error::new(error).context(format!("asking the reporter at {server}; {next}"))
}

/// The body of the reporter's answer, or its `{"error": …}` as an error.
fn answer_body(server: &str, response: &mut ureq::http::Response<ureq::Body>) -> anyhow::Result<String> {
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer of {server}"))?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(body);
        anyhow::bail!("{server} answered {status}: {message}");
    }
    Ok(body)
}

/// Why a command that needs the teams of owners.toml has none, and how to
/// give it them: which configuration file was read, and how to pass one.
fn no_owners(config: Option<&std::path::Path>, what: &str) -> anyhow::Error {
    let read = match Config::file(config) {
        Some(file) => format!("the configuration file {} sets no `owners`", file.display()),
        None => "no configuration file was given".to_owned(),
    };
    anyhow::anyhow!(
        "{what} needs the teams of an owners.toml, and {read}: pass --config FILE (or set KUROKO_CONFIG=FILE) \
         whose `owners` key names it; the demo's is kuroko-demo/kuroko.toml"
    )
}

/// The store `location` names, as `kuroko serve` would open it: a
/// `clickhouse://` URL, else a SQLite file, which must exist unless `create`.
fn open_store(location: &std::path::Path, create: bool) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    use kuroko_reporter::store::clickhouse::ClickHouseStore;
    let text = location.to_string_lossy();
    if ClickHouseStore::is_url(&text) {
        return Ok(std::sync::Arc::new(ClickHouseStore::connect(&text)?));
    }
    if !create && !location.exists() {
        anyhow::bail!(
            "no store at {}: pass --store, or --config with a `store` key, or set KUROKO_STORE (or ask a reporter with --server)",
            location.display()
        );
    }
    let store = SqliteStore::open(location).with_context(|| format!("opening the store {}", location.display()))?;
    Ok(std::sync::Arc::new(store))
}

/// The JSON answer of the reporter at `server`.
async fn fetch(
    server: &str,
    question: Question,
    pairs: &[(String, String)],
    token: Option<&str>,
) -> anyhow::Result<String> {
    let url = format!("{}/api/v1/{}", server.trim_end_matches('/'), question.name());
    let (server, pairs, token) = (server.to_owned(), pairs.to_vec(), token.map(str::to_owned));
    tokio::task::spawn_blocking(move || ask(&server, &url, &pairs, token.as_deref()))
        .await
        .context("asking the reporter")?
}

/// [`fetch`]'s one exchange: blocking.
fn ask(server: &str, url: &str, pairs: &[(String, String)], token: Option<&str>) -> anyhow::Result<String> {
    let agent = client(server)?;
    let mut request = agent
        .get(url)
        .query_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .query("format", "json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().map_err(|error| unreachable(server, error))?;
    answer_body(server, &mut response)
}

/// How to run this `kuroko` again: `kuroko` when that is what the shell
/// finds, else the path it was started by (e.g. `target/release/kuroko`).
#[cfg(feature = "demo")]
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
    let (args, kind) = match what {
        ReportCommand::Status { config, days } => {
            let settings = Config::load(config.as_deref())?;
            let schedule = deliver::schedule::Schedule::from_config(&settings.schedule)?;
            let store = open_store(&settings.store, true)?;
            let since = jiff::Timestamp::now().as_second() - days.max(0) * 86_400;
            return say(&ledger::render_status(&store.ledger(since)?, &schedule.time_zone));
        }
        ReportCommand::Weekly(args) => (args, Report::Weekly),
        ReportCommand::Digest(args) => (args, Report::Digest),
    };
    if !args.send && !args.dry_run {
        anyhow::bail!("pass --send to deliver the {kind} report now, or --dry-run --out DIR to preview it");
    }
    let settings = Config::load(args.config.as_deref())?;
    if kind == Report::Weekly && settings.owners.is_none() {
        return Err(no_owners(args.config.as_deref(), "the weekly report"));
    }
    let period = args.period.as_deref().map(str::parse).transpose()?;
    let store = open_store(&settings.store, true)?;
    let delivery = deliver::Settings::from_config(&settings)?;
    if let (true, Some(out)) = (args.dry_run, &args.out) {
        let period = match period {
            Some(period) => period,
            None => {
                let latest = deliver::latest_period(&delivery, kind, jiff::Timestamp::now())?;
                eprintln!(
                    "kuroko: previewing the latest scheduled {kind} report, for {latest} (--period picks another: \
                     a date for a digest, a week like 2026-W47 for a weekly report)"
                );
                latest
            }
        };
        let written = deliver::write_preview(store.as_ref(), &delivery, kind, args.team.as_deref(), period, out)
            .map_err(|e| anyhow::anyhow!("previewing the {kind} report for {period}: {e}"))?;
        for path in written {
            say(&format!("{}\n", path.display()))?;
        }
        return Ok(());
    }
    let producer = deliver::analysis_producer_with(
        store.clone(),
        std::sync::Arc::new(delivery.owners.clone()),
        std::sync::Arc::new(delivery.problems.clone()),
    );
    let runner = deliver::Runner::new(store, delivery, producer, deliver::holder_id("cli"));
    let rows = runner
        .send_now(kind, args.team.as_deref(), period, args.force, jiff::Timestamp::now())
        .await?;
    if rows.is_empty() {
        return say("nothing sent: already sent or being sent (see `kuroko report status`; --force resends)\n");
    }
    let schedule = &runner.settings().schedule;
    say(&ledger::render_status(&rows, &schedule.time_zone))?;
    let failed = rows.iter().filter(|r| r.status != ledger::LedgerStatus::Sent).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} deliveries failed", rows.len());
    }
    Ok(())
}
