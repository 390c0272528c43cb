// What the Node SDK scenarios share: the demo directory as `larkstack directory` prints it, and a
// real `larkstack serve` on a free port with a fresh data dir (a schema of its own on PostgreSQL).

import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

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
