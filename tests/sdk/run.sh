#!/usr/bin/env bash
# Runs the official-Python-SDK (lark-oapi) scenario tests against the real larkstack binary.
#
#   LARKSTACK_BIN   binary to test (default: ${CARGO_TARGET_DIR:-target}/debug/larkstack)
#   extra arguments are passed to pytest, e.g. `tests/sdk/run.sh -k external`
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

lark_oapi_version=1.7.5
venv="${CARGO_TARGET_DIR:-target}/sdk-venv"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
# Cached: install only when the venv lacks the pinned SDK or pytest.
if ! "$venv/bin/python" -c "
import importlib.metadata, lark_oapi, pytest, flask
assert importlib.metadata.version('lark-oapi') == '$lark_oapi_version'
" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "lark-oapi==$lark_oapi_version" pytest flask
fi

LARKSTACK_BIN="${LARKSTACK_BIN:-${CARGO_TARGET_DIR:-target}/debug/larkstack}"
if [[ ! -x "$LARKSTACK_BIN" ]]; then
    echo "run.sh: larkstack binary not found at $LARKSTACK_BIN (build it or set LARKSTACK_BIN)" >&2
    exit 1
fi
LARKSTACK_BIN="$(realpath "$LARKSTACK_BIN")"
export LARKSTACK_BIN

# exec: the script exits with pytest's own status.
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/sdk "$@"
