// A chat's life driven through the unmodified official Node SDK (@larksuiteoapi/node-sdk), pointed at
// the real larkstack binary only through `domain`: token, create (with uuid dedup), get, update,
// members, managers, is_in_chat, messages send/list, list, search, disband, and the error envelope as
// the SDK surfaces it. The Python counterpart is tests/sdk; this one proves the Node wire (every
// request carries `Content-Type: application/json`, GET and DELETE carry the body `{}`).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as lark from "@larksuiteoapi/node-sdk";
import { apps, openId, startLarkstack, users } from "./larkstack.mjs";

/** The reply of an SDK call that must succeed: its `data`. */
function ok(resp) {
    assert.equal(resp.code, 0, `code=${resp.code} msg=${resp.msg}`);
    return resp.data;
}

/** The Feishu envelope of an SDK call that must fail (the SDK rejects with the axios error). */
async function refused(promise) {
    try {
        const resp = await promise;
        assert.fail(`expected a refusal, got ${JSON.stringify(resp)}`);
    } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assert.ok(e.response, `expected an HTTP error reply, got ${e}`);
        const body = e.response.data;
        assert.equal(typeof body.code, "number");
        assert.equal(typeof body.msg, "string");
        assert.match(body.error.log_id, /^\w{16,}$/);
        return { status: e.response.status, ...body };
    }
}

describe("official Node SDK against larkstack", () => {
    let server;
    let client;

    before(async () => {
        server = await startLarkstack("nodesdk");
        const app = apps["demo-bot"];
        client = new lark.Client({
            appId: app.app_id,
            appSecret: app.app_secret,
            domain: server.baseUrl,
            loggerLevel: lark.LoggerLevel.error,
        });
    });

    after(() => server?.stop());

    test("create with uuid dedup, get, update", async () => {
        const body = {
            name: "Node 群",
            description: "from the Node SDK",
            owner_id: openId("alice"),
            user_id_list: [openId("bob"), openId("carol")],
        };
        // `uuid` is a query parameter of create-chat, not a body field.
        const params = { user_id_type: "open_id", uuid: "node-sdk-create-1" };
        const created = ok(await client.im.v1.chat.create({ params, data: body }));
        assert.match(created.chat_id, /^oc_[0-9a-f]{32}$/);
        assert.equal(created.name, "Node 群");
        assert.equal(created.owner_id, openId("alice"));
        assert.equal(created.chat_mode, "group");

        // The same uuid and owner within 10 h: the first chat again, not a second one.
        const again = ok(await client.im.v1.chat.create({ params, data: body }));
        assert.equal(again.chat_id, created.chat_id);

        const got = ok(await client.im.v1.chat.get({ path: { chat_id: created.chat_id } }));
        assert.equal(got.name, "Node 群");
        assert.equal(got.user_count, "3");
        assert.equal(got.bot_count, "1");

        ok(await client.im.v1.chat.update({ path: { chat_id: created.chat_id }, data: { name: "Renamed" } }));
        assert.equal(ok(await client.im.v1.chat.get({ path: { chat_id: created.chat_id } })).name, "Renamed");
    });

    test("members: add, list, is_in_chat, remove; managers", async () => {
        const { chat_id } = ok(await client.im.v1.chat.create({ data: { name: "members", owner_id: openId("alice") } }));
        const partial = ok(
            await client.im.v1.chatMembers.create({
                path: { chat_id },
                params: { member_id_type: "open_id", succeed_type: 1 },
                data: { id_list: [openId("bob"), openId("carol"), "ou_unknown000000000000000000000000"] },
            }),
        );
        assert.deepEqual(partial.not_existed_id_list, ["ou_unknown000000000000000000000000"]);

        const page = ok(await client.im.v1.chatMembers.get({ path: { chat_id }, params: { member_id_type: "open_id" } }));
        assert.deepEqual(
            page.items.map((m) => m.member_id).sort(),
            [openId("alice"), openId("bob"), openId("carol")].sort(),
        );
        assert.equal(page.member_total, 3);

        assert.equal(ok(await client.im.v1.chatMembers.isInChat({ path: { chat_id } })).is_in_chat, true);

        const managers = ok(
            await client.im.v1.chatManagers.addManagers({
                path: { chat_id },
                params: { member_id_type: "open_id" },
                data: { manager_ids: [openId("bob")] },
            }),
        );
        assert.deepEqual(managers.chat_managers, [openId("bob")]);

        ok(
            await client.im.v1.chatMembers.delete({
                path: { chat_id },
                params: { member_id_type: "open_id" },
                data: { id_list: [openId("carol")] },
            }),
        );
        const after = ok(await client.im.v1.chatMembers.get({ path: { chat_id }, params: { member_id_type: "open_id" } }));
        assert.equal(after.member_total, 2);
    });

    test("messages: send to a chat and to a user, list the history", async () => {
        const { chat_id } = ok(await client.im.v1.chat.create({ data: { name: "messages", owner_id: openId("alice") } }));
        const sent = ok(
            await client.im.v1.message.create({
                params: { receive_id_type: "chat_id" },
                data: { receive_id: chat_id, msg_type: "text", content: JSON.stringify({ text: "hello from node" }) },
            }),
        );
        assert.match(sent.message_id, /^om_/);
        assert.equal(sent.chat_id, chat_id);
        assert.equal(sent.msg_type, "text");
        assert.equal(JSON.parse(sent.body.content).text, "hello from node");

        const p2p = ok(
            await client.im.v1.message.create({
                params: { receive_id_type: "email" },
                data: { receive_id: users.bob.email, msg_type: "text", content: JSON.stringify({ text: "hi bob" }) },
            }),
        );
        assert.notEqual(p2p.chat_id, chat_id);

        const history = ok(
            await client.im.v1.message.list({ params: { container_id_type: "chat", container_id: chat_id } }),
        );
        assert.deepEqual(
            history.items.map((m) => m.message_id),
            [sent.message_id],
        );
    });

    test("list, search and disband", async () => {
        const { chat_id } = ok(
            await client.im.v1.chat.create({ data: { name: "Searchable Nodeling", owner_id: openId("alice") } }),
        );
        const listed = [];
        for await (const page of await client.im.v1.chat.listWithIterator({ params: { page_size: 2 } })) {
            listed.push(...(page?.items ?? []).map((c) => c.chat_id));
        }
        assert.ok(listed.includes(chat_id), "the iterator walks every page");

        const found = ok(await client.im.v1.chat.search({ params: { query: "nodeling" } }));
        assert.deepEqual(found.items.map((c) => c.chat_id), [chat_id]);

        ok(await client.im.v1.chat.delete({ path: { chat_id } }));
        assert.equal(ok(await client.im.v1.chat.get({ path: { chat_id } })).chat_status, "dissolved");
        const refusal = await refused(client.im.v1.chat.update({ path: { chat_id }, data: { name: "x" } }));
        assert.equal(refusal.status, 400);
        assert.equal(refusal.code, 232009);
    });

    test("a wrong secret is refused at the token request", async () => {
        const bad = new lark.Client({
            appId: apps["demo-bot"].app_id,
            appSecret: "not-the-secret",
            domain: server.baseUrl,
            loggerLevel: lark.LoggerLevel.fatal,
            cache: new Map(),
        });
        // The Node SDK rejects with the token endpoint's code before the API call goes out.
        await assert.rejects(
            bad.im.v1.chat.get({ path: { chat_id: "oc_00000000000000000000000000000000" } }),
            /failed to get tenant_access_token, code: 10014, msg: app secret invalid/,
        );
    });
});
