// larkstack console: a small single-page app over the control API (/_larkstack/, see
// docs/control-api.md) and /healthz. No build step, no dependencies. Pages are hash routes:
// #/directory, #/chats, #/chats/<chat_id>, #/tasks, #/journal, #/faults, #/clock.

const TOKEN_KEY = 'larkstack.adminToken';
const POLL_MS = 2000;

// ---------------------------------------------------------------------------------------------
// DOM helpers

/** h('div', {class, testid, onclick, ...attrs}, ...children): an element; strings become text. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'testid') el.dataset.testid = v;
    else if (k === 'data') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Local time as `2026-11-21 21:34:02`. */
function fmtTime(ms) {
  if (ms == null) return '–';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtDuration(ms) {
  const sign = ms < 0 ? '-' : '+';
  let s = Math.round(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  const parts = [];
  if (d) parts.push(`${d}d`);
  if (hh || d) parts.push(`${hh}h`);
  if (mm || hh || d) parts.push(`${mm}m`);
  parts.push(`${s}s`);
  return sign + parts.join(' ');
}

function badge(text, kind = '', testid) {
  return h('span', { class: `badge ${kind}`, testid }, text);
}

function toast(msg, kind = 'ok') {
  const el = h('div', { class: `toast ${kind}`, testid: 'toast', role: kind === 'error' ? 'alert' : 'status' }, msg);
  document.getElementById('toasts').append(el);
  setTimeout(() => el.classList.add('leaving'), kind === 'error' ? 5000 : 2200);
  setTimeout(() => el.remove(), kind === 'error' ? 5400 : 2600);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Not a secure context (e.g. larkstack on a LAN address) or no permission: the old way.
    const ta = h('textarea', { class: 'offscreen-copy', readonly: true });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    return ok;
  }
}

function copyIcon() {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('aria-hidden', 'true');
  svg.innerHTML = '<rect x="5.5" y="5.5" width="8" height="8" rx="1.6"/><path d="M10.5 3.8v-.2A1.6 1.6 0 0 0 8.9 2H4.1A1.6 1.6 0 0 0 2.5 3.6v4.8A1.6 1.6 0 0 0 4.1 10h.3"/>';
  return svg;
}

/** A monospace value with a copy button. */
function copyable(text, what, testid) {
  if (text == null || text === '') return h('span', { class: 'muted' }, '–');
  return h('span', { class: 'copyable' },
    h('code', { class: 'mono' }, text),
    h('button', {
      type: 'button', class: 'copy-btn', title: `Copy ${what}`, 'aria-label': `Copy ${what}`,
      testid: testid || 'copy', data: { copy: text },
      onclick: async (e) => {
        e.stopPropagation();
        const btn = e.currentTarget; // null once the handler awaits
        const ok = await copyText(text);
        if (ok) {
          btn.classList.add('copied');
          setTimeout(() => btn.classList.remove('copied'), 1200);
          toast(`Copied ${what}`);
        } else {
          toast(`Could not copy ${what}`, 'error');
        }
      },
    }, copyIcon()));
}

/** Labelled IDs, one a line, each copyable: rows of [label, value, what, testid]. */
function idGrid(rows) {
  return h('div', { class: 'id-grid' }, rows.flatMap(([label, value, what, testid]) => [h('span', { class: 'id-label' }, label), copyable(value, what, testid)]));
}

function emptyState(title, ...hint) {
  return h('div', { class: 'empty', testid: 'empty' }, h('div', { class: 'empty-title' }, title), hint.length ? h('div', { class: 'empty-hint' }, ...hint) : null);
}

function section(title, extra, ...body) {
  return h('section', { class: 'card' }, h('header', { class: 'card-head' }, h('h2', {}, title), extra), ...body);
}

function table(head, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table', ...attrs },
      h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))),
      h('tbody', {}, rows)));
}

function pretty(value) {
  if (value == null) return '(empty)';
  return typeof value === 'string' ? value : JSON.stringify(value, null, 2);
}

// ---------------------------------------------------------------------------------------------
// The control API

class ApiError extends Error {
  constructor(status, code, msg) {
    super(msg);
    this.status = status;
    this.code = code;
  }
}

