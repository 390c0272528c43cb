# Sends COUNT create-chat requests (BENCH_BODY, BENCH_TOKEN) over CONNS keep-alive connections
# and counts failures (bench/callgrind_create.sh).
import http.client, os, sys, threading
port, count, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
body = os.environ["BENCH_BODY"].encode()
hdr = {"Content-Type": "application/json; charset=utf-8", "Authorization": "Bearer " + os.environ["BENCH_TOKEN"]}
bad = []
def run(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for _ in range(n):
        c.request("POST", "/open-apis/im/v1/chats", body, hdr)
        r = c.getresponse(); data = r.read()
        if r.status != 200 or b'"code":0' not in data: bad.append(data[:200])
ts = [threading.Thread(target=run, args=(count // conns,)) for _ in range(conns)]
[t.start() for t in ts]; [t.join() for t in ts]
print("done", count, "bad", len(bad), bad[:1])
