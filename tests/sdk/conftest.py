"""Fixtures for driving a real larkstack binary with the official Python SDK (lark-oapi).

* ``directory``  – the demo directory as printed by ``larkstack directory`` (app credentials, user IDs,
                   aPaaS tasks).
* ``larkstack``  – base URL of a freshly started ``larkstack serve`` (one server, one empty data dir
                   per test module).
* ``make_client`` – builds an unmodified ``lark.Client`` for a demo app, pointed at that server.
"""

import contextlib
import json
import os
import queue
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import lark_oapi as lark
import pytest
from lark_oapi.core.cache import LocalCache

LISTENING = re.compile(r"^larkstack listening on (http://127\.0\.0\.1:\d+)\s*$")
STARTUP_TIMEOUT = 30  # seconds


@pytest.fixture(scope="session")
def larkstack_bin():
    path = os.environ.get("LARKSTACK_BIN", "target/debug/larkstack")
    if not os.access(path, os.X_OK):
        pytest.fail(f"larkstack binary not found at {path!r}; set LARKSTACK_BIN (tests/sdk/run.sh does)")
    return path


@dataclass(frozen=True)
class Directory:
    """The demo directory: tenants, apps and users, looked up by their fixture ``key``."""

    tenants: dict
    apps: dict
    users: dict
    tasks: dict

    @classmethod
    def from_json(cls, data):
        """From the JSON ``larkstack directory`` prints."""
        return cls(**{part: {item["key"]: item for item in data[part]} for part in ("tenants", "apps", "users", "tasks")})

    def task(self, key):
        """An aPaaS user task by fixture key (``task_id``, ``initiator``, ``assignees``, ``cc`` …)."""
        return self.tasks[key]

    def kunlun_id(self, user):
        """aPaaS names people by Kunlun user ID."""
        return self.users[user]["kunlun_id"]

    def app(self, key):
        return self.apps[key]

    def user(self, key):
        return self.users[key]

    def open_id(self, user, app="demo-bot"):
        """open_ids are per app: the ID ``app`` sees for ``user``."""
        return self.users[user]["open_ids"][app]

    def union_id(self, user, developer="acme-dev"):
        """union_ids are per developer (all apps of one developer share them)."""
        return self.users[user]["union_ids"][developer]


@pytest.fixture(scope="session")
def directory(larkstack_bin):
    out = subprocess.run([larkstack_bin, "directory"], check=True, capture_output=True, text=True).stdout
    return Directory.from_json(json.loads(out))


@dataclass
class Server:
    base_url: str
    # The SDK caches tenant_access_tokens keyed only by app_id. Each server gets its own cache so a
    # token issued by one server (data dir) is never presented to another.
    token_cache: LocalCache
    # The control API's bearer token (the data dir's `admin-token`).
    admin_token: str = ""


def _read_lines(stream, lines):
    for line in stream:
        lines.put(line)
    lines.put(None)  # EOF


@contextlib.contextmanager
def running_larkstack(larkstack_bin, data_dir, fixture=None):
    """Runs ``larkstack serve`` on a free port with ``data_dir`` (and ``fixture``), yielding a ``Server``."""
    cmd = [larkstack_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)]
    if fixture is not None:
        cmd += ["--fixture", str(fixture)]
    if os.environ.get("LARKSTACK_DATABASE"):
        # On PostgreSQL (scripts/test.sh's second pass) each server gets a schema of its own.
        cmd += ["--database-schema", "sdk_" + re.sub(r"[^a-z0-9]", "_", str(data_dir).lower())[-40:]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    # A reader thread keeps draining stdout, so the server never blocks on a full pipe.
    lines = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        base_url = _wait_for_listening(proc, lines)
        admin_token = (Path(data_dir) / "admin-token").read_text().strip()
        yield Server(base_url=base_url, token_cache=LocalCache(), admin_token=admin_token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def larkstack(larkstack_bin, tmp_path_factory):
    """Starts ``larkstack serve`` on a free port with a fresh data dir (so the demo directory is loaded)."""
    with running_larkstack(larkstack_bin, tmp_path_factory.mktemp("larkstack-data")) as server:
        yield server


def _wait_for_listening(proc, lines):
    deadline = time.monotonic() + STARTUP_TIMEOUT
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        match = LISTENING.match(line)
        if match:
            return match.group(1)
    proc.kill()
    raise RuntimeError(
        f"larkstack did not report its address (exit code {proc.poll()}); stdout so far:\n{''.join(seen)}"
    )


@pytest.fixture
def make_client(larkstack, directory):
    """``make_client("demo-bot")`` → an SDK client for that demo app; ``app_secret=`` overrides the secret,
    ``token_cache=`` the token cache (default: the server's)."""

    def make(app_key, *, app_secret=None, token_cache=None):
        app = directory.app(app_key)
        return (
            lark.Client.builder()
            .app_id(app["app_id"])
            .app_secret(app_secret if app_secret is not None else app["app_secret"])
            .domain(larkstack.base_url)
            .cache(token_cache if token_cache is not None else larkstack.token_cache)
            .log_level(lark.LogLevel.WARNING)
            .build()
        )

    return make


def start_ws_client(ws):
    """Runs ``ws.start()`` (it blocks for good) in a daemon thread, on an event loop of its own.

    ``lark_oapi.ws.client`` keeps one asyncio loop per process in a module global: one long
    connection per process, as a bot runs. This test process starts several clients, one after
    another (each test's server is gone when the next starts), so each gets a fresh loop; an
    earlier client's thread then stops on the loop it no longer owns."""
    import asyncio

    import lark_oapi.ws.client as ws_module

    started = threading.Event()

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ws_module.loop = loop
        started.set()
        ws.start()

    threading.Thread(target=run, daemon=True).start()
    started.wait(5)


def control(server, method, path, body=None):
    """A control-API call (`/_larkstack/…`) with the server's admin token: the reply's JSON, also
    for an HTTP error."""
    req = urllib.request.Request(
        server.base_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {server.admin_token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())
