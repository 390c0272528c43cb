#!/usr/bin/env bash
# Runs the official-Node-SDK (@larksuiteoapi/node-sdk, pinned in package-lock.json) scenario
# against the real larkstack binary, with node's own test runner.
#
#   LARKSTACK_BIN   binary to test (default: ${CARGO_TARGET_DIR:-target}/debug/larkstack)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
here=tests/sdk-node

LARKSTACK_BIN="${LARKSTACK_BIN:-${CARGO_TARGET_DIR:-target}/debug/larkstack}"
if [[ ! -x "$LARKSTACK_BIN" ]]; then
    echo "run.sh: larkstack binary not found at $LARKSTACK_BIN (build it or set LARKSTACK_BIN)" >&2
    exit 1
fi
LARKSTACK_BIN="$(realpath "$LARKSTACK_BIN")"

# Cached: `npm ci` only when node_modules was not installed from this very package-lock.json.
stamp="$here/node_modules/.package-lock.sha256"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
fi

export LARKSTACK_BIN
# exec: the script exits with the test runner's own status.
exec node --test --test-reporter=spec "$here"/*.test.mjs
