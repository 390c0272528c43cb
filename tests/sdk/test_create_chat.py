"""POST /open-apis/im/v1/chats driven through the unmodified official Python SDK (lark-oapi)."""

import uuid as uuidlib

import pytest
from lark_oapi.api.im.v1 import CreateChatRequest, CreateChatRequestBody, RestrictedModeSetting
from lark_oapi.core.cache import LocalCache
from lark_oapi.core.exception import ObtainAccessTokenException


def new_uuid():
    return f"sdk-{uuidlib.uuid4().hex}"


def chat_body(**fields):
    """A CreateChatRequestBody from keyword arguments, each passed to the builder method of that name."""
    builder = CreateChatRequestBody.builder()
    for name, value in fields.items():
        getattr(builder, name)(value)
    return builder.build()


def create_chat(client, body=None, *, user_id_type="open_id", uuid=None, set_bot_manager=None):
    builder = CreateChatRequest.builder().user_id_type(user_id_type)
    if uuid is not None:
        builder.uuid(uuid)
    if set_bot_manager is not None:
        builder.set_bot_manager(set_bot_manager)
    request = builder.request_body(body if body is not None else chat_body()).build()
    return client.im.v1.chat.create(request)


def assert_ok(resp):
    assert resp.success(), f"code={resp.code} msg={resp.msg} log_id={resp.get_log_id()}"
    return resp.data


def assert_code(resp, code):
    assert resp.code == code, f"expected code {code}, got code={resp.code} msg={resp.msg}"
    assert not resp.success()


@pytest.fixture
def demo(make_client):
    return make_client("demo-bot")


@pytest.fixture
def alice(directory):
    return directory.open_id("alice")


# --- tokens -----------------------------------------------------------------------------------------


def test_wrong_app_secret_fails_to_obtain_a_token(make_client):
    # A fresh token cache: the SDK caches tokens by app_id alone, and must not reuse demo-bot's real one.
    client = make_client("demo-bot", app_secret="wrongSecret0000000000000000000000", token_cache=LocalCache())

    # lark-oapi raises when the token endpoint answers code != 0 (here 10014 "app secret invalid").
    with pytest.raises(ObtainAccessTokenException) as excinfo:
        create_chat(client, chat_body(name="never created"))
    assert excinfo.value.code == 10014
    assert excinfo.value.msg == "app secret invalid"


# --- success ------------------------------------------------------------------------------------------


def test_create_private_chat(demo, directory, alice):
    members = [directory.open_id(u) for u in ("alice", "bob", "carol")]
    resp = create_chat(
        demo,
        chat_body(
            name="SDK 测试群",
            description="created by the lark-oapi scenario test",
            owner_id=alice,
            user_id_list=members,
            bot_id_list=[directory.app("helper-bot")["app_id"]],
        ),
        uuid=new_uuid(),
        set_bot_manager=True,
    )

    data = assert_ok(resp)
    assert resp.raw.status_code == 200
    assert data.chat_id.startswith("oc_")
    assert data.name == "SDK 测试群"
    assert data.description == "created by the lark-oapi scenario test"
    assert data.owner_id == alice
    assert data.owner_id_type == "open_id"
    assert data.chat_type == "private"
    assert data.external is False
    assert data.restricted_mode_setting.status is False
    assert resp.get_log_id() is not None


def test_same_uuid_and_owner_returns_the_same_chat(demo, directory, alice):
    uuid = new_uuid()
    body = chat_body(name="idempotent", owner_id=alice, user_id_list=[directory.open_id("bob")])

    first = assert_ok(create_chat(demo, body, uuid=uuid))
    again = assert_ok(create_chat(demo, body, uuid=uuid))

    assert again.chat_id == first.chat_id


def test_same_uuid_with_bot_owner_creates_another_chat(demo, alice):
    uuid = new_uuid()

    user_owned = assert_ok(create_chat(demo, chat_body(name="uuid owner", owner_id=alice), uuid=uuid))
    bot_owned = assert_ok(create_chat(demo, chat_body(name="uuid owner"), uuid=uuid))

    assert bot_owned.chat_id != user_owned.chat_id
    # Chats owned by the bot carry no owner fields.
    assert bot_owned.owner_id is None
    assert bot_owned.owner_id_type is None


