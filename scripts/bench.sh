#!/usr/bin/env bash
# Benchmarks larkstack (fresh data dir, durable commits, rate limits off) against a baseline server
# that only parses the same JSON body and returns a fixed answer (examples/bench_baseline.rs, same
# HTTP stack), with the same wrk load in the same run.
#
#   scripts/bench.sh [create] [seconds=10] [connections=64]
#       create-chat with 50 members; prints the SQLite WAL size after the load (`create 60 64`: 60 s)
#   scripts/bench.sh chats [seconds=10] [connections=64] [stored_chats=1000000]
#       get-chat and add-members on random chats, after storing `stored_chats` chats
#   scripts/bench.sh cluster [seconds=10] [connections=64]
#       create-chat with 50 members on SQLite, on PostgreSQL + Redis with 1 node, and with 2 nodes
#       (the connections split between them); PostgreSQL and Redis at 127.0.0.1 unless
#       LARKSTACK_BENCH_PG_ADMIN / LARKSTACK_BENCH_REDIS say otherwise
#   scripts/bench.sh events [seconds=10] [connections=64] [rate=1000]
#       create-chat on a server whose bot subscribes to every event type with a local webhook sink
#       (`bench_events sink`: encrypted deliveries) vs the same without subscribers; then users'
#       messages at `rate`/s over 50 chats (`bench_events post`) and, once every event has arrived
#       (5 s without one), the commit→sink p50/p99/max the sink saw (issue 13: p99 ≤ 50 ms at
#       1 000 events/s) and where the time went (`where_the_time_went`: larkstack's commits and
#       each delivery stage, from its /metrics)
#   scripts/bench.sh longconn [seconds=10] [clients=200] [rate=2000]
#       long connections (issue 15): `clients` self-built apps, each a bot with all group messages
#       in `event_mode = "long_connection"`, one chat per app with one user; one client per app
#       connected as the SDKs connect (`bench_events ws`: discovery, WebSocket, pbbp2 frames, an
#       ack per event); users' messages at `rate`/s spread over the chats for `seconds`; once every
#       event has arrived (5 s without one) prints
#       commit→ack p50/p99/max, events received vs posted, larkstack's RSS (idle with the
#       clients connected, peak during the load — VmHWM, reset before it — and after it), and
#       where the time went (as for `events`)
#   LARKSTACK_BENCH_OLD_BIN=… scripts/bench.sh compare-create [seconds=5] [connections=64] [rounds=6]
#   LARKSTACK_BENCH_OLD_BIN=… scripts/bench.sh compare-get [seconds=5] [connections=64] [stored_chats=1000000]
#       this build against another larkstack binary (e.g. an earlier commit's), both served at once
#       on fresh data dirs, in alternating short runs with the baseline (6 rounds; new and old swap
#       places every round); prints each round, each side's mean req/s, ratio to the baseline
#       and p99, and new/old (issue 12)
#
# The event tools are one Rust example, examples/bench_events.rs (single-threaded each, so they
# take little from the server on a small machine). Built into $CARGO_TARGET_DIR (default target/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scenario="${1:-create}"
secs="${2:-10}"
[[ "$scenario" == compare-* ]] && secs="${2:-5}"
conns="${3:-64}"
stored="${4:-1000000}"
members=50
# Ports: LARKSTACK_BENCH_PORTS (default 18810) and the next six, so that two benches can run at once.
larkstack_port="${LARKSTACK_BENCH_PORTS:-18810}"
baseline_port=$((larkstack_port + 1))
pg_port1=$((larkstack_port + 2)) pg_port2=$((larkstack_port + 3)) sub_port=$((larkstack_port + 4))
sink_port=$((larkstack_port + 5)) lc_port=$((larkstack_port + 6))

command -v wrk >/dev/null && command -v sqlite3 >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk sqlite3; }
# LARKSTACK_BENCH_BIN / LARKSTACK_BENCH_BASELINE: benchmark other builds (e.g. an earlier commit's,
# to compare before and after a change on one machine) instead of building this checkout.
# LARKSTACK_BENCH_TOOL: the event tools of another build.
release="${CARGO_TARGET_DIR:-target}/release"
if [[ -z "${LARKSTACK_BENCH_BIN:-}" ]]; then
    cargo build --release --locked --bin larkstack --example bench_baseline --example bench_events
