#!/usr/bin/env bash
# Runs every test: Rust unit + integration tests (incl. the kill -9 and concurrency tests), then the
# official Python SDK scenario (tests/sdk, lark-oapi installed into a cached venv under target/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --locked --bin larkstack
cargo test --locked
bash tests/sdk/run.sh
