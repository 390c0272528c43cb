"""A chat's whole life driven through the unmodified official Python SDK (lark-oapi): get, update,
members, managers, is_in_chat, me_join, messages, list, search and disband.

Every test creates its own chats on the module's server, so the tests do not depend on each other.
IDs of users are always demo-bot's open_ids unless a test says otherwise (open_ids are per app).
"""

import json
import subprocess
import time
import uuid as uuidlib
from pathlib import Path

import lark_oapi as lark
import pytest
from lark_oapi.api.im.v1 import (
    AddManagersChatManagersRequest,
    AddManagersChatManagersRequestBody,
    CreateChatMembersRequest,
    CreateChatMembersRequestBody,
    CreateChatRequest,
    CreateChatRequestBody,
    CreateMessageRequest,
    CreateMessageRequestBody,
    DeleteChatMembersRequest,
    DeleteChatMembersRequestBody,
    DeleteChatRequest,
    DeleteManagersChatManagersRequest,
    DeleteManagersChatManagersRequestBody,
    GetChatMembersRequest,
    GetChatRequest,
    IsInChatChatMembersRequest,
    ListChatRequest,
    ListMessageRequest,
    MeJoinChatMembersRequest,
    SearchChatRequest,
    UpdateChatRequest,
    UpdateChatRequestBody,
)

# conftest's server plumbing, reused for the one test that needs a bigger directory than the demo's.
from conftest import Directory, build, ok, running_larkstack


# --- helpers ----------------------------------------------------------------------------------------


def expect_code(resp, code):
    assert resp.code == code, f"expected code {code}, got code={resp.code} msg={resp.msg}"
    assert not resp.success()


def raw_data(resp):
    """``data`` exactly as the server sent it (to check for keys the SDK would silently drop)."""
    return json.loads(resp.raw.content)["data"]


def as_dict(sdk_object):
    """An SDK model as plain JSON values, as the SDK parsed it."""
    return json.loads(lark.JSON.marshal(sdk_object))


def unique(prefix):
    return f"{prefix} {uuidlib.uuid4().hex[:8]}"


def text(s):
    return json.dumps({"text": s})


class Bot:
    """One app's calls through the SDK. Each method builds the SDK request and returns the SDK response."""

    def __init__(self, client):
        self.v1 = client.im.v1

    # chats
    def create_chat(self, **body):
        request = build(CreateChatRequest, user_id_type="open_id", request_body=build(CreateChatRequestBody, **body))
        return self.v1.chat.create(request)

    def new_chat(self, **body):
        """Creates a chat that must succeed; returns its chat_id."""
        return ok(self.create_chat(**body)).chat_id

    def get_chat(self, chat_id):
        return self.v1.chat.get(build(GetChatRequest, chat_id=chat_id, user_id_type="open_id"))

    def update_chat(self, chat_id, **body):
        request = build(
            UpdateChatRequest, chat_id=chat_id, user_id_type="open_id", request_body=build(UpdateChatRequestBody, **body)
        )
        return self.v1.chat.update(request)

    def disband(self, chat_id):
        return self.v1.chat.delete(build(DeleteChatRequest, chat_id=chat_id))

    def list_chats(self, **query):
        return self.v1.chat.list(build(ListChatRequest, user_id_type="open_id", **query))

    def all_chats(self, page_size, sort_type=None):
        """Walks chat.list page by page; returns every item in order."""
        query = dict(page_size=page_size)
        if sort_type:
            query["sort_type"] = sort_type
        return walk(lambda token: self.list_chats(**query, **({"page_token": token} if token else {})), page_size)

    def search(self, query, **extra):
        return self.v1.chat.search(build(SearchChatRequest, user_id_type="open_id", query=query, **extra))

    # members
    def add_members(self, chat_id, ids, succeed_type=None, member_id_type="open_id"):
        fields = dict(chat_id=chat_id, member_id_type=member_id_type)
        if succeed_type is not None:
            fields["succeed_type"] = succeed_type
        request = build(CreateChatMembersRequest, **fields, request_body=build(CreateChatMembersRequestBody, id_list=ids))
        return self.v1.chat_members.create(request)

    def remove_members(self, chat_id, ids):
        request = build(
            DeleteChatMembersRequest,
            chat_id=chat_id,
            member_id_type="open_id",
            request_body=build(DeleteChatMembersRequestBody, id_list=ids),
        )
        return self.v1.chat_members.delete(request)

    def list_members(self, chat_id, page_size=None, page_token=None):
        fields = dict(chat_id=chat_id, member_id_type="open_id")
        if page_size is not None:
            fields["page_size"] = page_size
        if page_token is not None:
            fields["page_token"] = page_token
        return self.v1.chat_members.get(build(GetChatMembersRequest, **fields))

    def is_in_chat(self, chat_id):
        return self.v1.chat_members.is_in_chat(build(IsInChatChatMembersRequest, chat_id=chat_id))

    def me_join(self, chat_id):
        return self.v1.chat_members.me_join(build(MeJoinChatMembersRequest, chat_id=chat_id))

    # managers
    def add_managers(self, chat_id, ids):
        request = build(
            AddManagersChatManagersRequest,
            chat_id=chat_id,
            member_id_type="open_id",
            request_body=build(AddManagersChatManagersRequestBody, manager_ids=ids),
        )
        return self.v1.chat_managers.add_managers(request)

    def delete_managers(self, chat_id, ids):
        request = build(
            DeleteManagersChatManagersRequest,
            chat_id=chat_id,
            member_id_type="open_id",
            request_body=build(DeleteManagersChatManagersRequestBody, manager_ids=ids),
        )
        return self.v1.chat_managers.delete_managers(request)

    # messages
    def send(self, receive_id, content, *, receive_id_type="chat_id", msg_type="text", uuid=None):
        body = dict(receive_id=receive_id, msg_type=msg_type, content=content)
        if uuid is not None:
            body["uuid"] = uuid
        request = build(
            CreateMessageRequest, receive_id_type=receive_id_type, request_body=build(CreateMessageRequestBody, **body)
        )
        return self.v1.message.create(request)

    def list_messages(self, chat_id, **query):
        request = build(ListMessageRequest, container_id_type="chat", container_id=chat_id, **query)
        return self.v1.message.list(request)


