"""Webhook events received by an unmodified ``lark.EventDispatcherHandler`` behind a real HTTP server (the
SDK's flask adapter), with and without encryption: url_verification, then each event type caused by
actions through the API (the SDK client) and the control API (acting as a user)."""

import json
import queue
import threading
import time
from pathlib import Path

import lark_oapi as lark
import pytest
from flask import Flask
from lark_oapi.adapter.flask import parse_req, parse_resp
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
from werkzeug.serving import make_server

from conftest import control, running_larkstack

WAIT = 20  # seconds, generous: the machine may be loaded


def build(cls, **fields):
    builder = cls.builder()
    for name, value in fields.items():
        getattr(builder, name)(value)
    return builder.build()


def ok(resp):
    assert resp.success(), f"code={resp.code} msg={resp.msg}"
    return getattr(resp, "data", None)


class Bot:
    """A flask app with the SDK's dispatcher at /webhook; every handled event lands in ``got``."""

    TYPES = [
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

    def __init__(self, encrypt_key, verification_token):
        self.got = queue.Queue()
        b = lark.EventDispatcherHandler.builder(encrypt_key, verification_token, lark.LogLevel.WARNING)
        for t in self.TYPES:
            register = getattr(b, "register_p2_" + t.replace(".", "_"))
            b = register(lambda data, t=t: self.got.put((t, data)))
        self.handler = b.build()
        app = Flask(__name__)

        @app.route("/webhook", methods=["POST"])
        def webhook():
            return parse_resp(self.handler.do(parse_req()))

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, event_type, where=lambda data: True):
        deadline = time.monotonic() + WAIT
        seen = []
        while time.monotonic() < deadline:
            try:
                t, data = self.got.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.append(t)
            if t == event_type and where(data):
                return data
        pytest.fail(f"no {event_type} within {WAIT}s; got {seen}")

    def stop(self):
        self.server.shutdown()


# The demo directory, with demo-bot also allowed the p2p-entered event (no demo app has its scope).
P2P_ENTERED_SCOPE = "im:chat.access_event.bot_p2p_chat:read"


def demo_fixture_with_p2p_entered(directory_path):
    demo = (Path(__file__).resolve().parents[2] / "fixtures" / "demo.toml").read_text()
    scopes = 'scopes = ["im:chat", "im:chat:create", "im:message",'
    assert demo.count(scopes) == 1, "demo-bot's scope list moved; update this test"
    path = directory_path / "fixture.toml"
    path.write_text(demo.replace(scopes, f'scopes = ["{P2P_ENTERED_SCOPE}", "im:chat", "im:chat:create", "im:message",'))
    return path


