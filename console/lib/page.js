// A page's life: polling, errors, and button actions.

import { h, toast } from './dom.js';

const POLL_MS = 2000;

/** A page's life: timers stop and late replies are dropped once the route changes. */
export function newPage(root) {
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

/** Wraps a button's action: disables it meanwhile, shows `msg` of a failure as a toast. */
export async function act(button, fn, okMessage) {
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