def walk(fetch_page, page_size):
    """Follows page tokens from ``fetch_page(token)`` until ``has_more`` is false; returns all items."""
    items, token = [], None
    for _ in range(1000):
        data = ok(fetch_page(token))
        assert isinstance(data.has_more, bool)
        assert len(data.items) <= page_size
        items.extend(data.items)
        if not data.has_more:
            return items
        assert data.page_token, "has_more without a page_token"
        token = data.page_token
    pytest.fail("pagination did not end")


def ids_of(items):
    return [item.chat_id for item in items]


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def demo(make_client):
    return Bot(make_client("demo-bot"))


@pytest.fixture
def helper(make_client):
    return Bot(make_client("helper-bot"))


@pytest.fixture
def oid(directory):
    """``oid("alice")`` → alice's open_id as demo-bot sees her; ``oid("alice", "helper-bot")`` as helper-bot does."""
    return directory.open_id


@pytest.fixture
def app_id(directory):
    return lambda key: directory.app(key)["app_id"]


@pytest.fixture
def team_chat(demo, oid):
    """A private chat created by demo-bot: owner alice, members alice and bob (demo-bot is in it)."""
    return demo.new_chat(name=unique("lifecycle"), owner_id=oid("alice"), user_id_list=[oid("bob")])


# --- get ----------------------------------------------------------------------------------------------


def test_get_chat(demo, oid, team_chat, directory):
    resp = demo.get_chat(team_chat)
    data = ok(resp)

    assert "chat_id" not in raw_data(resp)
    assert not hasattr(data, "chat_id")
    assert data.user_count == "2"  # strings, not numbers
    assert data.bot_count == "1"
    assert data.chat_status == "normal"
    assert data.owner_id == oid("alice")
    assert data.owner_id_type == "open_id"
    assert data.user_manager_id_list == []
    assert data.bot_manager_id_list == []
    assert data.chat_mode == "group"
    assert data.chat_type == "private"
    assert data.tenant_key == directory.tenants["acme"]["tenant_key"]


# --- update -------------------------------------------------------------------------------------------


def test_update_changes_only_the_given_fields(demo, team_chat):
    before = as_dict(ok(demo.get_chat(team_chat)))

    new_name = unique("renamed")
    ok(demo.update_chat(team_chat, name=new_name, description="now with a description"))

    after = as_dict(ok(demo.get_chat(team_chat)))
    assert after["name"] == new_name
    assert after["description"] == "now with a description"
    unchanged = lambda d: {k: v for k, v in d.items() if k not in ("name", "description")}
    assert unchanged(after) == unchanged(before)


