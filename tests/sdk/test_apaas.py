"""aPaaS user tasks through the unmodified official Python SDK (lark-oapi): find tasks with
``client.apaas.v1.user_task.query``, start a group chat from one with ``.chat_group``, then read the
chat back through the IM API.

People are named by Kunlun user IDs on the aPaaS side and by demo-bot's open_ids on the IM side.
"""

import lark_oapi as lark
from lark_oapi.api.apaas.v1 import (
    ChatGroupUserTaskRequest,
    ChatGroupUserTaskRequestBody,
    QueryUserTaskRequest,
    QueryUserTaskRequestBody,
)
from lark_oapi.api.im.v1 import GetChatMembersRequest, GetChatRequest


def chat_group(client, task_id, **body):
    builder = ChatGroupUserTaskRequestBody.builder()
    for name, value in body.items():
        getattr(builder, name)(value)
    req = ChatGroupUserTaskRequest.builder().task_id(task_id).request_body(builder.build()).build()
    return client.apaas.v1.user_task.chat_group(req)


def query(client, **body):
    builder = QueryUserTaskRequestBody.builder()
    for name, value in body.items():
        getattr(builder, name)(value)
    return client.apaas.v1.user_task.query(QueryUserTaskRequest.builder().request_body(builder.build()).build())


def member_ids(client, chat_id):
    resp = client.im.v1.chat_members.get(GetChatMembersRequest.builder().chat_id(chat_id).build())
    assert resp.success(), resp.msg
    return sorted(m.member_id for m in resp.data.items)


def test_find_a_task_then_start_its_chat_and_read_it_through_im(make_client, directory):
    client = make_client("demo-bot")
    bob = directory.kunlun_id("bob")

    # Bob looks for what is waiting on him.
    resp = query(client, kunlun_user_id=bob, type="pending", source="assignMe", limit="10", offset="0")
    assert resp.success(), f"{resp.code} {resp.msg}"
    assert resp.data.count == "1"
    task = resp.data.tasks[0]
    leave = directory.task("leave-approve")
    assert task.task_id == leave["task_id"]
    assert task.workflow_instance.status == "in_process"
    assert {l.language_code: l.text for l in task.workflow_instance.label}["2052"] == "请假申请：Alice 王 3 天"
    assert task.initiator.user_id == directory.kunlun_id("alice")
    assert task.initiator.name == "Alice 王"
    assert task.summarys[0].file_key.text == "请假天数"
    assert task.summarys[0].file_value[0].text == "3 天"

    # He starts a chat about it with the initiator and the cc'd colleague.
    resp = chat_group(
        client, task.task_id,
        operator_user_id=bob,
        invite_user_ids=[directory.kunlun_id("alice"), directory.kunlun_id("carol")],
        chat_name="请假沟通",
    )
    assert resp.success(), f"{resp.code} {resp.msg}"
    chat_id = resp.data.chat_id
    assert chat_id.startswith("oc_")

    got = client.im.v1.chat.get(GetChatRequest.builder().chat_id(chat_id).build())
    assert got.success(), got.msg
    assert got.data.name == "请假沟通"
    assert got.data.owner_id == directory.open_id("bob")
    assert got.data.bot_count == "1"
    assert member_ids(client, chat_id) == sorted(directory.open_id(u) for u in ("alice", "bob", "carol"))

    # Asking again for the same task pulls erin into the same chat.
    again = chat_group(client, task.task_id, operator_user_id=bob, invite_user_ids=[directory.kunlun_id("erin")])
    assert again.success() and again.data.chat_id == chat_id
    assert directory.open_id("erin") in member_ids(client, chat_id)


def test_pull_people_into_an_existing_chat(make_client, directory):
    client = make_client("demo-bot")
    alice = directory.kunlun_id("alice")
    first = chat_group(client, directory.task("purchase-approve")["task_id"], operator_user_id=alice)
    assert first.success(), first.msg
    chat_id = first.data.chat_id
    assert member_ids(client, chat_id) == [directory.open_id("alice")]
    got = client.im.v1.chat.get(GetChatRequest.builder().chat_id(chat_id).build())
    assert got.data.name == "采购申请：笔记本电脑 2 台", "defaults to the task's label"

    resp = chat_group(
        client, directory.task("expense-approve")["task_id"],
        operator_user_id=alice, chat_id=chat_id,
        invite_user_ids=[directory.kunlun_id("bob"), alice],
    )
    assert resp.success(), f"{resp.code} {resp.msg}"
    assert resp.data.chat_id == chat_id
    assert member_ids(client, chat_id) == sorted(directory.open_id(u) for u in ("alice", "bob"))


def test_invalid_input_is_2320001_with_the_field(make_client, directory):
    client = make_client("demo-bot")
    task_id = directory.task("leave-approve")["task_id"]
    cases = [
        (task_id, dict(invite_user_ids=[directory.kunlun_id("bob")]), "operator_user_id"),
        ("1", dict(operator_user_id=directory.kunlun_id("alice")), "task_id"),
        (directory.task("onboarding-review")["task_id"], dict(operator_user_id=directory.kunlun_id("alice")), "task_id"),
        (task_id, dict(operator_user_id=directory.kunlun_id("alice"), invite_user_ids=[]), "invite_user_ids"),
        (task_id, dict(operator_user_id=directory.kunlun_id("alice"), invite_user_ids=[directory.kunlun_id("dave")]), "invite_user_ids"),
        (task_id, dict(operator_user_id=directory.kunlun_id("alice"), chat_id="oc_nope"), "chat_id"),
    ]
    for task, body, field in cases:
        resp = chat_group(client, task, **body)
        assert not resp.success()
        assert (resp.code, resp.msg) == (2320001, "param is invalid"), (task, body)
        assert resp.raw.status_code == 400
        # lark-oapi leaves `error` as the raw dict.
        assert resp.error["field_violations"][0]["field"] == field, (task, body)
        assert resp.get_log_id()


def test_apps_without_the_scope_are_refused(make_client, directory):
    # helper-bot lacks app_engine:approval:read. (Store apps, which the endpoints refuse the same
    # way, need the ISV app_ticket flow in the SDK; tests/it covers them.)
    resp = query(make_client("helper-bot"), kunlun_user_id=directory.kunlun_id("alice"))
    assert resp.code == 99991672
    assert resp.raw.status_code == 400
