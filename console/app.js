// larkstack console: a small single-page app over the control API (/_larkstack/, see
// docs/control-api.md) and /healthz. No build step, no dependencies: the browser loads these ES
// modules as they are, served from the binary (src/control/console.rs). Pages are hash routes:
// #/directory, #/chats, #/chats/<chat_id>, #/tasks, #/journal, #/events, #/connections, #/faults, #/clock.
//
// This module boots the console and routes; lib/ has the shared helpers (api.js: the control
// API with the admin token; dom.js: elements; format.js: times; page.js: a page's life), and
// pages/ one module per page.

import { api, onUnauthorized, token } from './lib/api.js';
import { badge, h } from './lib/dom.js';
import { fmtTime } from './lib/format.js';
import { newPage } from './lib/page.js';
import { pageChat } from './pages/chat.js';
import { pageChats } from './pages/chats.js';
import { pageClock } from './pages/clock.js';
import { pageConnections } from './pages/connections.js';
import { pageDirectory } from './pages/directory.js';
import { pageFaults } from './pages/faults.js';
import { pageJournal } from './pages/journal.js';
import { pageEvents } from './pages/events.js';
import { pageTasks } from './pages/tasks.js';

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
  [/^\/events$/, 'events', pageEvents],
  [/^\/connections$/, 'connections', pageConnections],
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
  onUnauthorized(askForToken);
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