elif [[ -z "${LARKSTACK_BENCH_TOOL:-}" ]] && [[ "$scenario" == events || "$scenario" == longconn ]]; then
    cargo build --release --locked --example bench_events
fi
bin="${LARKSTACK_BENCH_BIN:-$release/larkstack}"
baseline="${LARKSTACK_BENCH_BASELINE:-$release/examples/bench_baseline}"
tool="${LARKSTACK_BENCH_TOOL:-$release/examples/bench_events}"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# A directory with one tenant, one bot and enough users for 50-member chats.
{
    printf '[[tenants]]\nkey = "bench"\n\n[[apps]]\nkey = "bot"\ntenant = "bench"\nscopes = ["im:chat"]\n'
    for i in $(seq 0 $((members + 9))); do printf '\n[[users]]\nkey = "user%d"\ntenant = "bench"\n' "$i"; done
} > "$work/fixture.toml"
"$bin" directory --fixture "$work/fixture.toml" > "$work/directory.json"
py() { python3 -c "import json; d = json.load(open('$work/directory.json')); $1"; }
app_id="$(py 'print(d["apps"][0]["app_id"])')"
app_secret="$(py 'print(d["apps"][0]["app_secret"])')"
py 'print("\n".join(u["open_ids"]["bot"] for u in d["users"]))' > "$work/users.txt"
body_with() { py "print(json.dumps({'name': 'bench 群', 'description': 'load', 'user_id_list': [u['open_ids']['bot'] for u in d['users']][:$1]}, ensure_ascii=False, separators=(',', ':')))"; }

"$bin" serve --listen "127.0.0.1:$larkstack_port" --data-dir "$work/data" --fixture "$work/fixture.toml" --rate-limits off >/dev/null &
pids+=($!)
"$baseline" "127.0.0.1:$baseline_port" >/dev/null &
pids+=($!)
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; }
wait_port $larkstack_port; wait_port $baseline_port
token_of() { # PORT
    curl -s -X POST "http://127.0.0.1:$1/open-apis/auth/v3/tenant_access_token/internal" \
        -d "{\"app_id\":\"$app_id\",\"app_secret\":\"$app_secret\"}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["tenant_access_token"])'
}
export BENCH_TOKEN="$(token_of $larkstack_port)"

to_ms() { python3 -c 'import sys; sys.path.insert(0, "bench"); from wrk_stats import ms; print(round(ms(sys.argv[1]), 2))' "$1"; }
# wrk_run NAME PORT PATH SCRIPT → $work/NAME.txt
wrk_run() { wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$4" "http://127.0.0.1:$2$3" > "$work/$1.txt"; }
row() { # NAME
    local f="$work/$1.txt"
    printf '%-22s %12s %10s %10s  %s\n' "$1" "$(awk '/Requests\/sec/ {print $2}' "$f")" \
        "$(to_ms "$(awk '$1=="50%" {print $2}' "$f")")" "$(to_ms "$(awk '$1=="99%" {print $2}' "$f")")" \
        "$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' "$f")"
}
ratio() { python3 -c "import sys; print('ratio larkstack/baseline (%s): %.3f' % (sys.argv[3], float(sys.argv[1]) / float(sys.argv[2])))" \
    "$(awk '/Requests\/sec/ {print $2}' "$work/$1.txt")" "$(awk '/Requests\/sec/ {print $2}' "$work/$2.txt")" "$3"; }
# merge_rounds NAME N: NAME-1..N.txt (equal durations) → NAME.txt as `row` reads it: the mean
# req/s and the worst round's p50 and p99.
merge_rounds() { python3 bench/wrk_stats.py merge mean $(seq -f "$work/$1-%g.txt" "$2") > "$work/$1.txt"; }
header() { printf '%-22s %12s %10s %10s  %s\n' server req/s p50_ms p99_ms errors; }
count_chats() { sqlite3 "$work/data/larkstack.db" 'select count(*) from chats'; }
size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }
# where_the_time_went PORT ADMIN_TOKEN_FILE: larkstack's own metrics over the whole run, the store's
# commits and each delivery stage (mean, and the p50/p99 bucket bounds: powers of 2 from 0.1 ms).
where_the_time_went() {
    curl -s -H "Authorization: Bearer $(cat "$2")" "http://127.0.0.1:$1/metrics" | python3 -c '
import re, sys
hist = {}  # (name, labels) -> {"sum", "count", "buckets": [(le, n)]}
for line in sys.stdin:
    x = re.match(r"^larkstack_(\w+?)_(sum|count|bucket)(?:\{([^}]*)\})? (\S+)$", line)
    if not x:
        continue
    name, part, labels, v = x.group(1), x.group(2), x.group(3) or "", float(x.group(4))
    le = re.search(r"le=\"([^\"]+)\"", labels)
    key = (name, re.sub(r"le=\"[^\"]+\"", "", labels).strip(","))
    h = hist.setdefault(key, {"sum": 0.0, "count": 0.0, "buckets": []})
    if part == "bucket":
        h["buckets"].append((float(le.group(1)), v))
    else:
        h[part] += v
def summary(key):
    h = hist.get(key)
    if not h or not h["count"]:
        return "none"
    def q(p):
        return next((f"{1000 * le:g}" for le, n in h["buckets"] if n >= p * h["count"]), "inf")
    n, total = h["count"], h["sum"]
    return f"{int(n)}, mean {1000 * total / n:.1f} ms, p50 <= {q(0.5)} ms, p99 <= {q(0.99)} ms"
print("larkstack metrics: store commits", summary(("store_commit_duration_seconds", "")))
print("  commit->delivered", summary(("event_delivery_latency_seconds", "")))
for stage in ("fanned_out", "sent", "acked", "recorded"):
    print(f"  stage {stage:10}", summary(("event_delivery_stage_seconds", "stage=\"" + stage + "\"")))'
}
# drained PID: waits for an event receiver started with --idle-exit to stop by itself (every
# event has arrived), at most 120 s, then stops it.
drained() {
    ( sleep 120; kill -TERM "$1" 2>/dev/null ) &
    local dog=$!
    wait "$1" 2>/dev/null || true
    kill $dog 2>/dev/null || true
}

