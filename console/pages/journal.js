// The request journal: the latest /open-apis calls with their bodies, filtered.

import { act } from '../lib/page.js';
import { api, ApiError, appName, directory, qs } from '../lib/api.js';
import { badge, copyable, emptyState, h, pageHead, pretty, section, table } from '../lib/dom.js';
import { fmtTime } from '../lib/format.js';

// The journal keeps the first 64 KiB of a body: say so when a body was longer.
const cutNote = (cut, size) => cut ? h('span', { class: 'muted small', testid: 'journal-body-cut' }, ` (first part of ${size} bytes)`) : null;

const journalFilter = { app_id: '', method: '', path: '', code: '' };
const journalOpen = new Set();
const JOURNAL_LIMIT = 200;

function codeBadge(code, status) {
  if (code === 0) return badge('0', 'green', 'journal-code');
  if (code == null) return badge(`HTTP ${status}`, status >= 400 ? 'red' : 'grey', 'journal-code');
  return badge(String(code), 'red', 'journal-code');
}

export function pageJournal(p) {
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
            h('div', {}, h('div', { class: 'body-head' }, 'Request', cutNote(e.request_body_truncated, e.request_body_size), copyButtonFor(e.request_body, 'request body')), h('pre', { class: 'json', testid: 'journal-request' }, pretty(e.request_body))),
            h('div', {}, h('div', { class: 'body-head' }, 'Response', cutNote(e.response_body_truncated, e.response_body_size), copyButtonFor(e.response_body, 'response body')), h('pre', { class: 'json', testid: 'journal-response' }, pretty(e.response_body)))),
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
