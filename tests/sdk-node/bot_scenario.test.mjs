// Issue 14's bot scenario end to end through the unmodified official Node SDK
// (@larksuiteoapi/node-sdk), with the SDK's typed APIs wherever it has them: the bot learns who it
// is (`client.request` to bot/v3/info), a user writes in a group (control API, as from the Feishu
// client), the bot replies in a thread, reacts, uploads an image and sends it, downloads it back
// byte-identical as a message resource, sends a shared card and patches it, recalls its reply, and
// looks a user up by email. Every step is checked through the API (get, listing). The scenario of
// tests/sdk/test_bot_scenario.py; on PostgreSQL + Redis when LARKSTACK_DATABASE / LARKSTACK_REDIS are set.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

/** A PNG header of width×height, then `tail` (larkstack reads headers only). */
function png(width, height, tail) {
    const head = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
    const size = Buffer.alloc(8);
    size.writeUInt32BE(width, 0);
    size.writeUInt32BE(height, 4);
    return Buffer.concat([head, size, Buffer.from([8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89]), tail]);
}

const card = (step) =>
    JSON.stringify({ config: { update_multi: true }, elements: [{ tag: "div", text: { tag: "plain_text", content: step } }] });

describe("issue 14's bot scenario through the Node SDK", () => {
    let server;
    let client;
    let dir;

    before(async () => {
        server = await startLarkstack("nodescenario");
        dir = mkdtempSync(join(tmpdir(), "larkstack-node-scenario-"));
        const app = apps["demo-bot"];
        client = new lark.Client({ appId: app.app_id, appSecret: app.app_secret, domain: server.baseUrl, loggerLevel: lark.LoggerLevel.error });
    });

    after(() => {
        server?.stop();
        if (dir) rmSync(dir, { recursive: true, force: true });
    });

    async function actAsUser(path, body) {
        const r = await server.control("POST", path, body);
        assert.equal(r.code, 0, JSON.stringify(r));
        return r.data;
    }

    test("identity, thread reply, reaction, image round trip, card patch, recall, lookup by email", async () => {
        const alice = openId("alice");

        // 1. Who am I: `bot` at the top level, no `data`.
        const info = await client.request({ url: "/open-apis/bot/v3/info", method: "GET" });
        assert.equal(info.code, 0);
        assert.equal(info.data, undefined);
        assert.equal(info.bot.app_name, "Demo Bot");
        assert.match(info.bot.open_id, /^ou_/);

        // 2. A group with alice; alice writes in it.
        const { chat_id: chatId } = ok(
            await client.im.chat.create({ params: { user_id_type: "open_id" }, data: { name: "Incidents", user_id_list: [alice] } }),
        );
        const { message_id: question } = await actAsUser(`/_larkstack/chats/${chatId}/messages`, { user: "alice", text: "the build is red" });

        // 3. The bot replies in a thread.
        const reply = ok(
            await client.im.message.reply({
                path: { message_id: question },
                data: { msg_type: "text", content: JSON.stringify({ text: "on it" }), reply_in_thread: true, uuid: "scenario-node-1" },
            }),
        );
        assert.deepEqual([reply.root_id, reply.parent_id, reply.chat_id], [question, question, chatId]);
        assert.match(reply.thread_id, /^omt_/);
        const asked = ok(await client.im.message.get({ path: { message_id: question } })).items[0];
        assert.deepEqual([asked.sender.sender_type, asked.sender.id, asked.thread_id], ["user", alice, reply.thread_id]);

        // 4. The bot reacts; the reaction is listed as the app's.
        const reaction = ok(
            await client.im.messageReaction.create({ path: { message_id: question }, data: { reaction_type: { emoji_type: "OnIt" } } }),
        );
        const reactions = ok(await client.im.messageReaction.list({ path: { message_id: question } })).items;
        assert.deepEqual(
            reactions.map((r) => [r.reaction_id, r.reaction_type.emoji_type, r.operator.operator_type, r.operator.operator_id]),
            [[reaction.reaction_id, "OnIt", "app", apps["demo-bot"].app_id]],
        );

        // 5. Upload an image (multipart from a stream), send it, download it back byte-identical.
        const image = png(640, 480, randomBytes(120_000));
        const source = join(dir, "upload.png");
        writeFileSync(source, image);
        const uploaded = await client.im.image.create({ data: { image_type: "message", image: createReadStream(source) } });
        // The SDK answers the upload's `data` itself.
        const imageKey = uploaded.image_key ?? uploaded.data?.image_key;
        assert.match(imageKey, /^img_v3_/);
        const imageMessage = ok(
            await client.im.message.create({
                params: { receive_id_type: "chat_id" },
                data: { receive_id: chatId, msg_type: "image", content: JSON.stringify({ image_key: imageKey }) },
            }),
        ).message_id;
        const resource = await client.im.messageResource.get({ path: { message_id: imageMessage, file_key: imageKey }, params: { type: "image" } });
        const downloaded = join(dir, "downloaded.png");
        await resource.writeFile(downloaded);
        assert.ok(readFileSync(downloaded).equals(image), "the message resource is the uploaded image");

        // 6. A shared card, patched: get shows the new card and `updated`.
        const cardMessage = ok(
            await client.im.message.create({ params: { receive_id_type: "chat_id" }, data: { receive_id: chatId, msg_type: "interactive", content: card("deploying") } }),
        ).message_id;
        ok(await client.im.message.patch({ path: { message_id: cardMessage }, data: { content: card("deployed") } }));
        const shown = ok(await client.im.message.get({ path: { message_id: cardMessage } })).items[0];
        assert.equal(JSON.parse(shown.body.content).elements[0].text.content, "deployed");
        assert.equal(shown.updated, true);

        // 7. Recall the thread reply: reads answer 230011, the history lists it deleted.
        ok(await client.im.message.delete({ path: { message_id: reply.message_id } }));
        assert.equal(await refusedCode(client.im.message.get({ path: { message_id: reply.message_id } })), 230011);

        // The whole story as the chat's history shows it, in order.
        const history = ok(await client.im.message.list({ params: { container_id_type: "chat", container_id: chatId, page_size: 50 } })).items;
        assert.deepEqual(
            history.filter((m) => m.msg_type !== "system").map((m) => [m.message_id, m.msg_type, m.sender.sender_type, m.deleted]),
            [
                [question, "text", "user", false],
                [reply.message_id, "text", "app", true],
                [imageMessage, "image", "app", false],
                [cardMessage, "interactive", "app", false],
            ],
        );
        assert.deepEqual(
            Object.fromEntries(history.filter((m) => m.thread_id).map((m) => [m.message_id, m.thread_id])),
            { [question]: reply.thread_id, [reply.message_id]: reply.thread_id },
        );
        assert.deepEqual(JSON.parse(history.find((m) => m.message_id === imageMessage).body.content), { image_key: imageKey });
        // The thread on its own: its root, then the (recalled) reply.
        const thread = ok(await client.im.message.list({ params: { container_id_type: "thread", container_id: reply.thread_id } })).items;
        assert.deepEqual(thread.map((m) => [m.message_id, m.deleted]), [[question, false], [reply.message_id, true]]);

        // 8. Look a user up by email.
        const found = ok(
            await client.contact.user.batchGetId({ params: { user_id_type: "open_id" }, data: { emails: ["alice@acme.example"] } }),
        ).user_list;
        assert.deepEqual(found.map((u) => [u.email, u.user_id]), [["alice@acme.example", alice]]);
    });
});
