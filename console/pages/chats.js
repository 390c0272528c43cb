// Chats: every group chat of every tenant, polled.

import { api, directory, qs, tenantName } from '../lib/api.js';
import { badge, emptyState, h, pageHead, section, table } from '../lib/dom.js';
import { fmtTime } from '../lib/format.js';

let chatsWanted = 200;
let chatsFilter = '';

export function statusBadge(status) {
  return status === 'normal' ? badge('normal', 'green', 'chat-status') : badge(status, status === 'dissolved' ? 'grey' : 'amber', 'chat-status');
}

export function ownerText(owner) {
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

export function pageChats(p) {
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
