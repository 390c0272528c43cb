#!/usr/bin/env bash
# Create-chat benchmark: larkstack (fresh data dir, durable commits, rate limits off) against a
# baseline server that only parses the same JSON body, same load, same run.
#
#   scripts/bench.sh [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-10}"
conns="${2:-64}"
members=50
larkstack_port=18810
baseline_port=18811

command -v wrk >/dev/null && command -v sqlite3 >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk sqlite3; }
cargo build --release --locked --bin larkstack --example bench_baseline
bin=target/release/larkstack
baseline=target/release/examples/bench_baseline

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# A directory with one tenant, one bot and enough users for 50-member chats.
{
    printf '[[tenants]]\nkey = "bench"\n\n[[apps]]\nkey = "bot"\ntenant = "bench"\nscopes = ["im:chat"]\n'
    for i in $(seq 0 $((members + 9))); do printf '\n[[users]]\nkey = "user%d"\ntenant = "bench"\n' "$i"; done
} > "$work/fixture.toml"
dir_json="$("$bin" directory --fixture "$work/fixture.toml")"
read -r app_id app_secret body < <(python3 -c '
import json, sys
d = json.load(sys.stdin)
app = d["apps"][0]
ids = [u["open_ids"]["bot"] for u in d["users"]][:'"$members"']
body = json.dumps({"name": "bench 群", "description": "load", "user_id_list": ids}, ensure_ascii=False, separators=(",", ":"))
print(app["app_id"], app["app_secret"], body)
' <<<"$dir_json")

"$bin" serve --listen "127.0.0.1:$larkstack_port" --data-dir "$work/data" --fixture "$work/fixture.toml" --rate-limits off >/dev/null &
pids+=($!)
"$baseline" "127.0.0.1:$baseline_port" >/dev/null &
pids+=($!)
for port in $larkstack_port $baseline_port; do
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
token="$(curl -s -X POST "http://127.0.0.1:$larkstack_port/open-apis/auth/v3/tenant_access_token/internal" \
    -d "{\"app_id\":\"$app_id\",\"app_secret\":\"$app_secret\"}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["tenant_access_token"])')"
check="$(curl -s -X POST "http://127.0.0.1:$larkstack_port/open-apis/im/v1/chats" -H "Authorization: Bearer $token" -d "$body" | python3 -c 'import json,sys;print(json.load(sys.stdin)["code"])')"
[[ "$check" == 0 ]] || { echo "bench: create-chat does not answer code 0 ($check)" >&2; exit 1; }

run() { # name port
    BENCH_BODY="$body" BENCH_TOKEN="$token" wrk -t2 -c"$conns" -d"${secs}s" --latency -s bench/create_chat.lua \
        "http://127.0.0.1:$2/open-apis/im/v1/chats" > "$work/$1.txt"
}
to_ms() { python3 -c '
import sys
v = sys.argv[1]
for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
    if v.endswith(unit):
        print(round(float(v[: -len(unit)]) * f, 2)); break
' "$1"; }
summary() { # name -> "rps p50 p99 errors"
    local f="$work/$1.txt"
    local rps p50 p99 errs
    rps="$(awk '/Requests\/sec/ {print $2}' "$f")"
    p50="$(to_ms "$(awk '$1=="50%" {print $2}' "$f")")"
    p99="$(to_ms "$(awk '$1=="99%" {print $2}' "$f")")"
    errs="$(awk '/Non-2xx|Socket errors/ {print}' "$f" | tr '\n' ' ')"
    echo "$rps $p50 $p99 ${errs:-none}"
}

echo "create-chat, ${members} members, ${conns} connections, ${secs}s each, keep-alive"
run baseline $baseline_port
run larkstack $larkstack_port
read -r b_rps b_p50 b_p99 b_err <<<"$(summary baseline)"
read -r l_rps l_p50 l_p99 l_err <<<"$(summary larkstack)"
chats="$(sqlite3 "$work/data/larkstack.db" 'select count(*) from chats' 2>/dev/null || echo '?')"
printf '%-10s %12s %10s %10s  %s\n' server req/s p50_ms p99_ms errors
printf '%-10s %12s %10s %10s  %s\n' baseline "$b_rps" "$b_p50" "$b_p99" "$b_err"
printf '%-10s %12s %10s %10s  %s\n' larkstack "$l_rps" "$l_p50" "$l_p99" "$l_err"
python3 -c "import sys; print('ratio larkstack/baseline: %.3f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$l_rps" "$b_rps"
echo "chats stored by larkstack: $chats (durable: WAL, synchronous=FULL)"
