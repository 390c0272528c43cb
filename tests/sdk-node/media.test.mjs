// Images and files through the unmodified official Node SDK (@larksuiteoapi/node-sdk): upload an
// image and a file from streams (the SDK sends multipart/form-data), send them, and download them
// back byte-identical by key and as message resources (`writeFile`), with the file's name.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as lark from "@larksuiteoapi/node-sdk";
import { apps, startLarkstack } from "./larkstack.mjs";

function ok(resp) {
    assert.equal(resp.code, 0, `code=${resp.code} msg=${resp.msg}`);
    return resp.data;
}

/** A PNG header of width×height, then `tail` (larkstack reads headers only). */
function png(width, height, tail) {
    const head = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
    const size = Buffer.alloc(8);
    size.writeUInt32BE(width, 0);
    size.writeUInt32BE(height, 4);
    return Buffer.concat([head, size, Buffer.from([8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89]), tail]);
}

describe("images and files through the official Node SDK", () => {
    let server;
    let client;
    let dir;

    before(async () => {
        server = await startLarkstack("nodemedia");
        dir = mkdtempSync(join(tmpdir(), "larkstack-node-media-"));
        const app = apps["demo-bot"];
        client = new lark.Client({ appId: app.app_id, appSecret: app.app_secret, domain: server.baseUrl, loggerLevel: lark.LoggerLevel.error });
    });

    after(() => {
        server?.stop();
        if (dir) rmSync(dir, { recursive: true, force: true });
    });

    async function newChat() {
        return ok(await client.im.v1.chat.create({ data: { name: "node media" } })).chat_id;
    }

    async function send(chatId, msgType, content) {
        const data = { receive_id: chatId, msg_type: msgType, content: JSON.stringify(content) };
        return ok(await client.im.v1.message.create({ params: { receive_id_type: "chat_id" }, data })).message_id;
    }

    test("an image uploaded from a stream comes back byte-identical as a message resource", async () => {
        const image = png(320, 240, randomBytes(150_000));
        const source = join(dir, "upload.png");
        writeFileSync(source, image);
        const uploaded = await client.im.image.create({ data: { image_type: "message", image: createReadStream(source) } });
        // The SDK answers the upload's `data` (image_key) directly.
        const key = uploaded.image_key ?? uploaded.data?.image_key;
        assert.match(key, /^img_v3_/);

        const chatId = await newChat();
        const messageId = await send(chatId, "image", { image_key: key });
        const resource = await client.im.messageResource.get({ path: { message_id: messageId, file_key: key }, params: { type: "image" } });
        const target = join(dir, "resource.png");
        await resource.writeFile(target);
        assert.ok(readFileSync(target).equals(image), "the message resource is the uploaded image");

        const own = await client.im.image.get({ path: { image_key: key } });
        const ownTarget = join(dir, "own.png");
        await own.writeFile(ownTarget);
        assert.ok(readFileSync(ownTarget).equals(image), "the downloaded image is the uploaded one");
    });

    test("a file keeps its bytes and its name", async () => {
        const data = randomBytes(900_000);
        const source = join(dir, "report.pdf");
        writeFileSync(source, data);
        const uploaded = await client.im.file.create({ data: { file_type: "pdf", file_name: "报告.pdf", file: createReadStream(source) } });
        const key = uploaded.file_key ?? uploaded.data?.file_key;
        assert.match(key, /^file_v3_/);

        const own = await client.im.file.get({ path: { file_key: key } });
        assert.match(own.headers["content-disposition"], /filename\*=UTF-8''%E6%8A%A5%E5%91%8A\.pdf/);
        const target = join(dir, "own.pdf");
        await own.writeFile(target);
        assert.ok(readFileSync(target).equals(data));

        const chatId = await newChat();
        const messageId = await send(chatId, "file", { file_key: key });
        const resource = await client.im.messageResource.get({ path: { message_id: messageId, file_key: key }, params: { type: "file" } });
        const resourceTarget = join(dir, "resource.pdf");
        await resource.writeFile(resourceTarget);
        assert.ok(readFileSync(resourceTarget).equals(data));
    });

    test("an upload refused with a documented code", async () => {
        const source = join(dir, "empty.png");
        writeFileSync(source, Buffer.alloc(0));
        try {
            const resp = await client.im.image.create({ data: { image_type: "message", image: createReadStream(source) } });
            assert.fail(`expected a refusal, got ${JSON.stringify(resp)}`);
        } catch (e) {
            if (e instanceof assert.AssertionError) throw e;
            assert.equal(e.response?.data?.code, 234010, `${e}`);
        }
    });
});
