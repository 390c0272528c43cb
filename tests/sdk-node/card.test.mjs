// Interactive-card callbacks received by the unmodified Node SDK: an `EventDispatcher` with a
// `'card.action.trigger'` handler behind `lark.adaptDefault` (signed, encrypted callback URL), and the
// same dispatcher in `lark.WSClient` over the long connection. The handler's answer (toast and raw
// card) comes back through larkstack — the toast to the control-API caller, the card as the
// message's new content — and the callback's `c-` token then updates the card twice through
// `POST /open-apis/interactive/v1/card/update`, a third time refused.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import * as lark from "@larksuiteoapi/node-sdk";
import { apps, openId, startLarkstack } from "./larkstack.mjs";

const WAIT_MS = 30_000; // generous: the machine may be loaded
const appId = apps["demo-bot"].app_id;
const appSecret = apps["demo-bot"].app_secret;

let server;
let client;
let ws;

before(async () => {
    server = await startLarkstack("nodecard");
    // fatal: the refused third update is an expected HTTP 400, which the SDK would log in full.
    client = new lark.Client({ appId, appSecret, domain: server.baseUrl, loggerLevel: lark.LoggerLevel.fatal });
});

after(() => {
    ws?.close({ force: true });
    server?.stop();
});

const card = (text) => ({ elements: [{ tag: "div", text: { tag: "plain_text", content: text } }] });

/** The dispatcher every test registers: answers a toast naming the clicked value and a new card. */
function dispatcher(options, seen) {
    return new lark.EventDispatcher({ ...options, loggerLevel: lark.LoggerLevel.error }).register({
        "card.action.trigger": async (data) => {
            seen.push(data);
            const choice = data.action.value.choice;
            return { toast: { type: "info", content: `you chose ${choice}` }, card: { type: "raw", data: card(`chosen: ${choice}`) } };
        },
    });
}

async function cardMessage() {
    const chat = await client.im.chat.create({
        params: { user_id_type: "open_id" },
        data: { name: "cards", owner_id: openId("alice"), user_id_list: [openId("bob")] },
    });
    assert.equal(chat.code, 0, chat.msg);
    const sent = await client.im.message.create({
        params: { receive_id_type: "chat_id" },
        data: { receive_id: chat.data.chat_id, msg_type: "interactive", content: JSON.stringify(card("pick a colour")) },
    });
    assert.equal(sent.code, 0, sent.msg);
    return sent.data.message_id;
}

async function content(messageId) {
    const r = await client.im.message.get({ path: { message_id: messageId } });
    assert.equal(r.code, 0, r.msg);
    return JSON.parse(r.data.items[0].body.content);
}

async function delayedUpdate(token, text) {
    try {
        return await client.request({ method: "POST", url: "/open-apis/interactive/v1/card/update", data: { token, card: card(text) } });
    } catch (e) {
        // Feishu's errors come with HTTP 400, which the SDK's axios rejects.
        if (e.response) return e.response.data;
        throw e;
    }
}

async function clickAndUpdate(messageId, seen) {
    const r = await server.control("POST", `/_larkstack/messages/${messageId}/card_action`, {
        user: "alice",
        action: { tag: "button", value: { choice: "green" } },
    });
    assert.equal(r.code, 0, JSON.stringify(r));
    const d = r.data;
    assert.equal(d.error, null, JSON.stringify(d));
    assert.deepEqual(d.toast, { type: "info", content: "you chose green" });
    assert.equal(d.card_updated, true);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].operator.open_id, openId("alice"));
    assert.equal(seen[0].context.open_message_id, messageId);
    assert.equal(seen[0].token, d.token);
    assert.ok(d.token.startsWith("c-"), d.token);
    assert.deepEqual(await content(messageId), card("chosen: green"));

    for (const text of ["later 1", "later 2"]) {
        const u = await delayedUpdate(d.token, text);
        assert.equal(u.code, 0, JSON.stringify(u));
        assert.deepEqual(await content(messageId), card(text));
    }
    const refused = await delayedUpdate(d.token, "later 3");
    assert.equal(refused.code, 200832, JSON.stringify(refused));
    assert.deepEqual(await content(messageId), card("later 2"));
    return d;
}

test("a click reaches the Node SDK's webhook dispatcher and its toast and card come back", async () => {
    const seen = [];
    const d = dispatcher({ encryptKey: "node-card-key", verificationToken: "node-card-token" }, seen);
    const http_ = http.createServer(lark.adaptDefault("/card", d, { autoChallenge: true }));
    await new Promise((r) => http_.listen(0, "127.0.0.1", r));
    try {
        const url = `http://127.0.0.1:${http_.address().port}/card`;
        const r = await server.control("PUT", `/_larkstack/apps/${appId}/events`, {
            callback_url: url,
            encrypt_key: "node-card-key",
            verification_token: "node-card-token",
        });
        assert.equal(r.code, 0, JSON.stringify(r));
        const result = await clickAndUpdate(await cardMessage(), seen);
        assert.equal(result.callback.route, "webhook");
    } finally {
        await server.control("PUT", `/_larkstack/apps/${appId}/events`, { callback_url: "" });
        http_.close();
    }
});

test("a click reaches the Node SDK's WSClient and the answer comes back in the ack, also when over 1 MiB", async () => {
    const seen = [];
    ws = new lark.WSClient({ appId, appSecret, domain: server.baseUrl, loggerLevel: lark.LoggerLevel.error });
    ws.start({ eventDispatcher: dispatcher({}, seen) });
    const deadline = Date.now() + WAIT_MS;
    while ((await server.control("GET", "/_larkstack/connections")).data.items.length === 0) {
        assert.ok(Date.now() < deadline, "the WSClient did not connect");
        await new Promise((r) => setTimeout(r, 100));
    }
    const messageId = await cardMessage();
    const result = await clickAndUpdate(messageId, seen);
    assert.equal(result.callback.route, "long_connection");

    // A callback of 1.2 MB leaves larkstack in frames of at most 512 KiB; the SDK puts them
    // together and hands over the whole payload (events.md §2.6).
    const blob = "0123456789abcdef".repeat(75_000);
    const r = await server.control("POST", `/_larkstack/messages/${messageId}/card_action`, {
        user: "bob",
        action: { tag: "button", value: { choice: "big", blob } },
    });
    assert.equal(r.code, 0, JSON.stringify(r).slice(0, 500));
    assert.equal(r.data.error, null, JSON.stringify(r.data).slice(0, 500));
    assert.deepEqual(r.data.toast, { type: "info", content: "you chose big" });
    assert.equal(seen.length, 2);
    assert.equal(seen[1].operator.open_id, openId("bob"));
    assert.equal(seen[1].action.value.blob, blob);
    assert.deepEqual(await content(messageId), card("chosen: big"));
});
