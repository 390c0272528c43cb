// Webhook events received by an unmodified `lark.EventDispatcher` behind
// `lark.adaptDefault('/webhook', dispatcher, {autoChallenge: true})` on `http.createServer`, with and
// without encryption: url_verification, then each event type caused by actions through the API (the
// SDK client) and the control API (acting as a user).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as lark from "@larksuiteoapi/node-sdk";
import { apps, directory, openId, startLarkstack, users } from "./larkstack.mjs";

const WAIT_MS = 20_000; // generous: the machine may be loaded

const TYPES = [
    "im.message.receive_v1",
    "im.chat.member.user.added_v1",
    "im.chat.member.user.deleted_v1",
    "im.chat.member.user.withdrawn_v1",
    "im.chat.member.bot.added_v1",
    "im.chat.member.bot.deleted_v1",
    "im.chat.updated_v1",
    "im.chat.disbanded_v1",
    "im.chat.access_event.bot_p2p_chat_entered_v1",
];

/** A bot: the SDK's dispatcher on a real HTTP server; handled events are kept in `got`. */
async function startBot(encryptKey, verificationToken) {
    const got = [];
    const waiters = [];
    const handlers = {};
    for (const t of TYPES) {
        handlers[t] = async (data) => {
            got.push({ type: t, data });
            for (const w of waiters.splice(0)) w();
        };
    }
    const dispatcher = new lark.EventDispatcher({ encryptKey, verificationToken, loggerLevel: lark.LoggerLevel.error }).register(handlers);
    const server = http.createServer(lark.adaptDefault("/webhook", dispatcher, { autoChallenge: true }));
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    return {
        url: `http://127.0.0.1:${server.address().port}/webhook`,
        got,
        async wait(type, where = () => true) {
            const deadline = Date.now() + WAIT_MS;
            for (;;) {
                const hit = got.find((e) => e.type === type && where(e.data));
                if (hit) return hit.data;
                if (Date.now() > deadline) assert.fail(`no ${type} within ${WAIT_MS} ms; got ${got.map((e) => e.type)}`);
                await new Promise((r) => {
                    waiters.push(r);
                    setTimeout(r, 100);
                });
            }
        },
        close: () => server.close(),
    };
}

function ok(resp) {
    assert.equal(resp.code, 0, `code=${resp.code} msg=${resp.msg}`);
    return resp.data;
}

// One server for both modes: the SDK's default token cache is keyed by app_id only.
let server;
let client;
const appId = apps["demo-bot"].app_id;
const acme = directory.tenants.find((t) => t.key === "acme").tenant_key;

/** The demo directory, with demo-bot also allowed the p2p-entered event (no demo app has its scope). */
function fixtureWithP2pEntered() {
    const demo = readFileSync(new URL("../../fixtures/demo.toml", import.meta.url), "utf8");
    const scopes = 'scopes = ["im:chat", "im:chat:create", "im:message",';
    assert.equal(demo.split(scopes).length, 2, "demo-bot's scope list moved; update this test");
    const path = join(mkdtempSync(join(tmpdir(), "larkstack-nodeev-fixture-")), "fixture.toml");
    writeFileSync(path, demo.replace(scopes, 'scopes = ["im:chat.access_event.bot_p2p_chat:read", "im:chat", "im:chat:create", "im:message",'));
    return path;
}

before(async () => {
    server = await startLarkstack("nodeev", ["--fixture", fixtureWithP2pEntered()]);
    client = new lark.Client({
        appId,
        appSecret: apps["demo-bot"].app_secret,
        domain: server.baseUrl,
        loggerLevel: lark.LoggerLevel.error,
    });
});

after(() => server?.stop());

