"""A store app in the official Python SDK's ISV mode: an unmodified ``lark.EventDispatcherHandler`` behind a
real HTTP server (the SDK's flask adapter) receives the pushed ``app_ticket`` (a v1 callback, encrypted and
signed), and an ISV ``lark.Client`` trades it for an app token, then a tenant token (``request_option`` with
``tenant_key`` and ``app_ticket``), and creates a chat in an installing tenant."""

import queue
import threading

import lark_oapi as lark
import pytest
from flask import Flask
from lark_oapi.adapter.flask import parse_req, parse_resp
from lark_oapi.api.auth.v3 import ResendAppTicketRequest, ResendAppTicketRequestBody
from lark_oapi.api.im.v1 import CreateChatRequest, CreateChatRequestBody, GetChatRequest
from lark_oapi.core.cache import LocalCache
from lark_oapi.core.exception import ObtainAccessTokenException
from werkzeug.serving import make_server

from conftest import control, running_larkstack

WAIT = 20  # seconds, generous: the machine may be loaded
TOKEN = "py-isv-token"


class TicketReceiver:
    """A flask app with the SDK's dispatcher at /webhook; each app_ticket it decodes lands in ``tickets``."""

    def __init__(self, encrypt_key):
        self.tickets = queue.Queue()
        handler = (
            lark.EventDispatcherHandler.builder(encrypt_key, TOKEN, lark.LogLevel.WARNING)
            .register_p1_customized_event("app_ticket", lambda data: self.tickets.put(data))
            .build()
        )
        app = Flask(__name__)

        @app.route("/webhook", methods=["POST"])
        def webhook():
            return parse_resp(handler.do(parse_req()))

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_ticket(self, app_id):
        """The next ticket the dispatcher handed over, checked for its v1 shape."""
        try:
            data = self.tickets.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no app_ticket within {WAIT}s")
        assert data.type == "event_callback"
        assert data.token == TOKEN
        assert len(data.uuid) == 32
        assert data.event["type"] == "app_ticket"
        assert data.event["app_id"] == app_id
        return data.event["app_ticket"]

    def stop(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def server(larkstack_bin, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("larkstack-isv")
    with running_larkstack(larkstack_bin, data_dir) as s:
        yield s




def isv_client(server, app):
    return (
        lark.Client.builder().app_id(app["app_id"]).app_secret(app["app_secret"]).app_type(lark.AppType.ISV)
        .domain(server.base_url).cache(LocalCache()).log_level(lark.LogLevel.WARNING).build()
    )


def as_tenant(tenant_key, ticket):
    return lark.RequestOption.builder().tenant_key(tenant_key).app_ticket(ticket).build()


@pytest.mark.parametrize("encrypt_key", ["py-isv-key", ""], ids=["encrypted", "plain"])
def test_an_isv_client_gets_a_tenant_token_through_the_pushed_ticket(server, directory, encrypt_key):
    app = directory.app("store-app")
    receiver = TicketReceiver(encrypt_key)
    try:
        # Setting the request URL: the SDK answers the challenge, then the first ticket comes.
        r = control(server, "PUT", f"/_larkstack/apps/{app['app_id']}/events",
                    {"event_url": receiver.url, "encrypt_key": encrypt_key, "verification_token": TOKEN})
        assert r["code"] == 0, r
        ticket = receiver.next_ticket(app["app_id"])

        client = isv_client(server, app)
        globex = directory.tenants["globex"]["tenant_key"]
        body = CreateChatRequestBody.builder().name(f"isv {encrypt_key or 'plain'}").build()
        resp = client.im.v1.chat.create(CreateChatRequest.builder().request_body(body).build(), as_tenant(globex, ticket))
        assert resp.success(), f"code={resp.code} msg={resp.msg}"
        got = client.im.v1.chat.get(GetChatRequest.builder().chat_id(resp.data.chat_id).build(), as_tenant(globex, ticket))
        assert got.success(), f"code={got.code} msg={got.msg}"
        assert got.data.tenant_key == globex

        # A resend through the SDK brings a new ticket; the old one no longer buys an app token.
        resend = ResendAppTicketRequest.builder().request_body(
            ResendAppTicketRequestBody.builder().app_id(app["app_id"]).app_secret(app["app_secret"]).build()
        ).build()
        assert client.auth.v3.app_ticket.resend(resend).success()
        fresh = receiver.next_ticket(app["app_id"])
        assert fresh != ticket
        acme = directory.tenants["acme"]["tenant_key"]
        with pytest.raises(ObtainAccessTokenException) as refused:
            isv_client(server, app).im.v1.chat.get(GetChatRequest.builder().chat_id("oc_x").build(), as_tenant(acme, ticket))
        assert refused.value.code == 10012
        body = CreateChatRequestBody.builder().name("isv acme").build()
        resp = isv_client(server, app).im.v1.chat.create(CreateChatRequest.builder().request_body(body).build(), as_tenant(acme, fresh))
        assert resp.success(), f"code={resp.code} msg={resp.msg}"
    finally:
        control(server, "PUT", f"/_larkstack/apps/{app['app_id']}/events", {"event_url": ""})
        receiver.stop()
