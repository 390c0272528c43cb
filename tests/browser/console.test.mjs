// The web console in a real browser: larkstack's binary on a free port with a fresh data dir,
// Debian's headless Chromium driven by playwright-core. Run through tests/browser/run.sh.
//
// One scenario, step by step: the admin-token form, every page, a chat created through the
// Feishu API appearing by polling, its detail and messages, the fault presets as the server lists
// them, a fault injected from the UI and then seen both by an API client and in the journal, and
// the clock moved from the UI. Any console error or uncaught exception in the page fails the run.
// Leaves target/console-chats.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.LARKSTACK_BIN || resolve(REPO, process.env.CARGO_TARGET_DIR || 'target', 'debug/larkstack');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = resolve(REPO, 'target/console-chats.png');

const DEMO_APP = { app_id: 'cli_a1b2c3d4e5f60718', app_secret: 'larkstackDemoSecret0000000000001' };
const CHAT_NAME = '浏览器测试群';

let server; // {child, base, adminToken, dataDir, stderr}
let browser;
let page;
/** Console errors and uncaught exceptions in the page; `allow` marks the ones a step expects. */
const pageProblems = [];
let allow = null;

// ---------------------------------------------------------------------------------------------

async function startLarkstack() {
  const dataDir = mkdtempSync(join(tmpdir(), 'larkstack-browser-'));
  const adminToken = randomBytes(16).toString('hex');
  const child = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--admin-token', adminToken], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LARKSTACK_LOG: process.env.LARKSTACK_LOG || 'warn' },
  });
  let stderr = '';
  child.stderr.on('data', (b) => { stderr = (stderr + b).slice(-20000); });
  const lines = createInterface({ input: child.stdout });
  const base = await new Promise((resolveBase, reject) => {
    const timer = setTimeout(() => reject(new Error(`larkstack did not start in 15 s: ${stderr}`)), 15000);
    child.once('exit', (code) => reject(new Error(`larkstack exited (${code}) before listening: ${stderr}`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      const m = /^larkstack listening on (http:\/\/\S+)$/.exec(line);
      if (m) resolveBase(m[1]);
      else reject(new Error(`unexpected first line from larkstack: ${line}`));
    });
  });
  lines.on('line', () => {}); // keep draining stdout
  return { child, base, adminToken, dataDir, stderr: () => stderr };
}

async function stopLarkstack() {
  if (!server) return;
  const { child, dataDir } = server;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(dataDir, { recursive: true, force: true });
}

