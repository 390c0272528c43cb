// A bot's everyday look-ups through the unmodified official Node SDK (@larksuiteoapi/node-sdk): its
// identity with `client.request({url: '/open-apis/bot/v3/info'})` (what the SDK's LarkChannel does at
// connect), users by email and mobile with `client.contact.v3.user.batchGetId`, one user with
// `client.contact.v3.user.get`, and a group's custom bot posting a signed message.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import * as lark from "@larksuiteoapi/node-sdk";
import { apps, openId, startLarkstack } from "./larkstack.mjs";

describe("bot identity, contacts and custom bots through the Node SDK", () => {
    let server;
    let client;

    before(async () => {
        server = await startLarkstack("nodebot");
        const app = apps["demo-bot"];
        client = new lark.Client({
            appId: app.app_id,
            appSecret: app.app_secret,
            domain: server.baseUrl,
            loggerLevel: lark.LoggerLevel.error,
        });
    });

    after(() => server.stop());

    test("bot/v3/info answers `bot` at the top level", async () => {
        const r = await client.request({ url: "/open-apis/bot/v3/info", method: "GET" });
        assert.equal(r.code, 0);
        assert.equal(r.data, undefined, "no data envelope");
        assert.equal(r.bot.app_name, "Demo Bot");
        assert.equal(r.bot.activate_status, 2);
        assert.match(r.bot.open_id, /^ou_[0-9a-f]{32}$/);
        assert.deepEqual(r.bot.ip_white_list, []);
    });

    test("batchGetId finds users by email and mobile", async () => {
        const r = await client.contact.v3.user.batchGetId({
            params: { user_id_type: "open_id" },
            data: { emails: ["alice@acme.example", "nobody@acme.example"], mobiles: ["+8613800000002"] },
        });
        assert.equal(r.code, 0, r.msg);
        assert.deepEqual(
            r.data.user_list.map((u) => [u.email ?? u.mobile, u.user_id]),
            [["alice@acme.example", openId("alice")], ["nobody@acme.example", undefined], ["+8613800000002", openId("bob")]],
        );
        const u = await client.contact.v3.user.get({ path: { user_id: openId("alice") }, params: { user_id_type: "open_id" } });
        assert.equal(u.code, 0, u.msg);
        assert.equal(u.data.user.name, "Alice 王");
        assert.equal(u.data.user.mobile, "+8613800000001");
    });

    test("a signed custom-bot post appears in the chat; a bad signature is 19021", async () => {
        const created = await client.im.v1.chat.create({
            params: { user_id_type: "open_id" },
            data: { name: "Deploys", owner_id: openId("alice") },
        });
        assert.equal(created.code, 0, created.msg);
        const chatId = created.data.chat_id;
        const added = await server.control("POST", `/_larkstack/chats/${chatId}/custom_bots`, { name: "CD", secret: "node-secret" });
        assert.equal(added.code, 0, JSON.stringify(added));
        const post = async (text, secret) => {
            const timestamp = String(Math.floor(Date.now() / 1000));
            const sign = createHmac("sha256", `${timestamp}\n${secret}`).update("").digest("base64");
            const r = await fetch(added.data.webhook_url, {
                method: "POST",
                headers: { "content-type": "application/json" },
                body: JSON.stringify({ timestamp, sign, msg_type: "text", content: { text } }),
            });
            assert.equal(r.status, 200);
            return r.json();
        };
        assert.deepEqual(await post("v2 deployed", "node-secret"), { StatusCode: 0, StatusMessage: "success", code: 0, data: {}, msg: "success" });
        assert.equal((await post("forged", "not-the-secret")).code, 19021);
        const list = await client.im.v1.message.list({ params: { container_id_type: "chat", container_id: chatId } });
        assert.equal(list.code, 0, list.msg);
        const fromBot = list.data.items.filter((m) => m.sender.id === added.data.bot_id);
        assert.deepEqual(fromBot.map((m) => JSON.parse(m.body.content).text), ["v2 deployed"]);
        assert.equal(fromBot[0].sender.sender_type, "app");
    });
});
