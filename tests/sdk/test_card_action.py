"""Interactive-card callbacks received by the unmodified SDK: ``lark.EventDispatcherHandler`` with
``register_p2_card_action_trigger`` behind the SDK's flask adapter (signed, encrypted callback URL),
and the same handler in ``lark.ws.Client`` over the long connection. The handler's
``P2CardActionTriggerResponse`` (toast and raw card) comes back through larkstack: the toast to the
control-API caller, the card as the message's new content; the callback's ``c-`` token then updates
the card twice through ``POST /open-apis/interactive/v1/card/update`` and is refused a third time."""

import json
import queue
import threading
import time

import lark_oapi as lark
import pytest
from flask import Flask
from lark_oapi.adapter.flask import parse_req, parse_resp
from lark_oapi.api.im.v1 import (
    CreateChatRequest,
    CreateChatRequestBody,
    CreateMessageRequest,
    CreateMessageRequestBody,
    GetMessageRequest,
)
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTriggerResponse
from werkzeug.serving import make_server

from conftest import control, running_larkstack, start_ws_client

WAIT = 30  # seconds, generous: the machine may be loaded


@pytest.fixture(scope="module")
def server(larkstack_bin, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("larkstack-cards")
    with running_larkstack(larkstack_bin, data_dir) as s:
        yield s




def card(text):
    return {"elements": [{"tag": "div", "text": {"tag": "plain_text", "content": text}}]}


def answer_of(data):
    """What the app answers to a click: a toast naming the clicked value, and a new card."""
    choice = data.event.action.value["choice"]
    return P2CardActionTriggerResponse({
        "toast": {"type": "info", "content": f"you chose {choice}"},
        "card": {"type": "raw", "data": card(f"chosen: {choice}")},
    })


@pytest.fixture
def client(server, directory):
    app = directory.app("demo-bot")
    return (lark.Client.builder().app_id(app["app_id"]).app_secret(app["app_secret"])
            .domain(server.base_url).cache(server.token_cache).log_level(lark.LogLevel.WARNING).build())


def card_message(client, directory, text):
    body = (CreateChatRequestBody.builder().name("cards").owner_id(directory.open_id("alice"))
            .user_id_list([directory.open_id("bob")]).build())
    resp = client.im.v1.chat.create(CreateChatRequest.builder().user_id_type("open_id").request_body(body).build())
    assert resp.success(), resp.msg
    chat_id = resp.data.chat_id
    body = (CreateMessageRequestBody.builder().receive_id(chat_id).msg_type("interactive")
            .content(json.dumps(card(text))).build())
    resp = client.im.v1.message.create(CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build())
    assert resp.success(), resp.msg
    return chat_id, resp.data.message_id


def content(client, message_id):
    resp = client.im.v1.message.get(GetMessageRequest.builder().message_id(message_id).build())
    assert resp.success(), resp.msg
    return json.loads(resp.data.items[0].body.content)


def delayed_update(client, token, text):
    req = (lark.BaseRequest.builder().http_method(lark.HttpMethod.POST).uri("/open-apis/interactive/v1/card/update")
           .token_types({lark.AccessTokenType.TENANT}).body({"token": token, "card": card(text)}).build())
    resp = client.request(req)
    return json.loads(resp.raw.content)


def check_click(server, client, directory, message_id, seen):
    r = control(server, "POST", f"/_larkstack/messages/{message_id}/card_action",
                {"user": "alice", "action": {"tag": "button", "value": {"choice": "blue"}}})
    assert r["code"] == 0, r
    d = r["data"]
    assert d["error"] is None, d
    assert d["toast"] == {"type": "info", "content": "you chose blue"}
    assert d["card_updated"] is True
    data = seen.get(timeout=WAIT)
    assert data.header.event_type == "card.action.trigger"
    assert data.event.operator.open_id == directory.open_id("alice")
    assert data.event.context.open_message_id == message_id
    assert data.event.token == d["token"] and d["token"].startswith("c-")
    assert content(client, message_id) == card("chosen: blue")

    # The callback's token: two delayed updates, then refused.
    for text in ("later 1", "later 2"):
        r = delayed_update(client, d["token"], text)
        assert r["code"] == 0, r
        assert content(client, message_id) == card(text)
    r = delayed_update(client, d["token"], "later 3")
    assert r["code"] == 200832, r
    assert content(client, message_id) == card("later 2")
    return d


def test_a_click_reaches_the_sdk_webhook_and_its_toast_and_card_come_back(server, client, directory):
    seen = queue.Queue()

    def on_click(data):
        seen.put(data)
        return answer_of(data)

    handler = (lark.EventDispatcherHandler.builder("py-card-key", "py-card-token", lark.LogLevel.WARNING)
               .register_p2_card_action_trigger(on_click).build())
    app = Flask(__name__)

    @app.route("/card", methods=["POST"])
    def callback():
        return parse_resp(handler.do(parse_req()))

    http = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        app_id = directory.app("demo-bot")["app_id"]
        url = f"http://127.0.0.1:{http.server_port}/card"
        # The SDK answers the challenge: the URL is accepted.
        r = control(server, "PUT", f"/_larkstack/apps/{app_id}/events",
                    {"callback_url": url, "encrypt_key": "py-card-key", "verification_token": "py-card-token"})
        assert r["code"] == 0, r
        _, message_id = card_message(client, directory, "pick a colour")
        d = check_click(server, client, directory, message_id, seen)
        assert d["callback"]["route"] == "webhook"
    finally:
        control(server, "PUT", f"/_larkstack/apps/{directory.app('demo-bot')['app_id']}/events", {"callback_url": ""})
        http.shutdown()


def test_a_click_reaches_the_sdk_ws_client_and_its_answer_comes_back_in_the_ack_also_when_over_1_mib(
        server, client, directory):
    app = directory.app("demo-bot")
    seen = queue.Queue()

    def on_click(data):
        seen.put(data)
        return answer_of(data)

    # Long-connection mode skips token and signature checks: the docs' empty builder.
    handler = lark.EventDispatcherHandler.builder("", "").register_p2_card_action_trigger(on_click).build()
    ws = lark.ws.Client(app["app_id"], app["app_secret"], event_handler=handler, domain=server.base_url,
                        log_level=lark.LogLevel.WARNING)
    start_ws_client(ws)
    deadline = time.monotonic() + WAIT
    while not control(server, "GET", "/_larkstack/connections")["data"]["items"]:
        assert time.monotonic() < deadline, "the ws client did not connect"
        time.sleep(0.1)
    _, message_id = card_message(client, directory, "pick a colour")
    d = check_click(server, client, directory, message_id, seen)
    assert d["callback"]["route"] == "long_connection"

    # A callback of 1.2 MB leaves larkstack in frames of at most 512 KiB; the SDK puts them
    # together and hands over the whole payload (events.md §2.6).
    blob = "0123456789abcdef" * 75_000
    r = control(server, "POST", f"/_larkstack/messages/{message_id}/card_action",
                {"user": "bob", "action": {"tag": "button", "value": {"choice": "big", "blob": blob}}})
    assert r["code"] == 0, r
    assert r["data"]["error"] is None, r["data"]
    assert r["data"]["toast"] == {"type": "info", "content": "you chose big"}
    data = seen.get(timeout=WAIT)
    assert data.event.operator.open_id == directory.open_id("bob")
    assert data.event.action.value["blob"] == blob
    assert content(client, message_id) == card("chosen: big")
