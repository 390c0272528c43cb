"""Fixtures for driving a real larkstack binary with the official Python SDK (lark-oapi).

* ``directory``  – the demo directory as printed by ``larkstack directory`` (app credentials, user IDs,
                   aPaaS tasks).
* ``larkstack``  – base URL of a freshly started ``larkstack serve`` (one server, one empty data dir
                   per test module).
* ``make_client`` – builds an unmodified ``lark.Client`` for a demo app, pointed at that server.
"""

import contextlib
import functools
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
from lark_oapi.api.im.v1 import (
    CreateChatMembersRequest,
    CreateChatMembersRequestBody,
    CreateChatRequest,
    CreateChatRequestBody,
    CreateMessageRequest,
    CreateMessageRequestBody,
    DeleteChatMembersRequest,
    DeleteChatMembersRequestBody,
    DeleteChatRequest,
    UpdateChatRequest,
    UpdateChatRequestBody,
)
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


def act(server, path, body):
    """A control-API POST that must succeed (a user's action, as from the Feishu client): its ``data``."""
    reply = control(server, "POST", path, body)
    assert reply["code"] == 0, reply
    return reply["data"]


def build(cls, **fields):
    """An SDK model through its builder: ``build(CreateChatRequest, chat_id=…, request_body=…)``."""
    builder = cls.builder()
    for name, value in fields.items():
        getattr(builder, name)(value)
    return builder.build()


def ok(resp):
    """The reply's ``data``, after asserting success (replies without a body have no ``data``)."""
    assert resp.success(), f"code={resp.code} msg={resp.msg} log_id={resp.get_log_id()}"
    return getattr(resp, "data", None)


def sdk_client(server, directory, app_key="demo-bot"):
    """An unmodified ``lark.Client`` for a demo app, pointed at ``server``."""
    app = directory.app(app_key)
    return (
        lark.Client.builder().app_id(app["app_id"]).app_secret(app["app_secret"])
        .domain(server.base_url).cache(server.token_cache).log_level(lark.LogLevel.WARNING).build()
    )


# --- Events: what the webhook and the long-connection tests share -------------------------------

# Every event type of the webhook issue; the handlers register them all.
EVENT_TYPES = [
    "im.message.receive_v1",
    "im.chat.member.user.added_v1",
    "im.chat.member.user.deleted_v1",
    "im.chat.member.user.withdrawn_v1",
    "im.chat.member.bot.added_v1",
    "im.chat.member.bot.deleted_v1",
    "im.chat.updated_v1",
    "im.chat.disbanded_v1",
    "im.chat.access_event.bot_p2p_chat_entered_v1",
]
EVENT_WAIT = 30  # seconds, generous: the machine may be loaded

# The demo directory, with demo-bot also allowed the p2p-entered event (no demo app has its scope).
P2P_ENTERED_SCOPE = "im:chat.access_event.bot_p2p_chat:read"


def demo_fixture_with_p2p_entered(directory_path):
    demo = (Path(__file__).resolve().parents[2] / "fixtures" / "demo.toml").read_text()
    scopes = 'scopes = ["im:chat", "im:chat:create", "im:message",'
    assert demo.count(scopes) == 1, "demo-bot's scope list moved; update this test"
    path = directory_path / "fixture.toml"
    path.write_text(demo.replace(scopes, f'scopes = ["{P2P_ENTERED_SCOPE}", "im:chat", "im:chat:create", "im:message",'))
    return path


class EventLog:
    """Every event the SDK's typed handlers decoded, in arrival order, as ``(event_type, data)``.
    ``register(builder)`` registers a ``register_p2_…`` handler for each of ``EVENT_TYPES``; ``wait``
    claims the first unclaimed matching event (an event is claimed once)."""

    def __init__(self):
        self.events = []
        self.claimed = []
        self._changed = threading.Condition()

    def register(self, builder):
        for t in EVENT_TYPES:
            builder = getattr(builder, "register_p2_" + t.replace(".", "_"))(lambda data, t=t: self._put(t, data))
        return builder

    def _put(self, event_type, data):
        with self._changed:
            self.events.append((event_type, data))
            self._changed.notify_all()

    def wait(self, event_type, where=lambda data: True):
        deadline = time.monotonic() + EVENT_WAIT
        with self._changed:
            while True:
                for t, data in self.events:
                    if t == event_type and where(data) and all(data is not c for c in self.claimed):
                        self.claimed.append(data)
                        return data
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {event_type} within {EVENT_WAIT} s; got {[t for t, _ in self.events]}")
                self._changed.wait(left)


