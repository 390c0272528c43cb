// Faults: the presets larkstack serves, the add form, the active rules.

import { act } from '../lib/page.js';
import { api, appName, directory } from '../lib/api.js';
import { badge, emptyState, h, pageHead, section, table } from '../lib/dom.js';

// The presets themselves (name, description, effect) come from GET /_larkstack/faults/presets;
// a recipe is shown only when larkstack serves the preset it uses.
const RECIPES = [
  { name: 'Throttle the next chat create', method: 'POST', path: '/open-apis/im/v1/chats', effect: 'chat_throttled', count: '1' },
  { name: 'Invalidate tokens once', method: '', path: '/open-apis/im/**', effect: 'token_invalid', count: '1' },
  { name: 'Rate-limit IM 5×', method: '', path: '/open-apis/im/**', effect: 'rate_limited', count: '5' },
  { name: 'Flaky 500s (20 %)', method: '', path: '/open-apis/**', effect: 'internal_error', count: '', probability: '0.2' },
  { name: 'Slow everything', method: '', path: '/open-apis/**', effect: 'slow', count: '' },
  { name: 'Drop the next token request', method: 'POST', path: '/open-apis/auth/**', effect: 'drop', count: '1' },
];

function describeEffect(effect) {
  switch (effect.kind) {
    case 'error': return h('span', {}, badge(String(effect.code), 'red'), ` HTTP ${effect.http_status} `, h('span', { class: 'muted' }, effect.msg));
    case 'delay': return h('span', {}, badge('delay', 'amber'), ` ${effect.ms} ms`);
    case 'drop': return badge('drop connection', 'grey');
    default: return JSON.stringify(effect);
  }
}

