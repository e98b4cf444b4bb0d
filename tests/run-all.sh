#!/usr/bin/env bash
# Runs every Kuroko test: unit, integration, doc tests, the end-to-end tests in
# tests/, and each benchmark once in test mode. Whatever the tests need beyond
# stable Rust is installed here first, so this works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# (Nothing beyond Rust is needed yet: later issues install their servers here.)

cargo test --workspace
cargo test -p kuroko-agent --benches
