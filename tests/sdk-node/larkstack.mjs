// What the Node SDK scenarios share: the demo directory as `larkstack directory` prints it, and a
// real `larkstack serve` on a free port with a fresh data dir (a schema of its own on PostgreSQL).

import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import * as lark from "@larksuiteoapi/node-sdk";

export const BIN = process.env.LARKSTACK_BIN;
assert.ok(BIN, "LARKSTACK_BIN must name the larkstack binary (tests/sdk-node/run.sh sets it)");

export const directory = JSON.parse(execFileSync(BIN, ["directory"], { encoding: "utf8" }));
export const apps = Object.fromEntries(directory.apps.map((a) => [a.key, a]));
export const users = Object.fromEntries(directory.users.map((u) => [u.key, u]));
/** open_ids are per app: the ID `app` sees for `user`. */
export const openId = (user, app = "demo-bot") => users[user].open_ids[app];

/** Starts `larkstack serve` (with `extraArgs`, e.g. `["--fixture", path]`); resolves to
 * {baseUrl, control(method, path, body), stop()}. */
export async function startLarkstack(prefix, extraArgs = []) {
    const dataDir = mkdtempSync(join(tmpdir(), `larkstack-${prefix}-`));
    const args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, ...extraArgs];
    if (process.env.LARKSTACK_DATABASE) {
        // On PostgreSQL (scripts/test.sh's second pass) each server gets a schema of its own.
        args.push("--database-schema", `${prefix}_` + dataDir.toLowerCase().replace(/[^a-z0-9]/g, "_").slice(-40));
    }
    const proc = spawn(BIN, args, { stdio: ["ignore", "pipe", "inherit"] });
    const lines = createInterface({ input: proc.stdout });
    const baseUrl = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("larkstack did not report its address in 30 s")), 30_000);
        proc.once("exit", (code) => reject(new Error(`larkstack exited early with ${code}`)));
        lines.on("line", (line) => {
            const m = /^larkstack listening on (http:\/\/127\.0\.0\.1:\d+)\s*$/.exec(line);
            if (m) {
                clearTimeout(timer);
                resolve(m[1]);
            }
        });
    });
    const adminToken = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    return {
        baseUrl,
        // The SDK caches tenant_access_tokens keyed only by app_id (by default in one process-wide
        // cache): clients of this server (`sdkClient`) get a cache of its own.
        tokenCache: new lark.DefaultCache(),
        /** A control-API call with the admin token; the parsed reply. */
        async control(method, path, body) {
            const r = await fetch(baseUrl + path, {
                method,
                headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
                body: body === undefined ? undefined : JSON.stringify(body),
            });
            return r.json();
        },
        stop() {
            proc.kill("SIGTERM");
            rmSync(dataDir, { recursive: true, force: true });
        },
    };
}

/** The SDK's answer's `data`, once its code is 0. */
export function ok(resp) {
    assert.equal(resp.code, 0, `code=${resp.code} msg=${resp.msg}`);
    return resp.data;
}

/** An unmodified `lark.Client` for a demo app, pointed at `server` (with the server's token cache). */
export const sdkClient = (server, appKey = "demo-bot") =>
    new lark.Client({
        appId: apps[appKey].app_id,
        appSecret: apps[appKey].app_secret,
        domain: server.baseUrl,
        cache: server.tokenCache,
        loggerLevel: lark.LoggerLevel.error,
    });

// --- Events: what the webhook and the long-connection tests share ------------------------------

