#!/usr/bin/env bash
# Runs every Kuroko test: unit, integration, doc tests, the end-to-end tests in
# tests/, and each benchmark once in test mode. Whatever the tests need beyond
# stable Rust is installed here first, so this works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python's official OTLP classes (opentelemetry-proto, with protobuf), which
# agent/tests/interop_python.rs decodes the agent's messages with
# (tests/python/check_otlp.py); and the official Python SDK with its OTLP
# exporters, with which reporter/tests/interop_python_sdk.rs,
# interop_python_exceptions.rs and interop_python_attribution.rs send to the
# reporter (tests/python/sdk_sender.py, sdk_exceptions.py and
# sdk_attribution.py); and aiosmtpd, the SMTP server that
# reporter/tests/weekly_mail.rs sends the weekly report to
# (tests/python/smtp_sink.py); and chdb-core, which embeds a current
# ClickHouse engine (26.9 when this was written), that the ClickHouse tests
# run on a second time below (tests/python/chdb_http.py serves it over
# ClickHouse's HTTP interface). One pip run, so that pip picks versions that
# go together. Skipped when already installed.
if ! python3 -c 'import opentelemetry.proto, google.protobuf, opentelemetry.sdk
import opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http
import aiosmtpd, chdb.session' 2>/dev/null; then
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        'opentelemetry-proto>=1.27' 'opentelemetry-sdk>=1.27' \
        'opentelemetry-exporter-otlp-proto-grpc>=1.27' 'opentelemetry-exporter-otlp-proto-http>=1.27' \
        'aiosmtpd>=1.4' 'chdb-core>=26.9'
fi

# The official Node.js OpenTelemetry SDK (sdk-node, auto-instrumentations-node,
# the OTLP exporters) and Express 5, with which reporter/tests/interop_node_sdk.rs
# instruments a real Node service (tests/node/service.js). The exact versions
# of tests/node/package-lock.json. Skipped when already installed.
if [ ! -d tests/node/node_modules ]; then
    npm ci --prefix tests/node --no-audit --no-fund
fi

# libfaketime, with which agent/tests/clock_jump.rs makes the wall clock jump
# under a child process. Debian's package; sudo when not root.
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libfaketime
fi

# Debian's ClickHouse server (18.16), which the ClickHouse tests
# (reporter/tests/support/clickhouse_server.rs) start on a free loopback port
# with a data folder of their own. Debian's package; sudo when not root. Its
# service is not needed (nor started here).
if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clickhouse-server
fi

# Debian's Chromium, which reporter/tests/ui_chromium.rs and email_links.rs drive headless
# (the DevTools protocol over --remote-debugging-pipe) to load every page of
# the web UI, and reporter/examples/ui_screenshots.rs uses for screenshots.
# Debian's package; sudo when not root.
if ! command -v chromium >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi

cargo test --workspace
# The agent beside tracing-opentelemetry (its `opentelemetry` feature), on
# its own: the workspace run above has the feature on only through the
# end-to-end tests' dependencies.
cargo test -p kuroko-agent --features opentelemetry --test opentelemetry --example opentelemetry_side_by_side
# The agent without its defaults: the core alone (no runtime, no feature),
# and the tower layer around a plain tower service without axum.
cargo test -p kuroko-agent --no-default-features
cargo test -p kuroko-agent --no-default-features --features tower --test tower_plain

# The ClickHouse store's tests again, on a current ClickHouse engine instead
# of Debian's 18.16: chDB behind tests/python/chdb_http.py (docs/clickhouse.md,
# "Which ClickHouse"). Schema creation and migration, writes, every read, the
# delivery ledger and replicas racing for it, error triage, deploys (each
# service version's earliest minute across replicas), retention (clickhouse_store),
# every API question against the embedded store (stores_agree), the Grafana
# dashboards' SQL, cumulative streams across replicas, a replica's journal
# replayed and sent again under the same deduplication tokens (stored once,
# roll-ups included, which 18.16 cannot do), reads across hosts from the
# roll-ups and their migrations (across_hosts): about five minutes on two
# cores. The rest passes there too but takes longer (every test binary that
# uses ClickHouse: KUROKO_TEST_CLICKHOUSE=chdb cargo test -p kuroko-reporter;
# the two-minute outage of clickhouse_journal runs on 18.16 only).
KUROKO_TEST_CLICKHOUSE=chdb cargo test -p kuroko-reporter --test clickhouse_store --test stores_agree \
    --test grafana_dashboards --test cumulative_replicas --test clickhouse_journal --test across_hosts \
    -- --skip clickhouse_stopped
KUROKO_TEST_CLICKHOUSE=chdb cargo test -p kuroko-reporter --test hostile_values -- clickhouse
cargo test -p kuroko-agent --benches
