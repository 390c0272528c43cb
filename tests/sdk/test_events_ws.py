"""Events over the long connection, received by an unmodified ``lark.ws.Client`` (the SDK's own
discovery, WebSocket, pbbp2 frames, pings and acks) pointed at larkstack only through ``domain``: an
event committed before the client connects waits for it, a user's message arrives as
``im.message.receive_v1``, and after a server-side close (control API) the client reconnects by
itself and keeps receiving; and every event type of the webhook issue arrives, decoded by the SDK's
typed handlers, once each (the producers and their checks are test_events_webhook.py's,
``EventProducers`` in conftest.py)."""

import json
import queue
import time

import lark_oapi as lark
import pytest
from lark_oapi.api.im.v1 import CreateChatRequest, CreateChatRequestBody

from conftest import (
    EVENT_TYPES,
    EventLog,
    EventProducers,
    control,
    demo_fixture_with_p2p_entered,
    running_larkstack,
    sdk_client,
    start_ws_client,
)

WAIT = 30  # seconds, generous: the machine may be loaded


@pytest.fixture(scope="module")
def server(larkstack_bin, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("larkstack-ws")
    with running_larkstack(larkstack_bin, data_dir) as s:
        yield s


def wait_for(what, check):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {WAIT} s")


def test_the_ws_client_receives_events_and_keeps_receiving_after_a_server_side_close(server, directory):
    app = directory.app("demo-bot")
    r = control(server, "PUT", f"/_larkstack/apps/{app['app_id']}/events", {"event_mode": "long_connection"})
    assert r["code"] == 0, r
    client = sdk_client(server, directory)
    body = (CreateChatRequestBody.builder().name("ws").owner_id(directory.open_id("alice"))
            .user_id_list([directory.open_id("bob")]).build())
    resp = client.im.v1.chat.create(CreateChatRequest.builder().user_id_type("open_id").request_body(body).build())
    assert resp.success(), resp.msg
    chat_id = resp.data.chat_id

    def say(text):
        r = control(server, "POST", f"/_larkstack/chats/{chat_id}/messages", {"user": "alice", "text": text})
        assert r["code"] == 0, r

    # Committed before any client is connected: it waits for one.
    say("before you connected")

    got = queue.Queue()
    # Long-connection mode skips token and signature checks: the docs' empty builder.
    handler = (lark.EventDispatcherHandler.builder("", "")
               .register_p2_im_message_receive_v1(lambda data: got.put(data)).build())
    ws = lark.ws.Client(app["app_id"], app["app_secret"], event_handler=handler, domain=server.base_url,
                        log_level=lark.LogLevel.WARNING)
    start_ws_client(ws)

    def receive(text):
        deadline = time.monotonic() + WAIT
        seen = []
        while time.monotonic() < deadline:
            try:
                data = got.get(timeout=0.2)
            except queue.Empty:
                continue
            content = json.loads(data.event.message.content)["text"]
            seen.append(content)
            if content == text:
                return data
        pytest.fail(f"{text!r} did not arrive within {WAIT} s; got {seen}")

    early = receive("before you connected")
    assert early.header.event_type == "im.message.receive_v1"
    assert early.event.message.chat_id == chat_id
    assert early.event.sender.sender_id.open_id == directory.open_id("alice")

    say("hello over the long connection")
    data = receive("hello over the long connection")
    # The SDK acked it: the attempt is listed as delivered over this connection.
    conns = wait_for("the connection listing", lambda: control(server, "GET", "/_larkstack/connections")["data"]["items"])
    assert len(conns) == 1 and conns[0]["app_id"] == app["app_id"], conns
    first_conn = conns[0]["conn_id"]
    attempts = wait_for("the delivered attempt", lambda: [
        a for a in control(server, "GET", f"/_larkstack/deliveries?event_id={data.header.event_id}")["data"]["items"]
        if a["delivered"]
    ])
    assert attempts[0]["url"] == f"longconn:{first_conn}"

    # Closed from the server side: the SDK reconnects (discovery again, a new connection id)…
    r = control(server, "DELETE", f"/_larkstack/connections/{first_conn}")
    assert r["code"] == 0, r
    wait_for("the reconnect", lambda: [
        c for c in control(server, "GET", "/_larkstack/connections")["data"]["items"] if c["conn_id"] != first_conn
    ])
    # …and keeps receiving.
    say("after the reconnect")
    receive("after the reconnect")


# Every event type of the webhook issue, produced in turn over one long connection: each entry an
# ``EventProducers`` method and the types it receives, in order.
SEQUENCE = [
    (EventProducers.group_message, ["im.message.receive_v1"]),
    (EventProducers.p2p_message, ["im.message.receive_v1"]),
    (EventProducers.members_added_and_left, ["im.chat.member.user.added_v1", "im.chat.member.user.deleted_v1"]),
    (EventProducers.invitation_withdrawn, ["im.chat.member.user.withdrawn_v1"]),
    (EventProducers.bot_added_then_deleted, ["im.chat.member.bot.added_v1", "im.chat.member.bot.deleted_v1"]),
    (EventProducers.chat_updated_then_disbanded, ["im.chat.updated_v1", "im.chat.disbanded_v1"]),
    (EventProducers.p2p_chat_entered, ["im.chat.access_event.bot_p2p_chat_entered_v1"]),
]


def attempts_once_delivered(server, event_id):
    """Every attempt at the event, once one is delivered (else None)."""
    items = control(server, "GET", f"/_larkstack/deliveries?event_id={event_id}")["data"]["items"]
    return items if any(a["delivered"] for a in items) else None


def test_the_ws_client_receives_every_event_type_of_the_webhook_issue_once(larkstack_bin, tmp_path_factory, directory):
    fixture = demo_fixture_with_p2p_entered(tmp_path_factory.mktemp("fixture"))
    with running_larkstack(larkstack_bin, tmp_path_factory.mktemp("larkstack-ws-types"), fixture) as server:
        app = directory.app("demo-bot")
        r = control(server, "PUT", f"/_larkstack/apps/{app['app_id']}/events", {"event_mode": "long_connection"})
        assert r["code"] == 0, r
        events = EventLog()
        handler = events.register(lark.EventDispatcherHandler.builder("", "")).build()
        ws = lark.ws.Client(app["app_id"], app["app_secret"], event_handler=handler, domain=server.base_url,
                            log_level=lark.LogLevel.WARNING)
        start_ws_client(ws)
        produce = EventProducers(server, directory, events)
        for producer, types in SEQUENCE:
            got = producer(produce)
            got = got if isinstance(got, tuple) else (got,)
            assert [d.header.event_type for d in got] == types

        # Every type of the issue was received, each event once: one attempt, acked over the one
        # connection, and one call of its handler.
        assert {t for _, types in SEQUENCE for t in types} == set(EVENT_TYPES)
        [conn] = control(server, "GET", "/_larkstack/connections")["data"]["items"]
        for data in events.claimed:
            event_id = data.header.event_id
            attempts = wait_for(f"{data.header.event_type} acked", lambda: attempts_once_delivered(server, event_id))
            assert [a["url"] for a in attempts] == [f"longconn:{conn['conn_id']}"], attempts
            assert [d.header.event_id for _, d in events.events].count(event_id) == 1
        assert len(events.claimed) == sum(len(types) for _, types in SEQUENCE)
