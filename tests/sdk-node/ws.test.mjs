// Events over the long connection, received by an unmodified `lark.WSClient` with an
// `EventDispatcher` (the SDK's own discovery, WebSocket, pbbp2 frames, pings and acks), pointed at
// larkstack only through `domain`: an event committed before the client connects waits for it, a
// user's message arrives as `im.message.receive_v1`, and after a server-side close (control API)
// the client reconnects by itself and keeps receiving; and every event type of the webhook issue
// arrives, handed to the SDK's handlers, once each (the producers and their checks are
// events.test.mjs's, `eventProducers` in larkstack.mjs).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as lark from "@larksuiteoapi/node-sdk";
import { apps, EVENT_TYPES, eventLog, eventProducers, fixtureWithP2pEntered, openId, sdkClient, startLarkstack } from "./larkstack.mjs";

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
    const client = sdkClient(server);
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

// Every event type of the webhook issue, produced in turn over one long connection: each entry a
// producer of `eventProducers` and the types it receives, in order.
const SEQUENCE = [
    ["groupMessage", ["im.message.receive_v1"]],
    ["p2pMessage", ["im.message.receive_v1"]],
    ["membersAddedAndLeft", ["im.chat.member.user.added_v1", "im.chat.member.user.deleted_v1"]],
    ["invitationWithdrawn", ["im.chat.member.user.withdrawn_v1"]],
    ["botAddedThenDeleted", ["im.chat.member.bot.added_v1", "im.chat.member.bot.deleted_v1"]],
    ["chatUpdatedThenDisbanded", ["im.chat.updated_v1", "im.chat.disbanded_v1"]],
    ["p2pChatEntered", ["im.chat.access_event.bot_p2p_chat_entered_v1"]],
];

test("WSClient receives every event type of the webhook issue, each once", async () => {
    const typed = await startLarkstack("nodewstypes", ["--fixture", fixtureWithP2pEntered()]);
    const events = eventLog();
    const client = new lark.WSClient({ appId, appSecret, domain: typed.baseUrl, loggerLevel: lark.LoggerLevel.error });
    try {
        const r = await typed.control("PUT", `/_larkstack/apps/${appId}/events`, { event_mode: "long_connection" });
        assert.equal(r.code, 0, JSON.stringify(r));
        client.start({ eventDispatcher: new lark.EventDispatcher({ loggerLevel: lark.LoggerLevel.error }).register(events.handlers) });
        const produce = eventProducers(typed, events);
        for (const [producer, types] of SEQUENCE) {
            const got = [await produce[producer]()].flat();
            assert.deepEqual(got.map((d) => d.event_type), types);
        }

        // Every type of the issue was received, each event once: one attempt, acked over the one
        // connection, and one call of its handler.
        const covered = new Set(SEQUENCE.flatMap(([, types]) => types));
        assert.deepEqual([...covered].sort(), [...EVENT_TYPES].sort());
        const [conn, ...more] = (await typed.control("GET", "/_larkstack/connections")).data.items;
        assert.equal(more.length, 0);
        for (const data of events.claimed) {
            const attempts = await waitFor(`${data.event_type} acked`, async () => {
                const items = (await typed.control("GET", `/_larkstack/deliveries?event_id=${data.event_id}`)).data.items;
                return items.some((a) => a.delivered) ? items : null;
            });
            assert.deepEqual(attempts.map((a) => a.url), [`longconn:${conn.conn_id}`]);
            assert.equal(events.got.filter((e) => e.data.event_id === data.event_id).length, 1);
        }
        assert.equal(events.claimed.length, SEQUENCE.flatMap(([, types]) => types).length);
    } finally {
        client.close({ force: true });
        typed.stop();
    }
});