def test_private_chat_without_name_is_untitled(demo, alice):
    data = assert_ok(create_chat(demo, chat_body(owner_id=alice)))

    assert data.name == "(无主题)"


def test_owner_given_as_union_id(demo, directory):
    alice_union = directory.union_id("alice")

    data = assert_ok(create_chat(demo, chat_body(name="by union_id", owner_id=alice_union), user_id_type="union_id"))

    assert data.owner_id == alice_union
    assert data.owner_id_type == "union_id"


def test_external_chat_with_a_friend_from_another_tenant(demo, directory, alice):
    data = assert_ok(
        create_chat(demo, chat_body(name="external", owner_id=alice, user_id_list=[directory.open_id("gina")]))
    )

    assert data.external is True


# --- errors -------------------------------------------------------------------------------------------


def error_case(case_id, code, request, app="demo-bot"):
    """A create-chat call by ``app`` that must fail with ``code``.

    ``request(d)`` returns the keyword arguments for ``create_chat`` given the Directory ``d``; note that
    ``d.open_id(user)`` is demo-bot's view of the user (open_ids are per app)."""
    return pytest.param(app, request, code, id=case_id)


def all_members_may_do_everything():
    return (
        RestrictedModeSetting.builder()
        .status(True)
        .screenshot_has_permission_setting("all_members")
        .download_has_permission_setting("all_members")
        .message_has_permission_setting("all_members")
        .build()
    )


ERROR_CASES = [
    error_case("public-without-name", 232042, lambda d: dict(body=chat_body(chat_type="public"))),
    error_case("public-name-too-short", 232020, lambda d: dict(body=chat_body(chat_type="public", name="a"))),
    error_case(
        "resigned-member",
        232022,
        lambda d: dict(body=chat_body(name="with dave", user_id_list=[d.open_id("alice"), d.open_id("dave")])),
    ),
    error_case(
        "unknown-member", 232043, lambda d: dict(body=chat_body(name="ghost", user_id_list=["ou_doesnotexist"]))
    ),
    error_case("unknown-owner", 232030, lambda d: dict(body=chat_body(name="ghost", owner_id="ou_doesnotexist"))),
    error_case("blocked-word-in-name", 232023, lambda d: dict(body=chat_body(name="含有违禁词的群"))),
    error_case(
        "unknown-bot", 232021, lambda d: dict(body=chat_body(name="bots", bot_id_list=["cli_0000000000000000"]))
    ),
    error_case(
        "restricted-mode-that-restricts-nothing",
        232001,
        lambda d: dict(body=chat_body(name="restricted", restricted_mode_setting=all_members_may_do_everything())),
    ),
    error_case(
        "external-member-not-a-friend-of-the-owner",
        232043,
        lambda d: dict(body=chat_body(name="not friends", owner_id=d.open_id("bob"), user_id_list=[d.open_id("gina")])),
    ),
    error_case("app-without-bot", 232025, lambda d: dict(body=chat_body(name="no bot")), app="no-bot-app"),
    error_case(
        "user_id-without-employee-id-scope",
        99991672,
        lambda d: dict(body=chat_body(name="by user_id", owner_id=d.user("alice")["user_id"]), user_id_type="user_id"),
        app="helper-bot",
    ),
    error_case(
        "tenant-without-public-chats",
        232091,
        lambda d: dict(body=chat_body(chat_type="public", name="xy")),
        app="globex-bot",
    ),
    error_case("disabled-app", 232034, lambda d: dict(body=chat_body(name="disabled")), app="disabled-app"),
]


@pytest.mark.parametrize("app_key, request_args, code", ERROR_CASES)
def test_create_chat_error(make_client, directory, app_key, request_args, code):
    resp = create_chat(make_client(app_key), **request_args(directory))

    assert_code(resp, code)
    assert resp.msg
    assert resp.get_log_id() is not None


def test_error_response_details(demo):
    resp = create_chat(demo, chat_body(name="ghost", user_id_list=["ou_doesnotexist"]))

    assert_code(resp, 232043)
    assert resp.raw.status_code == 400
    log_id = resp.get_log_id()
    assert log_id
    # lark-oapi leaves `error` as the raw JSON object (BaseResponse declares no types for it).
    error = resp.error
    assert error["log_id"] == log_id
    assert log_id in error["troubleshooter"]
    assert {"field": "user_id_list", "value": "ou_doesnotexist"}.items() <= error["field_violations"][0].items()
