// A store app in the official Node SDK's ISV mode: an unmodified `lark.EventDispatcher` behind
// `lark.adaptDefault` caches the pushed `app_ticket` with its built-in handler, and a
// `lark.Client({appType: lark.AppType.ISV})` sharing that cache trades it for an app token, then a
// tenant token (`lark.withTenantKey`), and creates a chat in an installing tenant; with and
// without encryption.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import * as lark from "@larksuiteoapi/node-sdk";
import { apps, directory, startLarkstack } from "./larkstack.mjs";

const WAIT_MS = 20_000; // generous: the machine may be loaded
const store = apps["store-app"];
const tenantKey = (key) => directory.tenants.find((t) => t.key === key).tenant_key;

/** The SDK's ticket as its dispatcher cached it, once it is there (and differs from `not`). */
async function cachedTicket(cache, not) {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
        const ticket = await cache.get(lark.CAppTicket, { namespace: store.app_id });
        if (ticket && ticket !== not) return ticket;
        if (Date.now() > deadline) assert.fail(`no new app_ticket cached within ${WAIT_MS} ms`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

function ok(resp) {
    assert.equal(resp.code, 0, `code=${resp.code} msg=${resp.msg}`);
    return resp.data;
}

let server;

before(async () => {
    server = await startLarkstack("nodeisv");
});

after(() => server?.stop());

for (const mode of ["encrypted", "plain"]) {
    describe(`Node SDK ISV client via the pushed app_ticket (${mode})`, () => {
        const key = mode === "encrypted" ? "node-isv-key" : "";
        // One cache for the dispatcher and the client, as the SDK's default (shared) cache would be.
        const cache = new lark.DefaultCache();
        let receiver;

        before(async () => {
            const dispatcher = new lark.EventDispatcher({
                encryptKey: key,
                verificationToken: "node-isv-token",
                cache,
                loggerLevel: lark.LoggerLevel.error,
            });
            receiver = http.createServer(lark.adaptDefault("/webhook", dispatcher, { autoChallenge: true }));
            await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
        });

        after(async () => {
            await server.control("PUT", `/_larkstack/apps/${store.app_id}/events`, { event_url: "" });
            receiver?.close();
        });

        test("the ticket is cached, traded for tokens, and a resend replaces it", async () => {
            const r = await server.control("PUT", `/_larkstack/apps/${store.app_id}/events`, {
                event_url: `http://127.0.0.1:${receiver.address().port}/webhook`,
                encrypt_key: key,
                verification_token: "node-isv-token",
            });
            assert.equal(r.code, 0, JSON.stringify(r));
            const first = await cachedTicket(cache);

            const client = new lark.Client({
                appId: store.app_id,
                appSecret: store.app_secret,
                appType: lark.AppType.ISV,
                domain: server.baseUrl,
                cache,
                loggerLevel: lark.LoggerLevel.error,
            });
            const globex = tenantKey("globex");
            const chat = ok(await client.im.v1.chat.create({ data: { name: `node isv ${mode}` } }, lark.withTenantKey(globex)));
            const got = ok(await client.im.v1.chat.get({ path: { chat_id: chat.chat_id } }, lark.withTenantKey(globex)));
            assert.equal(got.tenant_key, globex);

            // A resend through the SDK: the dispatcher caches the new ticket, which buys a token
            // for another tenant (the old one answers 10012 now).
            ok(await client.auth.v3.appTicket.resend({ data: { app_id: store.app_id, app_secret: store.app_secret } }));
            const second = await cachedTicket(cache, first);
            const stale = await fetch(`${server.baseUrl}/open-apis/auth/v3/app_access_token`, {
                method: "POST",
                headers: { "content-type": "application/json" },
                body: JSON.stringify({ app_id: store.app_id, app_secret: store.app_secret, app_ticket: first }),
            }).then((res) => res.json());
            assert.equal(stale.code, 10012, JSON.stringify(stale));
            assert.notEqual(second, first);
            ok(await client.im.v1.chat.create({ data: { name: `node isv acme ${mode}` } }, lark.withTenantKey(tenantKey("acme"))));
        });
    });
}
