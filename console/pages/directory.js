// Directory: tenants, apps with their credentials, users with every ID per app.

import { directory, tenantName } from '../lib/api.js';
import { badge, copyable, h, idGrid, pageHead, section, table } from '../lib/dom.js';

let directoryIdApp = null; // app key whose open_id / union_id the users table shows

export function pageDirectory(p) {
  const tenants = h('div', {}, h('div', { class: 'loading' }, 'Loading…'));
  const apps = h('div');
  const users = h('div');
  p.root.append(pageHead('Directory', 'Tenants, apps and people from the fixture, with every ID an SDK call needs.'), p.error, tenants, apps, users);

  const load = async () => {
    const dir = await directory(true);
    if (!p.alive || !p.changed('dir', dir)) return;
    renderTenants(dir);
    renderApps(dir);
    renderUsers(dir);
  };

  const renderTenants = (dir) => {
    tenants.replaceChildren(section('Tenants', badge(`${dir.tenants.length}`, 'count'),
      table(['Name', 'Key', 'tenant_key', 'Users', 'Apps'], dir.tenants.map((t) => h('tr', { testid: 'tenant-row', data: { tenantKey: t.tenant_key } },
        h('td', { class: 'strong' }, t.name),
        h('td', {}, h('code', { class: 'mono' }, t.key)),
        h('td', {}, copyable(t.tenant_key, 'tenant_key')),
        h('td', { class: 'num' }, dir.users.filter((u) => u.tenant_key === t.tenant_key).length),
        h('td', { class: 'num' }, dir.apps.filter((a) => a.installed_tenant_keys.includes(t.tenant_key)).length))))));
  };

  const renderApps = (dir) => {
    apps.replaceChildren(section('Apps', badge(`${dir.apps.length}`, 'count'),
      h('p', { class: 'card-note' }, 'Use the credentials with the official SDKs: ', h('code', {}, `domain("${location.origin}")`), '.'),
      table(['App', 'Kind', 'Tenants', 'app_id', 'app_secret', 'Scopes'], dir.apps.map((a) => h('tr', { testid: 'app-row', data: { appId: a.app_id, appKey: a.key } },
        h('td', {}, h('div', { class: 'strong' }, a.name), h('div', { class: 'muted small mono' }, a.key)),
        h('td', { class: 'nowrap' }, badge(a.kind === 'store' ? 'store app' : 'self-built', a.kind === 'store' ? 'purple' : 'blue'), ' ', a.bot ? badge('bot', 'green') : badge('no bot', 'grey')),
        h('td', {}, a.installed_tenant_keys.map((k) => h('div', { class: 'small nowrap' }, tenantName(dir, k)))),
        h('td', {}, copyable(a.app_id, 'app_id', 'copy-app-id')),
        h('td', {}, copyable(a.app_secret, 'app_secret', 'copy-app-secret')),
        h('td', {}, a.scopes.length
          ? h('details', { class: 'scopes' }, h('summary', {}, `${a.scopes.length} scope${a.scopes.length === 1 ? '' : 's'}`),
            h('div', { class: 'chips' }, [...a.scopes].sort().map((s) => h('span', { class: 'chip mono' }, s))))
          : h('span', { class: 'muted' }, 'none')))))));
  };

  const renderUsers = (dir) => {
    if (!dir.apps.some((a) => a.key === directoryIdApp)) directoryIdApp = (dir.apps.find((a) => a.bot) || dir.apps[0])?.key;
    const app = dir.apps.find((a) => a.key === directoryIdApp);
    const select = h('select', {
      class: 'input compact', testid: 'users-app',
      onchange: (e) => { directoryIdApp = e.target.value; renderUsers(dir); },
    }, dir.apps.map((a) => h('option', { value: a.key, selected: a.key === directoryIdApp }, `${a.name} (${a.app_id})`)));
    // union_id is per developer. The directory does not say which developer made an app, so
    // every developer's union_id is listed (just the app's one when `developer` is given).
    const unionRows = (u) => Object.entries(u.union_ids || {})
      .filter(([dev]) => !app?.developer || dev === app.developer)
      .map(([dev, id]) => [`union_id · ${dev}`, id, `union_id (${dev})`]);
    users.replaceChildren(section('Users', h('div', { class: 'head-tools' }, badge(`${dir.users.length}`, 'count'), h('label', { class: 'inline-label' }, 'open_id as seen by', select)),
      table(['Name', 'Tenant', 'Tenant-wide IDs', 'App and developer IDs'], dir.users.map((u) => h('tr', { testid: 'user-row', data: { userKey: u.key } },
        h('td', {}, h('div', { class: 'strong' }, u.name), h('div', { class: 'muted small' }, h('span', { class: 'mono' }, u.key), u.email ? ` · ${u.email}` : '')),
        h('td', {}, h('div', { class: 'small nowrap' }, tenantName(dir, u.tenant_key)), u.status === 'active' ? badge('active', 'green') : badge(u.status, 'grey')),
        h('td', {}, idGrid([['user_id', u.user_id, 'user_id'], ['kunlun_id', u.kunlun_id, 'kunlun_id']])),
        h('td', {}, idGrid([[`open_id · ${app?.key ?? ''}`, app ? u.open_ids[app.key] : null, 'open_id', 'copy-open-id'], ...unionRows(u)])))))));
  };

  p.poll(load, 10000);
}
