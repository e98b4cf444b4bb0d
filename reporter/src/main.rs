//! `kuroko`, the reporter: where every agent's data will land.
//!
//! It will receive OTLP from Kuroko's agent and from any OpenTelemetry SDK,
//! store it, find slow endpoints and regressions, and report them by email,
//! chat and a web UI (`kuroko serve`, `kuroko query`, `kuroko report`,
//! `kuroko demo`). None of that exists yet: this binary only says so, and
//! points at what runs today.

use clap::Parser;

/// Kuroko's reporter: receives OTLP, stores it, finds slow endpoints and
/// regressions, and reports them to the teams that own them.
#[derive(Parser, Debug)]
#[command(
    name = "kuroko",
    version,
    after_help = "Not built yet: serve, query, report and demo come next.\n\
                  What runs today is the agent's example service:\n  \
                  cargo run --release -p kuroko-agent --example axum_service"
)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    Cli::parse();
    println!(
        "kuroko {}: the reporter has no commands yet.\n\
         To see the agent at work, run: cargo run --release -p kuroko-agent --example axum_service",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}