def test_owner_transfer_needs_a_member(demo, oid):
    chat_id = demo.new_chat(name=unique("transfer"), owner_id=oid("alice"), user_id_list=[oid("carol")])

    # bob is not in the chat yet: 232012 "new owner not in chat", and the owner stays alice.
    expect_code(demo.update_chat(chat_id, owner_id=oid("bob")), 232012)
    assert ok(demo.get_chat(chat_id)).owner_id == oid("alice")

    ok(demo.add_members(chat_id, [oid("bob")]))
    ok(demo.update_chat(chat_id, owner_id=oid("bob")))

    data = ok(demo.get_chat(chat_id))
    assert data.owner_id == oid("bob")
    assert data.owner_id_type == "open_id"


def test_only_owner_may_add_members_means_no_share_card(demo, team_chat):
    ok(demo.update_chat(team_chat, add_member_permission="only_owner"))

    data = ok(demo.get_chat(team_chat))
    assert data.add_member_permission == "only_owner"
    assert data.share_card_permission == "not_allowed"


# --- members ------------------------------------------------------------------------------------------


def test_add_members(demo, oid, team_chat):
    data = ok(demo.add_members(team_chat, [oid("carol"), oid("erin")]))
    assert data.invalid_id_list == []
    assert data.not_existed_id_list == []
    assert data.pending_approval_id_list == []
    assert ok(demo.get_chat(team_chat)).user_count == "4"

    # dave has resigned: with succeed_type=1 the call succeeds and reports him.
    data = ok(demo.add_members(team_chat, [oid("dave")], succeed_type=1))
    assert data.invalid_id_list == [oid("dave")]
    assert data.not_existed_id_list == []

    # An unknown ID fails the call by default (succeed_type=0) …
    expect_code(demo.add_members(team_chat, ["ou_nobody"], succeed_type=0), 232043)
    # … and is reported with succeed_type=1.
    data = ok(demo.add_members(team_chat, ["ou_nobody"], succeed_type=1))
    assert data.not_existed_id_list == ["ou_nobody"]
    assert data.invalid_id_list == []

    assert ok(demo.get_chat(team_chat)).user_count == "4"


def test_list_members_pages_through_every_user_once(demo, oid, app_id, directory):
    users = ["alice", "bob", "carol", "erin"]
    chat_id = demo.new_chat(
        name=unique("members"),
        owner_id=oid("alice"),
        user_id_list=[oid(u) for u in users[1:]],
        bot_id_list=[app_id("helper-bot")],
    )

    pages, token = [], None
    while True:
        data = ok(demo.list_members(chat_id, page_size=2, page_token=token))
        assert isinstance(data.member_total, int)
        assert data.member_total == 4  # users only
        assert isinstance(data.has_more, bool)
        assert len(data.items) <= 2
        pages.append(data.items)
        if not data.has_more:
            break
        token = data.page_token
        assert len(pages) < 10, "pagination did not end"

    members = [m for page in pages for m in page]
    assert sorted(m.member_id for m in members) == sorted(oid(u) for u in users)  # each exactly once, no bots
    by_id = {oid(u): directory.user(u) for u in users}
    for m in members:
        assert m.member_id_type == "open_id"
        assert m.name == by_id[m.member_id]["name"]
        assert m.tenant_key == directory.tenants["acme"]["tenant_key"]
    assert app_id("helper-bot") not in [m.member_id for m in members]
    assert app_id("demo-bot") not in [m.member_id for m in members]


def test_remove_members(demo, oid, team_chat):
    ok(demo.add_members(team_chat, [oid("erin")]))

    data = ok(demo.remove_members(team_chat, [oid("erin")]))
    assert data.invalid_id_list == []
    listed = [m.member_id for m in ok(demo.list_members(team_chat)).items]
    assert oid("erin") not in listed

    # erin is no longer a member: removing her again reports her.
    data = ok(demo.remove_members(team_chat, [oid("erin")]))
    assert data.invalid_id_list == [oid("erin")]


# --- managers -----------------------------------------------------------------------------------------


def test_add_and_delete_managers(demo, oid):
    chat_id = demo.new_chat(name=unique("managers"), owner_id=oid("alice"), user_id_list=[oid("bob"), oid("carol")])

    data = ok(demo.add_managers(chat_id, [oid("carol")]))
    assert oid("carol") in data.chat_managers
    assert ok(demo.get_chat(chat_id)).user_manager_id_list == [oid("carol")]

    data = ok(demo.delete_managers(chat_id, [oid("carol")]))
    assert oid("carol") not in (data.chat_managers or [])
    assert ok(demo.get_chat(chat_id)).user_manager_id_list == []


