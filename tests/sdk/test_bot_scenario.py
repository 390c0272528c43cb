"""Issue 14's bot scenario end to end through the unmodified official Python SDK (lark-oapi), with
the SDK's typed APIs wherever it has them: the bot learns who it is (bot/v3/info), a user writes in
a group (control API, as from the Feishu client), the bot replies in a thread, reacts, uploads an
image and sends it, downloads it back byte-identical as a message resource, sends a shared card and
patches it, recalls its reply, and looks a user up by email. Every step is checked through the API
(get, listing), not only by the step's own answer. Runs on SQLite, and on PostgreSQL + Redis when
LARKSTACK_DATABASE / LARKSTACK_REDIS are set (they pass through to the server).
"""

import io
import json
import os
import struct

import lark_oapi as lark
import pytest
from lark_oapi.api.contact.v3 import BatchGetIdUserRequest, BatchGetIdUserRequestBody
from lark_oapi.api.im.v1 import (
    CreateChatRequest,
    CreateChatRequestBody,
    CreateImageRequest,
    CreateImageRequestBody,
    CreateMessageReactionRequest,
    CreateMessageReactionRequestBody,
    CreateMessageRequest,
    CreateMessageRequestBody,
    DeleteMessageRequest,
    Emoji,
    GetMessageRequest,
    GetMessageResourceRequest,
    ListMessageReactionRequest,
    ListMessageRequest,
    PatchMessageRequest,
    PatchMessageRequestBody,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)

from conftest import act, build, ok, running_larkstack