case "$scenario" in
create)
    export BENCH_BODY="$(body_with $members)"
    echo "create-chat, ${members} members, ${conns} connections, ${secs}s each, keep-alive"
    wrk_run baseline $baseline_port /open-apis/im/v1/chats bench/create_chat.lua
    wrk_run larkstack $larkstack_port /open-apis/im/v1/chats bench/create_chat.lua
    wal_after_load="$(size_of "$work/data/larkstack.db-wal")"
    sleep 2
    header; row baseline; row larkstack
    ratio larkstack baseline create-chat
    echo "chats stored by larkstack: $(count_chats) (durable: WAL, synchronous=FULL)"
    echo "WAL size: ${wal_after_load} bytes right after the ${secs}s load, $(size_of "$work/data/larkstack.db-wal") bytes after 2 s idle (database: $(size_of "$work/data/larkstack.db") bytes)"
    ;;
chats)
    # Store the chats first (3 users each), through the API.
    export BENCH_BODY="$(body_with 3)"
    while (( $(count_chats) < stored )); do
        wrk -t2 -c64 -d5s -s bench/create_chat.lua "http://127.0.0.1:$larkstack_port/open-apis/im/v1/chats" >/dev/null
    done
    echo "stored chats: $(count_chats)"
    # Measure the steady state: let the WAL of the load phase reach the database first.
    sqlite3 "$work/data/larkstack.db" 'PRAGMA wal_checkpoint(PASSIVE)' >/dev/null
    sqlite3 "$work/data/larkstack.db" "select chat_id from chats where seq in (select abs(random()) % (select max(seq) from chats) + 1 from generate_series(1, 20000))" > "$work/ids.txt" 2>/dev/null \
        || sqlite3 "$work/data/larkstack.db" "select chat_id from chats order by random() limit 20000" > "$work/ids.txt"
    export BENCH_IDS="$work/ids.txt" BENCH_USERS="$work/users.txt"
    echo "get-chat and add-members (1 user) on random chats of $(wc -l < "$work/ids.txt") sampled, ${conns} connections, ${secs}s each"
    BENCH_MODE=get wrk_run baseline-get $baseline_port / bench/random_chat.lua
    BENCH_MODE=get wrk_run larkstack-get $larkstack_port / bench/random_chat.lua
    BENCH_MODE=add wrk_run baseline-add $baseline_port / bench/random_chat.lua
    BENCH_MODE=add wrk_run larkstack-add $larkstack_port / bench/random_chat.lua
    header; row baseline-get; row larkstack-get; row baseline-add; row larkstack-add
    ratio larkstack-get baseline-get get-chat
    ratio larkstack-add baseline-add add-members
    ;;
