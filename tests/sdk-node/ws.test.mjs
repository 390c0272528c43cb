// Events over the long connection, received by an unmodified `lark.WSClient` with an
// `EventDispatcher` (the SDK's own discovery, WebSocket, pbbp2 frames, pings and acks), pointed at
// larkstack only through `domain`: an event committed before the client connects waits for it, a
// user's message arrives as `im.message.receive_v1`, and after a server-side close (control API)
// the client reconnects by itself and keeps receiving.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as lark from "@larksuiteoapi/node-sdk";
import { apps, openId, startLarkstack } from "./larkstack.mjs";

const WAIT_MS = 30_000; // generous: the machine may be loaded
const appId = apps["demo-bot"].app_id;
const appSecret = apps["demo-bot"].app_secret;

let server;
let ws;

before(async () => {
    server = await startLarkstack("nodews");
});

after(() => {
    ws?.close({ force: true });
    server?.stop();
});

async function waitFor(what, check) {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
        const value = await check();
        if (value) return value;
        if (Date.now() > deadline) assert.fail(`${what} did not happen within ${WAIT_MS} ms`);
        await new Promise((r) => setTimeout(r, 100));
    }
}

test("WSClient receives events and keeps receiving after a server-side close", async () => {
    let r = await server.control("PUT", `/_larkstack/apps/${appId}/events`, { event_mode: "long_connection" });
    assert.equal(r.code, 0, JSON.stringify(r));
    const client = new lark.Client({ appId, appSecret, domain: server.baseUrl, loggerLevel: lark.LoggerLevel.error });
    const created = await client.im.v1.chat.create({
        params: { user_id_type: "open_id" },
        data: { name: "ws", owner_id: openId("alice"), user_id_list: [openId("bob")] },
    });
    assert.equal(created.code, 0, created.msg);
    const chatId = created.data.chat_id;
    const say = async (text) => {
        const r = await server.control("POST", `/_larkstack/chats/${chatId}/messages`, { user: "alice", text });
        assert.equal(r.code, 0, JSON.stringify(r));
    };

    // Committed before any client is connected: it waits for one.
    await say("before you connected");

    const got = [];
    const dispatcher = new lark.EventDispatcher({ loggerLevel: lark.LoggerLevel.error }).register({
        "im.message.receive_v1": async (data) => {
            got.push(data);
        },
    });
    ws = new lark.WSClient({ appId, appSecret, domain: server.baseUrl, loggerLevel: lark.LoggerLevel.error });
    ws.start({ eventDispatcher: dispatcher });
    const receive = (text) =>
        waitFor(`the message ${JSON.stringify(text)}`, () => got.find((d) => JSON.parse(d.message.content).text === text));

    const early = await receive("before you connected");
    assert.equal(early.event_type, "im.message.receive_v1");
    assert.equal(early.message.chat_id, chatId);
    assert.equal(early.sender.sender_id.open_id, openId("alice"));

    await say("hello over the long connection");
    const data = await receive("hello over the long connection");
    const conns = await waitFor("the connection listing", async () => {
        const items = (await server.control("GET", "/_larkstack/connections")).data.items;
        return items.length ? items : null;
    });
    assert.equal(conns.length, 1);
    const firstConn = conns[0].conn_id;
    // The SDK acked it (negative biz_rt and all): the attempt is delivered over this connection.
    const attempts = await waitFor("the delivered attempt", async () => {
        const items = (await server.control("GET", `/_larkstack/deliveries?event_id=${data.event_id}`)).data.items;
        return items.filter((a) => a.delivered).length ? items : null;
    });
    assert.equal(attempts.find((a) => a.delivered).url, `longconn:${firstConn}`);

    // Closed from the server side: the SDK reconnects (discovery again, a new connection id)…
    r = await server.control("DELETE", `/_larkstack/connections/${firstConn}`);
    assert.equal(r.code, 0, JSON.stringify(r));
    await waitFor("the reconnect", async () =>
        (await server.control("GET", "/_larkstack/connections")).data.items.some((c) => c.conn_id !== firstConn),
    );
    // …and keeps receiving.
    await say("after the reconnect");
    await receive("after the reconnect");
});