export function pageFaults(p) {
  let presets = null; // [{name, description, effect}], fetched once per visit
  const presetList = h('div', {}, h('div', { class: 'loading' }, 'Loading…'));
  const recipes = h('div', { class: 'recipes', testid: 'fault-recipes' });
  const rules = h('div', {}, h('div', { class: 'loading' }, 'Loading…'));
  const clearAll = h('button', { type: 'button', class: 'btn danger', testid: 'faults-clear' }, 'Remove all');
  clearAll.addEventListener('click', () => act(clearAll, async () => { await api('DELETE', '/_larkstack/faults'); await load(); }, 'All faults removed'));

  // The add form.
  const effectSel = h('select', { class: 'input', testid: 'fault-effect', name: 'effect' });
  const method = h('select', { class: 'input', testid: 'fault-method', name: 'method' }, ['', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE'].map((m) => h('option', { value: m }, m || 'Any')));
  const path = h('input', { class: 'input mono', testid: 'fault-path', name: 'path', value: '/open-apis/**', placeholder: '/open-apis/**' });
  const app = h('select', { class: 'input', testid: 'fault-app', name: 'app_id' }, h('option', { value: '' }, 'Any app'));
  const count = h('input', { class: 'input', testid: 'fault-count', name: 'count', type: 'number', min: '1', placeholder: 'unlimited' });
  const probability = h('input', { class: 'input', testid: 'fault-probability', name: 'probability', type: 'number', min: '0', max: '1', step: 'any', value: '1' });
  const httpStatus = h('input', { class: 'input', testid: 'fault-http-status', type: 'number', min: '400', max: '599', value: '400' });
  const code = h('input', { class: 'input', testid: 'fault-code', type: 'number', value: '232019' });
  const msg = h('input', { class: 'input', testid: 'fault-msg', value: 'injected by larkstack' });
  const delay = h('input', { class: 'input', testid: 'fault-delay', type: 'number', min: '0', value: '2000' });
  const customError = h('div', { class: 'form-row custom', hidden: true },
    field('HTTP status', httpStatus), field('Code', code), field('Message', msg, 'wide'));
  const customDelay = h('div', { class: 'form-row custom', hidden: true }, field('Delay (ms, wall time)', delay));
  const effectHint = h('div', { class: 'muted small', testid: 'fault-effect-hint' });
  const submit = h('button', { type: 'submit', class: 'btn primary', testid: 'fault-add' }, 'Add fault');

  const syncEffect = () => {
    customError.hidden = effectSel.value !== 'custom:error';
    customDelay.hidden = effectSel.value !== 'custom:delay';
    const chosen = presets?.find((x) => x.name === effectSel.value);
    effectHint.textContent = chosen ? chosen.description : (effectSel.value === 'custom:error' ? 'A Feishu error envelope with your code and message' : effectSel.value === 'custom:delay' ? 'The real answer, late' : 'Connection closed, no answer');
  };
  effectSel.addEventListener('change', syncEffect);

  const form = h('form', {
    class: 'fault-form', testid: 'fault-form',
    onsubmit: (e) => {
      e.preventDefault();
      const spec = { path: path.value.trim() || undefined };
      if (method.value) spec.method = method.value;
      if (app.value) spec.app_id = app.value;
      if (count.value !== '') spec.count = Number(count.value);
      if (probability.value !== '' && Number(probability.value) !== 1) spec.probability = Number(probability.value);
      const v = effectSel.value;
      if (v === 'custom:error') spec.effect = { kind: 'error', http_status: Number(httpStatus.value), code: Number(code.value), msg: msg.value };
      else if (v === 'custom:delay') spec.effect = { kind: 'delay', ms: Number(delay.value) };
      else if (v === 'custom:drop') spec.effect = { kind: 'drop' };
      else spec.preset = v;
      act(submit, async () => {
        const rule = await api('POST', '/_larkstack/faults', spec);
        await load();
        return rule;
      }, (rule) => `Fault #${rule.id} added`);
    },
  },
  recipes,
  h('div', { class: 'form-row' }, field('Effect', effectSel, 'wide', effectHint), field('Method', method), field('Path (* one segment, ** any)', path, 'wide')),
  customError, customDelay,
  h('div', { class: 'form-row' }, field('App', app, 'wide'), field('Count', count), field('Probability (0–1)', probability), h('div', { class: 'field submit' }, submit)));

  p.root.append(pageHead('Faults', 'Make matching /open-apis calls fail, slow down or lose their connection.', clearAll), p.error,
    section('Add a fault', null, form), rules, presetList);

  const showPresets = () => {
    const names = new Set(presets.map((x) => x.name));
    effectSel.replaceChildren(
      h('optgroup', { label: 'Presets' }, presets.map((x) => h('option', { value: x.name }, x.name))),
      h('optgroup', { label: 'Custom' }, h('option', { value: 'custom:error' }, 'error…'), h('option', { value: 'custom:delay' }, 'delay…'), h('option', { value: 'custom:drop' }, 'drop connection')));
    const usable = RECIPES.filter((r) => names.has(r.effect));
    recipes.replaceChildren(...(usable.length ? [h('span', { class: 'muted small' }, 'Recipes:'), ...usable.map((r) => h('button', {
      type: 'button', class: 'chip-btn', testid: 'fault-recipe',
      onclick: () => {
        method.value = r.method; path.value = r.path; effectSel.value = r.effect; count.value = r.count; probability.value = r.probability || '1'; app.value = '';
        syncEffect();
      },
    }, r.name))] : []));
    presetList.replaceChildren(section('Presets', badge(`${presets.length}`, 'count'),
      h('p', { class: 'card-note' }, 'What ', h('code', {}, '"preset": "<name>"'), ' in a rule stands for, as larkstack serves it.'),
      table(['Preset', 'Does', 'Effect', ''], presets.map((x) => {
        const use = h('button', { type: 'button', class: 'btn small', testid: 'fault-preset-use' }, 'Use');
        use.addEventListener('click', () => {
          effectSel.value = x.name;
          syncEffect();
          effectSel.focus();
        });
        return h('tr', { testid: 'fault-preset', data: { preset: x.name } },
          h('td', { class: 'nowrap' }, h('code', { class: 'mono strong', testid: 'fault-preset-name' }, x.name)),
          h('td', { class: 'small', testid: 'fault-preset-description' }, x.description),
          h('td', { testid: 'fault-preset-effect' }, describeEffect(x.effect)),
          h('td', { class: 'actions' }, use));
      }), { testid: 'fault-presets' })));
    syncEffect();
  };

  const load = async () => {
    const [data, dir, served] = await Promise.all([
      api('GET', '/_larkstack/faults'), directory(), presets ? null : api('GET', '/_larkstack/faults/presets')]);
    if (!p.alive) return;
    if (!presets) {
      presets = served.items;
      app.append(...dir.apps.map((a) => h('option', { value: a.app_id }, `${a.name} (${a.app_id})`)));
      showPresets();
    }
    if (!p.changed('faults', data.items)) return;
    rules.replaceChildren(section('Active rules', badge(`${data.items.length}`, 'count'), data.items.length
      ? table(['#', 'Method', 'Path', 'App', 'Effect', 'Remaining', 'Probability', 'Hits', ''], data.items.map((r) => {
        const remove = h('button', { type: 'button', class: 'btn small danger-ghost', testid: 'fault-remove' }, 'Remove');
        remove.addEventListener('click', () => act(remove, async () => { await api('DELETE', `/_larkstack/faults/${r.id}`); await load(); }, `Fault #${r.id} removed`));
        return h('tr', { testid: 'fault-row', data: { faultId: r.id }, class: r.remaining === 0 ? 'spent' : '' },
          h('td', { class: 'num muted' }, r.id),
          h('td', {}, r.method ? h('span', { class: `method m-${r.method.toLowerCase()}` }, r.method) : h('span', { class: 'muted' }, 'any')),
          h('td', { class: 'mono path' }, r.path),
          h('td', { class: 'small' }, r.app_id ? appName(dir, r.app_id) : h('span', { class: 'muted' }, 'any')),
          h('td', { testid: 'fault-effect-cell' }, describeEffect(r.effect)),
          h('td', { class: 'num', testid: 'fault-remaining' }, r.remaining == null ? '∞' : r.remaining === 0 ? badge('used up', 'grey') : r.remaining),
          h('td', { class: 'num' }, `${Math.round(r.probability * 100)} %`),
          h('td', { class: 'num', testid: 'fault-hits' }, r.hits),
          h('td', { class: 'actions' }, remove));
      }), { testid: 'faults-table' })
      : emptyState('No faults', 'Every call gets its real answer.')));
  };
  p.poll(load);
}

function field(labelText, control, cls = '', hint = null) {
  return h('label', { class: `field ${cls}` }, h('span', { class: 'field-label' }, labelText), control, hint);
}
