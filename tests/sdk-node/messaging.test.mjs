// A bot's everyday messaging through the unmodified official Node SDK (@larksuiteoapi/node-sdk):
// reply in a thread, get, react / list / remove reactions, edit, stream a card by patching it,
// read receipts, forward and recall — the scenario of tests/sdk/test_bot_messaging.py, with a user
// reading and reacting through the control API as from the Feishu client.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as lark from "@larksuiteoapi/node-sdk";
import { apps, openId, startLarkstack } from "./larkstack.mjs";

function ok(resp) {
    assert.equal(resp.code, 0, `code=${resp.code} msg=${resp.msg}`);
    return resp.data;
}

/** The Feishu code of an SDK call that must fail (the SDK rejects with the axios error). */
async function refusedCode(promise) {
    try {
        const resp = await promise;
        assert.fail(`expected a refusal, got ${JSON.stringify(resp)}`);
    } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assert.ok(e.response, `expected an HTTP error reply, got ${e}`);
        return e.response.data.code;
    }
}

const text = (s) => JSON.stringify({ text: s });
const card = (s) =>
    JSON.stringify({ config: { update_multi: true }, elements: [{ tag: "div", text: { tag: "plain_text", content: s } }] });

describe("a bot's messaging through the Node SDK", () => {
    let server;
    let im;

    before(async () => {
        server = await startLarkstack("nodemsg");
        const app = apps["demo-bot"];
        const client = new lark.Client({ appId: app.app_id, appSecret: app.app_secret, domain: server.baseUrl, loggerLevel: lark.LoggerLevel.error });
        im = client.im.v1;
    });

    after(() => server?.stop());

    async function control(path, body) {
        const r = await server.control("POST", path, body);
        assert.equal(r.code, 0, JSON.stringify(r));
        return r.data;
    }

    test("reply in a thread, react, edit, patch a card, read receipts, forward, recall", async () => {
        const alice = openId("alice");
        const { chat_id } = ok(await im.chat.create({ params: { user_id_type: "open_id" }, data: { name: "Support", user_id_list: [alice] } }));
        const { message_id: question } = await control(`/_larkstack/chats/${chat_id}/messages`, { user: "alice", text: "is it down?" });

        const replyBody = { content: text("looking"), msg_type: "text", reply_in_thread: true, uuid: "node-reply-1" };
        const reply = ok(await im.message.reply({ path: { message_id: question }, data: replyBody }));
        assert.equal(reply.root_id, question);
        assert.equal(reply.parent_id, question);
        assert.match(reply.thread_id, /^omt_/);
        assert.equal(ok(await im.message.reply({ path: { message_id: question }, data: replyBody })).message_id, reply.message_id);

        const got = ok(await im.message.get({ path: { message_id: question } }));
        assert.deepEqual(got.items.map((m) => m.message_id), [question]);
        assert.equal(got.items[0].thread_id, reply.thread_id);

        const reaction = ok(
            await im.messageReaction.create({ path: { message_id: question }, data: { reaction_type: { emoji_type: "Typing" } } }),
        );
        assert.deepEqual([reaction.operator.operator_type, reaction.reaction_type.emoji_type], ["app", "Typing"]);
        await control(`/_larkstack/messages/${question}/reactions`, { user: "alice", emoji_type: "THUMBSUP" });
        const listed = ok(await im.messageReaction.list({ path: { message_id: question }, params: { user_id_type: "open_id" } }));
        assert.deepEqual(
            listed.items.map((r) => [r.reaction_type.emoji_type, r.operator.operator_type, r.operator.operator_id]),
            [
                ["Typing", "app", apps["demo-bot"].app_id],
                ["THUMBSUP", "user", alice],
            ],
        );
        const removed = ok(await im.messageReaction.delete({ path: { message_id: question, reaction_id: reaction.reaction_id } }));
        assert.equal(removed.reaction_id, reaction.reaction_id);
        const bad = im.messageReaction.create({ path: { message_id: question }, data: { reaction_type: { emoji_type: "typing" } } });
        assert.equal(await refusedCode(bad), 231001);

        const edited = ok(await im.message.update({ path: { message_id: reply.message_id }, data: { msg_type: "text", content: text("fixed") } }));
        assert.equal(edited.updated, true);
        assert.deepEqual(JSON.parse(edited.body.content), { text: "fixed" });
        const notMine = im.message.update({ path: { message_id: question }, data: { msg_type: "text", content: text("x") } });
        assert.equal(await refusedCode(notMine), 230071);

        const sent = ok(
            await im.message.create({ params: { receive_id_type: "chat_id" }, data: { receive_id: chat_id, msg_type: "interactive", content: card("step 1") } }),
        );
        for (const step of ["step 2", "done"]) {
            ok(await im.message.patch({ path: { message_id: sent.message_id }, data: { content: card(step) } }));
        }
        const shown = ok(await im.message.get({ path: { message_id: sent.message_id } })).items[0];
        assert.equal(JSON.parse(shown.body.content).elements[0].text.content, "done");
        assert.equal(shown.updated, true);

        await control(`/_larkstack/chats/${chat_id}/read`, { user: "alice" });
        const readers = ok(await im.message.readUsers({ path: { message_id: sent.message_id }, params: { user_id_type: "open_id" } }));
        assert.deepEqual(readers.items.map((r) => [r.user_id, r.user_id_type]), [[alice, "open_id"]]);
        const theirs = im.message.readUsers({ path: { message_id: question }, params: { user_id_type: "open_id" } });
        assert.equal(await refusedCode(theirs), 230012);

        const forwarded = ok(
            await im.message.forward({ path: { message_id: sent.message_id }, params: { receive_id_type: "open_id" }, data: { receive_id: alice } }),
        );
        assert.equal(forwarded.msg_type, "interactive");
        assert.notEqual(forwarded.chat_id, chat_id);

        ok(await im.message.delete({ path: { message_id: reply.message_id } }));
        assert.equal(await refusedCode(im.message.get({ path: { message_id: reply.message_id } })), 230011);
        const history = ok(await im.message.list({ params: { container_id_type: "chat", container_id: chat_id } }));
        assert.equal(history.items.find((m) => m.message_id === reply.message_id).deleted, true);
    });
});
