"""A bot's everyday look-ups through the unmodified official Python SDK (lark-oapi): its own
identity (a raw ``BaseRequest`` to /open-apis/bot/v3/info, and the SDK's own channel helper that
resolves it), users by id and by email or mobile (``client.contact.v3.user``), and a group's custom
bot posting a signed message that the bot then reads in the chat's history.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.request

import lark_oapi as lark
import pytest
from lark_oapi.api.contact.v3 import (
    BatchGetIdUserRequest,
    BatchGetIdUserRequestBody,
    BatchUserRequest,
    GetUserRequest,
)
from lark_oapi.api.im.v1 import CreateChatRequest, CreateChatRequestBody, ListMessageRequest
from lark_oapi.channel.bot_identity import fetch_bot_identity

from conftest import running_larkstack


@pytest.fixture(scope="module")
def server(larkstack_bin, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("larkstack-bot")
    with running_larkstack(larkstack_bin, data_dir) as s:
        yield s


@pytest.fixture
def client(server, directory):
    app = directory.app("demo-bot")
    return (
        lark.Client.builder()
        .app_id(app["app_id"])
        .app_secret(app["app_secret"])
        .domain(server.base_url)
        .cache(server.token_cache)
        .log_level(lark.LogLevel.WARNING)
        .build()
    )


def post_json(url, body, headers=None):
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())


def test_bot_info_through_a_raw_request_and_the_channel_helper(client, directory):
    req = (
        lark.BaseRequest.builder()
        .http_method(lark.HttpMethod.GET)
        .uri("/open-apis/bot/v3/info")
        .token_types({lark.AccessTokenType.TENANT})
        .build()
    )
    resp = client.request(req)
    assert resp.code == 0, resp.msg
    body = json.loads(resp.raw.content)
    assert "data" not in body
    bot = body["bot"]
    assert bot["app_name"] == "Demo Bot"
    assert bot["activate_status"] == 2
    assert bot["open_id"].startswith("ou_")
    # The SDK's own channel module resolves the same identity from it.
    identity = asyncio.run(fetch_bot_identity(client.config))
    assert identity is not None
    assert (identity.open_id, identity.name) == (bot["open_id"], "Demo Bot")
    assert identity.app_id == directory.app("demo-bot")["app_id"]


def test_users_by_id_and_by_email_and_mobile(client, directory):
    alice = directory.open_id("alice")
    resp = client.contact.v3.user.get(GetUserRequest.builder().user_id(alice).user_id_type("open_id").build())
    assert resp.success(), f"code={resp.code} msg={resp.msg}"
    user = resp.data.user
    assert (user.open_id, user.name, user.email, user.mobile) == (alice, "Alice 王", "alice@acme.example", "+8613800000001")
    assert user.status.is_activated is True and user.status.is_resigned is False
    assert user.user_id == directory.user("alice")["user_id"]

    resp = client.contact.v3.user.batch(
        BatchUserRequest.builder().user_ids([directory.open_id("bob"), alice]).user_id_type("open_id").build()
    )
    assert resp.success(), resp.msg
    assert [u.name for u in resp.data.items] == ["Bob 李", "Alice 王"]

    body = (
        BatchGetIdUserRequestBody.builder()
        .emails(["alice@acme.example", "nobody@acme.example"])
        .mobiles(["13800000002"])
        .include_resigned(False)
        .build()
    )
    resp = client.contact.v3.user.batch_get_id(BatchGetIdUserRequest.builder().user_id_type("open_id").request_body(body).build())
    assert resp.success(), resp.msg
    found = [(u.email or u.mobile, u.user_id) for u in resp.data.user_list]
    assert found == [("alice@acme.example", alice), ("nobody@acme.example", None), ("13800000002", directory.open_id("bob"))]

    # Another tenant's user: the documented refusal, surfaced as the SDK surfaces errors.
    resp = client.contact.v3.user.get(GetUserRequest.builder().user_id(directory.open_id("gina")).build())
    assert (resp.code, resp.msg) == (41050, "no user authority error")


def test_a_signed_custom_bot_post_appears_in_the_chat(client, server, directory):
    body = CreateChatRequestBody.builder().name("Alerts").owner_id(directory.open_id("alice")).build()
    resp = client.im.v1.chat.create(CreateChatRequest.builder().user_id_type("open_id").request_body(body).build())
    assert resp.success(), resp.msg
    chat_id = resp.data.chat_id
    added = post_json(server.base_url + f"/_larkstack/chats/{chat_id}/custom_bots",
                      {"name": "CI", "secret": "py-secret", "keywords": ["build"]},
                      {"Authorization": f"Bearer {server.admin_token}"})[1]
    assert added["code"] == 0, added
    url = added["data"]["webhook_url"]

    def signed(text, secret="py-secret", ts=None):
        ts = str(int(time.time())) if ts is None else ts
        key = f"{ts}\n{secret}".encode()
        sign = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        return {"timestamp": ts, "sign": sign, "msg_type": "text", "content": {"text": text}}

    assert post_json(url, signed("build 7 passed")) == (200, {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"})
    status, reply = post_json(url, signed("build 8", secret="wrong"))
    assert (status, reply["code"]) == (200, 19021)
    assert post_json(url, signed("build 9", ts=str(int(time.time()) - 3700)))[1]["code"] == 19021
    assert post_json(url, signed("no keyword here"))[1]["code"] == 19024

    resp = client.im.v1.message.list(ListMessageRequest.builder().container_id_type("chat").container_id(chat_id).build())
    assert resp.success(), resp.msg
    posts = [m for m in resp.data.items if m.sender.sender_type == "app" and m.sender.id == added["data"]["bot_id"]]
    assert [json.loads(m.body.content)["text"] for m in posts] == ["build 7 passed"]