EXTRA_USERS = [f"extra{i:02d}" for i in range(1, 12)]  # 11 users for 11 managers


@pytest.fixture(scope="module")
def crowded(larkstack_bin, tmp_path_factory):
    """A server whose directory is the demo's plus 11 more acme users (the demo has too few users to
    reach the 10-manager cap). Yields ``(Server, Directory)``."""
    tmp = tmp_path_factory.mktemp("crowded")
    fixture = tmp / "crowded.toml"
    demo_toml = (Path(__file__).resolve().parents[2] / "fixtures" / "demo.toml").read_text()
    extra = "".join(f'\n[[users]]\nkey = "{k}"\ntenant = "acme"\nname = "{k}"\n' for k in EXTRA_USERS)
    fixture.write_text(demo_toml + "\n" + extra)

    out = subprocess.run(
        [larkstack_bin, "directory", "--fixture", str(fixture)], check=True, capture_output=True, text=True
    ).stdout
    directory = Directory.from_json(json.loads(out))

    with running_larkstack(larkstack_bin, tmp / "data", fixture) as server:
        yield server, directory


def test_eleventh_manager_is_refused(crowded):
    server, directory = crowded
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
    bot = Bot(client)
    extras = [directory.open_id(k) for k in EXTRA_USERS]
    chat_id = bot.new_chat(name=unique("crowded"), owner_id=directory.open_id("alice"), user_id_list=extras)

    data = ok(bot.add_managers(chat_id, extras[:10]))
    assert sorted(data.chat_managers) == sorted(extras[:10])

    expect_code(bot.add_managers(chat_id, extras[10:]), 232040)
    assert sorted(ok(bot.get_chat(chat_id)).user_manager_id_list) == sorted(extras[:10])


# --- is_in_chat and me_join ---------------------------------------------------------------------------


def test_is_in_chat(demo, helper, team_chat):
    assert ok(demo.is_in_chat(team_chat)).is_in_chat is True
    assert ok(helper.is_in_chat(team_chat)).is_in_chat is False


def test_me_join_public_chat(demo, helper):
    chat_id = demo.new_chat(name=unique("public"), chat_type="public")

    ok(helper.me_join(chat_id))

    assert ok(helper.is_in_chat(chat_id)).is_in_chat is True


def test_me_join_private_chat_is_refused(demo, helper, team_chat):
    expect_code(helper.me_join(team_chat), 232008)
    assert ok(helper.is_in_chat(team_chat)).is_in_chat is False


# --- messages -----------------------------------------------------------------------------------------


def test_send_message_to_chat(demo, team_chat, app_id):
    uuid = unique("msg").replace(" ", "-")

    resp = demo.send(team_chat, text("hi"), uuid=uuid)
    data = ok(resp)
    assert data.message_id.startswith("om_")
    assert data.chat_id == team_chat
    assert data.msg_type == "text"
    assert data.body.content == text("hi")
    assert data.sender.sender_type == "app"
    assert data.sender.id == app_id("demo-bot")

    # The same uuid again: the first message, not a second one.
    assert ok(demo.send(team_chat, text("hi"), uuid=uuid)).message_id == data.message_id
    assert [m.message_id for m in ok(demo.list_messages(team_chat)).items] == [data.message_id]


def test_send_message_errors(demo, helper, oid, team_chat):
    # text content without "text"
    expect_code(demo.send(team_chat, "{}"), 230001)
    # helper-bot has only im:chat
    expect_code(helper.send(team_chat, text("hi")), 99991672)
    # demo-bot is not in a chat helper-bot created
    elsewhere = helper.new_chat(name=unique("helper's"), owner_id=oid("alice", "helper-bot"))
    expect_code(demo.send(elsewhere, text("hi")), 230002)


def test_send_message_to_user_uses_a_p2p_chat(demo, oid, team_chat):
    first = ok(demo.send(oid("alice"), text("hello alice"), receive_id_type="open_id"))
    assert first.message_id.startswith("om_")
    assert first.chat_id.startswith("oc_")
    assert first.chat_id != team_chat

    again = ok(demo.send(oid("alice"), text("hello again"), receive_id_type="open_id"))
    to_bob = ok(demo.send(oid("bob"), text("hello bob"), receive_id_type="open_id"))
    assert again.chat_id == first.chat_id  # one p2p chat per bot and user
    assert to_bob.chat_id != first.chat_id
    assert first.chat_id not in ids_of(demo.all_chats(page_size=100))  # p2p chats are not groups


