// aPaaS tasks from the fixture and the chats started from them.

import { api, appName, directory, tenantName } from '../lib/api.js';
import { badge, copyable, emptyState, fact, h, pageHead } from '../lib/dom.js';
import { fmtTime } from '../lib/format.js';

function label(wf, lang) {
  return (wf.label || []).find((l) => l.language_code === lang)?.text;
}

export function pageTasks(p, focusTaskId) {
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