@pytest.fixture(scope="module")
def server(larkstack_bin, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("larkstack-events")
    fixture = demo_fixture_with_p2p_entered(tmp_path_factory.mktemp("fixture"))
    with running_larkstack(larkstack_bin, data_dir, fixture) as s:
        yield s




@pytest.fixture(params=["encrypted", "plain"])
def bot(request, server, directory):
    key = "py-sdk-key" if request.param == "encrypted" else ""
    b = Bot(key, "py-sdk-token")
    app_id = directory.app("demo-bot")["app_id"]
    r = control(server, "PUT", f"/_larkstack/apps/{app_id}/events",
                {"event_url": b.url, "encrypt_key": key, "verification_token": "py-sdk-token"})
    assert r["code"] == 0, r
    yield b
    control(server, "PUT", f"/_larkstack/apps/{app_id}/events", {"event_url": ""})
    b.stop()


@pytest.fixture
def client(server, directory):
    app = directory.app("demo-bot")
    return (
        lark.Client.builder().app_id(app["app_id"]).app_secret(app["app_secret"])
        .domain(server.base_url).cache(server.token_cache).log_level(lark.LogLevel.WARNING).build()
    )


def new_group(client, directory, name):
    body = build(CreateChatRequestBody, name=name, owner_id=directory.open_id("alice"),
                 user_id_list=[directory.open_id("bob")])
    return ok(client.im.v1.chat.create(build(CreateChatRequest, user_id_type="open_id", request_body=body))).chat_id


def test_url_verification_goes_through_the_sdk(server, directory):
    """The SDK answers the challenge (encrypted, then plain); a wrong token is refused by it."""
    app_id = directory.app("demo-bot")["app_id"]
    for key in ("py-sdk-key", ""):
        b = Bot(key, "right-token")
        r = control(server, "PUT", f"/_larkstack/apps/{app_id}/events",
                    {"event_url": b.url, "encrypt_key": key, "verification_token": "right-token"})
        assert r["code"] == 0, r
        r = control(server, "PUT", f"/_larkstack/apps/{app_id}/events",
                    {"event_url": b.url, "verification_token": "wrong-token"})
        assert r["code"] != 0 and "challenge" in r["msg"], r
        b.stop()
    control(server, "PUT", f"/_larkstack/apps/{app_id}/events", {"event_url": ""})


def test_group_message_from_a_user(server, directory, bot, client):
    chat_id = new_group(client, directory, "py events")
    r = control(server, "POST", f"/_larkstack/chats/{chat_id}/messages", {"user": "alice", "text": "hi bot"})
    assert r["code"] == 0, r
    data = bot.wait("im.message.receive_v1", lambda d: d.event.message.chat_id == chat_id)
    assert data.header.event_type == "im.message.receive_v1"
    assert data.header.token == "py-sdk-token"
    assert len(data.header.event_id) == 32
    assert data.event.message.chat_type == "group"
    assert json.loads(data.event.message.content) == {"text": "hi bot"}
    assert data.event.sender.sender_id.open_id == directory.open_id("alice")
    assert data.event.sender.sender_type == "user"


def test_p2p_message_from_a_user(server, directory, bot, client):
    body = build(CreateMessageRequestBody, receive_id=directory.open_id("alice"), msg_type="text",
                 content=json.dumps({"text": "hello alice"}))
    sent = ok(client.im.v1.message.create(build(CreateMessageRequest, receive_id_type="open_id", request_body=body)))
    r = control(server, "POST", f"/_larkstack/chats/{sent.chat_id}/messages", {"user": "alice", "text": "hi back"})
    assert r["code"] == 0, r
    data = bot.wait("im.message.receive_v1", lambda d: d.event.message.chat_id == sent.chat_id)
    assert data.event.message.chat_type == "p2p"
    assert json.loads(data.event.message.content) == {"text": "hi back"}


def test_members_added_and_left(server, directory, bot, client):
    chat_id = new_group(client, directory, "py members")
    body = build(CreateChatMembersRequestBody, id_list=[directory.open_id("carol")])
    ok(client.im.v1.chat_members.create(build(CreateChatMembersRequest, chat_id=chat_id, member_id_type="open_id",
                                              request_body=body)))
    added = bot.wait("im.chat.member.user.added_v1", lambda d: d.event.chat_id == chat_id)
    assert [u.user_id.open_id for u in added.event.users] == [directory.open_id("carol")]
    assert added.event.users[0].name
    r = control(server, "POST", f"/_larkstack/chats/{chat_id}/leave", {"user": "carol"})
    assert r["code"] == 0, r
    left = bot.wait("im.chat.member.user.deleted_v1", lambda d: d.event.chat_id == chat_id)
    assert [u.user_id.open_id for u in left.event.users] == [directory.open_id("carol")]


def test_pending_invitation_withdrawn(server, directory, bot, client):
    """helper-bot (no owner or manager rights) adds carol to a chat that needs approval: she waits;
    the owner withdraws the invitation (control API, as from the client): withdrawn_v1 to demo-bot."""
    helper_app = directory.app("helper-bot")
    helper = (
        lark.Client.builder().app_id(helper_app["app_id"]).app_secret(helper_app["app_secret"])
        .domain(server.base_url).cache(server.token_cache).log_level(lark.LogLevel.WARNING).build()
    )
    body = build(CreateChatRequestBody, name="py gated", owner_id=directory.open_id("alice", "helper-bot"),
                 user_id_list=[directory.open_id("bob", "helper-bot")],
                 bot_id_list=[directory.app("demo-bot")["app_id"]], membership_approval="approval_required")
    chat_id = ok(helper.im.v1.chat.create(build(CreateChatRequest, user_id_type="open_id", request_body=body))).chat_id
    carol = directory.open_id("carol", "helper-bot")
    body = build(CreateChatMembersRequestBody, id_list=[carol])
    added = ok(helper.im.v1.chat_members.create(build(CreateChatMembersRequest, chat_id=chat_id, member_id_type="open_id",
                                                      request_body=body)))
    assert added.pending_approval_id_list == [carol]
    r = control(server, "GET", f"/_larkstack/chats/{chat_id}/invitations")
    assert [i["user"]["key"] for i in r["data"]["items"]] == ["carol"], r
    r = control(server, "POST", f"/_larkstack/chats/{chat_id}/invitations/carol/withdraw", {"user": "alice"})
    assert r["code"] == 0, r
    data = bot.wait("im.chat.member.user.withdrawn_v1", lambda d: d.event.chat_id == chat_id)
    assert data.header.event_type == "im.chat.member.user.withdrawn_v1"
    assert data.header.token == "py-sdk-token"
    assert [u.user_id.open_id for u in data.event.users] == [directory.open_id("carol")]
    assert data.event.users[0].name == directory.user("carol")["name"]
    assert data.event.operator_id.open_id == directory.open_id("alice")
    assert data.event.name == "py gated"
    assert data.event.external is False


def test_chat_updated_then_disbanded(server, directory, bot, client):
    chat_id = new_group(client, directory, "py update")
    ok(client.im.v1.chat.update(build(UpdateChatRequest, chat_id=chat_id, user_id_type="open_id",
                                      request_body=build(UpdateChatRequestBody, name="py renamed"))))
    upd = bot.wait("im.chat.updated_v1", lambda d: d.event.chat_id == chat_id)
    assert upd.event.after_change.name == "py renamed"
    assert upd.event.before_change.name == "py update"
    ok(client.im.v1.chat.delete(build(DeleteChatRequest, chat_id=chat_id)))
    gone = bot.wait("im.chat.disbanded_v1", lambda d: d.event.chat_id == chat_id)
    assert gone.event.name == "py renamed"


def test_bot_added_by_a_user_then_leaving(server, directory, bot, client):
    """A user adds the bot (control API, as from the client): bot.added_v1; it leaves via the API: bot.deleted_v1."""
    helper_app = directory.app("helper-bot")
    helper = (
        lark.Client.builder().app_id(helper_app["app_id"]).app_secret(helper_app["app_secret"])
        .domain(server.base_url).cache(server.token_cache).log_level(lark.LogLevel.WARNING).build()
    )
    body = build(CreateChatRequestBody, name="py bots", owner_id=directory.open_id("alice", "helper-bot"),
                 user_id_list=[directory.open_id("bob", "helper-bot")])
    chat_id = ok(helper.im.v1.chat.create(build(CreateChatRequest, user_id_type="open_id", request_body=body))).chat_id
    demo_id = directory.app("demo-bot")["app_id"]
    r = control(server, "POST", f"/_larkstack/chats/{chat_id}/bots", {"user": "alice", "app_id": demo_id})
    assert r["code"] == 0, r
    added = bot.wait("im.chat.member.bot.added_v1", lambda d: d.event.chat_id == chat_id)
    assert added.header.event_type == "im.chat.member.bot.added_v1"
    assert added.header.token == "py-sdk-token"
    assert added.event.operator_id.open_id == directory.open_id("alice")
    assert added.event.operator_tenant_key == directory.tenants["acme"]["tenant_key"]
    assert added.event.name == "py bots"
    assert added.event.external is False

    req = build(DeleteChatMembersRequest, chat_id=chat_id, member_id_type="app_id",
                request_body=build(DeleteChatMembersRequestBody, id_list=[demo_id]))
    ok(client.im.v1.chat_members.delete(req))
    deleted = bot.wait("im.chat.member.bot.deleted_v1", lambda d: d.event.chat_id == chat_id)
    assert deleted.event.name == "py bots"
    assert deleted.event.operator_id.open_id.startswith("ou_")
    assert deleted.event.operator_tenant_key == directory.tenants["acme"]["tenant_key"]


def test_a_user_enters_the_bots_p2p_chat(server, directory, bot, client):
    body = build(CreateMessageRequestBody, receive_id=directory.open_id("carol"), msg_type="text",
                 content=json.dumps({"text": "hello carol"}))
    sent = ok(client.im.v1.message.create(build(CreateMessageRequest, receive_id_type="open_id", request_body=body)))
    app_id = directory.app("demo-bot")["app_id"]
    r = control(server, "POST", f"/_larkstack/users/carol/p2p/{app_id}/enter")
    assert r["code"] == 0 and r["data"]["chat_id"] == sent.chat_id, r
    entered = bot.wait("im.chat.access_event.bot_p2p_chat_entered_v1", lambda d: d.event.chat_id == sent.chat_id)
    assert entered.header.event_type == "im.chat.access_event.bot_p2p_chat_entered_v1"
    assert entered.event.operator_id.open_id == directory.open_id("carol")
    assert entered.event.last_message_id == sent.message_id
    assert entered.event.last_message_create_time.isdigit()
