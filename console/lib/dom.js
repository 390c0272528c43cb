// DOM helpers: elements, badges, toasts, copyable values, cards and tables.

/** h('div', {class, testid, onclick, ...attrs}, ...children): an element; strings become text. */
export function h(tag, attrs, ...children) {
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


export function badge(text, kind = '', testid) {
  return h('span', { class: `badge ${kind}`, testid }, text);
}

export function toast(msg, kind = 'ok') {
  const el = h('div', { class: `toast ${kind}`, testid: 'toast', role: kind === 'error' ? 'alert' : 'status' }, msg);
  document.getElementById('toasts').append(el);
  setTimeout(() => el.classList.add('leaving'), kind === 'error' ? 5000 : 2200);
  setTimeout(() => el.remove(), kind === 'error' ? 5400 : 2600);
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Not a secure context (e.g. larkstack on a LAN address) or no permission: the old way.
    const ta = h('textarea', { class: 'copy-fallback', readonly: true });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    return ok;
  }
}

const SVG_NS = 'http://www.w3.org/2000/svg';

function copyIcon() {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('aria-hidden', 'true');
  const shape = (tag, attrs) => {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  };
  svg.append(
    shape('rect', { x: '5.5', y: '5.5', width: '8', height: '8', rx: '1.6' }),
    shape('path', { d: 'M10.5 3.8v-.2A1.6 1.6 0 0 0 8.9 2H4.1A1.6 1.6 0 0 0 2.5 3.6v4.8A1.6 1.6 0 0 0 4.1 10h.3' }));
  return svg;
}

/** A monospace value with a copy button. */
export function copyable(text, what, testid) {
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
export function idGrid(rows) {
  return h('div', { class: 'id-grid' }, rows.flatMap(([label, value, what, testid]) => [h('span', { class: 'id-label' }, label), copyable(value, what, testid)]));
}

export function emptyState(title, ...hint) {
  return h('div', { class: 'empty', testid: 'empty' }, h('div', { class: 'empty-title' }, title), hint.length ? h('div', { class: 'empty-hint' }, ...hint) : null);
}

export function section(title, extra, ...body) {
  return h('section', { class: 'card' }, h('header', { class: 'card-head' }, h('h2', {}, title), extra), ...body);
}

export function table(head, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table', ...attrs },
      h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))),
      h('tbody', {}, rows)));
}

export function pretty(value) {
  if (value == null) return '(empty)';
  return typeof value === 'string' ? value : JSON.stringify(value, null, 2);
}

export function pageHead(title, subtitle, ...actions) {
  return h('header', { class: 'page-head' },
    h('div', {}, h('h1', {}, title), subtitle ? h('p', { class: 'subtitle' }, subtitle) : null),
    h('div', { class: 'page-actions' }, actions));
}

export function fact(label, value) {
  return h('div', { class: 'fact' }, h('div', { class: 'fact-label' }, label), h('div', { class: 'fact-value' }, value));
}