for (const mode of ["encrypted", "plain"]) {
    describe(`Node SDK EventDispatcher receives webhooks (${mode})`, () => {
        const key = mode === "encrypted" ? "node-sdk-key" : "";
        let bot;

        before(async () => {
            bot = await startBot(key, "node-sdk-token");
        });

        after(() => bot?.close());

        const newGroup = async (name) =>
            ok(await client.im.v1.chat.create({
                params: { user_id_type: "open_id" },
                data: { name, owner_id: openId("alice"), user_id_list: [openId("bob")] },
            })).chat_id;

        test("url_verification is answered by adaptDefault's autoChallenge", async () => {
            const r = await server.control("PUT", `/_larkstack/apps/${appId}/events`, {
                event_url: bot.url,
                encrypt_key: key,
                verification_token: "node-sdk-token",
            });
            assert.equal(r.code, 0, JSON.stringify(r));
            assert.equal(r.data.event_url, bot.url);
        });

        test("a user's group message", async () => {
            const chatId = await newGroup("node events");
            const r = await server.control("POST", `/_larkstack/chats/${chatId}/messages`, { user: "alice", text: "hi node" });
            assert.equal(r.code, 0, JSON.stringify(r));
            const data = await bot.wait("im.message.receive_v1", (d) => d.message.chat_id === chatId);
            // The Node SDK flattens {schema, ...header, ...event}.
            assert.equal(data.schema, "2.0");
            assert.equal(data.event_type, "im.message.receive_v1");
            assert.equal(data.token, "node-sdk-token");
            assert.match(data.event_id, /^[0-9a-f]{32}$/);
            assert.equal(data.app_id, appId);
            assert.equal(data.message.chat_type, "group");
            assert.deepEqual(JSON.parse(data.message.content), { text: "hi node" });
            assert.equal(data.sender.sender_id.open_id, openId("alice"));
        });

        test("a user's p2p message", async () => {
            const sent = ok(await client.im.v1.message.create({
                params: { receive_id_type: "open_id" },
                data: { receive_id: openId("alice"), msg_type: "text", content: JSON.stringify({ text: "hello" }) },
            }));
            const r = await server.control("POST", `/_larkstack/chats/${sent.chat_id}/messages`, { user: "alice", text: "p2p back" });
            assert.equal(r.code, 0, JSON.stringify(r));
            const data = await bot.wait("im.message.receive_v1", (d) => d.message.chat_id === sent.chat_id);
            assert.equal(data.message.chat_type, "p2p");
        });

        test("members added and left", async () => {
            const chatId = await newGroup("node members");
            ok(await client.im.v1.chatMembers.create({
                path: { chat_id: chatId },
                params: { member_id_type: "open_id" },
                data: { id_list: [openId("carol")] },
            }));
            const added = await bot.wait("im.chat.member.user.added_v1", (d) => d.chat_id === chatId);
            assert.deepEqual(added.users.map((u) => u.user_id.open_id), [openId("carol")]);
            const r = await server.control("POST", `/_larkstack/chats/${chatId}/leave`, { user: "carol" });
            assert.equal(r.code, 0, JSON.stringify(r));
            const left = await bot.wait("im.chat.member.user.deleted_v1", (d) => d.chat_id === chatId);
            assert.deepEqual(left.users.map((u) => u.user_id.open_id), [openId("carol")]);
        });

        test("a pending invitation withdrawn", async () => {
            const helperApp = apps["helper-bot"];
            const helper = new lark.Client({
                appId: helperApp.app_id,
                appSecret: helperApp.app_secret,
                domain: server.baseUrl,
                loggerLevel: lark.LoggerLevel.error,
            });
            const chatId = ok(await helper.im.v1.chat.create({
                params: { user_id_type: "open_id" },
                data: {
                    name: "node gated",
                    owner_id: openId("alice", "helper-bot"),
                    user_id_list: [openId("bob", "helper-bot")],
                    bot_id_list: [appId],
                    membership_approval: "approval_required",
                },
            })).chat_id;
            // helper-bot has no owner or manager rights: carol waits for approval.
            const added = ok(await helper.im.v1.chatMembers.create({
                path: { chat_id: chatId },
                params: { member_id_type: "open_id" },
                data: { id_list: [openId("carol", "helper-bot")] },
            }));
            assert.deepEqual(added.pending_approval_id_list, [openId("carol", "helper-bot")]);
            const listed = await server.control("GET", `/_larkstack/chats/${chatId}/invitations`);
            assert.deepEqual(listed.data.items.map((i) => i.user.key), ["carol"]);
            const r = await server.control("POST", `/_larkstack/chats/${chatId}/invitations/carol/withdraw`, { user: "alice" });
            assert.equal(r.code, 0, JSON.stringify(r));
            const w = await bot.wait("im.chat.member.user.withdrawn_v1", (d) => d.chat_id === chatId);
            assert.equal(w.event_type, "im.chat.member.user.withdrawn_v1");
            assert.equal(w.token, "node-sdk-token");
            assert.deepEqual(w.users.map((u) => u.user_id.open_id), [openId("carol")]);
            assert.equal(w.users[0].name, users.carol.name);
            assert.equal(w.operator_id.open_id, openId("alice"));
            assert.equal(w.name, "node gated");
        });

        test("a bot added by a user, then leaving", async () => {
            const helperApp = apps["helper-bot"];
            const helper = new lark.Client({
                appId: helperApp.app_id,
                appSecret: helperApp.app_secret,
                domain: server.baseUrl,
                loggerLevel: lark.LoggerLevel.error,
            });
            const chatId = ok(await helper.im.v1.chat.create({
                params: { user_id_type: "open_id" },
                data: { name: "node bots", owner_id: openId("alice", "helper-bot"), user_id_list: [openId("bob", "helper-bot")] },
            })).chat_id;
            const r = await server.control("POST", `/_larkstack/chats/${chatId}/bots`, { user: "alice", app_id: appId });
            assert.equal(r.code, 0, JSON.stringify(r));
            const added = await bot.wait("im.chat.member.bot.added_v1", (d) => d.chat_id === chatId);
            assert.equal(added.event_type, "im.chat.member.bot.added_v1");
            assert.equal(added.token, "node-sdk-token");
            assert.equal(added.operator_id.open_id, openId("alice"));
            assert.equal(added.operator_tenant_key, acme);
            assert.equal(added.name, "node bots");
            assert.equal(added.external, false);

            ok(await client.im.v1.chatMembers.delete({
                path: { chat_id: chatId },
                params: { member_id_type: "app_id" },
                data: { id_list: [appId] },
            }));
            const deleted = await bot.wait("im.chat.member.bot.deleted_v1", (d) => d.chat_id === chatId);
            assert.equal(deleted.name, "node bots");
            assert.match(deleted.operator_id.open_id, /^ou_/);
            assert.equal(deleted.operator_tenant_key, acme);
        });

        test("a user enters the bot's p2p chat", async () => {
            const sent = ok(await client.im.v1.message.create({
                params: { receive_id_type: "open_id" },
                data: { receive_id: openId("carol"), msg_type: "text", content: JSON.stringify({ text: "hello carol" }) },
            }));
            const r = await server.control("POST", `/_larkstack/users/carol/p2p/${appId}/enter`);
            assert.equal(r.code, 0, JSON.stringify(r));
            assert.equal(r.data.chat_id, sent.chat_id);
            const entered = await bot.wait("im.chat.access_event.bot_p2p_chat_entered_v1", (d) => d.chat_id === sent.chat_id);
            assert.equal(entered.event_type, "im.chat.access_event.bot_p2p_chat_entered_v1");
            assert.equal(entered.operator_id.open_id, openId("carol"));
            assert.equal(entered.last_message_id, sent.message_id);
            assert.match(entered.last_message_create_time, /^\d+$/);
        });

        test("chat updated, then disbanded", async () => {
            const chatId = await newGroup("node update");
            ok(await client.im.v1.chat.update({ path: { chat_id: chatId }, data: { name: "node renamed" } }));
            const upd = await bot.wait("im.chat.updated_v1", (d) => d.chat_id === chatId);
            assert.equal(upd.after_change.name, "node renamed");
            ok(await client.im.v1.chat.delete({ path: { chat_id: chatId } }));
            const gone = await bot.wait("im.chat.disbanded_v1", (d) => d.chat_id === chatId);
            assert.equal(gone.name, "node renamed");
        });
    });
}