def test_list_messages_newest_first(demo, team_chat):
    sent = [ok(demo.send(team_chat, text(s))).message_id for s in ("one", "two", "three")]

    items = ok(demo.list_messages(team_chat, sort_type="ByCreateTimeDesc")).items

    assert [m.message_id for m in items] == sent[::-1]
    assert [m.body.content for m in items] == [text(s) for s in ("three", "two", "one")]
    assert all(m.chat_id == team_chat and m.msg_type == "text" for m in items)


# --- list and search ----------------------------------------------------------------------------------


def test_chat_list_shows_the_chat(demo, oid, team_chat, directory):
    items = {item.chat_id: item for item in demo.all_chats(page_size=100)}

    item = items[team_chat]
    assert item.name.startswith("lifecycle ")
    assert item.owner_id == oid("alice")
    assert item.owner_id_type == "open_id"
    assert item.chat_status == "normal"
    assert item.chat_mode == "group"
    assert item.external is False
    assert item.tenant_key == directory.tenants["acme"]["tenant_key"]


@pytest.mark.parametrize("sort_type", [None, "ByCreateTimeAsc", "ByActiveTimeDesc"])
def test_chat_list_pages_return_each_chat_once(demo, sort_type):
    created = [demo.new_chat(name=unique(f"paging {i}")) for i in range(5)]

    listed = ids_of(demo.all_chats(page_size=2, sort_type=sort_type))

    assert len(listed) == len(set(listed)), "a chat was listed twice"
    assert all(listed.count(c) == 1 for c in created)


def test_chat_list_by_active_time_puts_the_latest_message_first(demo):
    first, second, third = (demo.new_chat(name=unique(f"active {i}")) for i in range(3))
    time.sleep(0.01)  # the message is strictly later than every creation

    ok(demo.send(first, text("wake up")))
    assert ids_of(ok(demo.list_chats(sort_type="ByActiveTimeDesc", page_size=3)).items)[0] == first

    time.sleep(0.01)
    ok(demo.send(second, text("me too")))
    assert ids_of(ok(demo.list_chats(sort_type="ByActiveTimeDesc", page_size=3)).items)[:2] == [second, first]


@pytest.mark.parametrize(
    "name, query",
    [
        pytest.param("Quarterly planning {tag}", "planning {tag}", id="latin"),
        pytest.param("星辰研发群 {tag}", "星辰研发", id="cjk"),
    ],
)
def test_search_finds_chat_by_part_of_its_name(demo, name, query):
    tag = uuidlib.uuid4().hex[:8]
    chat_id = demo.new_chat(name=name.format(tag=tag))

    data = ok(demo.search(query.format(tag=tag)))

    assert chat_id in ids_of(data.items)
    assert next(i for i in data.items if i.chat_id == chat_id).name == name.format(tag=tag)


def test_search_with_empty_query_finds_nothing(demo, team_chat):
    data = ok(demo.search(""))
    assert data.items == []


# --- disband ------------------------------------------------------------------------------------------


def test_disband(demo, oid, team_chat):
    ok(demo.disband(team_chat))

    assert ok(demo.get_chat(team_chat)).chat_status == "dissolved"
    expect_code(demo.update_chat(team_chat, name=unique("too late")), 232009)
    expect_code(demo.add_members(team_chat, [oid("carol")]), 232009)
    assert team_chat not in ids_of(demo.all_chats(page_size=100))


# --- a member bot without owner or manager rights -----------------------------------------------------


def test_member_bot_without_owner_rights(demo, helper, oid, app_id):
    chat_id = demo.new_chat(
        name=unique("shared"),
        owner_id=oid("alice"),
        user_id_list=[oid("bob")],
        bot_id_list=[app_id("helper-bot")],
        edit_permission="all_members",
    )

    new_name = unique("renamed by helper")
    ok(helper.update_chat(chat_id, name=new_name))
    assert ok(demo.get_chat(chat_id)).name == new_name

    expect_code(helper.update_chat(chat_id, chat_type="public"), 232016)
    expect_code(helper.disband(chat_id), 232017)
    expect_code(helper.add_managers(chat_id, [oid("bob", "helper-bot")]), 232038)
    assert ok(demo.get_chat(chat_id)).chat_status == "normal"
