// Webhook events received by an unmodified `lark.EventDispatcher` behind
// `lark.adaptDefault('/webhook', dispatcher, {autoChallenge: true})` on `http.createServer`, with and
// without encryption: url_verification, then each event type caused by actions through the API (the
// SDK client) and the control API (acting as a user). The producers and their checks
// (`eventProducers` in larkstack.mjs) are shared with the long-connection test (ws.test.mjs).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import * as lark from "@larksuiteoapi/node-sdk";
import { apps, eventLog, eventProducers, fixtureWithP2pEntered, startLarkstack } from "./larkstack.mjs";

/** A bot: the SDK's dispatcher on a real HTTP server; handled events are logged (`eventLog`). */
async function startBot(encryptKey, verificationToken) {
    const events = eventLog();
    const dispatcher = new lark.EventDispatcher({ encryptKey, verificationToken, loggerLevel: lark.LoggerLevel.error }).register(events.handlers);
    const server = http.createServer(lark.adaptDefault("/webhook", dispatcher, { autoChallenge: true }));
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    return {
        ...events,
        url: `http://127.0.0.1:${server.address().port}/webhook`,
        close: () => server.close(),
    };
}

// One server for both modes.
let server;
const appId = apps["demo-bot"].app_id;

before(async () => {
    server = await startLarkstack("nodeev", ["--fixture", fixtureWithP2pEntered()]);
});

after(() => server?.stop());

for (const mode of ["encrypted", "plain"]) {
    describe(`Node SDK EventDispatcher receives webhooks (${mode})`, () => {
        const key = mode === "encrypted" ? "node-sdk-key" : "";
        let bot;
        let produce;

        before(async () => {
            bot = await startBot(key, "node-sdk-token");
            produce = eventProducers(server, bot);
        });

        after(() => bot?.close());

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
            const data = await produce.groupMessage();
            assert.equal(data.token, "node-sdk-token");
        });

        test("a user's p2p message", () => produce.p2pMessage());

        test("members added and left", () => produce.membersAddedAndLeft());

        test("a pending invitation withdrawn", () => produce.invitationWithdrawn());

        test("a bot added by a user, then leaving", async () => {
            const [added] = await produce.botAddedThenDeleted();
            assert.equal(added.token, "node-sdk-token");
        });

        test("a user enters the bot's p2p chat", () => produce.p2pChatEntered());

        test("chat updated, then disbanded", () => produce.chatUpdatedThenDisbanded());
    });
}
