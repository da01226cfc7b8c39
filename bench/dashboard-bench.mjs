// SPDX-License-Identifier: Apache-2.0
// The dashboard's cold load on loopback, measured in Debian's Chromium: every run starts a
// browser with a fresh profile (empty cache) and times, from the start of navigation, (1) the
// sign-in page ready to type into (index.html, script, style sheet, the session check), and
// (2) a signed-in Workers page with its counts and table filled (three API calls more). Times
// come from the page's own clock (performance.now(), whose origin is the navigation's start),
// read by a DOM observer the moment the page is ready, not when the test polls.
//
//   node bench/dashboard-bench.mjs [--bin build/onlyboxes] [--n 15] [--md]
//
// Needs playwright-core from tests/browser/ (npm ci there) and /usr/bin/chromium.

import http from 'node:http';
import { Console, apiLogin, launch } from '../tests/browser/lib.mjs';
import { flag, opt, pct } from './lib.mjs';

const N = Number(opt('n', 15));
const MD = flag('md');
const GOAL_MS = 300;
if (opt('bin')) process.env.OBX_BIN = opt('bin');

/** Runs in the page before its scripts: notes when what the user waits for is there. */
function READY(kind) {
  const ready = () =>
    kind !== 'workers'
      ? document.activeElement && document.activeElement.id === 'login-username'
      : document.querySelector('.stat-total .stat-value')?.textContent === '1' && document.querySelector('tbody td.col-node');
  const check = () => {
    if (!window.__obxReady && ready()) window.__obxReady = performance.now();
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
  document.addEventListener('focusin', check, true);
}

const con = await new Console({ CONSOLE_DASHBOARD_USERNAME: 'bench', CONSOLE_DASHBOARD_PASSWORD: 'bench-pw' }).start();
// The floor: the same browser start and measurement on a one-line static page with a focused
// input, served by Node on loopback (what any page costs this browser on this machine now).
const floor = http.createServer((req, res) => {
  res.setHeader('content-type', 'text/html');
  res.end('<!doctype html><title>floor</title><input id="login-username" autofocus>');
});
await new Promise((r) => floor.listen(0, '127.0.0.1', r));
const floorUrl = `http://127.0.0.1:${floor.address().port}/`;

const samples = { login: [], workers: [], floor: [] };
try {
  const cookie = await apiLogin(con.base, 'bench', 'bench-pw');
  for (let i = 0; i < N; i++) {
    for (const kind of ['floor', 'login', 'workers']) {
      const b = await launch();
      try {
        await b.context.addInitScript(READY, kind);
        if (kind === 'workers') {
          await b.context.addCookies([{ name: 'onlyboxes_console_session', value: cookie, url: con.base, httpOnly: true, sameSite: 'Strict' }]);
          await b.page.goto(con.base + '/#/workers', { waitUntil: 'commit' });
        } else {
          await b.page.goto(kind === 'floor' ? floorUrl : con.base + '/', { waitUntil: 'commit' });
        }
        samples[kind].push(await (await b.page.waitForFunction(() => window.__obxReady)).jsonValue());
        const failed = b.problems.filter((p) => !/status of 401/.test(p));
        if (failed.length) throw new Error(failed.join('\n'));
      } finally {
        await b.close();
      }
    }
  }
} finally {
  floor.close();
  await con.stop();
}

const rows = [
  ['dashboard cold load: sign-in page ready (Chromium, empty cache, loopback)', samples.login],
  ['dashboard cold load: Workers page with its data, signed in (Chromium, empty cache, loopback)', samples.workers],
  ['floor: a one-line static page with a focused input, same browser start (Node server)', samples.floor],
];
for (const [name, s] of rows) {
  const f = (p) => pct(s, p).toFixed(1);
  const goal = name.startsWith('floor') ? '-' : `< ${GOAL_MS} ms`;
  if (MD) console.log(`| ${name} | ${s.length} | ${f(50)} | ${f(90)} | ${f(99)} | ${goal} |`);
  else console.log(`${name}: n=${s.length} p50 ${f(50)} ms, p90 ${f(90)} ms, max ${Math.max(...s).toFixed(1)} ms (goal ${goal})`);
}
