"""The Feishu event payloads larkstack produces (``domain::feishu_events``), fed to the official
Python SDK's ``EventDispatcherHandler.do`` as plain webhook pushes and decoded into its typed models.

The payloads are the golden files ``tests/sdk/event_payloads/*.json`` that the Rust test
``feishu_events::sdk_payloads_match_the_golden_files`` writes and keeps current (compact JSON,
schema 2.0, no encryption); this test needs no server.
"""

import json
import pathlib
import re

import lark_oapi as lark
import pytest

PAYLOADS = pathlib.Path(__file__).parent / "event_payloads"
TOKEN = "larkstackVerificationToken000001"
APP_ID = "cli_9f5343c580712544"
ACME = "2ca1d211f64f6438"
GLOBEX = "3cb2e322a75a7549"
GROUP = "oc_a0553eda9014c201e6969b478895c230"
P2P = "oc_b0553eda9014c201e6969b478895c231"
MESSAGE = "om_dc13264520392913993dd051dba21dcf"
AT = "1700000000123"
OPEN_ID = re.compile(r"^ou_[0-9a-f]{32}$")
UNION_ID = re.compile(r"^on_[0-9a-f]{32}$")


def load(name):
    return (PAYLOADS / f"{name}.json").read_bytes()


def dispatch(name, register):
    """Feeds one payload to a handler with one typed handler registered; returns what it got."""
    got = []
    builder = lark.EventDispatcherHandler.builder("", TOKEN)
    handler = getattr(builder, register)(got.append).build()
    req = lark.RawRequest()
    req.uri = "/webhook/event"
    req.headers = {"Content-Type": "application/json"}
    req.body = load(name)
    resp = handler.do(req)
    assert resp.status_code == 200, resp.content
    assert json.loads(resp.content) == {"msg": "success"}
    assert len(got) == 1
    data = got[0]
    assert data.schema == "2.0"
    assert data.header.app_id == APP_ID
    assert data.header.token == TOKEN
    assert re.fullmatch(r"[0-9a-f]{32}", data.header.event_id)
    assert data.header.create_time == AT
    return data


def ids(user_id, *, user_id_value=None):
    assert OPEN_ID.match(user_id.open_id), user_id.open_id
    assert UNION_ID.match(user_id.union_id), user_id.union_id
    assert user_id.user_id == user_id_value
    return user_id.open_id


def test_every_payload_file_is_compact_schema_2():
    files = sorted(PAYLOADS.glob("*.json"))
    assert len(files) == 15
    for f in files:
        text = f.read_text().rstrip("\n")
        v = json.loads(text)
        assert json.dumps(v, separators=(",", ":"), ensure_ascii=False) == text, f.name
        assert v["schema"] == "2.0"
        assert all(isinstance(x, str) for x in v["header"].values())


def test_message_receive_group_with_mentions():
    e = dispatch("message_receive_group", "register_p2_im_message_receive_v1").event
    assert e.sender.sender_type == "user"
    assert e.sender.tenant_key == ACME
    alice = ids(e.sender.sender_id, user_id_value="alice01")
    m = e.message
    assert (m.message_id, m.chat_id, m.chat_type, m.message_type) == (MESSAGE, GROUP, "group", "text")
    assert (m.create_time, m.update_time) == (AT, AT)
    assert json.loads(m.content) == {"text": "@_user_1 hello @_user_2"}
    bot, gina = m.mentions
    assert (bot.key, bot.mentioned_type, bot.name, bot.tenant_key) == ("@_user_1", "bot", "Event Bot", ACME)
    ids(bot.id)
    assert (gina.key, gina.mentioned_type, gina.name, gina.tenant_key) == ("@_user_2", "user", "Gina", GLOBEX)
    # gina is of another tenant: no user_id even with the employee-id scope.
    assert ids(gina.id) != alice


def test_message_receive_p2p():
    e = dispatch("message_receive_p2p", "register_p2_im_message_receive_v1").event
    assert (e.message.chat_id, e.message.chat_type) == (P2P, "p2p")
    assert json.loads(e.message.content) == {"text": "hi"}
    assert e.message.mentions is None


def test_message_receive_from_another_bot():
    e = dispatch("message_receive_from_bot", "register_p2_im_message_receive_v1").event
    assert e.sender.sender_type == "app"
    ids(e.sender.sender_id)
    assert [x.mentioned_type for x in e.message.mentions] == ["bot"]