const token = {
  get: () => localStorage.getItem(TOKEN_KEY),
  set: (t) => localStorage.setItem(TOKEN_KEY, t),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

/** Calls the control API; resolves to `data`, rejects with an ApiError carrying the reply's `msg`. */
async function api(method, path, body) {
  const t = token.get();
  if (!t) {
    askForToken();
    throw new ApiError(401, 401, 'no admin token');
  }
  const headers = { Authorization: `Bearer ${t}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, -1, `larkstack is not reachable (${e.message})`);
  }
  let reply = null;
  try { reply = await res.json(); } catch { reply = null; }
  if (res.status === 401) {
    askForToken('larkstack rejected the admin token.');
    throw new ApiError(401, 401, reply?.msg || 'the admin token was rejected');
  }
  if (!reply || reply.code !== 0) {
    throw new ApiError(res.status, reply?.code ?? res.status, reply?.msg || `HTTP ${res.status}`);
  }
  return reply.data;
}

const qs = (params) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v != null) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
};

// The directory changes only when a fixture is loaded: cached briefly, refreshed by its page.
let directoryCache = null;
async function directory(force = false) {
  if (force || !directoryCache || Date.now() - directoryCache.at > 30000) {
    const data = await api('GET', '/_larkstack/directory');
    directoryCache = { at: Date.now(), data };
  }
  return directoryCache.data;
}

function tenantName(dir, tenantKey) {
  const t = dir?.tenants.find((x) => x.tenant_key === tenantKey);
  return t ? t.name : tenantKey;
}

function appName(dir, appId) {
  return dir?.apps.find((a) => a.app_id === appId)?.name || appId;
}

// ---------------------------------------------------------------------------------------------
// The admin token: from `#token=…` (then stripped from the URL), else localStorage, else a form.

function takeTokenFromUrl() {
  const m = location.hash.match(/(?:^#|[&?])token=([^&]*)/);
  if (!m) return;
  token.set(decodeURIComponent(m[1]));
  let rest = location.hash.slice(1).replace(/(^|[&?])token=[^&]*/, '').replace(/^[&?]+/, '');
  if (!rest.startsWith('/')) rest = '/directory';
  history.replaceState(null, '', `${location.pathname}${location.search}#${rest}`);
}

let tokenDialog = null;
function askForToken(reason) {
  stopPage();
  if (tokenDialog) {
    if (reason) tokenDialog.querySelector('.form-error').textContent = reason;
    return;
  }
  const input = h('input', { type: 'password', class: 'input', testid: 'token-input', placeholder: 'admin token', autocomplete: 'off', required: true });
  const error = h('div', { class: 'form-error', testid: 'token-error' }, reason || '');
  const form = h('form', {
    class: 'token-card', testid: 'token-form',
    onsubmit: async (e) => {
      e.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      token.set(value);
      error.textContent = '';
      try {
        await api('GET', '/_larkstack/clock');
      } catch (err) {
        if (err.status !== 401) error.textContent = err.message;
        return;
      }
      tokenDialog.remove();
      tokenDialog = null;
      route();
    },
  },
  h('h1', {}, 'Admin token'),
  h('p', {}, 'The console uses larkstack\'s control API, which needs the admin token printed at start ',
    h('code', {}, 'console: http://…/#token=…'), ', also kept in the data dir\'s ', h('code', {}, 'admin-token'), ' file.'),
  input, error,
  h('button', { type: 'submit', class: 'btn primary', testid: 'token-submit' }, 'Open console'));
  tokenDialog = h('div', { class: 'overlay', testid: 'token-dialog' }, form);
  document.body.append(tokenDialog);
  input.focus();
}

// ---------------------------------------------------------------------------------------------
// Pages and routing

const routes = [
  [/^\/directory$/, 'directory', pageDirectory],
  [/^\/chats$/, 'chats', pageChats],
  [/^\/chats\/([^/]+)$/, 'chats', pageChat],
  [/^\/tasks(?:\/([^/]+))?$/, 'tasks', pageTasks],
  [/^\/journal$/, 'journal', pageJournal],
  [/^\/faults$/, 'faults', pageFaults],
  [/^\/clock$/, 'clock', pageClock],
];

let page = null;

function stopPage() {
  if (!page) return;
  page.alive = false;
  page.timers.forEach(clearTimeout);
  page.intervals.forEach(clearInterval);
  page = null;
}

/** A page's life: timers stop and late replies are dropped once the route changes. */
function newPage(root) {
  const p = {
    alive: true, timers: [], intervals: [], root,
    error: h('div', { class: 'page-error', testid: 'page-error', hidden: true }),
    /** Runs `fn` now and every `ms` after it settles, while the page lives. */
    poll(fn, ms = POLL_MS) {
      const tick = async () => {
        if (!p.alive) return;
        try {
          await fn();
          p.showError(null);
        } catch (e) {
          if (p.alive && e.status !== 401) p.showError(e.message);
        }
        if (p.alive) p.timers.push(setTimeout(tick, ms));
      };
      tick();
    },
    showError(msg) {
      p.error.hidden = !msg;
      p.error.textContent = msg || '';
    },
    /** `render(data)` only when the data changed since the last call (keeps selections and focus). */
    changed(key, data) {
      const s = JSON.stringify(data);
      if (p[`last:${key}`] === s) return false;
      p[`last:${key}`] = s;
      return true;
    },
  };
  return p;
}

function route() {
  if (!token.get()) {
    askForToken();
    return;
  }
  const path = location.hash.replace(/^#/, '') || '/directory';
  const found = routes.map(([re, nav, fn]) => [path.match(re), nav, fn]).find(([m]) => m);
  if (!found) {
    location.replace('#/directory');
    return;
  }
  const [match, nav, fn] = found;
  stopPage();
  for (const a of document.querySelectorAll('.nav a')) a.classList.toggle('active', a.dataset.page === nav);
  const main = document.getElementById('main');
  const root = h('div', { class: 'page', testid: `page-${nav}` });
  main.replaceChildren(root);
  main.scrollTop = 0;
  page = newPage(root);
  fn(page, ...match.slice(1).map((m) => (m == null ? m : decodeURIComponent(m))));
}

/** Wraps a button's action: disables it meanwhile, shows `msg` of a failure as a toast. */
async function act(button, fn, okMessage) {
  if (button) button.disabled = true;
  try {
    const result = await fn();
    if (okMessage) toast(typeof okMessage === 'function' ? okMessage(result) : okMessage);
    return result;
  } catch (e) {
    if (e.status !== 401) toast(e.message, 'error');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

function pageHead(title, subtitle, ...actions) {
  return h('header', { class: 'page-head' },
    h('div', {}, h('h1', {}, title), subtitle ? h('p', { class: 'subtitle' }, subtitle) : null),
    h('div', { class: 'page-actions' }, actions));
}

// --- Directory -------------------------------------------------------------------------------

let directoryIdApp = null; // app key whose open_id / union_id the users table shows

function pageDirectory(p) {
  const tenants = h('div', {}, h('div', { class: 'loading' }, 'Loading…'));
  const apps = h('div');
  const users = h('div');
  p.root.append(pageHead('Directory', 'Tenants, apps and people from the fixture, with every ID an SDK call needs.'), p.error, tenants, apps, users);

  const load = async () => {
    const dir = await directory(true);
    if (!p.alive || !p.changed('dir', dir)) return;
    renderTenants(dir);
    renderApps(dir);
    renderUsers(dir);
  };

  const renderTenants = (dir) => {
    tenants.replaceChildren(section('Tenants', badge(`${dir.tenants.length}`, 'count'),
      table(['Name', 'Key', 'tenant_key', 'Users', 'Apps'], dir.tenants.map((t) => h('tr', { testid: 'tenant-row', data: { tenantKey: t.tenant_key } },
        h('td', { class: 'strong' }, t.name),
        h('td', {}, h('code', { class: 'mono' }, t.key)),
        h('td', {}, copyable(t.tenant_key, 'tenant_key')),
        h('td', { class: 'num' }, dir.users.filter((u) => u.tenant_key === t.tenant_key).length),
        h('td', { class: 'num' }, dir.apps.filter((a) => a.installed_tenant_keys.includes(t.tenant_key)).length))))));
  };

  const renderApps = (dir) => {
    apps.replaceChildren(section('Apps', badge(`${dir.apps.length}`, 'count'),
      h('p', { class: 'card-note' }, 'Use the credentials with the official SDKs: ', h('code', {}, `domain("${location.origin}")`), '.'),
      table(['App', 'Kind', 'Tenants', 'app_id', 'app_secret', 'Scopes'], dir.apps.map((a) => h('tr', { testid: 'app-row', data: { appId: a.app_id, appKey: a.key } },
        h('td', {}, h('div', { class: 'strong' }, a.name), h('div', { class: 'muted small mono' }, a.key)),
        h('td', { class: 'nowrap' }, badge(a.kind === 'store' ? 'store app' : 'self-built', a.kind === 'store' ? 'purple' : 'blue'), ' ', a.bot ? badge('bot', 'green') : badge('no bot', 'grey')),
        h('td', {}, a.installed_tenant_keys.map((k) => h('div', { class: 'small nowrap' }, tenantName(dir, k)))),
        h('td', {}, copyable(a.app_id, 'app_id', 'copy-app-id')),
        h('td', {}, copyable(a.app_secret, 'app_secret', 'copy-app-secret')),
        h('td', {}, a.scopes.length
          ? h('details', { class: 'scopes' }, h('summary', {}, `${a.scopes.length} scope${a.scopes.length === 1 ? '' : 's'}`),
            h('div', { class: 'chips' }, [...a.scopes].sort().map((s) => h('span', { class: 'chip mono' }, s))))
          : h('span', { class: 'muted' }, 'none')))))));
  };

  const renderUsers = (dir) => {
    if (!dir.apps.some((a) => a.key === directoryIdApp)) directoryIdApp = (dir.apps.find((a) => a.bot) || dir.apps[0])?.key;
    const app = dir.apps.find((a) => a.key === directoryIdApp);
    const select = h('select', {
      class: 'input compact', testid: 'users-app',
      onchange: (e) => { directoryIdApp = e.target.value; renderUsers(dir); },
    }, dir.apps.map((a) => h('option', { value: a.key, selected: a.key === directoryIdApp }, `${a.name} (${a.app_id})`)));
    // union_id is per developer. The directory does not say which developer made an app, so
    // every developer's union_id is listed (just the app's one when `developer` is given).
    const unionRows = (u) => Object.entries(u.union_ids || {})
      .filter(([dev]) => !app?.developer || dev === app.developer)
      .map(([dev, id]) => [`union_id · ${dev}`, id, `union_id (${dev})`]);
    users.replaceChildren(section('Users', h('div', { class: 'head-tools' }, badge(`${dir.users.length}`, 'count'), h('label', { class: 'inline-label' }, 'open_id as seen by', select)),
      table(['Name', 'Tenant', 'Tenant-wide IDs', 'App and developer IDs'], dir.users.map((u) => h('tr', { testid: 'user-row', data: { userKey: u.key } },
        h('td', {}, h('div', { class: 'strong' }, u.name), h('div', { class: 'muted small' }, h('span', { class: 'mono' }, u.key), u.email ? ` · ${u.email}` : '')),
        h('td', {}, h('div', { class: 'small nowrap' }, tenantName(dir, u.tenant_key)), u.status === 'active' ? badge('active', 'green') : badge(u.status, 'grey')),
        h('td', {}, idGrid([['user_id', u.user_id, 'user_id'], ['kunlun_id', u.kunlun_id, 'kunlun_id']])),
        h('td', {}, idGrid([[`open_id · ${app?.key ?? ''}`, app ? u.open_ids[app.key] : null, 'open_id', 'copy-open-id'], ...unionRows(u)])))))));
  };

  p.poll(load, 10000);
}

// --- Chats -----------------------------------------------------------------------------------

let chatsWanted = 200;
let chatsFilter = '';

function statusBadge(status) {
  return status === 'normal' ? badge('normal', 'green', 'chat-status') : badge(status, status === 'dissolved' ? 'grey' : 'amber', 'chat-status');
}

function ownerText(owner) {
  if (!owner) return '–';
  if (owner.user) return owner.user.name || owner.user.uid || 'user';
  if (owner.bot) return `${owner.bot.name || owner.bot.app_id} (bot)`;
  return '–';
}

async function fetchChats(wanted) {
  const items = [];
  let after = 0;
  let stats = null;
  let more = false;
  while (items.length < wanted) {
    const data = await api('GET', `/_larkstack/chats${qs({ after, limit: Math.min(500, wanted - items.length) })}`);
    items.push(...data.items);
    stats = data.stats;
    if (data.next_after == null) { more = false; break; }
    after = data.next_after;
    more = true;
  }
  return { items, stats, more };
}

function pageChats(p) {
  const stats = h('div', { class: 'stats', testid: 'chat-stats' });
  const filter = h('input', {
    class: 'input search', type: 'search', placeholder: 'Filter by name, chat_id or tenant', value: chatsFilter, testid: 'chats-filter',
    oninput: () => { chatsFilter = filter.value; render(); },
  });
  const body = h('div', {}, h('div', { class: 'loading' }, 'Loading…'));
  p.root.append(pageHead('Chats', 'Every group chat of every tenant, oldest first. Refreshes every 2 s.', filter), p.error, stats, body);
  let last = null;

  const render = () => {
    if (!last) return;
    const { data, dir } = last;
    stats.replaceChildren(
      h('div', { class: 'stat' }, h('b', {}, data.stats.chats), ' chats'),
      h('div', { class: 'stat' }, h('b', {}, data.stats.members), ' members'),
      h('div', { class: 'stat' }, h('b', {}, data.stats.messages), ' messages'));
    if (!data.items.length) {
      body.replaceChildren(section('All chats', null, emptyState('No chats yet',
        'Create one with the API, e.g. ', h('code', {}, 'POST /open-apis/im/v1/chats'), ' with a tenant_access_token; it shows up here within 2 s.')));
      return;
    }
    const f = chatsFilter.trim().toLowerCase();
    const rows = data.items.filter((c) => !f || `${c.name} ${c.chat_id} ${tenantName(dir, c.tenant_key)}`.toLowerCase().includes(f));
    body.replaceChildren(section('All chats', badge(`${rows.length}${f ? ` of ${data.items.length}` : ''}`, 'count'),
      rows.length ? table(['#', 'Chat', 'Tenant', 'Type', 'Members', 'Owner', 'Status', 'Created / last active'], rows.map((c) => h('tr', {
        class: 'clickable', testid: 'chat-row', data: { chatId: c.chat_id },
        onclick: (e) => { if (!e.target.closest('a,button')) location.hash = `#/chats/${encodeURIComponent(c.chat_id)}`; },
      },
      h('td', { class: 'num muted' }, c.seq),
      h('td', {}, h('a', { class: 'strong', href: `#/chats/${encodeURIComponent(c.chat_id)}`, testid: 'chat-name' }, c.name || '(no name)'),
        c.external ? [' ', badge('external', 'purple')] : null,
        h('div', { class: 'muted small mono' }, c.chat_id)),
      h('td', { class: 'small nowrap' }, tenantName(dir, c.tenant_key)),
      h('td', { class: 'small nowrap', title: `chat_mode ${c.chat_mode}` }, c.chat_mode === 'group' ? c.chat_type : `${c.chat_mode} · ${c.chat_type}`),
      h('td', { class: 'num', testid: 'chat-members' }, `${c.user_count}`, h('span', { class: 'muted small' }, ` + ${c.bot_count} bot${c.bot_count === 1 ? '' : 's'}`)),
      h('td', { class: 'small nowrap' }, ownerText(c.owner)),
      h('td', {}, statusBadge(c.status)),
      h('td', { class: 'small nowrap' }, fmtTime(c.created_at_ms), h('div', { class: 'muted' }, fmtTime(c.last_active_at_ms))))), { testid: 'chats-table' }) : emptyState('No chat matches the filter'),
      data.more ? h('div', { class: 'more' }, h('button', {
        type: 'button', class: 'btn', testid: 'chats-more',
        onclick: () => { chatsWanted += 200; load(); },
      }, 'Show more')) : null));
  };

  const load = async () => {
    const [data, dir] = await Promise.all([fetchChats(chatsWanted), directory()]);
    if (!p.alive || !p.changed('chats', data)) return;
    last = { data, dir };
    render();
  };
  p.poll(load);
}

// --- One chat --------------------------------------------------------------------------------

function messageText(m) {
  let content;
  try { content = JSON.parse(m.content); } catch { return m.content; }
  if (m.msg_type === 'text' && typeof content.text === 'string') return content.text;
  if (m.msg_type === 'post') {
    const post = content.zh_cn || content.en_us || Object.values(content)[0] || content;
    const lines = [post.title, ...(post.content || []).map((line) => line.map((el) => el.text ?? (el.user_name ? `@${el.user_name}` : '')).join(''))];
    return lines.filter(Boolean).join('\n');
  }
  return JSON.stringify(content, null, 2);
}

function personChip(person, roles = []) {
  const name = person.name || person.key || person.uid || '?';
  return h('div', { class: 'person', testid: 'person' },
    h('span', { class: 'avatar', 'aria-hidden': 'true' }, [...name][0]?.toUpperCase()),
    h('div', {}, h('div', { class: 'strong' }, name, ...roles.map((r) => [' ', badge(r, r === 'owner' ? 'amber' : 'blue')])),
      h('div', { class: 'muted small mono' }, [person.key, person.kunlun_id].filter(Boolean).join(' · '))));
}

function botChip(b, roles = []) {
  return h('div', { class: 'person', testid: 'bot' },
    h('span', { class: 'avatar bot', 'aria-hidden': 'true' }, 'B'),
    h('div', {}, h('div', { class: 'strong' }, b.name || b.app_id, ' ', badge('bot', 'green'), ...roles.map((r) => [' ', badge(r, r === 'owner' ? 'amber' : 'blue')])),
      h('div', { class: 'muted small mono' }, b.app_id)));
}

function pageChat(p, chatId) {
  const head = h('div');
  const summary = h('div');
  const messages = h('div', { class: 'messages', testid: 'messages' });
  const people = h('div');
  const tasks = h('div');
  const settings = h('div');

  // Composer: post as a member, or let someone join first.
  const asUser = h('select', { class: 'input compact', testid: 'post-as' });
  const text = h('input', { class: 'input grow', placeholder: 'Message text', testid: 'post-text' });
  const send = h('button', { type: 'submit', class: 'btn primary', testid: 'post-send' }, 'Send');
  const joiner = h('select', { class: 'input compact', testid: 'join-as' });
  const join = h('button', { type: 'button', class: 'btn', testid: 'join-send' }, 'Join');
  const composer = h('form', {
    class: 'composer', testid: 'composer',
    onsubmit: (e) => {
      e.preventDefault();
      if (!asUser.value || !text.value.trim()) return;
      act(send, async () => {
        await api('POST', `/_larkstack/chats/${encodeURIComponent(chatId)}/messages`, { user: asUser.value, text: text.value });
        text.value = '';
        await load();
      });
    },
  }, h('span', { class: 'muted small' }, 'Post as'), asUser, text, send);
  join.addEventListener('click', () => act(join, async () => {
    await api('POST', `/_larkstack/chats/${encodeURIComponent(chatId)}/join`, { user: joiner.value });
    await load();
  }, () => `${joiner.selectedOptions[0]?.textContent} joined`));
  const joinRow = h('div', { class: 'composer join' }, h('span', { class: 'muted small' }, 'Add someone as if the chat were shared with them:'), joiner, join);

  p.root.append(h('nav', { class: 'crumbs' }, h('a', { href: '#/chats', testid: 'back-to-chats' }, '← Chats')), head, p.error, summary,
    h('div', { class: 'split' },
      h('div', { class: 'split-main' }, section('Messages', h('span', { class: 'muted small' }, 'latest 100'), messages, composer, joinRow)),
      h('div', { class: 'split-side' }, people, tasks, settings)));

  const setOptions = (select, options) => {
    const keep = select.value;
    select.replaceChildren(...options.map(([v, label]) => h('option', { value: v }, label)));
    if (options.some(([v]) => v === keep)) select.value = keep;
  };

  const render = (d, dir) => {
    const c = d.chat;
    document.title = `${c.name || c.chat_id} · larkstack`;
    head.replaceChildren(pageHead([h('span', { testid: 'chat-title' }, c.name || '(no name)'), statusBadge(c.status), c.external ? badge('external', 'purple') : null],
      copyable(c.chat_id, 'chat_id', 'copy-chat-id')));
    const managers = new Set(d.user_managers.map((u) => u.key));
    const botManagers = new Set(d.bot_managers.map((b) => b.app_id));
    const ownerKey = c.owner?.user?.key;
    const ownerBot = c.owner?.bot?.app_id;
    summary.replaceChildren(h('div', { class: 'facts', testid: 'chat-facts' },
      fact('Tenant', tenantName(dir, c.tenant_key)),
      fact('Type', `${c.chat_mode} · ${c.chat_type}`),
      fact('Owner', ownerText(c.owner)),
      fact('Created by', c.creator?.name || c.creator?.app_id || '–'),
      fact('Members', `${c.user_count} people, ${c.bot_count} bot${c.bot_count === 1 ? '' : 's'}`),
      fact('Created', fmtTime(c.created_at_ms)),
      fact('Last active', fmtTime(c.last_active_at_ms))));

    messages.replaceChildren(...(d.messages.length ? d.messages.map((m) => {
      const fromBot = !!m.sender.bot;
      const name = fromBot ? (m.sender.bot.name || m.sender.bot.app_id) : (m.sender.user?.name || m.sender.user?.key || '?');
      return h('div', { class: `message${fromBot ? ' from-bot' : ''}`, testid: 'message', data: { messageId: m.message_id } },
        h('span', { class: `avatar${fromBot ? ' bot' : ''}`, 'aria-hidden': 'true' }, [...name][0]?.toUpperCase()),
        h('div', { class: 'message-body' },
          h('div', { class: 'message-meta' }, h('b', {}, name), fromBot ? [' ', badge('bot', 'green')] : null,
            h('span', { class: 'muted small' }, ` ${fmtTime(m.created_at_ms)}`), m.msg_type !== 'text' ? [' ', badge(m.msg_type, 'grey')] : null),
          h('div', { class: 'message-text', testid: 'message-text' }, messageText(m))));
    }) : [emptyState('No messages yet', 'Send one below as a member, or with ', h('code', {}, 'POST /open-apis/im/v1/messages'), '.')]));
    messages.scrollTop = messages.scrollHeight;

    const memberKeys = new Set(d.members.map((m) => m.key));
    setOptions(asUser, d.members.filter((m) => m.key).map((m) => [m.key, m.name]));
    composer.hidden = !d.members.length || c.status === 'dissolved';
    const joinable = dir.users.filter((u) => !memberKeys.has(u.key) && u.status === 'active' && (c.external || u.tenant_key === c.tenant_key));
    setOptions(joiner, joinable.map((u) => [u.key, u.name]));
    joinRow.hidden = !joinable.length || c.status === 'dissolved';

    people.replaceChildren(
      section('Members', badge(`${d.members.length}`, 'count'), d.members.length
        ? h('div', { class: 'people', testid: 'members' }, d.members.map((m) => personChip(m, [m.key && m.key === ownerKey ? 'owner' : null, managers.has(m.key) ? 'manager' : null].filter(Boolean))))
        : emptyState('No people in this chat')),
      section('Bots', badge(`${d.bots.length}`, 'count'), d.bots.length
        ? h('div', { class: 'people', testid: 'bots' }, d.bots.map((b) => botChip(b, [b.app_id === ownerBot ? 'owner' : null, botManagers.has(b.app_id) ? 'manager' : null].filter(Boolean))))
        : emptyState('No bots')),
      section('Managers', badge(`${d.user_managers.length + d.bot_managers.length}`, 'count'), d.user_managers.length + d.bot_managers.length
        ? h('div', { class: 'people', testid: 'managers' }, d.user_managers.map((m) => personChip(m)), d.bot_managers.map((b) => botChip(b)))
        : h('p', { class: 'muted small pad' }, 'Only the owner manages this chat.')));
    tasks.replaceChildren(section('Linked aPaaS tasks', null, d.tasks.length
      ? h('ul', { class: 'plain-list', testid: 'chat-tasks' }, d.tasks.map((t) => h('li', {}, h('a', { href: `#/tasks/${encodeURIComponent(t.task_id)}` }, t.key), ' ', h('code', { class: 'mono small' }, t.task_id))))
      : h('p', { class: 'muted small pad' }, 'Not started from a task.')));
    settings.replaceChildren(section('Settings', null, h('dl', { class: 'kv', testid: 'chat-settings' },
      Object.entries(d.settings).flatMap(([k, v]) => [h('dt', { class: 'mono' }, k), h('dd', {}, typeof v === 'object' ? h('code', { class: 'mono small' }, JSON.stringify(v)) : String(v))]))));
  };

  const load = async () => {
    const [d, dir] = await Promise.all([api('GET', `/_larkstack/chats/${encodeURIComponent(chatId)}`), directory()]);
    if (!p.alive || !p.changed('chat', d)) return;
    render(d, dir);
  };
  p.poll(load);
}

function fact(label, value) {
  return h('div', { class: 'fact' }, h('div', { class: 'fact-label' }, label), h('div', { class: 'fact-value' }, value));
}

// --- aPaaS tasks -----------------------------------------------------------------------------

function label(wf, lang) {
  return (wf.label || []).find((l) => l.language_code === lang)?.text;
}

function pageTasks(p, focusTaskId) {
  let focused = false;
  const list = h('div', { class: 'task-list' }, h('div', { class: 'loading' }, 'Loading…'));
  p.root.append(pageHead('aPaaS tasks', 'User tasks from the fixture and the group chats started from them.'), p.error, list);

  const load = async () => {
    const [data, chats, dir] = await Promise.all([api('GET', '/_larkstack/tasks'), api('GET', '/_larkstack/chats?limit=500'), directory()]);
    if (!p.alive || !p.changed('tasks', [data, chats.items])) return;
    const names = new Map(chats.items.map((c) => [c.chat_id, c.name]));
    if (!data.items.length) {
      list.replaceChildren(emptyState('The fixture has no aPaaS tasks'));
      return;
    }
    const people = (arr) => (arr.length ? arr.map((u) => h('span', { class: 'chip' }, u.name || u.key)) : h('span', { class: 'muted' }, '–'));
    list.replaceChildren(...data.items.map((t) => {
      const zh = label(t.workflow_instance, '2052');
      const en = label(t.workflow_instance, '1033');
      return h('article', { class: `card task${t.task_id === focusTaskId ? ' focus' : ''}`, testid: 'task', data: { taskId: t.task_id } },
        h('header', { class: 'card-head' },
          h('div', {}, h('h2', {}, zh || en || t.key), zh && en ? h('div', { class: 'muted small' }, en) : null),
          h('div', { class: 'head-tools' }, badge(t.status, t.status === 'pending' ? 'amber' : 'green'), badge(`workflow ${t.workflow_instance.status}`, 'grey'))),
        h('div', { class: 'facts' },
          fact('task_id', copyable(t.task_id, 'task_id')),
          fact('Key', h('code', { class: 'mono' }, t.key)),
          fact('Tenant', tenantName(dir, t.tenant_key)),
          fact('Workflow', h('code', { class: 'mono small' }, t.workflow_instance.api_id)),
          fact('Started', fmtTime(t.start_time_ms)),
          fact('Initiator', people([t.initiator])),
          fact('Assignees', people(t.assignees)),
          fact('CC', people(t.cc))),
        h('div', { class: 'task-chats' },
          h('div', { class: 'fact-label' }, 'Linked chats'),
          t.chats.length
            ? h('ul', { class: 'plain-list', testid: 'task-chats' }, t.chats.map((l) => h('li', { testid: 'task-chat' },
              h('a', { href: `#/chats/${encodeURIComponent(l.chat_id)}`, class: 'strong' }, names.get(l.chat_id) || l.chat_id), ' ',
              h('code', { class: 'mono small muted' }, l.chat_id), ' ',
              l.started_here ? badge('started here', 'blue') : badge('people pulled in', 'grey'),
              h('span', { class: 'muted small' }, ` by ${appName(dir, l.app_id)} at ${fmtTime(l.linked_at_ms)}`))))
            : h('div', { class: 'muted small' }, 'None yet: ', h('code', {}, `POST /open-apis/apaas/v1/user_tasks/${t.task_id}/chat_group`))));
    }));
    if (focusTaskId && !focused) {
      focused = true;
      list.querySelector('.task.focus')?.scrollIntoView({ block: 'start' });
    }
  };
  p.poll(load, 3000);
}

// --- Journal ---------------------------------------------------------------------------------

const journalFilter = { app_id: '', method: '', path: '', code: '' };
const journalOpen = new Set();
const JOURNAL_LIMIT = 200;

function codeBadge(code, status) {
  if (code === 0) return badge('0', 'green', 'journal-code');
  if (code == null) return badge(`HTTP ${status}`, status >= 400 ? 'red' : 'grey', 'journal-code');
  return badge(String(code), 'red', 'journal-code');
}

function pageJournal(p) {
  const appSel = h('select', { class: 'input compact', testid: 'journal-app' }, h('option', { value: '' }, 'Any app'));
  const methodSel = h('select', { class: 'input compact', testid: 'journal-method' },
    ['', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE'].map((m) => h('option', { value: m, selected: m === journalFilter.method }, m || 'Any method')));
  const pathIn = h('input', { class: 'input', type: 'search', placeholder: 'Path contains…', value: journalFilter.path, testid: 'journal-path' });
  const codeIn = h('input', { class: 'input code-input', inputmode: 'numeric', placeholder: 'Code', value: journalFilter.code, testid: 'journal-code-filter' });
  const clear = h('button', { type: 'button', class: 'btn', testid: 'journal-clear' }, 'Clear journal');
  const info = h('div', { class: 'muted small' });
  const body = h('div', {}, h('div', { class: 'loading' }, 'Loading…'));

  let debounce = null;
  const onFilter = () => {
    journalFilter.app_id = appSel.value;
    journalFilter.method = methodSel.value;
    journalFilter.path = pathIn.value.trim();
    journalFilter.code = codeIn.value.trim();
    clearTimeout(debounce);
    debounce = setTimeout(() => load().catch((e) => p.showError(e.message)), 250);
  };
  appSel.addEventListener('change', onFilter);
  methodSel.addEventListener('change', onFilter);
  pathIn.addEventListener('input', onFilter);
  codeIn.addEventListener('input', onFilter);
  clear.addEventListener('click', () => act(clear, async () => { await api('DELETE', '/_larkstack/journal'); journalOpen.clear(); await load(); }, 'Journal cleared'));

  p.root.append(pageHead('Request journal', 'The latest /open-apis calls, newest first, with their bodies. Refreshes every 2 s.', clear), p.error,
    h('div', { class: 'filters card', testid: 'journal-filters' }, appSel, methodSel, pathIn, codeIn, info), body);

  directory().then((dir) => {
    appSel.append(...dir.apps.map((a) => h('option', { value: a.app_id, selected: a.app_id === journalFilter.app_id }, `${a.name} (${a.app_id})`)));
  }).catch(() => {});

  let dir = null;
  const render = (data) => {
    info.textContent = `${data.items.length}${data.items.length === JOURNAL_LIMIT ? '+' : ''} calls shown · keeps the last ${data.capacity}`;
    if (!data.items.length) {
      body.replaceChildren(section('Calls', null, emptyState(Object.values(journalFilter).some(Boolean) ? 'No call matches the filters' : 'No calls yet',
        'Point an SDK at ', h('code', {}, location.origin), ' and its calls show up here.')));
      return;
    }
    const rows = [];
    for (const e of data.items) {
      const open = journalOpen.has(e.seq);
      const row = h('tr', {
        class: `clickable${open ? ' open' : ''}`, testid: 'journal-row', data: { seq: e.seq, code: e.code ?? '' }, 'aria-expanded': String(open),
        onclick: () => {
          if (journalOpen.has(e.seq)) journalOpen.delete(e.seq); else journalOpen.add(e.seq);
          render(data);
        },
      },
      h('td', { class: 'nowrap small' }, h('span', { class: 'chevron' }), fmtTime(e.at_ms)),
      h('td', {}, h('span', { class: `method m-${e.method.toLowerCase()}` }, e.method)),
      h('td', { class: 'mono path', testid: 'journal-path-cell' }, e.path),
      h('td', { class: 'small' }, e.app_id ? appName(dir, e.app_id) : h('span', { class: 'muted' }, '–')),
      h('td', { class: 'num' }, h('span', { class: e.status >= 400 ? 'text-red' : '' }, e.status)),
      h('td', {}, codeBadge(e.code, e.status)),
      h('td', { class: 'num small' }, `${(e.duration_us / 1000).toFixed(1)} ms`));
      rows.push(row);
      if (open) {
        rows.push(h('tr', { class: 'detail', testid: 'journal-detail' }, h('td', { colspan: 7 },
          h('div', { class: 'bodies' },
            h('div', {}, h('div', { class: 'body-head' }, 'Request', copyButtonFor(e.request_body, 'request body')), h('pre', { class: 'json', testid: 'journal-request' }, pretty(e.request_body))),
            h('div', {}, h('div', { class: 'body-head' }, 'Response', copyButtonFor(e.response_body, 'response body')), h('pre', { class: 'json', testid: 'journal-response' }, pretty(e.response_body)))),
          h('div', { class: 'muted small' }, 'log_id ', h('code', { class: 'mono' }, e.log_id), ` · seq ${e.seq}`))));
      }
    }
    body.replaceChildren(section('Calls', null, table(['Time', 'Method', 'Path', 'App', 'HTTP', 'Code', 'Took'], rows, { testid: 'journal-table' })));
  };

  const load = async () => {
    const f = journalFilter;
    if (f.code && !/^-?\d+$/.test(f.code)) throw new ApiError(400, 400, 'The code filter must be a number');
    const [data, d] = await Promise.all([api('GET', `/_larkstack/journal${qs({ ...f, limit: JOURNAL_LIMIT })}`), directory()]);
    dir = d;
    if (!p.alive || !p.changed('journal', [f, data])) return;
    render(data);
  };
  p.poll(load);
}

function copyButtonFor(value, what) {
  return value == null ? null : copyable(pretty(value), what, 'copy-body').lastChild;
}

// --- Faults ----------------------------------------------------------------------------------

const PRESET_INFO = {
  token_invalid: '99991663 invalid access token',
  rate_limited: '99991400 with x-ogw-ratelimit-* headers',
  chat_throttled: '232019 chat operations throttled',
  internal_error: 'HTTP 500',
  unavailable: 'HTTP 503',
  slow: '3 s delay, then the real answer',
  drop: 'connection closed, no answer',
};

const RECIPES = [
  { name: 'Throttle the next chat create', method: 'POST', path: '/open-apis/im/v1/chats', effect: 'chat_throttled', count: '1' },
  { name: 'Invalidate tokens once', method: '', path: '/open-apis/im/**', effect: 'token_invalid', count: '1' },
  { name: 'Rate-limit IM 5×', method: '', path: '/open-apis/im/**', effect: 'rate_limited', count: '5' },
  { name: 'Flaky 500s (20 %)', method: '', path: '/open-apis/**', effect: 'internal_error', count: '', probability: '0.2' },
  { name: 'Slow everything', method: '', path: '/open-apis/**', effect: 'slow', count: '' },
  { name: 'Drop the next token request', method: 'POST', path: '/open-apis/auth/**', effect: 'drop', count: '1' },
];

function describeEffect(effect) {
  switch (effect.kind) {
    case 'error': return h('span', {}, badge(String(effect.code), 'red'), ` HTTP ${effect.http_status} `, h('span', { class: 'muted' }, effect.msg));
    case 'delay': return h('span', {}, badge('delay', 'amber'), ` ${effect.ms} ms`);
    case 'drop': return badge('drop connection', 'grey');
    default: return JSON.stringify(effect);
  }
}

function pageFaults(p) {
  const rules = h('div', {}, h('div', { class: 'loading' }, 'Loading…'));
  const clearAll = h('button', { type: 'button', class: 'btn danger', testid: 'faults-clear' }, 'Remove all');
  clearAll.addEventListener('click', () => act(clearAll, async () => { await api('DELETE', '/_larkstack/faults'); await load(); }, 'All faults removed'));

  // The add form.
  const effectSel = h('select', { class: 'input', testid: 'fault-effect', name: 'effect' });
  const method = h('select', { class: 'input', testid: 'fault-method', name: 'method' }, ['', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE'].map((m) => h('option', { value: m }, m || 'Any')));
  const path = h('input', { class: 'input mono', testid: 'fault-path', name: 'path', value: '/open-apis/**', placeholder: '/open-apis/**' });
  const app = h('select', { class: 'input', testid: 'fault-app', name: 'app_id' }, h('option', { value: '' }, 'Any app'));
  const count = h('input', { class: 'input', testid: 'fault-count', name: 'count', type: 'number', min: '1', placeholder: 'unlimited' });
  const probability = h('input', { class: 'input', testid: 'fault-probability', name: 'probability', type: 'number', min: '0', max: '1', step: 'any', value: '1' });
  const httpStatus = h('input', { class: 'input', testid: 'fault-http-status', type: 'number', min: '400', max: '599', value: '400' });
  const code = h('input', { class: 'input', testid: 'fault-code', type: 'number', value: '232019' });
  const msg = h('input', { class: 'input', testid: 'fault-msg', value: 'injected by larkstack' });
  const delay = h('input', { class: 'input', testid: 'fault-delay', type: 'number', min: '0', value: '2000' });
  const customError = h('div', { class: 'form-row custom', hidden: true },
    field('HTTP status', httpStatus), field('Code', code), field('Message', msg, 'wide'));
  const customDelay = h('div', { class: 'form-row custom', hidden: true }, field('Delay (ms, wall time)', delay));
  const effectHint = h('div', { class: 'muted small' });
  const submit = h('button', { type: 'submit', class: 'btn primary', testid: 'fault-add' }, 'Add fault');

  const syncEffect = () => {
    customError.hidden = effectSel.value !== 'custom:error';
    customDelay.hidden = effectSel.value !== 'custom:delay';
    effectHint.textContent = PRESET_INFO[effectSel.value] || (effectSel.value === 'custom:error' ? 'A Feishu error envelope with your code and message' : effectSel.value === 'custom:delay' ? 'The real answer, late' : 'Connection closed, no answer');
  };
  effectSel.addEventListener('change', syncEffect);

  const form = h('form', {
    class: 'fault-form', testid: 'fault-form',
    onsubmit: (e) => {
      e.preventDefault();
      const spec = { path: path.value.trim() || undefined };
      if (method.value) spec.method = method.value;
      if (app.value) spec.app_id = app.value;
      if (count.value !== '') spec.count = Number(count.value);
      if (probability.value !== '' && Number(probability.value) !== 1) spec.probability = Number(probability.value);
      const v = effectSel.value;
      if (v === 'custom:error') spec.effect = { kind: 'error', http_status: Number(httpStatus.value), code: Number(code.value), msg: msg.value };
      else if (v === 'custom:delay') spec.effect = { kind: 'delay', ms: Number(delay.value) };
      else if (v === 'custom:drop') spec.effect = { kind: 'drop' };
      else spec.preset = v;
      act(submit, async () => {
        const rule = await api('POST', '/_larkstack/faults', spec);
        await load();
        return rule;
      }, (rule) => `Fault #${rule.id} added`);
    },
  },
  h('div', { class: 'recipes' }, h('span', { class: 'muted small' }, 'Recipes:'), RECIPES.map((r) => h('button', {
    type: 'button', class: 'chip-btn', testid: 'fault-recipe',
    onclick: () => {
      method.value = r.method; path.value = r.path; effectSel.value = r.effect; count.value = r.count; probability.value = r.probability || '1'; app.value = '';
      syncEffect();
    },
  }, r.name))),
  h('div', { class: 'form-row' }, field('Effect', effectSel, 'wide', effectHint), field('Method', method), field('Path (* one segment, ** any)', path, 'wide')),
  customError, customDelay,
  h('div', { class: 'form-row' }, field('App', app, 'wide'), field('Count', count), field('Probability (0–1)', probability), h('div', { class: 'field submit' }, submit)));

  p.root.append(pageHead('Faults', 'Make matching /open-apis calls fail, slow down or lose their connection.', clearAll), p.error,
    section('Add a fault', null, form), rules);

  let presetsShown = false;
  const load = async () => {
    const [data, dir] = await Promise.all([api('GET', '/_larkstack/faults'), directory()]);
    if (!p.alive) return;
    if (!presetsShown) {
      presetsShown = true;
      effectSel.replaceChildren(
        h('optgroup', { label: 'Presets' }, data.presets.map((name) => h('option', { value: name }, name))),
        h('optgroup', { label: 'Custom' }, h('option', { value: 'custom:error' }, 'error…'), h('option', { value: 'custom:delay' }, 'delay…'), h('option', { value: 'custom:drop' }, 'drop connection')));
      app.append(...dir.apps.map((a) => h('option', { value: a.app_id }, `${a.name} (${a.app_id})`)));
      syncEffect();
    }
    if (!p.changed('faults', data.items)) return;
    rules.replaceChildren(section('Active rules', badge(`${data.items.length}`, 'count'), data.items.length
      ? table(['#', 'Method', 'Path', 'App', 'Effect', 'Remaining', 'Probability', 'Hits', ''], data.items.map((r) => {
        const remove = h('button', { type: 'button', class: 'btn small danger-ghost', testid: 'fault-remove' }, 'Remove');
        remove.addEventListener('click', () => act(remove, async () => { await api('DELETE', `/_larkstack/faults/${r.id}`); await load(); }, `Fault #${r.id} removed`));
        return h('tr', { testid: 'fault-row', data: { faultId: r.id }, class: r.remaining === 0 ? 'spent' : '' },
          h('td', { class: 'num muted' }, r.id),
          h('td', {}, r.method ? h('span', { class: `method m-${r.method.toLowerCase()}` }, r.method) : h('span', { class: 'muted' }, 'any')),
          h('td', { class: 'mono path' }, r.path),
          h('td', { class: 'small' }, r.app_id ? appName(dir, r.app_id) : h('span', { class: 'muted' }, 'any')),
          h('td', { testid: 'fault-effect-cell' }, describeEffect(r.effect)),
          h('td', { class: 'num', testid: 'fault-remaining' }, r.remaining == null ? '∞' : r.remaining === 0 ? badge('used up', 'grey') : r.remaining),
          h('td', { class: 'num' }, `${Math.round(r.probability * 100)} %`),
          h('td', { class: 'num', testid: 'fault-hits' }, r.hits),
          h('td', { class: 'actions' }, remove));
      }), { testid: 'faults-table' })
      : emptyState('No faults', 'Every call gets its real answer.')));
  };
  p.poll(load);
}

function field(labelText, control, cls = '', hint = null) {
  return h('label', { class: `field ${cls}` }, h('span', { class: 'field-label' }, labelText), control, hint);
}

// --- Clock -----------------------------------------------------------------------------------

function parseWhen(text) {
  const t = text.trim();
  if (/^-?\d{9,}$/.test(t)) return Number(t);
  const ms = Date.parse(t.replace(' ', 'T'));
  return Number.isNaN(ms) ? null : ms;
}

function pageClock(p) {
  const now = h('div', { class: 'clock-now', testid: 'clock-now' }, '…');
  const date = h('div', { class: 'clock-date' });
  const state = h('div', { class: 'clock-state' });
  const details = h('div', { class: 'facts' });
  let clock = null; // {now_ms, frozen, at: performance.now()}

  const show = () => {
    if (!clock) return;
    const ms = clock.frozen ? clock.now_ms : clock.now_ms + Math.round(performance.now() - clock.at);
    const d = new Date(ms);
    now.textContent = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    now.dataset.nowMs = String(ms);
    date.textContent = `${d.toLocaleDateString('en-GB', { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' })}`;
    details.replaceChildren(
      fact('Local', h('span', { testid: 'clock-local' }, fmtTime(ms))),
      fact('UTC', h('code', { class: 'mono' }, d.toISOString())),
      fact('Epoch ms', copyable(String(ms), 'epoch ms')),
      fact('Against this computer', Math.abs(ms - Date.now()) < 1500 ? 'in step' : `${fmtDuration(ms - Date.now())}`));
  };

  const apply = (c) => {
    clock = { ...c, at: performance.now() };
    state.replaceChildren(c.frozen ? badge('frozen', 'amber', 'clock-frozen') : badge('running', 'green', 'clock-frozen'));
    freeze.disabled = c.frozen;
    unfreeze.disabled = !c.frozen;
    show();
  };

  const change = async (btn, body, okMsg) => {
    const c = await act(btn, () => api('POST', '/_larkstack/clock', body), okMsg);
    if (c && p.alive) apply(c); // after act() re-enabled the button: apply() knows which may be used
  };
  const freeze = h('button', { type: 'button', class: 'btn', testid: 'clock-freeze', onclick: () => change(freeze, { freeze: true }, 'Clock frozen') }, 'Freeze');
  const unfreeze = h('button', { type: 'button', class: 'btn', testid: 'clock-unfreeze', onclick: () => change(unfreeze, { freeze: false }, 'Clock running') }, 'Unfreeze');
  const plus1 = h('button', { type: 'button', class: 'btn primary', testid: 'clock-advance-1h', onclick: () => change(plus1, { advance: '1h' }, 'Advanced 1 h') }, '+1 h');
  const plus10 = h('button', { type: 'button', class: 'btn primary', testid: 'clock-advance-10h', onclick: () => change(plus10, { advance: '10h' }, 'Advanced 10 h') }, '+10 h');
  const durationIn = h('input', { class: 'input', placeholder: '30m, 2h30m, 1d, -5m', testid: 'clock-advance-input' });
  const advance = h('button', { type: 'submit', class: 'btn', testid: 'clock-advance' }, 'Advance');
  const whenIn = h('input', { class: 'input', placeholder: '2027-01-01 09:00:00 or epoch ms', testid: 'clock-set-input' });
  const set = h('button', { type: 'submit', class: 'btn', testid: 'clock-set' }, 'Set');

  p.root.append(pageHead('Clock', 'larkstack\'s one clock: token expiry, the 10-hour create-chat uuid window, the 1-hour message uuid window and rate-limit windows follow it. Fault delays are wall time.'), p.error,
    h('section', { class: 'card clock-card' },
      h('div', { class: 'clock-face' }, state, now, date),
      h('div', { class: 'clock-controls' },
        h('div', { class: 'btn-row' }, freeze, unfreeze, h('span', { class: 'sep' }), plus1, plus10),
        h('form', {
          class: 'inline-form', onsubmit: (e) => {
            e.preventDefault();
            const v = durationIn.value.trim();
            if (v) change(advance, { advance: v }, `Advanced ${v}`);
          },
        }, h('label', { class: 'inline-label' }, h('span', {}, 'Advance by'), durationIn), advance),
        h('form', {
          class: 'inline-form', onsubmit: (e) => {
            e.preventDefault();
            const ms = parseWhen(whenIn.value);
            if (ms == null) { toast('Give a time like 2027-01-01 09:00:00 or epoch milliseconds', 'error'); return; }
            change(set, { set_ms: ms }, `Set to ${fmtTime(ms)}`);
          },
        }, h('label', { class: 'inline-label' }, h('span', {}, 'Set to'), whenIn), set))),
    section('Now', null, details));

  p.poll(async () => {
    const c = await api('GET', '/_larkstack/clock');
    if (p.alive) apply(c);
  }, 5000);
  p.intervals.push(setInterval(() => { if (clock && !clock.frozen) show(); }, 1000));
}

// ---------------------------------------------------------------------------------------------
// Sidebar status: health and the larkstack clock, every 5 s.

async function refreshStatus() {
  const dot = document.querySelector('.status .dot');
  const text = document.querySelector('.status-text');
  const clockEl = document.querySelector('.status-clock');
  try {
    const res = await fetch('/healthz');
    const ok = res.ok;
    dot.className = `dot ${ok ? 'ok' : 'bad'}`;
    text.textContent = ok ? `${location.host}` : 'store unavailable';
  } catch {
    dot.className = 'dot bad';
    text.textContent = 'not reachable';
  }
  if (token.get() && !tokenDialog) {
    try {
      const c = await api('GET', '/_larkstack/clock');
      clockEl.replaceChildren(h('span', {}, h('span', { class: 'muted' }, 'clock '), fmtTime(c.now_ms), c.frozen ? [' ', badge('frozen', 'amber')] : null));
    } catch {
      clockEl.textContent = '';
    }
  }
}

// ---------------------------------------------------------------------------------------------

function start() {
  takeTokenFromUrl();
  document.querySelector('[data-testid="forget-token"]').addEventListener('click', () => {
    token.clear();
    askForToken('Token forgotten. Paste it again to continue.');
  });
  window.addEventListener('hashchange', () => { if (!tokenDialog) route(); });
  route();
  refreshStatus();
  setInterval(refreshStatus, 5000);
}

start();
