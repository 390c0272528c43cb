#!/usr/bin/env bash
# Runs every test: Rust unit + integration tests (incl. the kill -9 and concurrency tests), then the
# official Python SDK scenario (tests/sdk, lark-oapi installed into a cached venv under target/), then
# the web console in headless Chromium (tests/browser; screenshot at target/console-chats.png), then
# schemathesis fuzzing every operation of /openapi.json against the real binary (tests/fuzz).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --locked --bin larkstack
cargo test --locked
bash tests/sdk/run.sh
bash tests/browser/run.sh
bash tests/fuzz/run.sh