@pytest.mark.parametrize(
    "name,register",
    [
        ("user_added", "register_p2_im_chat_member_user_added_v1"),
        ("user_deleted", "register_p2_im_chat_member_user_deleted_v1"),
        ("user_withdrawn", "register_p2_im_chat_member_user_withdrawn_v1"),
    ],
)
def test_member_user_events(name, register):
    e = dispatch(name, register).event
    assert (e.chat_id, e.external, e.name, e.i18n_names.en_us) == (GROUP, True, "Launch", "Launch")
    [gina] = e.users
    assert (gina.name, gina.tenant_key) == ("Gina", GLOBEX)
    ids(gina.user_id)
    if name == "user_deleted":
        # The other bot removed her: the operator is that bot, in this app's id space.
        assert e.operator_tenant_key == ACME
        assert ids(e.operator_id) != gina.user_id.open_id
    elif name == "user_added":
        assert e.operator_tenant_key == GLOBEX
        assert ids(e.operator_id) == gina.user_id.open_id
    else:
        assert ids(e.operator_id, user_id_value="alice01")


@pytest.mark.parametrize(
    "name,register",
    [
        ("bot_added", "register_p2_im_chat_member_bot_added_v1"),
        ("bot_deleted", "register_p2_im_chat_member_bot_deleted_v1"),
        ("chat_disbanded", "register_p2_im_chat_disbanded_v1"),
    ],
)
def test_bot_and_disband_events(name, register):
    e = dispatch(name, register).event
    assert (e.chat_id, e.external, e.operator_tenant_key, e.name) == (GROUP, True, ACME, "Launch")
    assert e.i18n_names.en_us == "Launch"
    if name == "bot_added":
        ids(e.operator_id, user_id_value="alice01")
    else:
        ids(e.operator_id)


def test_chat_updated_has_only_the_changed_keys():
    e = dispatch("chat_updated", "register_p2_im_chat_updated_v1").event
    assert e.chat_id == GROUP
    alice = ids(e.operator_id, user_id_value="alice01")
    assert (e.before_change.name, e.after_change.name) == ("Launch", "Launch 2")
    assert ids(e.before_change.owner_id, user_id_value="alice01") == alice
    assert ids(e.after_change.owner_id) != alice
    assert e.after_change.description is None and e.after_change.avatar is None
    assert e.moderator_list.added_member_list == [] and e.moderator_list.removed_member_list == []
    raw = json.loads(load("chat_updated"))["event"]
    assert sorted(raw["after_change"]) == ["name", "owner_id"]


def test_bot_p2p_chat_entered():
    e = dispatch("p2p_chat_entered", "register_p2_im_chat_access_event_bot_p2p_chat_entered_v1").event
    assert (e.chat_id, e.last_message_id, e.last_message_create_time) == (P2P, MESSAGE, "1700000000023")
    ids(e.operator_id, user_id_value="alice01")


def test_message_recalled():
    e = dispatch("message_recalled", "register_p2_im_message_recalled_v1").event
    assert (e.message_id, e.chat_id, e.recall_time, e.recall_type) == (MESSAGE, GROUP, AT, "group_owner")


def test_reaction_created_by_a_user():
    e = dispatch("reaction_created", "register_p2_im_message_reaction_created_v1").event
    assert (e.message_id, e.reaction_type.emoji_type, e.operator_type, e.action_time) == (MESSAGE, "THUMBSUP", "user", AT)
    ids(e.user_id, user_id_value="alice01")
    assert e.app_id is None


def test_reaction_deleted_by_a_bot():
    e = dispatch("reaction_deleted", "register_p2_im_message_reaction_deleted_v1").event
    assert (e.message_id, e.reaction_type.emoji_type, e.operator_type) == (MESSAGE, "THUMBSUP", "app")
    assert (e.app_id, e.user_id) == ("cli_a000000000000001", None)


def test_message_read():
    e = dispatch("message_read", "register_p2_im_message_message_read_v1").event
    assert e.message_id_list == [MESSAGE]
    assert (e.reader.read_time, e.reader.tenant_key) == (AT, ACME)
    ids(e.reader.reader_id, user_id_value="alice01")


def test_a_wrong_token_is_refused():
    got = []
    handler = (
        lark.EventDispatcherHandler.builder("", "another-token")
        .register_p2_im_message_receive_v1(got.append)
        .build()
    )
    req = lark.RawRequest()
    req.uri = "/webhook/event"
    req.body = load("message_receive_p2p")
    assert handler.do(req).status_code == 500
    assert got == []
