"""Posts messages as users through the control API at a fixed rate (`scripts/bench.sh events`):
RATE messages/s for SECONDS, spread over the given chats, from several threads with keep-alive."""

import http.client
import json
import sys
import threading
import time

port, token, rate, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
chats = sys.argv[5].split(",")
user = sys.argv[6]
THREADS = 16
sent = [0] * THREADS
errors = [0] * THREADS


def worker(n):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    per_thread = rate / THREADS
    start = time.monotonic()
    i = 0
    while True:
        due = start + i / per_thread
        if due - start >= seconds:
            break
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        chat = chats[(n + i * THREADS) % len(chats)]
        conn.request("POST", f"/_larkstack/chats/{chat}/messages", json.dumps({"user": user, "text": f"m{n}-{i}"}), headers)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200 or json.loads(body)["code"] != 0:
            errors[n] += 1
        sent[n] += 1
        i += 1


threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
t0 = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
took = time.monotonic() - t0
print(f"messages posted: {sum(sent)} in {took:.1f} s ({sum(sent) / took:.0f}/s), errors: {sum(errors)}")
