// The control API: calls with the admin token, the cached directory, names from it.

const TOKEN_KEY = 'larkstack.adminToken';

export class ApiError extends Error {
  constructor(status, code, msg) {
    super(msg);
    this.status = status;
    this.code = code;
  }
}

/** The admin token, kept in the browser's localStorage. */
export const token = {
  get: () => localStorage.getItem(TOKEN_KEY),
  set: (t) => localStorage.setItem(TOKEN_KEY, t),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

// What to do when there is no token or larkstack rejects it: the entry module asks for one.
let unauthorized = () => {};
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/** Calls the control API; resolves to `data`, rejects with an ApiError carrying the reply's `msg`. */
export async function api(method, path, body) {
  const t = token.get();
  if (!t) {
    unauthorized();
    throw new ApiError(401, 401, 'no admin token');
  }
  const headers = { Authorization: `Bearer ${t}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, -1, `larkstack is not reachable (${e.message})`);
  }
  let reply = null;
  try { reply = await res.json(); } catch { reply = null; }
  if (res.status === 401) {
    unauthorized('larkstack rejected the admin token.');
    throw new ApiError(401, 401, reply?.msg || 'the admin token was rejected');
  }
  if (!reply || reply.code !== 0) {
    throw new ApiError(res.status, reply?.code ?? res.status, reply?.msg || `HTTP ${res.status}`);
  }
  return reply.data;
}

/** `?k=v&…` of the non-empty params, or ''. */
export const qs = (params) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v != null) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
};

// The directory changes only when a fixture is loaded: cached briefly, refreshed by its page.
let directoryCache = null;
export async function directory(force = false) {
  if (force || !directoryCache || Date.now() - directoryCache.at > 30000) {
    const data = await api('GET', '/_larkstack/directory');
    directoryCache = { at: Date.now(), data };
  }
  return directoryCache.data;
}

export function tenantName(dir, tenantKey) {
  const t = dir?.tenants.find((x) => x.tenant_key === tenantKey);
  return t ? t.name : tenantKey;
}

export function appName(dir, appId) {
  return dir?.apps.find((a) => a.app_id === appId)?.name || appId;
}