cluster)
    export BENCH_BODY="$(body_with $members)"
    pg_admin="${LARKSTACK_BENCH_PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}"
    psql "$pg_admin" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS larkstack_bench WITH (FORCE)" -c "CREATE DATABASE larkstack_bench"
    redis="${LARKSTACK_BENCH_REDIS:-redis://127.0.0.1:6379}"
    redis-cli -u "$redis" --scan --pattern 'larkstack:bench:*' | xargs -r redis-cli -u "$redis" del >/dev/null
    shared=(--database "${pg_admin%/*}/larkstack_bench" --database-schema bench --redis "$redis"
            --fixture "$work/fixture.toml" --rate-limits off)
    echo "create-chat, ${members} members, ${conns} connections in all, ${secs}s each, keep-alive"
    wrk_run baseline $baseline_port /open-apis/im/v1/chats bench/create_chat.lua
    wrk_run sqlite-1-node $larkstack_port /open-apis/im/v1/chats bench/create_chat.lua
    kill "${pids[0]}" # the SQLite node rests from here on
    "$bin" serve --listen 127.0.0.1:$pg_port1 --data-dir "$work/pg1" "${shared[@]}" >/dev/null &
    pids+=($!)
    wait_port $pg_port1
    export BENCH_TOKEN="$(token_of $pg_port1)"
    wrk_run postgres-1-node $pg_port1 /open-apis/im/v1/chats bench/create_chat.lua
    "$bin" serve --listen 127.0.0.1:$pg_port2 --data-dir "$work/pg2" "${shared[@]}" >/dev/null &
    pids+=($!)
    wait_port $pg_port2
    # Two nodes: half the connections to each, at the same time (a load balancer's even split).
    half=$((conns / 2))
    wrk -t1 -c"$half" -d"${secs}s" --latency -s bench/create_chat.lua http://127.0.0.1:$pg_port1/open-apis/im/v1/chats > "$work/pg-a.txt" &
    first=$!
    wrk -t1 -c"$half" -d"${secs}s" --latency -s bench/create_chat.lua http://127.0.0.1:$pg_port2/open-apis/im/v1/chats > "$work/pg-b.txt"
    wait "$first"
    # Summed throughput; the slower node's percentiles.
    python3 bench/wrk_stats.py merge sum "$work/pg-a.txt" "$work/pg-b.txt" > "$work/postgres-2-nodes.txt"
    header; row baseline; row sqlite-1-node; row postgres-1-node; row postgres-2-nodes
    ratio sqlite-1-node baseline "create-chat, SQLite"
    ratio postgres-1-node baseline "create-chat, PostgreSQL x1 node"
    ratio postgres-2-nodes baseline "create-chat, PostgreSQL x2 nodes"
    echo "chats stored in PostgreSQL: $(psql "${pg_admin%/*}/larkstack_bench" -tAc 'select count(*) from bench.chats')"
    ;;
events)
    rate="${4:-1000}"
    export BENCH_BODY="$(body_with $members)"
    encrypt_key="$(py 'print(d["apps"][0]["events"]["encrypt_key"])')"
    "$tool" sink $sink_port "$encrypt_key" > "$work/sink-create.txt" &
    sink=$!
    pids+=($sink)
    # The same directory, its bot subscribed to every event type (scopes for all of them).
    sed -e 's|^scopes = \["im:chat"\]$|scopes = ["im:chat", "im:chat:read", "im:chat.members:read", "im:chat.members:bot_access", "im:message.group_msg", "im:message.p2p_msg:readonly", "im:chat.access_event.bot_p2p_chat:read"]\nevent_url = "http://127.0.0.1:'$sink_port'/hook"|' \
        "$work/fixture.toml" > "$work/fixture-sub.toml"
    "$bin" serve --listen 127.0.0.1:$sub_port --data-dir "$work/sub" --fixture "$work/fixture-sub.toml" --rate-limits off >/dev/null &
    pids+=($!)
    wait_port $sub_port; wait_port $sink_port
    # Alternating thirds of the time, so that drifting machine noise hits both sides alike. The
    # bot creates the chats, which gives it no Feishu event (docs/parity.md): what the subscribed
    # side pays is the fan-out reading and matching every event it commits.
    third=$(( (secs + 2) / 3 ))
    echo "create-chat, ${members} members, ${conns} connections: without subscribers, then with a subscribed bot, 3 rounds of ${third}s each"
    unsub_token="$BENCH_TOKEN" sub_token="$(token_of $sub_port)"
    for r in 1 2 3; do
        BENCH_TOKEN=$unsub_token secs=$third wrk_run "unsubscribed-$r" $larkstack_port /open-apis/im/v1/chats bench/create_chat.lua
        BENCH_TOKEN=$sub_token secs=$third wrk_run "subscribed-$r" $sub_port /open-apis/im/v1/chats bench/create_chat.lua
    done
    kill "${pids[0]}" # the unsubscribed node rests from here on
    export BENCH_TOKEN="$sub_token"
    merge_rounds unsubscribed 3; merge_rounds subscribed 3
    header; row unsubscribed; row subscribed
    ratio subscribed unsubscribed "create-chat with a subscribed bot vs without"
    kill -TERM $sink; wait $sink 2>/dev/null || true
    echo "events the subscribed bot received during it: $(awk '/^events received:/ {print $3}' "$work/sink-create.txt")"
    # Commit→sink latency at a fixed message rate: a fresh sink, 50 chats with user0 in them.
    "$tool" sink $sink_port "$encrypt_key" > "$work/sink.txt" &
    sink=$!
    pids+=($sink)
    wait_port $sink_port
    user0="$(py 'print(d["users"][0]["open_ids"]["bot"])')"
    chats=""
    for i in $(seq 50); do
        id="$(curl -s -X POST http://127.0.0.1:$sub_port/open-apis/im/v1/chats -H "Authorization: Bearer $BENCH_TOKEN" \
            -H 'Content-Type: application/json' -d "{\"name\":\"ev $i\",\"user_id_list\":[\"$user0\"]}" \
            | python3 -c 'import json,sys;print(json.load(sys.stdin)["data"]["chat_id"])')"
        chats="${chats:+$chats,}$id"
    done
    sleep 2
    kill -TERM $sink; wait $sink 2>/dev/null || true
    # This sink stops by itself 5 s after the last event: what was posted has all arrived.
    "$tool" sink $sink_port "$encrypt_key" --idle-exit 5 > "$work/sink.txt" &
    sink=$!
    pids+=($sink)
    wait_port $sink_port
    echo "users' messages at ${rate}/s for ${secs}s over 50 chats, each an im.message.receive_v1 to the bot"
    "$tool" post $sub_port "$(cat "$work/sub/admin-token")" "$rate" "$secs" "$chats" user0
    drained $sink
    where_the_time_went $sub_port "$work/sub/admin-token"
    cat "$work/sink.txt"
    ;;
longconn)
    clients="${3:-200}"
    rate="${4:-2000}"
    kill "${pids[0]}" "${pids[1]}" # the common servers rest: this scenario has its own directory
    {
        printf '[[tenants]]\nkey = "bench"\n\n[[users]]\nkey = "user0"\ntenant = "bench"\n'
        for i in $(seq 0 $((clients - 1))); do
            printf '\n[[apps]]\nkey = "lc%d"\ntenant = "bench"\nscopes = ["im:chat", "im:message.group_msg"]\nevent_types = ["im.message.receive_v1"]\nevent_mode = "long_connection"\n' "$i"
        done
    } > "$work/fixture-lc.toml"
    "$bin" directory --fixture "$work/fixture-lc.toml" > "$work/directory-lc.json"
    # APPS_FILE: app_id app_secret user0's open_id in that app.
    python3 -c "import json; d = json.load(open('$work/directory-lc.json'))
for a in d['apps']: print(a['app_id'], a['app_secret'], d['users'][0]['open_ids'][a['key']])" > "$work/apps.txt"
    "$bin" serve --listen 127.0.0.1:$lc_port --data-dir "$work/lc" --fixture "$work/fixture-lc.toml" --rate-limits off >/dev/null &
    lc=$!
    pids+=($lc)
    wait_port $lc_port
    "$tool" chats "http://127.0.0.1:$lc_port" "$work/apps.txt" lc > "$work/lc-chats.txt"
    "$tool" ws "http://127.0.0.1:$lc_port" "$work/apps.txt" --idle-exit 5 > "$work/ws.txt" &
    ws=$!
    pids+=($ws)
    for _ in $(seq 600); do grep -q '^connected:' "$work/ws.txt" && break; sleep 0.1; done
    rss() { awk -v k="$1:" '$1 == k {printf "%.1f MiB", $2 / 1024}' "/proc/$lc/status"; }
    echo "long connections: $(grep '^connected:' "$work/ws.txt" | cut -d' ' -f2-) clients (one per app), $(wc -l < "$work/apps.txt") apps; larkstack RSS $(rss VmRSS) with them connected"
    echo 5 > "/proc/$lc/clear_refs" 2>/dev/null || echo "(VmHWM not reset: it includes the set-up)"
    echo "users' messages at ${rate}/s for ${secs}s over ${clients} chats (one per app), each an im.message.receive_v1 over one long connection"
    "$tool" post $lc_port "$(cat "$work/lc/admin-token")" "$rate" "$secs" "@$work/lc-chats.txt" user0 | tee "$work/post.txt"
    drained $ws
    where_the_time_went $lc_port "$work/lc/admin-token"
    grep -v '^connected:' "$work/ws.txt"
    echo "events received $(awk '/^events received:/ {print $3}' "$work/ws.txt") of $(awk '/^messages posted:/ {print $3}' "$work/post.txt") posted"
    echo "larkstack RSS: peak $(rss VmHWM) during the load, $(rss VmRSS) after it (clients gone)"
    ;;
compare-create|compare-get)
    # This build and LARKSTACK_BENCH_OLD_BIN served at once (fresh data dirs, same fixture), then
    # short wrk runs alternating new, old, baseline for `rounds` rounds: machine noise that drifts
    # over a minute hits all three alike, which one run of each back to back does not give.
    old_bin="${LARKSTACK_BENCH_OLD_BIN:?set LARKSTACK_BENCH_OLD_BIN to the larkstack binary to compare with}"
    old_port=$pg_port1
    "$old_bin" serve --listen "127.0.0.1:$old_port" --data-dir "$work/old" --fixture "$work/fixture.toml" --rate-limits off >/dev/null &
    pids+=($!)
    wait_port $old_port
    new_token="$BENCH_TOKEN" old_token="$(token_of $old_port)"
    if [[ "$scenario" == compare-create ]]; then
        rounds="${4:-6}"
        export BENCH_BODY="$(body_with $members)"
        what="create-chat, ${members} members" path=/open-apis/im/v1/chats script=bench/create_chat.lua
    else
        rounds=6
        export BENCH_BODY="$(body_with 3)"
        for side in "$larkstack_port $new_token data" "$old_port $old_token old"; do
            set -- $side
            while (( $(sqlite3 "$work/$3/larkstack.db" 'select count(*) from chats') < stored )); do
                BENCH_TOKEN=$2 wrk -t2 -c64 -d5s -s bench/create_chat.lua "http://127.0.0.1:$1/open-apis/im/v1/chats" >/dev/null
            done
            sqlite3 "$work/$3/larkstack.db" 'PRAGMA wal_checkpoint(PASSIVE)' >/dev/null
            sqlite3 "$work/$3/larkstack.db" "select chat_id from chats order by random() limit 20000" > "$work/ids-$3.txt"
        done
        export BENCH_USERS="$work/users.txt" BENCH_MODE=get
        what="get-chat over ${stored} stored chats" path=/ script=bench/random_chat.lua
    fi
    echo "$what, ${conns} connections, ${rounds} rounds of ${secs}s each for this build (new), $old_bin (old) and the baseline, alternating"
    run_new() { BENCH_IDS="$work/ids-data.txt" BENCH_TOKEN=$new_token wrk_run "new-$1" $larkstack_port $path $script; }
    run_old() { BENCH_IDS="$work/ids-old.txt" BENCH_TOKEN=$old_token wrk_run "old-$1" $old_port $path $script; }
    for r in $(seq "$rounds"); do
        # Which side goes first alternates by round, so that neither always follows the baseline.
        if (( r % 2 )); then run_new $r; run_old $r; else run_old $r; run_new $r; fi
        BENCH_IDS="$work/ids-data.txt" wrk_run "baseline-$r" $baseline_port $path $script
        header | sed -n "$((r == 1 ? 1 : 2))p"; row "new-$r"; row "old-$r"; row "baseline-$r"
    done
    python3 bench/wrk_stats.py compare "$work" "$rounds"
    ;;
*) echo "unknown scenario $scenario (create | chats | cluster | events | longconn | compare-create | compare-get)" >&2; exit 2 ;;
esac
