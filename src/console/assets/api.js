// Calls to the facilitator's JSON API, from the same origin, with the credentials of the
// session. Credentials live in sessionStorage only (this tab, gone when it closes): never in a
// URL, a cookie or a log line. `logout()` removes them all.

const STORE = {
  access: 'x402console.access',
  refresh: 'x402console.refresh',
  admin: 'x402console.admin',
  email: 'x402console.email',
};

export const session = {
  hasUser: () => sessionStorage.getItem(STORE.access) !== null,
  hasAdmin: () => sessionStorage.getItem(STORE.admin) !== null,
  email: () => sessionStorage.getItem(STORE.email) || '',
  setUser(access, refresh, email) {
    sessionStorage.setItem(STORE.access, access);
    sessionStorage.setItem(STORE.refresh, refresh);
    if (email !== undefined) sessionStorage.setItem(STORE.email, email);
  },
  setAdmin(token) {
    sessionStorage.setItem(STORE.admin, token);
  },
  clearUser() {
    sessionStorage.removeItem(STORE.access);
    sessionStorage.removeItem(STORE.refresh);
    sessionStorage.removeItem(STORE.email);
  },
  clearAdmin() {
    sessionStorage.removeItem(STORE.admin);
  },
  logout() {
    for (const key of Object.values(STORE)) sessionStorage.removeItem(key);
  },
};

/** An error answer of the API (its envelope: code, message, details). */
export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || body || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || '';
    this.details = typeof err.details === 'string' ? err.details : '';
  }
  describe() {
    return [this.code, this.message, this.details].filter(Boolean).join(': ');
  }
}

let refreshing = null;

/** Trade the refresh token for a new pair (rotating); one refresh at a time. */
async function refresh() {
  if (!refreshing) {
    refreshing = (async () => {
      const token = sessionStorage.getItem(STORE.refresh);
      if (!token) return false;
      const res = await fetch('/api/v1/token/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh_token: token }),
        credentials: 'omit',
        cache: 'no-store',
      });
      if (!res.ok) return false;
      const body = await res.json();
      const pair = body.data || {};
      if (!pair.access_token || !pair.refresh_token) return false;
      session.setUser(pair.access_token, pair.refresh_token);
      return true;
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/**
 * `method path` with `auth` = 'user' (the access token, refreshed once on a 401), 'admin' (the
 * admin token) or none. Resolves to the answer's `data` (or the bare body); rejects with an
 * `ApiError`.
 */
export async function api(method, path, { auth, body } = {}) {
  const send = () => {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const token =
      auth === 'user'
        ? sessionStorage.getItem(STORE.access)
        : auth === 'admin'
          ? sessionStorage.getItem(STORE.admin)
          : null;
    if (auth && !token) throw new ApiError(401, { error: { code: 'UNAUTHORIZED', message: 'Not logged in' } });
    if (token) headers.Authorization = `Bearer ${token}`;
    return fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  };
  let res = await send();
  if (res.status === 401 && auth === 'user' && (await refresh())) res = await send();
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!res.ok) {
    if (res.status === 401 && auth === 'user') session.clearUser();
    if (res.status === 401 && auth === 'admin') session.clearAdmin();
    throw new ApiError(res.status, parsed);
  }
  return parsed && Object.prototype.hasOwnProperty.call(parsed, 'data') ? parsed.data : parsed;
}

/** A query string from an object (empty values left out). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && String(v).trim() !== '') q.set(k, String(v).trim());
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
