"""Webhook events received by an unmodified ``lark.EventDispatcherHandler`` behind a real HTTP server (the
SDK's flask adapter), with and without encryption: url_verification, then each event type caused by
actions through the API (the SDK client) and the control API (acting as a user). The producers and
their checks (``EventProducers``) are shared with the long-connection test (test_events_ws.py)."""

import threading

import lark_oapi as lark
import pytest
from flask import Flask
from lark_oapi.adapter.flask import parse_req, parse_resp
from werkzeug.serving import make_server

from conftest import EventLog, EventProducers, control, demo_fixture_with_p2p_entered, running_larkstack


class Bot(EventLog):
    """A flask app with the SDK's dispatcher at /webhook; every handled event is logged."""

    def __init__(self, encrypt_key, verification_token):
        super().__init__()
        builder = lark.EventDispatcherHandler.builder(encrypt_key, verification_token, lark.LogLevel.WARNING)
        self.handler = self.register(builder).build()
        app = Flask(__name__)

        @app.route("/webhook", methods=["POST"])
        def webhook():
            return parse_resp(self.handler.do(parse_req()))

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


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
def produce(server, directory, bot):
    return EventProducers(server, directory, bot)


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


def test_group_message_from_a_user(produce):
    data = produce.group_message()
    assert data.header.token == "py-sdk-token"


def test_p2p_message_from_a_user(produce):
    produce.p2p_message()


def test_members_added_and_left(produce):
    produce.members_added_and_left()


def test_pending_invitation_withdrawn(produce):
    """A pending invitation (helper-bot's add into a chat that needs approval) withdrawn by the owner."""
    data = produce.invitation_withdrawn()
    assert data.header.token == "py-sdk-token"


def test_chat_updated_then_disbanded(produce):
    produce.chat_updated_then_disbanded()


def test_bot_added_by_a_user_then_leaving(produce):
    """A user adds the bot (control API, as from the client): bot.added_v1; it leaves via the API: bot.deleted_v1."""
    added, _ = produce.bot_added_then_deleted()
    assert added.header.token == "py-sdk-token"


def test_a_user_enters_the_bots_p2p_chat(produce):
    produce.p2p_chat_entered()