/** Every event type of the webhook issue; the handlers register them all. */
export const EVENT_TYPES = [
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
const EVENT_WAIT_MS = 30_000; // generous: the machine may be loaded

/** The demo directory, with demo-bot also allowed the p2p-entered event (no demo app has its scope). */
export function fixtureWithP2pEntered() {
    const demo = readFileSync(new URL("../../fixtures/demo.toml", import.meta.url), "utf8");
    const scopes = 'scopes = ["im:chat", "im:chat:create", "im:message",';
    assert.equal(demo.split(scopes).length, 2, "demo-bot's scope list moved; update this test");
    const path = join(mkdtempSync(join(tmpdir(), "larkstack-fixture-")), "fixture.toml");
    writeFileSync(path, demo.replace(scopes, 'scopes = ["im:chat.access_event.bot_p2p_chat:read", "im:chat", "im:chat:create", "im:message",'));
    return path;
}

/** Every event the SDK's handlers got, in arrival order, as `{type, data}`: `handlers` (for
 * `EventDispatcher.register`) has one for each of EVENT_TYPES; `wait(type, where)` claims the first
 * unclaimed matching event (an event is claimed once). */
export function eventLog() {
    const got = [];
    const claimed = [];
    const waiters = [];
    const handlers = {};
    for (const type of EVENT_TYPES) {
        handlers[type] = async (data) => {
            got.push({ type, data });
            for (const w of waiters.splice(0)) w();
        };
    }
    return {
        handlers,
        got,
        claimed,
        async wait(type, where = () => true) {
            const deadline = Date.now() + EVENT_WAIT_MS;
            for (;;) {
                const hit = got.find((e) => e.type === type && where(e.data) && !claimed.includes(e.data));
                if (hit) {
                    claimed.push(hit.data);
                    return hit.data;
                }
                if (Date.now() > deadline) assert.fail(`no ${type} within ${EVENT_WAIT_MS} ms; got ${got.map((e) => e.type)}`);
                await new Promise((r) => {
                    waiters.push(r);
                    setTimeout(r, 100);
                });
            }
        },
    };
}

/** Causes each event type of the webhook issue as a bot meets it — through the API (demo-bot's SDK
 * client) and the control API (acting as a user) — and checks what the SDK handed its handler
 * (`events.wait`; the Node SDK flattens {schema, ...header, ...event}): chats, users in demo-bot's
 * id space, operators, changes, content. Each producer resolves to what it received. How the events
 * travel (webhook or long connection) is the caller's; the server needs fixtureWithP2pEntered(). */
export function eventProducers(server, events) {
    const client = sdkClient(server);
    const appId = apps["demo-bot"].app_id;
    const acme = directory.tenants.find((t) => t.key === "acme").tenant_key;
    const act = async (method, path, body) => {
        const r = await server.control(method, path, body);
        assert.equal(r.code, 0, JSON.stringify(r));
        return r.data;
    };
    /** `id` (a UserId) is `user` in demo-bot's id space. */
    const isUser = (id, user) =>
        assert.deepEqual([id.open_id, id.union_id], [openId(user), users[user].union_ids[apps["demo-bot"].developer]]);
    let botOpenId;
    /** demo-bot's own open_id, as bot/v3/info answers it. */
    const bot = async () => {
        if (!botOpenId) {
            const info = await client.request({ url: "/open-apis/bot/v3/info", method: "GET" });
            assert.equal(info.code, 0, info.msg);
            botOpenId = info.bot.open_id;
        }
        return botOpenId;
    };
    const newGroup = async (name) =>
        ok(await client.im.v1.chat.create({
            params: { user_id_type: "open_id" },
            data: { name, owner_id: openId("alice"), user_id_list: [openId("bob")] },
        })).chat_id;
    /** demo-bot writes to `user`: their p2p chat (created on first contact); the sent message. */
    const botWritesTo = async (user, text) =>
        ok(await client.im.v1.message.create({
            params: { receive_id_type: "open_id" },
            data: { receive_id: openId(user), msg_type: "text", content: JSON.stringify({ text }) },
        }));
    /** `user` writes `text` in the chat (control API): im.message.receive_v1. */
    const userMessage = async (chatId, user, text, chatType) => {
        const { message_id } = await act("POST", `/_larkstack/chats/${chatId}/messages`, { user, text });
        const data = await events.wait("im.message.receive_v1", (d) => d.message.chat_id === chatId);
        assert.equal(data.schema, "2.0");
        assert.equal(data.event_type, "im.message.receive_v1");
        assert.equal(data.app_id, appId);
        assert.match(data.event_id, /^[0-9a-f]{32}$/);
        const m = data.message;
        assert.deepEqual([m.message_id, m.chat_type, m.message_type], [message_id, chatType, "text"]);
        assert.deepEqual(JSON.parse(m.content), { text });
        assert.equal(data.sender.sender_type, "user");
        isUser(data.sender.sender_id, user);
        return data;
    };

    return {
        groupMessage: async () => userMessage(await newGroup("node events"), "alice", "hi node", "group"),

        p2pMessage: async () => userMessage((await botWritesTo("alice", "hello")).chat_id, "alice", "p2p back", "p2p"),

        /** demo-bot adds carol (API): user.added_v1; she leaves (control API): user.deleted_v1. */
        async membersAddedAndLeft() {
            const chatId = await newGroup("node members");
            ok(await client.im.v1.chatMembers.create({
                path: { chat_id: chatId },
                params: { member_id_type: "open_id" },
                data: { id_list: [openId("carol")] },
            }));
            const added = await events.wait("im.chat.member.user.added_v1", (d) => d.chat_id === chatId);
            assert.equal(added.users.length, 1);
            isUser(added.users[0].user_id, "carol");
            assert.equal(added.users[0].tenant_key, acme);
            assert.ok(added.users[0].name);
            assert.equal(added.operator_id.open_id, await bot());
            assert.deepEqual([added.name, added.external], ["node members", false]);
            await act("POST", `/_larkstack/chats/${chatId}/leave`, { user: "carol" });
            const left = await events.wait("im.chat.member.user.deleted_v1", (d) => d.chat_id === chatId);
            assert.equal(left.users.length, 1);
            isUser(left.users[0].user_id, "carol");
            isUser(left.operator_id, "carol");
            return [added, left];
        },

        /** helper-bot (neither owner nor manager) adds carol (API) to a group with demo-bot that
         * needs approval: she waits; alice, the owner, withdraws the invitation (control API, as
         * from the client): user.withdrawn_v1. */
        async invitationWithdrawn() {
            const helper = sdkClient(server, "helper-bot");
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
            const added = ok(await helper.im.v1.chatMembers.create({
                path: { chat_id: chatId },
                params: { member_id_type: "open_id" },
                data: { id_list: [openId("carol", "helper-bot")] },
            }));
            assert.deepEqual(added.pending_approval_id_list, [openId("carol", "helper-bot")]);
            const listed = await act("GET", `/_larkstack/chats/${chatId}/invitations`);
            assert.deepEqual(listed.items.map((i) => i.user.key), ["carol"]);
            await act("POST", `/_larkstack/chats/${chatId}/invitations/carol/withdraw`, { user: "alice" });
            const w = await events.wait("im.chat.member.user.withdrawn_v1", (d) => d.chat_id === chatId);
            assert.equal(w.event_type, "im.chat.member.user.withdrawn_v1");
            assert.equal(w.users.length, 1);
            isUser(w.users[0].user_id, "carol");
            assert.equal(w.users[0].name, users.carol.name);
            assert.equal(w.users[0].tenant_key, acme);
            isUser(w.operator_id, "alice");
            assert.deepEqual([w.name, w.external], ["node gated", false]);
            return w;
        },

        /** alice adds demo-bot to helper-bot's group (control API, as from the client):
         * bot.added_v1; demo-bot leaves through the API: bot.deleted_v1. */
        async botAddedThenDeleted() {
            const helper = sdkClient(server, "helper-bot");
            const chatId = ok(await helper.im.v1.chat.create({
                params: { user_id_type: "open_id" },
                data: { name: "node bots", owner_id: openId("alice", "helper-bot"), user_id_list: [openId("bob", "helper-bot")] },
            })).chat_id;
            await act("POST", `/_larkstack/chats/${chatId}/bots`, { user: "alice", app_id: appId });
            const added = await events.wait("im.chat.member.bot.added_v1", (d) => d.chat_id === chatId);
            assert.equal(added.event_type, "im.chat.member.bot.added_v1");
            isUser(added.operator_id, "alice");
            assert.equal(added.operator_tenant_key, acme);
            assert.deepEqual([added.name, added.external], ["node bots", false]);

            ok(await client.im.v1.chatMembers.delete({
                path: { chat_id: chatId },
                params: { member_id_type: "app_id" },
                data: { id_list: [appId] },
            }));
            const deleted = await events.wait("im.chat.member.bot.deleted_v1", (d) => d.chat_id === chatId);
            assert.equal(deleted.name, "node bots");
            assert.equal(deleted.operator_id.open_id, await bot());
            assert.equal(deleted.operator_tenant_key, acme);
            return [added, deleted];
        },

        /** demo-bot renames a group, then disbands it (API): chat.updated_v1, chat.disbanded_v1. */
        async chatUpdatedThenDisbanded() {
            const chatId = await newGroup("node update");
            ok(await client.im.v1.chat.update({ path: { chat_id: chatId }, data: { name: "node renamed" } }));
            const upd = await events.wait("im.chat.updated_v1", (d) => d.chat_id === chatId);
            assert.deepEqual([upd.before_change.name, upd.after_change.name], ["node update", "node renamed"]);
            assert.deepEqual(Object.keys(upd.after_change), ["name"]); // only the changed keys
            assert.equal(upd.operator_id.open_id, await bot());
            ok(await client.im.v1.chat.delete({ path: { chat_id: chatId } }));
            const gone = await events.wait("im.chat.disbanded_v1", (d) => d.chat_id === chatId);
            assert.equal(gone.name, "node renamed");
            assert.equal(gone.operator_id.open_id, await bot());
            assert.equal(gone.operator_tenant_key, acme);
            return [upd, gone];
        },

        /** carol opens demo-bot's p2p chat (control API): bot_p2p_chat_entered_v1 naming the last message. */
        async p2pChatEntered() {
            const sent = await botWritesTo("carol", "hello carol");
            assert.equal((await act("POST", `/_larkstack/users/carol/p2p/${appId}/enter`)).chat_id, sent.chat_id);
            const entered = await events.wait("im.chat.access_event.bot_p2p_chat_entered_v1", (d) => d.chat_id === sent.chat_id);
            assert.equal(entered.event_type, "im.chat.access_event.bot_p2p_chat_entered_v1");
            isUser(entered.operator_id, "carol");
            assert.equal(entered.last_message_id, sent.message_id);
            assert.equal(entered.last_message_create_time, sent.create_time);
            return entered;
        },
    };
}
