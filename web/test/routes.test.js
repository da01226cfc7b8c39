// SPDX-License-Identifier: Apache-2.0
import test from 'node:test';
import assert from 'node:assert/strict';
import { buildHash, homePath, navRoutes, parseHash, resolveRoute, safeRedirect } from '../src/lib/routes.js';

const admin = { account: { account_id: 'a1', username: 'root', is_admin: true } };
const member = { account: { account_id: 'm1', username: 'ann', is_admin: false } };

test('hash routes parse and build both ways', () => {
  assert.deepEqual(parseHash('#/workers?status=online&page=2'), { path: '/workers', query: { status: 'online', page: '2' } });
  assert.deepEqual(parseHash(''), { path: '/', query: {} });
  assert.deepEqual(parseHash('#/tokens/'), { path: '/tokens', query: {} });
  assert.equal(buildHash('/workers', { status: 'offline', page: 3, empty: '' }), '#/workers?status=offline&page=3');
  assert.equal(buildHash('/login', { redirect: '/workers?page=2' }), '#/login?redirect=%2Fworkers%3Fpage%3D2');
  const round = parseHash(buildHash('/login', { redirect: '/workers?page=2' }));
  assert.equal(round.query.redirect, '/workers?page=2');
});

test('signed out: protected pages go to sign-in with the page to come back to', () => {
  assert.deepEqual(resolveRoute('/workers', { page: '2' }, null), { redirect: '/login?redirect=%2Fworkers%3Fpage%3D2' });
  assert.deepEqual(resolveRoute('/', {}, null), { redirect: '/login' });
  assert.deepEqual(resolveRoute('/no-such-page', {}, null), { redirect: '/login' });
  assert.equal(resolveRoute('/login', {}, null).route.name, 'login');
});

test('signed in: home by role, unknown paths home, members kept out of accounts', () => {
  assert.equal(homePath(admin), '/workers');
  assert.equal(homePath(member), '/tokens');
  assert.deepEqual(resolveRoute('/', {}, admin), { redirect: '/workers' });
  assert.deepEqual(resolveRoute('/', {}, member), { redirect: '/tokens' });
  assert.deepEqual(resolveRoute('/nope', {}, member), { redirect: '/tokens' });
  assert.deepEqual(resolveRoute('/accounts', {}, member), { redirect: '/tokens' });
  assert.equal(resolveRoute('/accounts', {}, admin).route.name, 'accounts');
  assert.equal(resolveRoute('/workers', {}, member).route.name, 'workers');
  assert.equal(resolveRoute('/tools/worker-startup', {}, member).route.name, 'worker-tool');
});

test('sign-in page when signed in: the redirect if it is a dashboard path, else home', () => {
  assert.deepEqual(resolveRoute('/login', { redirect: '/workers?status=online' }, admin), { redirect: '/workers?status=online' });
  assert.deepEqual(resolveRoute('/login', {}, member), { redirect: '/tokens' });
  for (const bad of ['https://evil.example/', '//evil.example/x', '/\\evil.example', 'workers', '/login?redirect=/x', '/a\nb']) {
    assert.equal(safeRedirect(bad), null, bad);
    assert.deepEqual(resolveRoute('/login', { redirect: bad }, admin), { redirect: '/workers' }, bad);
  }
});

test('navigation lists accounts for admins only', () => {
  assert.deepEqual(navRoutes(admin).map((r) => r.path), ['/workers', '/accounts', '/tokens', '/sessions', '/tasks', '/tools/worker-startup']);
  assert.deepEqual(navRoutes(member).map((r) => r.path), ['/workers', '/tokens', '/sessions', '/tasks', '/tools/worker-startup']);
});

test('a terminal is a page of its own, reached from Sessions, kept through sign-in', () => {
  assert.equal(resolveRoute('/terminal', { session: 's1' }, member).route.name, 'terminal');
  assert.deepEqual(resolveRoute('/terminal', { session: 's 1' }, null), { redirect: '/login?redirect=%2Fterminal%3Fsession%3Ds%2B1' });
});
