"""Events over the long connection, received by an unmodified ``lark.ws.Client`` (the SDK's own
discovery, WebSocket, pbbp2 frames, pings and acks) pointed at larkstack only through ``domain``: an
event committed before the client connects waits for it, a user's message arrives as
``im.message.receive_v1``, and after a server-side close (control API) the client reconnects by
itself and keeps receiving."""

import json
import queue
import time

import lark_oapi as lark
import pytest
from lark_oapi.api.im.v1 import CreateChatRequest, CreateChatRequestBody

from conftest import control, running_larkstack, start_ws_client

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
    client = (
        lark.Client.builder().app_id(app["app_id"]).app_secret(app["app_secret"])
        .domain(server.base_url).cache(server.token_cache).log_level(lark.LogLevel.WARNING).build()
    )
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
