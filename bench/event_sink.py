"""A webhook sink for `scripts/bench.sh events`: answers the url_verification challenge, takes every
event with 200 and records, per event, the time from its commit (header.create_time, ms) to its
arrival here. Deliveries come encrypted with the app's key (argv[2]): AES-256-CBC, key = SHA-256
of the encrypt key, the IV first (Feishu's scheme). On SIGTERM prints the count and the p50/p99 in ms."""

import base64
import hashlib
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

lat = []
lock = threading.Lock()
KEY = hashlib.sha256(sys.argv[2].encode()).digest() if len(sys.argv) > 2 else None


def opened(body):
    """The plain envelope of a (possibly encrypted) delivery."""
    if "encrypt" not in body or KEY is None:
        return body
    raw = base64.b64decode(body["encrypt"])
    dec = Cipher(algorithms.AES(KEY), modes.CBC(raw[:16])).decryptor()
    plain = dec.update(raw[16:]) + dec.finalize()
    return json.loads(plain[: -plain[-1]])


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        now = time.time() * 1000
        body = opened(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
        if body.get("type") == "url_verification":
            reply = json.dumps({"challenge": body["challenge"]}).encode()
        else:
            with lock:
                lat.append(now - int(body["header"]["create_time"]))
            reply = b'{"msg":"success"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def report(*_):
    with lock:
        v = sorted(lat)
    if v:
        q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
        print(f"events received: {len(v)}  commit->sink p50 {q(0.5):.1f} ms  p99 {q(0.99):.1f} ms  max {v[-1]:.1f} ms", flush=True)
    else:
        print("events received: 0", flush=True)
    sys.exit(0)


class Server(ThreadingHTTPServer):
    # socketserver's default backlog is 5: a burst of new connections overflows it and the
    # client's SYN is retried after a second, which would show up as a 1 s tail here.
    request_queue_size = 1024
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", int(sys.argv[1])), Sink)
    signal.signal(signal.SIGTERM, report)
    server.serve_forever()
