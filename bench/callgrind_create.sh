#!/usr/bin/env bash
# Instructions per create-chat, whatever the machine's load (issue 12): runs BIN under
# valgrind --tool=callgrind with scripts/bench.sh's fixture and flags (fresh data dir, rate limits
# off, 50-member body), sends WARM creates, zeroes the counters, sends COUNT creates over CONNS
# keep-alive connections, and dumps one callgrind file per thread to $CG_OUT/NAME.cg.1-NN.
#
#   bench/callgrind_create.sh NAME BIN [warm=200] [count=2000] [conns=1]
#
# Build BIN with symbols: CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release.
# Per create: summary line of each file / COUNT. Timer-driven work (delivery ticks, checkpoints)
# is inflated under callgrind, which runs ~50x slower: compare the request and writer threads.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name=$1; bin=$2; warm=${3:-200}; count=${4:-2000}; conns=${5:-1}
members=50; port=${PORT:-18890}
work=$(mktemp -d /tmp/h4cg.XXXX)
{
    printf '[[tenants]]\nkey = "bench"\n\n[[apps]]\nkey = "bot"\ntenant = "bench"\nscopes = ["im:chat"]\n'
    for i in $(seq 0 $((members + 9))); do printf '\n[[users]]\nkey = "user%d"\ntenant = "bench"\n' "$i"; done
} > "$work/fixture.toml"
"$bin" directory --fixture "$work/fixture.toml" > "$work/directory.json"
py() { python3 -c "import json; d = json.load(open('$work/directory.json')); $1"; }
app_id="$(py 'print(d["apps"][0]["app_id"])')"; app_secret="$(py 'print(d["apps"][0]["app_secret"])')"
export BENCH_BODY="$(py "print(json.dumps({'name': 'bench 群', 'description': 'load', 'user_id_list': [u['open_ids']['bot'] for u in d['users']][:$members]}, ensure_ascii=False, separators=(',', ':')))")"
out="${CG_OUT:-.}/$name"
rm -f $out.cg*
valgrind --tool=callgrind --callgrind-out-file=$out.cg --dump-instr=no --collect-systime=no --separate-threads=yes \
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --fixture "$work/fixture.toml" --rate-limits off >$work/server.log 2>$work/vg.log &
vg=$!
for _ in $(seq 600); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.5; done
export BENCH_TOKEN=$(curl -s -X POST "http://127.0.0.1:$port/open-apis/auth/v3/tenant_access_token/internal" \
    -d "{\"app_id\":\"$app_id\",\"app_secret\":\"$app_secret\"}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["tenant_access_token"])')
python3 "$here/drive_creates.py" $port $warm $conns
sleep 1
callgrind_control -z $vg >/dev/null
t0=$(date +%s)
python3 "$here/drive_creates.py" $port $count $conns
t1=$(date +%s)
sleep 1
callgrind_control -d $vg >/dev/null
sleep 2
kill $vg; wait $vg || true
echo "$name: $count creates in $((t1-t0)) s; chats: $(sqlite3 $work/data/larkstack.db 'select count(*) from chats')"
ls -la $out.cg*
rm -rf $work
