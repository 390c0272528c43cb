"""A bot's everyday messaging through the unmodified official Python SDK (lark-oapi): reply in a
thread, read a message, edit it, stream a card by patching it, react, list and remove reactions,
ask who read a message, forward and recall — with a user reading and reacting through the
control API, as from the Feishu client.
"""

import json

import lark_oapi as lark
import pytest
from lark_oapi.api.im.v1 import (
    CreateChatRequest,
    CreateChatRequestBody,
    CreateMessageReactionRequest,
    CreateMessageReactionRequestBody,
    CreateMessageRequest,
    CreateMessageRequestBody,
    DeleteMessageReactionRequest,
    DeleteMessageRequest,
    Emoji,
    ForwardMessageRequest,
    ForwardMessageRequestBody,
    GetMessageRequest,
    ListMessageReactionRequest,
    ListMessageRequest,
    PatchMessageRequest,
    PatchMessageRequestBody,
    ReadUsersMessageRequest,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
    UpdateMessageRequest,
    UpdateMessageRequestBody,
)

from conftest import act, build, ok, running_larkstack


def text(s):
    return json.dumps({"text": s})


def card(s):
    return json.dumps({"config": {"update_multi": True}, "elements": [{"tag": "div", "text": {"tag": "plain_text", "content": s}}]})


@pytest.fixture(scope="module")
def server(larkstack_bin, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("larkstack-messaging")
    with running_larkstack(larkstack_bin, data_dir) as s:
        yield s


@pytest.fixture
def im(server, directory):
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
    return client.im.v1


def test_a_bot_replies_in_a_thread_reacts_edits_streams_a_card_and_recalls(server, im, directory):
    alice = directory.open_id("alice")
    body = build(CreateChatRequestBody, name="Support", user_id_list=[alice])
    chat_id = ok(im.chat.create(build(CreateChatRequest, user_id_type="open_id", request_body=body))).chat_id
    question = act(server, f"/_larkstack/chats/{chat_id}/messages", {"user": "alice", "text": "is it down?"})["message_id"]

    # Reply in a thread; the reply carries the chain.
    reply_body = build(ReplyMessageRequestBody, content=text("looking"), msg_type="text", reply_in_thread=True, uuid="py-reply-1")
    reply = ok(im.message.reply(build(ReplyMessageRequest, message_id=question, request_body=reply_body)))
    assert (reply.root_id, reply.parent_id) == (question, question)
    assert reply.thread_id.startswith("omt_")
    again = ok(im.message.reply(build(ReplyMessageRequest, message_id=question, request_body=reply_body)))
    assert again.message_id == reply.message_id, "uuid dedup"

    # Get: the question now belongs to the thread.
    got = ok(im.message.get(build(GetMessageRequest, message_id=question)))
    assert [m.message_id for m in got.items] == [question]
    assert got.items[0].thread_id == reply.thread_id
    assert json.loads(got.items[0].body.content) == {"text": "is it down?"}

    # React (a "typing…" marker), list, remove.
    reaction_body = build(CreateMessageReactionRequestBody, reaction_type=build(Emoji, emoji_type="Typing"))
    reaction = ok(im.message_reaction.create(build(CreateMessageReactionRequest, message_id=question, request_body=reaction_body)))
    assert (reaction.operator.operator_type, reaction.reaction_type.emoji_type) == ("app", "Typing")
    act(server, f"/_larkstack/messages/{question}/reactions", {"user": "alice", "emoji_type": "THUMBSUP"})
    listed = ok(im.message_reaction.list(build(ListMessageReactionRequest, message_id=question, user_id_type="open_id")))
    assert [(r.reaction_type.emoji_type, r.operator.operator_type, r.operator.operator_id) for r in listed.items] == [
        ("Typing", "app", directory.app("demo-bot")["app_id"]),
        ("THUMBSUP", "user", alice),
    ]
    thumbs = ok(im.message_reaction.list(build(ListMessageReactionRequest, message_id=question, reaction_type="THUMBSUP")))
    assert len(thumbs.items) == 1 and thumbs.has_more is False
    removed = ok(im.message_reaction.delete(build(DeleteMessageReactionRequest, message_id=question, reaction_id=reaction.reaction_id)))
    assert removed.reaction_id == reaction.reaction_id
    bad = im.message_reaction.create(
        build(CreateMessageReactionRequest, message_id=question, request_body=build(CreateMessageReactionRequestBody, reaction_type=build(Emoji, emoji_type="typing")))
    )
    assert bad.code == 231001

    # Edit the reply.
    edited = ok(im.message.update(build(UpdateMessageRequest, message_id=reply.message_id, request_body=build(UpdateMessageRequestBody, msg_type="text", content=text("fixed")))))
    assert edited.updated is True and json.loads(edited.body.content) == {"text": "fixed"}
    alices = im.message.update(build(UpdateMessageRequest, message_id=question, request_body=build(UpdateMessageRequestBody, msg_type="text", content=text("x"))))
    assert alices.code == 230071

    # Stream a card: send it, then patch it twice.
    send_body = build(CreateMessageRequestBody, receive_id=chat_id, msg_type="interactive", content=card("step 1"))
    sent = ok(im.message.create(build(CreateMessageRequest, receive_id_type="chat_id", request_body=send_body)))
    for step in ("step 2", "done"):
        ok(im.message.patch(build(PatchMessageRequest, message_id=sent.message_id, request_body=build(PatchMessageRequestBody, content=card(step)))))
    shown = ok(im.message.get(build(GetMessageRequest, message_id=sent.message_id))).items[0]
    assert json.loads(shown.body.content)["elements"][0]["text"]["content"] == "done"
    assert shown.updated is True

    # Alice reads the chat: read receipts for the bot's messages.
    act(server, f"/_larkstack/chats/{chat_id}/read", {"user": "alice"})
    readers = ok(im.message.read_users(build(ReadUsersMessageRequest, message_id=sent.message_id, user_id_type="open_id")))
    assert [(r.user_id, r.user_id_type) for r in readers.items] == [(alice, "open_id")]
    assert int(readers.items[0].timestamp) >= int(sent.create_time)
    theirs = im.message.read_users(build(ReadUsersMessageRequest, message_id=question, user_id_type="open_id"))
    assert theirs.code == 230012

    # Forward the card to alice directly.
    forwarded = ok(im.message.forward(build(ForwardMessageRequest, message_id=sent.message_id, receive_id_type="open_id", request_body=build(ForwardMessageRequestBody, receive_id=alice))))
    assert forwarded.msg_type == "interactive" and forwarded.chat_id != chat_id

    # Recall the reply: it is gone for reads and replies, and listed as deleted.
    ok(im.message.delete(build(DeleteMessageRequest, message_id=reply.message_id)))
    assert im.message.get(build(GetMessageRequest, message_id=reply.message_id)).code == 230011
    again = im.message.reply(build(ReplyMessageRequest, message_id=reply.message_id, request_body=build(ReplyMessageRequestBody, content=text("?"), msg_type="text")))
    assert again.code == 230011
    history = ok(im.message.list(build(ListMessageRequest, container_id_type="chat", container_id=chat_id)))
    recalled = [m for m in history.items if m.message_id == reply.message_id]
    assert recalled and recalled[0].deleted is True