class EventProducers:
    """Causes each event type of the webhook issue as a bot meets it — through the API (the SDK
    client of demo-bot) and the control API (acting as a user) — and checks the typed object the
    SDK decoded (``events.wait``): chats, users in demo-bot's id space, operators, changes, content.
    Each method returns what it received. How the events travel (webhook or long connection) is the
    caller's; the server needs ``demo_fixture_with_p2p_entered``."""

    def __init__(self, server, directory, events):
        self.server = server
        self.directory = directory
        self.events = events
        self.client = sdk_client(server, directory)
        self.acme = directory.tenants["acme"]["tenant_key"]

    def act(self, method, path, body=None):
        r = control(self.server, method, path, body)
        assert r["code"] == 0, r
        return r.get("data")

    def user_id(self, user_id, user):
        """``user_id`` (a decoded UserId) is ``user`` in demo-bot's id space."""
        assert (user_id.open_id, user_id.union_id) == (self.directory.open_id(user), self.directory.union_id(user))

    @functools.cached_property
    def bot_open_id(self):
        """demo-bot's own open_id, as bot/v3/info answers it (the SDK has no typed API for it)."""
        info = self.client.request(
            lark.BaseRequest.builder().http_method(lark.HttpMethod.GET).uri("/open-apis/bot/v3/info")
            .token_types({lark.AccessTokenType.TENANT}).build()
        )
        assert info.code == 0, info.msg
        return json.loads(info.raw.content)["bot"]["open_id"]

    def new_group(self, name):

        body = build(CreateChatRequestBody, name=name, owner_id=self.directory.open_id("alice"),
                     user_id_list=[self.directory.open_id("bob")])
        return ok(self.client.im.v1.chat.create(build(CreateChatRequest, user_id_type="open_id", request_body=body))).chat_id

    def bot_writes_to(self, user, text):
        """demo-bot writes to ``user``: their p2p chat (created on first contact); the sent message."""

        body = build(CreateMessageRequestBody, receive_id=self.directory.open_id(user), msg_type="text",
                     content=json.dumps({"text": text}))
        return ok(self.client.im.v1.message.create(build(CreateMessageRequest, receive_id_type="open_id", request_body=body)))

    def user_message(self, chat_id, user, text, chat_type):
        """``user`` writes ``text`` in the chat (control API): im.message.receive_v1."""
        message_id = self.act("POST", f"/_larkstack/chats/{chat_id}/messages", {"user": user, "text": text})["message_id"]
        data = self.events.wait("im.message.receive_v1", lambda d: d.event.message.chat_id == chat_id)
        assert data.header.event_type == "im.message.receive_v1"
        assert data.header.app_id == self.directory.app("demo-bot")["app_id"]
        assert len(data.header.event_id) == 32
        m = data.event.message
        assert (m.message_id, m.chat_type, m.message_type) == (message_id, chat_type, "text")
        assert json.loads(m.content) == {"text": text}
        assert data.event.sender.sender_type == "user"
        self.user_id(data.event.sender.sender_id, user)
        return data

    def group_message(self):
        return self.user_message(self.new_group("py events"), "alice", "hi bot", "group")

    def p2p_message(self):
        return self.user_message(self.bot_writes_to("alice", "hello alice").chat_id, "alice", "hi back", "p2p")

    def members_added_and_left(self):
        """demo-bot adds carol (API): user.added_v1; she leaves (control API): user.deleted_v1."""

        chat_id = self.new_group("py members")
        body = build(CreateChatMembersRequestBody, id_list=[self.directory.open_id("carol")])
        ok(self.client.im.v1.chat_members.create(build(CreateChatMembersRequest, chat_id=chat_id, member_id_type="open_id",
                                                       request_body=body)))
        added = self.events.wait("im.chat.member.user.added_v1", lambda d: d.event.chat_id == chat_id)
        [carol] = added.event.users
        self.user_id(carol.user_id, "carol")
        assert carol.name and carol.tenant_key == self.acme
        assert added.event.operator_id.open_id == self.bot_open_id
        assert (added.event.name, added.event.external) == ("py members", False)
        self.act("POST", f"/_larkstack/chats/{chat_id}/leave", {"user": "carol"})
        left = self.events.wait("im.chat.member.user.deleted_v1", lambda d: d.event.chat_id == chat_id)
        [carol] = left.event.users
        self.user_id(carol.user_id, "carol")
        self.user_id(left.event.operator_id, "carol")
        return added, left

    def chat_updated_then_disbanded(self):
        """demo-bot renames a group, then disbands it (API): chat.updated_v1, chat.disbanded_v1."""

        chat_id = self.new_group("py update")
        ok(self.client.im.v1.chat.update(build(UpdateChatRequest, chat_id=chat_id, user_id_type="open_id",
                                               request_body=build(UpdateChatRequestBody, name="py renamed"))))
        upd = self.events.wait("im.chat.updated_v1", lambda d: d.event.chat_id == chat_id)
        assert (upd.event.before_change.name, upd.event.after_change.name) == ("py update", "py renamed")
        assert upd.event.after_change.owner_id is None  # only the changed keys
        assert upd.event.operator_id.open_id == self.bot_open_id
        ok(self.client.im.v1.chat.delete(build(DeleteChatRequest, chat_id=chat_id)))
        gone = self.events.wait("im.chat.disbanded_v1", lambda d: d.event.chat_id == chat_id)
        assert gone.event.name == "py renamed"
        assert gone.event.operator_id.open_id == self.bot_open_id
        assert gone.event.operator_tenant_key == self.acme
        return upd, gone

    def invitation_withdrawn(self):
        """helper-bot (neither owner nor manager) adds carol (API) to a group with demo-bot that needs
        approval: she waits; alice, the owner, withdraws the invitation (control API, as from the
        client): user.withdrawn_v1."""

        helper = sdk_client(self.server, self.directory, "helper-bot")
        body = build(CreateChatRequestBody, name="py gated", owner_id=self.directory.open_id("alice", "helper-bot"),
                     user_id_list=[self.directory.open_id("bob", "helper-bot")],
                     bot_id_list=[self.directory.app("demo-bot")["app_id"]], membership_approval="approval_required")
        chat_id = ok(helper.im.v1.chat.create(build(CreateChatRequest, user_id_type="open_id", request_body=body))).chat_id
        carol = self.directory.open_id("carol", "helper-bot")
        req = build(CreateChatMembersRequest, chat_id=chat_id, member_id_type="open_id",
                    request_body=build(CreateChatMembersRequestBody, id_list=[carol]))
        assert ok(helper.im.v1.chat_members.create(req)).pending_approval_id_list == [carol]
        listed = self.act("GET", f"/_larkstack/chats/{chat_id}/invitations")
        assert [i["user"]["key"] for i in listed["items"]] == ["carol"]
        self.act("POST", f"/_larkstack/chats/{chat_id}/invitations/carol/withdraw", {"user": "alice"})
        w = self.events.wait("im.chat.member.user.withdrawn_v1", lambda d: d.event.chat_id == chat_id)
        assert w.header.event_type == "im.chat.member.user.withdrawn_v1"
        [carol] = w.event.users
        self.user_id(carol.user_id, "carol")
        assert (carol.name, carol.tenant_key) == (self.directory.user("carol")["name"], self.acme)
        self.user_id(w.event.operator_id, "alice")
        assert (w.event.name, w.event.external) == ("py gated", False)
        return w

    def bot_added_then_deleted(self):
        """alice adds demo-bot to helper-bot's group (control API, as from the client): bot.added_v1;
        demo-bot leaves through the API: bot.deleted_v1."""

        helper = sdk_client(self.server, self.directory, "helper-bot")
        body = build(CreateChatRequestBody, name="py bots", owner_id=self.directory.open_id("alice", "helper-bot"),
                     user_id_list=[self.directory.open_id("bob", "helper-bot")])
        chat_id = ok(helper.im.v1.chat.create(build(CreateChatRequest, user_id_type="open_id", request_body=body))).chat_id
        demo_id = self.directory.app("demo-bot")["app_id"]
        self.act("POST", f"/_larkstack/chats/{chat_id}/bots", {"user": "alice", "app_id": demo_id})
        added = self.events.wait("im.chat.member.bot.added_v1", lambda d: d.event.chat_id == chat_id)
        assert added.header.event_type == "im.chat.member.bot.added_v1"
        self.user_id(added.event.operator_id, "alice")
        assert added.event.operator_tenant_key == self.acme
        assert (added.event.name, added.event.external) == ("py bots", False)

        req = build(DeleteChatMembersRequest, chat_id=chat_id, member_id_type="app_id",
                    request_body=build(DeleteChatMembersRequestBody, id_list=[demo_id]))
        ok(self.client.im.v1.chat_members.delete(req))
        deleted = self.events.wait("im.chat.member.bot.deleted_v1", lambda d: d.event.chat_id == chat_id)
        assert deleted.event.name == "py bots"
        assert deleted.event.operator_id.open_id == self.bot_open_id
        assert deleted.event.operator_tenant_key == self.acme
        return added, deleted

    def p2p_chat_entered(self):
        """carol opens demo-bot's p2p chat (control API): bot_p2p_chat_entered_v1 naming the last message."""
        sent = self.bot_writes_to("carol", "hello carol")
        app_id = self.directory.app("demo-bot")["app_id"]
        assert self.act("POST", f"/_larkstack/users/carol/p2p/{app_id}/enter")["chat_id"] == sent.chat_id
        entered = self.events.wait("im.chat.access_event.bot_p2p_chat_entered_v1", lambda d: d.event.chat_id == sent.chat_id)
        assert entered.header.event_type == "im.chat.access_event.bot_p2p_chat_entered_v1"
        self.user_id(entered.event.operator_id, "carol")
        assert entered.event.last_message_id == sent.message_id
        assert entered.event.last_message_create_time == sent.create_time
        return entered
