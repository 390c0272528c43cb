#!/usr/bin/env bash
# Runs the web console's browser test: the real larkstack binary, driven through Debian's headless
# Chromium by playwright-core (pinned in package-lock.json; it downloads no browser).
#
#   LARKSTACK_BIN   binary to test (default: ${CARGO_TARGET_DIR:-target}/debug/larkstack)
#   CHROMIUM        browser to drive (default: /usr/bin/chromium, Debian's `chromium` package)
#
# Writes a screenshot of the chats page to target/console-chats.png.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
here=tests/browser

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
    echo "run.sh: Chromium not found at $CHROMIUM (apt-get install chromium, or set CHROMIUM)" >&2
    exit 1
fi

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
    (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
fi

export LARKSTACK_BIN CHROMIUM
# exec: the script exits with the test runner's own status.
exec node --test --test-reporter=spec "$here/console.test.mjs"