/** A Feishu API call as an SDK would make it; resolves to {status, body}. */
async function feishu(path, body, accessToken) {
  const headers = { 'Content-Type': 'application/json; charset=utf-8' };
  if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
  const res = await fetch(server.base + path, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

async function tenantToken() {
  const { body } = await feishu('/open-apis/auth/v3/tenant_access_token/internal', DEMO_APP);
  assert.equal(body.code, 0, body.msg);
  return body.tenant_access_token;
}

async function createChat(name) {
  return feishu('/open-apis/im/v1/chats', { name }, await tenantToken());
}

/** A control API call; asserts success and resolves to `data`. */
async function control(method, path, body) {
  const res = await fetch(server.base + path, {
    method,
    headers: { Authorization: `Bearer ${server.adminToken}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const reply = await res.json();
  assert.equal(reply.code, 0, `${method} ${path}: ${reply.msg}`);
  return reply.data;
}

const byTestId = (id) => page.getByTestId(id);

async function goTo(nav) {
  await byTestId(`nav-${nav}`).click();
  await byTestId(`page-${nav}`).waitFor();
}

function watch(p) {
  p.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    if (allow && allow.test(text)) return;
    pageProblems.push(`console error: ${text} (${msg.location().url})`);
  });
  p.on('pageerror', (err) => pageProblems.push(`uncaught: ${err.message}`));
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  server = await startLarkstack();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--disable-dev-shm-usage', '--no-sandbox', '--disable-gpu'],
  });
});

after(async () => {
  await browser?.close();
  await stopLarkstack();
});

test('web console', async (t) => {
  const context = await browser.newContext({
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 2, // a crisp screenshot for the release notes
    locale: 'en-US',
    timezoneId: 'Asia/Shanghai',
    colorScheme: 'light',
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.base });
  context.setDefaultTimeout(10000);

  await t.test('asks for the admin token when it has none, and says when it is rejected', async () => {
    const p = await context.newPage();
    watch(p);
    allow = /401 \(Unauthorized\)/; // the rejected token's own request
    await p.goto(`${server.base}/`);
    await p.getByTestId('token-dialog').waitFor();
    await p.getByTestId('token-input').fill('not-the-admin-token');
    await p.getByTestId('token-submit').click();
    await p.getByTestId('token-error').filter({ hasText: 'rejected' }).waitFor();
    await p.getByTestId('token-input').fill(server.adminToken);
    await p.getByTestId('token-submit').click();
    await p.getByTestId('page-directory').waitFor();
    assert.equal(await p.getByTestId('token-dialog').count(), 0);
    allow = null;
    // Start the next steps with no stored token: they must take it from the URL.
    await p.evaluate(() => localStorage.clear());
    await p.close();
  });

  page = await context.newPage();
  watch(page);

  await t.test('takes the token from #token=, keeps it and strips it from the URL', async () => {
    await page.goto(`${server.base}/#token=${server.adminToken}`);
    await byTestId('page-directory').waitFor();
    assert.equal(page.url(), `${server.base}/#/directory`);
    assert.equal(await page.evaluate(() => localStorage.getItem('larkstack.adminToken')), server.adminToken);
  });

  await t.test('directory: tenants, apps with copyable credentials, users and their IDs', async () => {
    const dir = await control('GET', '/_larkstack/directory');
    const demo = byTestId('app-row').filter({ has: page.locator(`[data-copy="${DEMO_APP.app_id}"]`) });
    await demo.waitFor();
    const demoText = await demo.innerText();
    assert.match(demoText, /Demo Bot/);
    assert.ok(demoText.includes(DEMO_APP.app_id) && demoText.includes(DEMO_APP.app_secret), demoText);
    assert.equal(await byTestId('app-row').count(), dir.apps.length);
    assert.match(await byTestId('tenant-row').first().innerText(), /Acme 科技/);

    await demo.getByTestId('copy-app-secret').click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), DEMO_APP.app_secret);
    await demo.getByTestId('copy-app-id').click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), DEMO_APP.app_id);
    await byTestId('toast').filter({ hasText: 'Copied app_id' }).first().waitFor();

    const alice = dir.users.find((u) => u.key === 'alice');
    const row = page.locator('[data-testid="user-row"][data-user-key="alice"]');
    const text = await row.innerText();
    assert.match(text, /Alice 王/);
    // union_ids are per developer: the selected app's developer's is shown.
    const developer = dir.apps.find((a) => a.key === 'demo-bot').developer;
    for (const id of [alice.user_id, alice.kunlun_id, alice.open_ids['demo-bot'], alice.union_ids[developer]]) {
      assert.ok(text.includes(id), `${id} missing from the users table: ${text}`);
    }
    // open_ids are per app: picking another app shows that app's.
    await byTestId('users-app').selectOption('helper-bot');
    await row.filter({ hasText: alice.open_ids['helper-bot'] }).waitFor();
  });

  let chatId;
  await t.test('chats: a chat created through the API appears without a reload', async () => {
    await goTo('chats');
    await byTestId('empty').filter({ hasText: 'No chats yet' }).waitFor();
    const created = await createChat(CHAT_NAME);
    assert.equal(created.body.code, 0, created.body.msg);
    chatId = created.body.data.chat_id;
    const row = page.locator(`[data-testid="chat-row"][data-chat-id="${chatId}"]`);
    await row.waitFor({ timeout: 6000 }); // polled every 2 s
    const text = await row.innerText();
    assert.match(text, new RegExp(CHAT_NAME));
    assert.match(text, /Acme 科技/);
    assert.match(text, /normal/);
    assert.equal(await row.getByTestId('chat-members').innerText(), '0 + 1 bot');
  });

  await t.test('chat detail: settings, bots, members, and messages as they are posted', async () => {
    await page.locator(`[data-testid="chat-row"][data-chat-id="${chatId}"]`).getByTestId('chat-name').click();
    await byTestId('chat-title').filter({ hasText: CHAT_NAME }).waitFor();
    assert.equal(page.url(), `${server.base}/#/chats/${chatId}`);
    assert.match(await byTestId('bots').innerText(), /Demo Bot/);
    assert.match(await byTestId('chat-settings').innerText(), new RegExp(CHAT_NAME));
    assert.equal(await byTestId('copy-chat-id').getAttribute('data-copy'), chatId);
    assert.match(await byTestId('chat-facts').innerText(), /Demo Bot \(bot\)/); // the owner

    // Alice joins and writes, through the control API; the page picks it up by polling.
    await control('POST', `/_larkstack/chats/${chatId}/join`, { user: 'alice' });
    await control('POST', `/_larkstack/chats/${chatId}/messages`, { user: 'alice', text: '大家好，这是浏览器测试的消息' });
    await byTestId('message').filter({ hasText: '大家好，这是浏览器测试的消息' }).filter({ hasText: 'Alice 王' }).waitFor({ timeout: 6000 });
    await byTestId('members').filter({ hasText: 'Alice 王' }).waitFor();

    // Bob joins and answers from the console itself.
    await byTestId('join-as').selectOption('bob');
    await byTestId('join-send').click();
    await byTestId('members').filter({ hasText: 'Bob 李' }).waitFor();
    await byTestId('post-as').selectOption('bob');
    await byTestId('post-text').fill('收到 from the console');
    await byTestId('post-send').click();
    await byTestId('message').filter({ hasText: '收到 from the console' }).filter({ hasText: 'Bob 李' }).waitFor();
    const detail = await control('GET', `/_larkstack/chats/${chatId}`);
    assert.deepEqual(detail.messages.map((m) => m.sender.user.key), ['alice', 'bob']);
  });

  await t.test('tasks: aPaaS tasks and the chats started from them', async () => {
    const bob = '1783981209205702';
    const invite = ['1783981209205701', '1783981209205703'];
    const started = await feishu('/open-apis/apaas/v1/user_tasks/1790000000000201/chat_group',
      { operator_user_id: bob, invite_user_ids: invite, chat_name: '请假沟通' }, await tenantToken());
    assert.equal(started.body.code, 0, started.body.msg);

    await goTo('tasks');
    const task = page.locator('[data-testid="task"][data-task-id="1790000000000201"]');
    await task.filter({ hasText: '请假申请：Alice 王 3 天' }).waitFor();
    assert.match(await task.innerText(), /Bob 李/);
    const link = task.getByTestId('task-chat').filter({ hasText: '请假沟通' });
    await link.waitFor({ timeout: 6000 });
    assert.match(await link.innerText(), /started here/);
    await link.getByRole('link', { name: '请假沟通' }).click();
    await byTestId('chat-title').filter({ hasText: '请假沟通' }).waitFor();
    const members = await byTestId('members').innerText();
    for (const name of ['Alice 王', 'Bob 李', 'Carol 张']) assert.ok(members.includes(name), members);
    assert.match(await byTestId('members').innerText(), /owner/);
    assert.match(await byTestId('chat-tasks').innerText(), /leave-approve/);
    await byTestId('chat-tasks').getByRole('link', { name: 'leave-approve' }).click();
    await page.locator('[data-testid="task"].focus[data-task-id="1790000000000201"]').waitFor();
  });

  await t.test('faults: the presets larkstack serves, each with its description and effect', async () => {
    await goTo('faults');
    const { items: presets } = await control('GET', '/_larkstack/faults/presets');
    assert.ok(presets.length > 0);
    await byTestId('fault-preset').first().waitFor();
    const rows = await byTestId('fault-preset').evaluateAll((trs) => trs.map((tr) => ({
      name: tr.dataset.preset,
      shown: tr.querySelector('[data-testid="fault-preset-name"]').textContent,
      description: tr.querySelector('[data-testid="fault-preset-description"]').textContent,
      effect: tr.querySelector('[data-testid="fault-preset-effect"]').textContent,
    })));
    assert.deepEqual(rows.map((r) => [r.name, r.shown, r.description]), presets.map((x) => [x.name, x.name, x.description]));
    for (const [i, x] of presets.entries()) {
      if (x.effect.kind === 'error') assert.ok(rows[i].effect.includes(String(x.effect.code)) && rows[i].effect.includes(`HTTP ${x.effect.http_status}`), rows[i].effect);
      if (x.effect.kind === 'delay') assert.ok(rows[i].effect.includes(`${x.effect.ms} ms`), rows[i].effect);
    }
    // The form's effect choices are those presets, then the custom effects.
    const options = await byTestId('fault-effect').locator('optgroup[label="Presets"] option').evaluateAll((os) => os.map((o) => o.value));
    assert.deepEqual(options, presets.map((x) => x.name));
    // "Use" picks a preset in the form and shows the server's description of it.
    const last = presets[presets.length - 1];
    await page.locator(`[data-testid="fault-preset"][data-preset="${last.name}"]`).getByTestId('fault-preset-use').click();
    assert.equal(await byTestId('fault-effect').inputValue(), last.name);
    assert.equal(await byTestId('fault-effect-hint').innerText(), last.description);
    // Recipes are offered (each one names a served preset).
    assert.ok(await byTestId('fault-recipe').count() > 0);
  });

  await t.test('faults: injected from the console, applied to the next API call', async () => {
    await goTo('faults');
    await byTestId('empty').filter({ hasText: 'No faults' }).waitFor();
    // A refused rule: the reply's msg is shown.
    allow = /400 \(Bad Request\)/;
    await byTestId('fault-path').fill('open-apis/no-slash');
    await byTestId('fault-add').click();
    await byTestId('toast').filter({ hasText: 'path must start with /' }).waitFor();
    allow = null;
    await byTestId('fault-effect').selectOption('chat_throttled');
    await byTestId('fault-method').selectOption('POST');
    await byTestId('fault-path').fill('/open-apis/im/v1/chats');
    await byTestId('fault-count').fill('1');
    await byTestId('fault-add').click();
    const rule = byTestId('fault-row');
    await rule.filter({ hasText: '232019' }).waitFor();
    assert.equal(await byTestId('fault-remaining').innerText(), '1');
    const rules = await control('GET', '/_larkstack/faults');
    assert.equal(rules.items.length, 1);
    assert.deepEqual(
      { method: rules.items[0].method, path: rules.items[0].path, remaining: rules.items[0].remaining, code: rules.items[0].effect.code },
      { method: 'POST', path: '/open-apis/im/v1/chats', remaining: 1, code: 232019 });

    const throttled = await createChat('限流中的群');
    assert.equal(throttled.body.code, 232019, JSON.stringify(throttled.body));
    const after = await createChat('故障之后的群');
    assert.equal(after.body.code, 0, 'count 1: only one call is affected');
    await byTestId('fault-hits').filter({ hasText: '1' }).waitFor({ timeout: 6000 });
    await byTestId('fault-remaining').filter({ hasText: 'used up' }).waitFor();
  });

  await t.test('journal: the throttled call, found by its code, with its bodies', async () => {
    await goTo('journal');
    await byTestId('journal-row').first().waitFor();
    await byTestId('journal-code-filter').fill('232019');
    const rows = page.locator('[data-testid="journal-row"][data-code="232019"]');
    await rows.first().waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="journal-row"]')].every((r) => r.dataset.code === '232019'));
    assert.equal(await byTestId('journal-row').count(), 1);
    const row = rows.first();
    assert.match(await row.innerText(), /POST[\s\S]*\/open-apis\/im\/v1\/chats[\s\S]*Demo Bot[\s\S]*232019/);
    await row.click();
    assert.match(await byTestId('journal-response').innerText(), /"code": 232019/);
    assert.match(await byTestId('journal-request').innerText(), /限流中的群/);
    // The expanded body stays open across refreshes.
    await page.waitForTimeout(2300);
    assert.equal(await byTestId('journal-detail').count(), 1);
    await byTestId('journal-code-filter').fill('');
    await byTestId('journal-path').fill('tenant_access_token');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('[data-testid="journal-path-cell"]')];
      return rows.length > 0 && rows.every((r) => r.textContent.includes('tenant_access_token'));
    });
    await byTestId('journal-path').fill('');
  });

  await t.test('screenshot of the chats page', async () => {
    await goTo('chats');
    await page.locator(`[data-testid="chat-row"][data-chat-id="${chatId}"]`).filter({ hasText: CHAT_NAME }).waitFor();
    await byTestId('chat-row').filter({ hasText: '故障之后的群' }).waitFor();
    assert.equal(await byTestId('chat-row').count(), 3);
    await page.setViewportSize({ width: 1280, height: 720 });
    await page.waitForFunction(() => !document.querySelector('[data-testid="toast"]'));
    await page.evaluate(() => document.fonts.ready);
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    await page.setViewportSize({ width: 1440, height: 900 });
  });

  await t.test('events: a user\'s message delivered to a webhook receiver, with its payload', async () => {
    // A receiver that echoes the challenge and takes every event (plain: no encrypt key).
    const received = [];
    const receiver = createServer((req, res) => {
      let raw = '';
      req.on('data', (c) => { raw += c; });
      req.on('end', () => {
        const body = JSON.parse(raw);
        if (body.type === 'url_verification') {
          res.end(JSON.stringify({ challenge: body.challenge }));
          return;
        }
        received.push(body);
        res.end('{"msg":"success"}');
      });
    });
    await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${receiver.address().port}/webhook`;
      await control('PUT', `/_larkstack/apps/${DEMO_APP.app_id}/events`, { event_url: url, encrypt_key: '' });
      const created = await createChat('事件测试群');
      assert.equal(created.body.code, 0, JSON.stringify(created.body));
      const chatId = created.body.data.chat_id;
      const me = await control('GET', '/_larkstack/directory');
      const member = me.users.find((u) => u.key === 'alice') ? 'alice' : me.users[0].key;
      await control('POST', `/_larkstack/chats/${chatId}/join`, { user: member }).catch(() => {});
      await control('POST', `/_larkstack/chats/${chatId}/messages`, { user: member, text: '给机器人的消息' });
      await goTo('events');
      const row = page.locator('[data-testid="event-row"][data-type="im.message.receive_v1"]').first();
      await row.waitFor();
      await byTestId('event-deliveries').filter({ hasText: '1/1 delivered' }).first().waitFor({ timeout: 10000 });
      await row.click();
      await byTestId('delivery-row').first().waitFor();
      assert.match(await byTestId('delivery-status').first().innerText(), /200/);
      assert.match(await byTestId('delivery-payload').innerText(), /给机器人的消息/);
      // The join before it is an event of its own (im.chat.member.user.added_v1): count the message's.
      assert.equal(received.filter((b) => b.header.event_type === 'im.message.receive_v1').length, 1);
      await control('PUT', `/_larkstack/apps/${DEMO_APP.app_id}/events`, { event_url: '' });
    } finally {
      receiver.close();
    }
  });

  await t.test('clock: freeze, advance by 1 h and a custom duration, set, unfreeze', async () => {
    await goTo('clock');
    const now = byTestId('clock-now');
    await byTestId('clock-freeze').click();
    await byTestId('clock-frozen').filter({ hasText: 'frozen' }).waitFor();
    assert.equal(await byTestId('clock-freeze').isDisabled(), true);
    assert.equal(await byTestId('clock-unfreeze').isDisabled(), false);
    const ms = async () => Number(await now.getAttribute('data-now-ms'));
    const before = await ms();
    const shown = await now.innerText();
    const frozen = await control('GET', '/_larkstack/clock');
    assert.equal(frozen.frozen, true);
    assert.equal(frozen.now_ms, before);

    await byTestId('clock-advance-1h').click();
    await page.waitForFunction((want) => document.querySelector('[data-testid="clock-now"]').dataset.nowMs === want, String(before + 3600000));
    assert.notEqual(await now.innerText(), shown, 'the displayed time moved');
    assert.equal((await control('GET', '/_larkstack/clock')).now_ms, before + 3600000);

    await byTestId('clock-advance-10h').click();
    await page.waitForFunction((want) => document.querySelector('[data-testid="clock-now"]').dataset.nowMs === want, String(before + 11 * 3600000));
    await byTestId('clock-advance-input').fill('30m');
    await byTestId('clock-advance').click();
    await page.waitForFunction((want) => document.querySelector('[data-testid="clock-now"]').dataset.nowMs === want, String(before + 11.5 * 3600000));

    await byTestId('clock-set-input').fill('2031-05-20 13:14:00');
    await byTestId('clock-set').click();
    await byTestId('clock-local').filter({ hasText: '2031-05-20 13:14:00' }).waitFor();
    assert.equal(await now.innerText(), '13:14:00');

    await byTestId('clock-unfreeze').click();
    await byTestId('clock-frozen').filter({ hasText: 'running' }).waitFor();
    assert.equal(await byTestId('clock-freeze').isDisabled(), false);
    assert.equal((await control('GET', '/_larkstack/clock')).frozen, false);
  });

  await t.test('the page logged no errors', async () => {
    assert.deepEqual(pageProblems, []);
  });

  await context.close();
});
