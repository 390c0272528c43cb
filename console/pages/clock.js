// The larkstack clock: freeze, advance, set.

import { act } from '../lib/page.js';
import { api } from '../lib/api.js';
import { badge, copyable, fact, h, pageHead, section, toast } from '../lib/dom.js';
import { fmtDuration, fmtTime, pad } from '../lib/format.js';

function parseWhen(text) {
  const t = text.trim();
  if (/^-?\d{9,}$/.test(t)) return Number(t);
  const ms = Date.parse(t.replace(' ', 'T'));
  return Number.isNaN(ms) ? null : ms;
}

export function pageClock(p) {
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