def png(width, height, tail):
    """A PNG header of width×height, then `tail` (larkstack reads headers only)."""
    ihdr = struct.pack(">II", width, height) + bytes([8, 6, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\x1f\x15\xc4\x89" + tail


def card(step):
    return json.dumps({"config": {"update_multi": True}, "elements": [{"tag": "div", "text": {"tag": "plain_text", "content": step}}]})


@pytest.fixture(scope="module")
def server(larkstack_bin, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("larkstack-scenario")
    with running_larkstack(larkstack_bin, data_dir) as s:
        yield s


def test_the_bot_scenario_of_issue_14(server, directory):
    app = directory.app("demo-bot")
    client = (
        lark.Client.builder()
        .app_id(app["app_id"])
        .app_secret(app["app_secret"])
        .domain(server.base_url)
        .cache(server.token_cache)
        .log_level(lark.LogLevel.WARNING)
        .build()
    )
    im = client.im.v1
    alice = directory.open_id("alice")

    # 1. Who am I: bot/v3/info answers `bot` at the top level (the SDK has no typed API for it).
    info = client.request(
        lark.BaseRequest.builder().http_method(lark.HttpMethod.GET).uri("/open-apis/bot/v3/info").token_types({lark.AccessTokenType.TENANT}).build()
    )
    assert info.code == 0, info.msg
    bot = json.loads(info.raw.content)["bot"]
    assert bot["app_name"] == "Demo Bot" and bot["activate_status"] == 2
    assert bot["open_id"].startswith("ou_")

    # 2. A group with alice; alice writes in it.
    chat_id = ok(im.chat.create(build(CreateChatRequest, user_id_type="open_id", request_body=build(CreateChatRequestBody, name="Incidents", user_id_list=[alice])))).chat_id
    question = act(server, f"/_larkstack/chats/{chat_id}/messages", {"user": "alice", "text": "the build is red"})["message_id"]

    # 3. The bot replies in a thread.
    reply_body = build(ReplyMessageRequestBody, msg_type="text", content=json.dumps({"text": "on it"}), reply_in_thread=True, uuid="scenario-py-1")
    reply = ok(im.message.reply(build(ReplyMessageRequest, message_id=question, request_body=reply_body)))
    assert (reply.root_id, reply.parent_id, reply.chat_id) == (question, question, chat_id)
    assert reply.thread_id.startswith("omt_")
    asked = ok(im.message.get(build(GetMessageRequest, message_id=question))).items[0]
    assert (asked.sender.sender_type, asked.sender.id, asked.thread_id) == ("user", alice, reply.thread_id)

    # 4. The bot reacts to alice's message; the reaction is listed as the app's.
    reaction = ok(
        im.message_reaction.create(
            build(CreateMessageReactionRequest, message_id=question, request_body=build(CreateMessageReactionRequestBody, reaction_type=build(Emoji, emoji_type="OnIt")))
        )
    )
    assert reaction.reaction_type.emoji_type == "OnIt"
    listed = ok(im.message_reaction.list(build(ListMessageReactionRequest, message_id=question)))
    assert [(r.reaction_id, r.reaction_type.emoji_type, r.operator.operator_type, r.operator.operator_id) for r in listed.items] == [
        (reaction.reaction_id, "OnIt", "app", app["app_id"])
    ]

    # 5. Upload an image, send it, download it back byte-identical as a message resource.
    image = png(640, 480, os.urandom(120_000))
    image_key = ok(im.image.create(build(CreateImageRequest, request_body=build(CreateImageRequestBody, image_type="message", image=io.BytesIO(image))))).image_key
    assert image_key.startswith("img_v3_")
    send_image = build(CreateMessageRequestBody, receive_id=chat_id, msg_type="image", content=json.dumps({"image_key": image_key}))
    image_message = ok(im.message.create(build(CreateMessageRequest, receive_id_type="chat_id", request_body=send_image))).message_id
    resource = im.message_resource.get(build(GetMessageResourceRequest, message_id=image_message, file_key=image_key, type="image"))
    assert resource.success(), f"code={resource.code} msg={resource.msg}"
    assert resource.file.read() == image

    # 6. A shared card, patched: get shows the new card and `updated`.
    send_card = build(CreateMessageRequestBody, receive_id=chat_id, msg_type="interactive", content=card("deploying"))
    card_message = ok(im.message.create(build(CreateMessageRequest, receive_id_type="chat_id", request_body=send_card))).message_id
    ok(im.message.patch(build(PatchMessageRequest, message_id=card_message, request_body=build(PatchMessageRequestBody, content=card("deployed")))))
    shown = ok(im.message.get(build(GetMessageRequest, message_id=card_message))).items[0]
    assert json.loads(shown.body.content)["elements"][0]["text"]["content"] == "deployed"
    assert shown.updated is True

    # 7. Recall the thread reply: reads answer 230011, the history lists it deleted.
    ok(im.message.delete(build(DeleteMessageRequest, message_id=reply.message_id)))
    assert im.message.get(build(GetMessageRequest, message_id=reply.message_id)).code == 230011

    # The whole story as the chat's history shows it, in order.
    history = ok(im.message.list(build(ListMessageRequest, container_id_type="chat", container_id=chat_id, page_size=50))).items
    story = [(m.message_id, m.msg_type, m.sender.sender_type, m.deleted) for m in history if m.msg_type != "system"]
    assert story == [
        (question, "text", "user", False),
        (reply.message_id, "text", "app", True),
        (image_message, "image", "app", False),
        (card_message, "interactive", "app", False),
    ]
    in_thread = {m.message_id: m.thread_id for m in history if m.thread_id}
    assert in_thread == {question: reply.thread_id, reply.message_id: reply.thread_id}
    # The thread on its own: its root, then the (recalled) reply.
    thread = ok(im.message.list(build(ListMessageRequest, container_id_type="thread", container_id=reply.thread_id))).items
    assert [(m.message_id, m.deleted) for m in thread] == [(question, False), (reply.message_id, True)]
    assert json.loads(history[[m.message_id for m in history].index(image_message)].body.content) == {"image_key": image_key}

    # 8. Look a user up by email.
    lookup = build(BatchGetIdUserRequestBody, emails=["alice@acme.example"])
    found = ok(client.contact.v3.user.batch_get_id(build(BatchGetIdUserRequest, user_id_type="open_id", request_body=lookup))).user_list
    assert [(u.email, u.user_id) for u in found] == [("alice@acme.example", alice)]
