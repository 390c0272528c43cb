// Events and their webhook deliveries: the outbox (GET /_larkstack/events) newest first, each with the
// attempts made for it (GET /_larkstack/deliveries) and the payload sent. Refreshes every 2 s.

import { api, appName, directory, qs } from '../lib/api.js';
import { badge, emptyState, h, pageHead, pretty, section, table } from '../lib/dom.js';
import { fmtTime } from '../lib/format.js';

const EVENTS_LIMIT = 200;
const eventsOpen = new Set();

function attemptBadge(a) {
  if (a.delivered) return badge(String(a.status), 'green', 'delivery-status');
  if (a.status == null) return badge('no answer', 'red', 'delivery-status');
  return badge(String(a.status), 'red', 'delivery-status');
}

export function pageEvents(p) {
  const info = h('div', { class: 'muted small', testid: 'events-info' });
  const body = h('div', {}, h('div', { class: 'loading' }, 'Loading…'));
  p.root.append(pageHead('Events', 'Domain events, newest first, with their webhook deliveries and payloads. Refreshes every 2 s.'), p.error,
    h('div', { class: 'filters card' }, info), body);

  let dir = null;
  const render = (events, deliveries) => {
    info.textContent = `${events.length} events shown · ${deliveries.items.length} delivery attempts · queue ${deliveries.queue_depth}`;
    if (!events.length) {
      body.replaceChildren(section('Events', null, emptyState('No events yet', 'Create a chat or send a message and its events show up here.')));
      return;
    }
    const bySeq = new Map();
    for (const a of deliveries.items) {
      if (!bySeq.has(a.seq)) bySeq.set(a.seq, []);
      bySeq.get(a.seq).push(a);
    }
    const rows = [];
    for (const e of events) {
      const attempts = bySeq.get(e.seq) || [];
      const open = eventsOpen.has(e.seq);
      const delivered = attempts.filter((a) => a.delivered).length;
      rows.push(h('tr', {
        class: `clickable${open ? ' open' : ''}`, testid: 'event-row', data: { seq: e.seq, type: e.type }, 'aria-expanded': String(open),
        onclick: () => {
          if (eventsOpen.has(e.seq)) eventsOpen.delete(e.seq); else eventsOpen.add(e.seq);
          render(events, deliveries);
        },
      },
      h('td', { class: 'nowrap small' }, h('span', { class: 'chevron' }), fmtTime(e.at_ms)),
      h('td', { class: 'num' }, String(e.seq)),
      h('td', { class: 'mono small', testid: 'event-type' }, e.type),
      h('td', { class: 'mono small' }, e.chat_id),
      h('td', { class: 'small', testid: 'event-deliveries' }, attempts.length ? `${delivered}/${attempts.length} delivered` : h('span', { class: 'muted' }, '–'))));
      if (open) {
        const attemptRows = attempts.map((a) => h('tr', { testid: 'delivery-row' },
          h('td', { class: 'nowrap small' }, fmtTime(a.at_ms)),
          h('td', { class: 'small' }, appName(dir, a.app_id)),
          h('td', { class: 'mono small' }, a.event_id),
          h('td', { class: 'num' }, String(a.attempt)),
          h('td', {}, attemptBadge(a)),
          h('td', { class: 'num small' }, `${a.latency_ms} ms`),
          h('td', { class: 'small' }, a.next_retry_ms ? fmtTime(a.next_retry_ms) : '–'),
          h('td', { class: 'mono small' }, a.response)));
        rows.push(h('tr', { class: 'detail', testid: 'event-detail' }, h('td', { colspan: 5 },
          h('div', { class: 'body-head' }, 'Domain event'), h('pre', { class: 'json', testid: 'event-json' }, pretty(e)),
          attempts.length
            ? table(['Time', 'App', 'event_id', '#', 'HTTP', 'Took', 'Next retry', 'Response'], attemptRows, { testid: 'delivery-table' })
            : h('div', { class: 'muted small' }, 'No delivery (no subscribed app with a request URL).'),
          ...attempts.slice(0, 1).map((a) => h('div', {}, h('div', { class: 'body-head' }, 'Payload (before encryption)'),
            h('pre', { class: 'json', testid: 'delivery-payload' }, pretty(a.payload)))))));
      }
    }
    body.replaceChildren(section('Events', null, table(['Time', 'Seq', 'Type', 'Chat', 'Deliveries'], rows, { testid: 'events-table' })));
  };

  const load = async () => {
    // The newest page of the outbox: find its end, then read the last EVENTS_LIMIT.
    let after = 0;
    let events = [];
    for (;;) {
      const page = await api('GET', `/_larkstack/events${qs({ after, limit: 1000 })}`);
      events = events.concat(page.items).slice(-EVENTS_LIMIT);
      if (!page.has_more) break;
      after = page.items[page.items.length - 1].seq;
    }
    const [deliveries, d] = await Promise.all([api('GET', '/_larkstack/deliveries'), directory()]);
    dir = d;
    events.reverse();
    if (!p.alive || !p.changed('events', [events, deliveries])) return;
    render(events, deliveries);
  };
  p.poll(load);
}
