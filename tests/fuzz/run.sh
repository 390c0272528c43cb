#!/usr/bin/env bash
# Property-based fuzzing of the real larkstack binary with schemathesis, driven by the server's own
# OpenAPI document (GET /openapi.json). Fails on any 5xx reply, any reply whose content type the
# document does not promise, or any reply that does not match the documented envelope; then checks
# from the server's own /metrics that enough requests arrived and none ended in an internal error.
#
#   LARKSTACK_BIN        binary to test (default: ${CARGO_TARGET_DIR:-target}/debug/larkstack)
#   FUZZ_MAX_EXAMPLES    schemathesis --max-examples per operation (default 150)
#   FUZZ_SEED            schemathesis --seed (default: random; printed by schemathesis)
#   FUZZ_MIN_REQUESTS    the least requests /metrics must count (default 2000)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

schemathesis_version=4.32.5
venv="$(realpath -m "${CARGO_TARGET_DIR:-target}/fuzz-venv")"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
# Cached: install only when the venv lacks the pinned schemathesis.
if ! "$venv/bin/python" -c "
import importlib.metadata
assert importlib.metadata.version('schemathesis') == '$schemathesis_version'
" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

LARKSTACK_BIN="${LARKSTACK_BIN:-${CARGO_TARGET_DIR:-target}/debug/larkstack}"
if [[ ! -x "$LARKSTACK_BIN" ]]; then
    echo "fuzz: larkstack binary not found at $LARKSTACK_BIN (build it or set LARKSTACK_BIN)" >&2
    exit 1
fi

max_examples="${FUZZ_MAX_EXAMPLES:-150}"
min_requests="${FUZZ_MIN_REQUESTS:-2000}"
admin_token="fuzz-admin-$RANDOM$RANDOM"
work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The server's stdout goes through a FIFO: the first line names the address, and `cat` keeps
# draining the rest so the server never blocks on a full pipe.
mkfifo "$work/stdout"
"$LARKSTACK_BIN" serve --listen 127.0.0.1:0 --data-dir "$work/data" --admin-token "$admin_token" --rate-limits off \
    >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
exec 3<"$work/stdout"
if ! IFS= read -r -t 30 first_line <&3; then
    echo "fuzz: larkstack did not start" >&2
    cat "$work/stderr" >&2
    exit 1
fi
cat <&3 >/dev/null &
base="${first_line#larkstack listening on }"
if [[ "$base" == "$first_line" ]]; then
    echo "fuzz: unexpected first line: $first_line" >&2
    exit 1
fi
echo "fuzz: larkstack at $base"

# The demo app's tenant token, and seeded chats, users and tasks the fuzzer draws from part of
# the time (tests/fuzz/seed.py).
"$venv/bin/python" tests/fuzz/seed.py "$base" "$admin_token" "$work/tenant-token" "$work/schemathesis.toml"
tenant_token="$(cat "$work/tenant-token")"

# One worker: Python 3.11's ast module is not thread-safe, and hypothesis parses lambdas with it.
# Run from the scratch dir: schemathesis keeps a crash cache (.schemathesis/) in its working dir.
st=(env -C "$work" "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$base/openapi.json"
    --checks not_a_server_error,content_type_conformance,response_schema_conformance
    --max-examples "$max_examples" --workers 1 --request-timeout 10
    --generation-database none --no-color --suppress-health-check all --warnings off)
if [[ -n "${FUZZ_SEED:-}" ]]; then
    st+=(--seed "$FUZZ_SEED")
fi

started=$SECONDS
status=0
echo "fuzz: /open-apis with a tenant token"
"${st[@]}" --include-path-regex '^/open-apis/' --exclude-operation-id delete_chat \
    -H "Authorization: Bearer $tenant_token" || status=1

# Left out on purpose: fault presets answer 5xx and drop connections by design; loading a fixture
# or state and resetting wipe the directory and tokens mid-run.
echo "fuzz: control API and ops with the admin token"
"${st[@]}" --exclude-path-regex '^/open-apis/' -H "Authorization: Bearer $admin_token" \
    --exclude-operation-id add_fault --exclude-operation-id load_fixture --exclude-operation-id import_state \
    --exclude-operation-id reset_state --exclude-operation-id set_clock || status=1

# Last, on their own: disbanding ends the seeded chats the others work on, and moving the clock
# expires the tenant token.
echo "fuzz: disbanding chats, then the clock"
"${st[@]}" --include-operation-id delete_chat -H "Authorization: Bearer $tenant_token" || status=1
"${st[@]}" --include-operation-id set_clock -H "Authorization: Bearer $admin_token" || status=1

# The server's own count, independent of schemathesis: every request it answered, by Feishu code.
"$venv/bin/python" - "$base/metrics" "$min_requests" "$((SECONDS - started))" <<'EOF' || status=1
import re, sys, urllib.request

text = urllib.request.urlopen(sys.argv[1]).read().decode()
minimum, seconds = int(sys.argv[2]), sys.argv[3]
total, bad = 0, []
for line in text.splitlines():
    m = re.match(r'larkstack_requests_total\{(.*)\} (\d+)', line)
    if not m:
        continue
    total += int(m.group(2))
    code = re.search(r'code="(-?\d+)"', m.group(1)).group(1)
    # Code 1 is larkstack's internal error (HTTP 500); 5xx codes are control-API server errors.
    if code == "1" or 500 <= int(code) <= 599:
        bad.append(line)
print(f"fuzz: the server counted {total} requests in {seconds} s")
if total < minimum:
    print(f"fuzz: FAILED: fewer than {minimum} requests", file=sys.stderr)
    sys.exit(1)
if bad:
    print("fuzz: FAILED: internal errors:\n  " + "\n  ".join(bad), file=sys.stderr)
    sys.exit(1)
EOF

if [[ $status -ne 0 ]]; then
    echo "fuzz: FAILED (larkstack stderr follows)" >&2
    tail -n 50 "$work/stderr" >&2
fi
exit $status
