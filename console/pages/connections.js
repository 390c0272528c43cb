// Long connections (WebSocket clients of long-connection apps): GET /_larkstack/connections, each
// with its deliveries (GET /_larkstack/deliveries, url `longconn:<conn_id>`), and a Close button
// (DELETE /_larkstack/connections/<conn_id>) to test a bot's reconnect. Refreshes every 2 s.

import { api, appName, directory, qs } from '../lib/api.js';
import { badge, emptyState, h, pageHead, section, table } from '../lib/dom.js';
import { fmtTime } from '../lib/format.js';
import { act } from '../lib/page.js';

const open = new Set();

export function pageConnections(p) {
  const info = h('div', { class: 'muted small', testid: 'connections-info' });
  const body = h('div', {}, h('div', { class: 'loading' }, 'Loading…'));
  p.root.append(pageHead('Connections', 'Live long connections (lark.ws.Client / WSClient) and what was delivered over each. Closing one makes its SDK reconnect. Refreshes every 2 s.'),
    p.error, h('div', { class: 'filters card' }, info), body);

  let dir = null;
  const render = (conns, attempts) => {
    const counts = Object.entries(conns.counts).map(([app, n]) => `${appName(dir, app)}: ${n}/${conns.limit_per_app}`).join(' · ');
    info.textContent = `node ${conns.node} · ${conns.items.length} connections ${conns.cluster_wide_items ? 'on all nodes' : 'here'}${counts ? ` · per app${conns.cluster_wide_counts ? ' (cluster)' : ''}: ${counts}` : ''}`;
    if (!conns.items.length) {
      body.replaceChildren(section('Connections', null, emptyState('No live connection',
        'Set an app\'s event_mode to long_connection and start lark.ws.Client or WSClient with domain pointing here.')));
      return;
    }
    const rows = [];
    for (const c of conns.items) {
      const mine = attempts.filter((a) => a.url === `longconn:${c.conn_id}`);
      const isOpen = open.has(c.conn_id);
      rows.push(h('tr', {
        class: `clickable${isOpen ? ' open' : ''}`, testid: 'connection-row', data: { conn: c.conn_id }, 'aria-expanded': String(isOpen),
        onclick: () => {
          if (open.has(c.conn_id)) open.delete(c.conn_id); else open.add(c.conn_id);
          render(conns, attempts);
        },
      },
      h('td', { class: 'mono small' }, h('span', { class: 'chevron' }), c.conn_id),
      h('td', { class: 'small' }, appName(dir, c.app_id)),
      h('td', { class: 'nowrap small' }, fmtTime(c.connected_at_ms)),
      h('td', { class: 'mono small' }, c.remote),
      h('td', { class: 'num', testid: 'connection-delivered' }, String(c.delivered)),
      h('td', { class: 'nowrap small' }, c.last_ping_ms == null ? '–' : fmtTime(c.last_ping_ms)),
      h('td', {}, h('button', {
        class: 'btn small danger', testid: 'connection-close',
        onclick: async (ev) => {
          ev.stopPropagation();
          await act(ev.currentTarget, () => api('DELETE', `/_larkstack/connections/${encodeURIComponent(c.conn_id)}`), 'Closed; the client reconnects');
        },
      }, 'Close'))));
      if (isOpen) {
        const attemptRows = mine.map((a) => h('tr', { testid: 'connection-delivery' },
          h('td', { class: 'nowrap small' }, fmtTime(a.at_ms)),
          h('td', { class: 'mono small' }, a.type),
          h('td', { class: 'mono small' }, a.event_id),
          h('td', {}, a.delivered ? badge('acked', 'green') : badge(a.status == null ? 'no ack' : String(a.status), 'red')),
          h('td', { class: 'num small' }, `${a.latency_ms} ms`),
          h('td', { class: 'mono small' }, a.response)));
        rows.push(h('tr', { class: 'detail' }, h('td', { colspan: 7 }, mine.length
          ? table(['Time', 'Type', 'event_id', 'Ack', 'Took', 'Response'], attemptRows)
          : h('div', { class: 'muted small' }, 'Nothing delivered over this connection yet.'))));
      }
    }
    body.replaceChildren(section('Connections', null,
      table(['Connection', 'App', 'Connected', 'Remote', 'Delivered', 'Last ping', ''], rows, { testid: 'connections-table' })));
  };

  const load = async () => {
    const [conns, deliveries, d] = await Promise.all([
      api('GET', '/_larkstack/connections'), api('GET', `/_larkstack/deliveries${qs({ limit: 1000 })}`), directory(),
    ]);
    dir = d;
    const attempts = deliveries.items.filter((a) => a.url.startsWith('longconn:'));
    if (!p.alive || !p.changed('connections', [conns, attempts])) return;
    render(conns, attempts);
  };
  p.poll(load);
}
