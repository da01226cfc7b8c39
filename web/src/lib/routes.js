// SPDX-License-Identifier: Apache-2.0
// The dashboard's pages and where a visit goes: hash routes (#/workers?page=2), so the console
// serves one document and needs no fallback route. Pure functions, unit tested.

/** Every page. `nav`: listed in the sidebar; `admin`: admins only; `public`: no sign-in needed. */
export const ROUTES = [
  { path: '/login', name: 'login', title: 'Sign in', public: true },
  { path: '/workers', name: 'workers', title: 'Workers', nav: true },
  { path: '/accounts', name: 'accounts', title: 'Accounts', nav: true, admin: true },
  { path: '/tokens', name: 'tokens', title: 'API tokens', nav: true },
  { path: '/sessions', name: 'sessions', title: 'Sessions', nav: true },
  { path: '/tasks', name: 'tasks', title: 'Tasks', nav: true },
  { path: '/terminal', name: 'terminal', title: 'Terminal' },
  { path: '/tools/worker-startup', name: 'worker-tool', title: 'Worker startup', nav: true },
];

/** "#/workers?status=online&page=2" -> { path: "/workers", query: { status: "online", page: "2" } }. */
export function parseHash(hash) {
  let h = hash || '';
  if (h.startsWith('#')) h = h.slice(1);
  if (!h.startsWith('/')) h = '/' + h;
  const q = h.indexOf('?');
  const path = (q < 0 ? h : h.slice(0, q)) || '/';
  const query = {};
  if (q >= 0) {
    for (const [k, v] of new URLSearchParams(h.slice(q + 1))) if (!(k in query)) query[k] = v;
  }
  return { path: path.length > 1 ? path.replace(/\/+$/, '') : path, query };
}

/** The inverse of parseHash: empty, null and undefined values are left out. */
export function buildHash(path, query = {}) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  }
  const qs = params.toString();
  return '#' + path + (qs ? '?' + qs : '');
}

/** Where a signed-in account starts: admins on Workers, everyone else on their tokens. */
export function homePath(session) {
  return session && session.account && session.account.is_admin ? '/workers' : '/tokens';
}

/** A redirect target from the URL, only when it is a path of this dashboard (never another site). */
export function safeRedirect(target) {
  if (typeof target !== 'string' || !target.startsWith('/') || target.startsWith('//')) return null;
  if (target.includes('\\') || /[\u0000-\u001f]/.test(target)) return null;
  if (parseHash(target).path === '/login') return null;
  return target;
}

export function findRoute(path) {
  return ROUTES.find((r) => r.path === path) || null;
}

/**
 * What to show for a visit to path?query, given the session (null: not signed in). Returns
 * { route } or { redirect: "/path?query" }.
 */
export function resolveRoute(path, query, session) {
  const route = findRoute(path);
  if (!session) {
    if (route && route.public) return { route };
    if (!route) return { redirect: '/login' };
    const here = buildHash(path, query).slice(1);
    return { redirect: buildHash('/login', { redirect: here }).slice(1) };
  }
  if (!route) return { redirect: homePath(session) };
  if (route.name === 'login') return { redirect: safeRedirect(query.redirect) || homePath(session) };
  if (route.admin && !session.account.is_admin) return { redirect: '/tokens' };
  return { route };
}

/** The sidebar's entries for this account. */
export function navRoutes(session) {
  return ROUTES.filter((r) => r.nav && (!r.admin || (session && session.account.is_admin)));
}
