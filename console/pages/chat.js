// One chat: facts, messages (post as a member), members, bots, managers, tasks, settings.

import { act } from '../lib/page.js';
import { api, directory, tenantName } from '../lib/api.js';
import { badge, copyable, emptyState, fact, h, pageHead, section } from '../lib/dom.js';
import { fmtTime } from '../lib/format.js';
import { ownerText, statusBadge } from './chats.js';

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

function customBotChip(b) {
  const rules = [b.secret ? 'signed' : null, b.keywords.length ? `keywords: ${b.keywords.join(', ')}` : null, b.ip_allowlist.length ? `IPs: ${b.ip_allowlist.join(', ')}` : null].filter(Boolean);
  return h('div', { class: 'person', testid: 'custom-bot' },
    h('span', { class: 'avatar bot', 'aria-hidden': 'true' }, 'W'),
    h('div', {}, h('div', { class: 'strong' }, b.name, ' ', badge('webhook', 'purple'), ...rules.map((r) => [' ', badge(r, 'grey')])),
      copyable(b.webhook_url, 'webhook URL', 'copy-webhook-url')));
}

function botChip(b, roles = []) {
  return h('div', { class: 'person', testid: 'bot' },
    h('span', { class: 'avatar bot', 'aria-hidden': 'true' }, 'B'),
    h('div', {}, h('div', { class: 'strong' }, b.name || b.app_id, ' ', badge('bot', 'green'), ...roles.map((r) => [' ', badge(r, r === 'owner' ? 'amber' : 'blue')])),
      h('div', { class: 'muted small mono' }, b.app_id)));
}

export function pageChat(p, chatId) {
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
      const hook = m.sender.custom_bot;
      const fromBot = !!m.sender.bot || !!hook;
      const name = hook ? (hook.name || hook.bot_id) : fromBot ? (m.sender.bot.name || m.sender.bot.app_id) : (m.sender.user?.name || m.sender.user?.key || '?');
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
      section('Custom bots', badge(`${d.custom_bots.length}`, 'count'), d.custom_bots.length
        ? h('div', { class: 'people', testid: 'custom-bots' }, d.custom_bots.map(customBotChip))
        : h('p', { class: 'muted small pad' }, 'No webhook bots. Add one with ', h('code', {}, 'POST /_larkstack/chats/:chat_id/custom_bots'), '.')),
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
