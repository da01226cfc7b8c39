// SPDX-License-Identifier: Apache-2.0
// The console's REST API as the dashboard uses it: same-origin requests with the session cookie
// (HttpOnly: the page never sees it), JSON both ways, errors as ApiError with the console's
// message. A 401 on any call but sign-in and password change means the session ended.

export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/**
 * fetchFn: window.fetch (a stand-in in unit tests). onUnauthorized(): called on a 401 that ends
 * the session.
 */
export function createApi(fetchFn, onUnauthorized = () => {}) {
  async function request(method, path, body, { quiet401 = false } = {}) {
    const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetchFn(path, init);
    } catch (e) {
      throw new ApiError(0, `Cannot reach the console (${e && e.message ? e.message : e}).`);
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (res.ok) return data;
    const message = data && typeof data.error === 'string' ? data.error : `HTTP ${res.status}`;
    const retry = res.headers && res.headers.get ? res.headers.get('retry-after') : null;
    if (res.status === 401 && !quiet401) onUnauthorized();
    throw new ApiError(res.status, message, retry !== null && /^\d+$/.test(retry) ? Number(retry) : null);
  }
  return {
    get: (path, opts) => request('GET', path, undefined, opts),
    post: (path, body, opts) => request('POST', path, body === undefined ? {} : body, opts),
    del: (path, opts) => request('DELETE', path, undefined, opts),
  };
}

/** "a=1&b=2" from an object, values left out when empty. */
export function queryString(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? '?' + s : '';
}

/** What the login form says for a failed sign-in. */
export function loginErrorMessage(err) {
  if (err && err.status === 401) return 'Invalid username or password.';
  if (err && err.status === 429) {
    const s = err.retryAfter;
    const wait = s ? (s >= 120 ? `${Math.ceil(s / 60)} minutes` : `${s} seconds`) : 'a while';
    return `Too many failed sign-in attempts. Try again in ${wait}.`;
  }
  return (err && err.message) || 'Sign-in failed.';
}
