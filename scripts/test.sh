#!/usr/bin/env bash
# Runs every test, twice: on the embedded default (SQLite), then on PostgreSQL + Redis.
#
# Each pass: Rust integration tests (incl. the kill -9 and concurrency tests), the official Python
# SDK scenario (tests/sdk, lark-oapi in a cached venv under target/), the official Node SDK scenario
# (tests/sdk-node, @larksuiteoapi/node-sdk pinned by its package-lock.json), the web console in headless
# Chromium (tests/browser; screenshot at target/console-chats.png), and schemathesis fuzzing of
# every operation of /openapi.json against the real binary (tests/fuzz). Unit tests and the
# multi-node tests (several processes on one PostgreSQL and one Redis) run once, in the first pass.
#
#   LARKSTACK_TEST_PG_ADMIN   PostgreSQL URL used to (re)create the test database
#                             (default postgres://postgres@127.0.0.1:5432/postgres)
#   LARKSTACK_TEST_REDIS      Redis for the second pass (default redis://127.0.0.1:6379)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

unset LARKSTACK_DATABASE LARKSTACK_DATABASE_SCHEMA LARKSTACK_REDIS
pg_admin="${LARKSTACK_TEST_PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}"
redis="${LARKSTACK_TEST_REDIS:-redis://127.0.0.1:6379}"

# step CMD…: runs CMD and says how long it took (CI should stay under 20 minutes in all).
step() {
    local started=$SECONDS
    "$@"
    echo "== took $((SECONDS - started)) s: $*"
}

step cargo build --locked --bin larkstack

echo "== pass 1: SQLite (the embedded default)"
step cargo test --locked
step bash tests/sdk/run.sh
step bash tests/sdk-node/run.sh
step bash tests/browser/run.sh
step bash tests/fuzz/run.sh

echo "== pass 2: PostgreSQL + Redis (every server on a schema of its own in a fresh database)"
psql "$pg_admin" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS larkstack_test WITH (FORCE)" -c "CREATE DATABASE larkstack_test"
export LARKSTACK_DATABASE="${pg_admin%/*}/larkstack_test" LARKSTACK_REDIS="$redis"
step cargo test --locked --test it -- --skip multinode
step bash tests/sdk/run.sh
step bash tests/sdk-node/run.sh
LARKSTACK_DATABASE_SCHEMA=browser step bash tests/browser/run.sh
LARKSTACK_DATABASE_SCHEMA=fuzz step bash tests/fuzz/run.sh
echo "== all tests passed in $SECONDS s"
