// SPDX-License-Identifier: Apache-2.0
// Runs the MCP conformance suite's server scenarios against one running endpoint, for each suite
// version and protocol era given, and judges them against conformance-not-run.txt. Called by
// conformance.sh, which starts the endpoint and fetches the suites.
//
//   node conformance-run.mjs --transport stdio|http --url URL --work DIR \
//        --suite VERSION=NODE22:CONFORMANCE_JS [--suite ...]
//   OBX_CONFORMANCE_SCENARIOS="ping tools-*"   only these scenarios (names, or prefixes with *)
//
// Which scenarios: a suite with requirement sets (0.2.0-alpha.*) runs every server scenario of
// requirements/<era>.yaml, scored and not_scored, at that era's wire version; one without (0.1.16)
// runs every server scenario `conformance list --server` tags 2025-11-25. A scenario runs unless
// conformance-not-run.txt lists it for that suite, era and transport; the rows are checked against
// those sets, so a stale row fails the run. A scenario passes when each of its FAILURE checks is
// one the file lists as scenario:check and each such listed check did fail.
//
// One suite process per scenario, started with Node 22 directly (not through npx, which costs a
// second each): the suite takes one --scenario, and its suite modes cannot leave scenarios out.

import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const DATA = path.join(here, 'conformance-not-run.txt');
const ERAS = ['2025-11-25', '2026-07-28'];
const LEGACY_ERA = '2025-11-25';
const SCENARIO_TIMEOUT_MS = 120_000;

function usage(msg) {
  process.stderr.write(`conformance-run: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { suites: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) usage(`${a} needs a value`);
    if (a === '--transport') o.transport = v;
    else if (a === '--url') o.url = v;
    else if (a === '--work') o.work = v;
    else if (a === '--suite') {
      const m = /^([^=]+)=([^:]+):(.+)$/.exec(v);
      if (!m) usage(`--suite wants VERSION=NODE:CONFORMANCE_JS, not ${v}`);
      o.suites.push({ version: m[1], node: m[2], bin: m[3] });
    } else usage(`unknown argument ${a}`);
  }
  if (!['stdio', 'http'].includes(o.transport)) usage('--transport stdio|http');
  if (!o.url || !o.work || o.suites.length === 0) usage('--url, --work and --suite are required');
  return o;
}

// Rows of conformance-not-run.txt: { line, suite, era, transport, scenario, check, reason }.
function readRows() {
  const rows = [];
  fs.readFileSync(DATA, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      const t = text.trim();
      if (t === '' || t.startsWith('#')) return;
      const m = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.+)$/.exec(t);
      if (!m)
        throw new Error(`${DATA}:${i + 1}: expected suite, era, transport, what and a reason`);
      const [, suite, era, transport, what, reason] = m;
      const colon = what.indexOf(':');
      rows.push({
        line: i + 1,
        suite,
        era,
        transport,
        scenario: colon < 0 ? what : what.slice(0, colon),
        check: colon < 0 ? undefined : what.slice(colon + 1),
        reason,
      });
    });
  return rows;
}

const glob = (pattern, name) =>
  pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
const fits = (field, value) => field === '*' || field === value;

// The scenario sets of one suite: [{ era, scenarios, args }].
function scenarioSets(suite) {
  const pkg = path.dirname(path.dirname(fs.realpathSync(suite.bin)));
  const reqDir = path.join(pkg, 'requirements');
  if (fs.existsSync(reqDir)) {
    const YAML = createRequire(path.join(pkg, 'package.json'))('yaml');
    return ERAS.filter((era) => fs.existsSync(path.join(reqDir, `${era}.yaml`))).map((era) => {
      const doc = YAML.parse(fs.readFileSync(path.join(reqDir, `${era}.yaml`), 'utf8'));
      const notScored = (doc.not_scored ?? [])
        .filter((e) => e.leg === 'server')
        .map((e) => e.scenario);
      // --force: the tasks scenarios belong to an extension, which no --spec-version selects.
      return {
        era,
        scenarios: [...doc.server, ...notScored],
        args: ['--spec-version', era, '--force'],
      };
    });
  }
  const out = execFileSync(suite.node, [suite.bin, 'list', '--server'], { encoding: 'utf8' });
  const scenarios = [];
  for (const line of out.split('\n')) {
    const m = /^\s+- (\S+) \[([^\]]*)\]/.exec(line);
    if (m && m[2].split(',').includes(LEGACY_ERA)) scenarios.push(m[1]);
  }
  if (scenarios.length === 0)
    throw new Error(`${suite.version}: \`conformance list --server\` named no scenario`);
  return [{ era: LEGACY_ERA, scenarios, args: [] }];
}

function runScenario(suite, set, scenario, url, dir, cacheDir) {
  fs.mkdirSync(dir, { recursive: true });
  const logPath = `${dir}.log`;
  const log = fs.openSync(logPath, 'w');
  const args = [suite.bin, 'server', '--url', url, '--scenario', scenario, ...set.args, '-o', dir];
  // The compile cache spares each run a tenth of a second of parsing the suite's bundle.
  const env = { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', NODE_COMPILE_CACHE: cacheDir };
  return new Promise((resolve) => {
    const child = spawn(suite.node, args, { stdio: ['ignore', log, log], env });
    const timer = setTimeout(() => child.kill('SIGKILL'), SCENARIO_TIMEOUT_MS);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      fs.closeSync(log);
      let checks;
      const sub = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
      if (sub.length === 1)
        checks = JSON.parse(fs.readFileSync(path.join(dir, sub[0], 'checks.json'), 'utf8'));
      resolve({ code, signal, checks, logPath });
    });
  });
}

const clip = (s, n) => (s.length > n ? `${s.slice(0, n)}…` : s);

function tail(file, n) {
  const lines = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => !l.startsWith('npm warn'));
  return lines.slice(-n).join('\n');
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const only = (process.env.OBX_CONFORMANCE_SCENARIOS ?? '').split(/\s+/).filter(Boolean);
  const rows = readRows().filter((r) => fits(r.transport, o.transport));
  const used = new Set();
  const tag = `(${o.transport})`;
  let passed = 0;
  let failed = 0;
  let notRun = 0;

  for (const suite of o.suites) {
    for (const set of scenarioSets(suite)) {
      const t0 = Date.now();
      const counts = { passed: 0, failed: 0, notRun: 0 };
      const label = `${suite.version} ${set.era} ${o.transport}`;
      const mine = rows.filter((r) => fits(r.suite, suite.version) && fits(r.era, set.era));
      for (const scenario of set.scenarios) {
        if (only.length && !only.some((p) => glob(p, scenario))) continue;
        const skip = mine.find((r) => r.check === undefined && glob(r.scenario, scenario));
        if (skip) {
          used.add(skip);
          counts.notRun++;
          console.log(`conformance: not run  ${scenario} [${label}]: ${skip.reason}`);
          continue;
        }
        const excused = mine.filter((r) => r.check !== undefined && r.scenario === scenario);
        excused.forEach((r) => used.add(r));
        const dir = path.join(o.work, suite.version, set.era, scenario);
        const s0 = Date.now();
        const r = await runScenario(
          suite,
          set,
          scenario,
          o.url,
          dir,
          path.join(o.work, 'node-compile-cache'),
        );
        const secs = ((Date.now() - s0) / 1000).toFixed(1);
        const problems = [];
        let detail = '';
        if (!r.checks) {
          problems.push(
            `the suite wrote no results (exit ${r.signal ?? r.code}` +
              `${r.signal === 'SIGKILL' ? ', timed out' : ''})`,
          );
        } else {
          const by = (s) => r.checks.filter((c) => c.status === s);
          const bad = by('FAILURE').filter((c) => !excused.some((e) => e.check === c.id));
          for (const c of bad) {
            let text = `${c.id}: ${c.description}`;
            if (c.errorMessage) text += `\n        error: ${clip(String(c.errorMessage), 1500)}`;
            if (c.details !== undefined)
              text += `\n        details: ${clip(JSON.stringify(c.details), 1500)}`;
            problems.push(text);
          }
          for (const e of excused) {
            const c = r.checks.find((x) => x.id === e.check);
            if (c?.status === 'SUCCESS')
              problems.push(
                `${e.check} passed, but conformance-not-run.txt:${e.line} excuses it: ` +
                  'remove that row',
              );
          }
          if (r.checks.length === 0)
            problems.push('the suite ran no check (is the scenario applicable?)');
          const n = by('SUCCESS').length;
          const parts = [`${n}/${n + by('FAILURE').length} checks`];
          const excusedHere = excused.filter((e) =>
            r.checks.some((c) => c.id === e.check && c.status === 'FAILURE'),
          );
          if (excusedHere.length)
            parts.push(
              `${excusedHere.length} not counted (${excusedHere.map((e) => e.check).join(', ')})`,
            );
          if (by('WARNING').length) parts.push(`${by('WARNING').length} warnings`);
          if (by('SKIPPED').length) parts.push(`${by('SKIPPED').length} skipped by the suite`);
          detail = parts.join(', ');
        }
        if (problems.length === 0) {
          counts.passed++;
          console.log(`conformance: PASS ${scenario} [${label}] (${detail}; ${secs} s)`);
        } else {
          counts.failed++;
          console.log(`conformance: FAIL ${scenario} [${label}]${detail ? ` (${detail})` : ''}`);
          for (const p of problems) console.log(`    ${p}`);
          // Without results the suite's own output is all there is to go on.
          if (!r.checks) console.log(tail(r.logPath, 40).replace(/^/gm, '    | '));
        }
      }
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      console.log(
        `conformance: ${label}: ${counts.passed} passed, ${counts.failed} failed, ` +
          `${counts.notRun} not run (${secs} s)`,
      );
      passed += counts.passed;
      failed += counts.failed;
      notRun += counts.notRun;
    }
  }

  // A row that matched nothing names a scenario the suites do not have (any more).
  if (only.length === 0) {
    const versions = new Set(o.suites.map((s) => s.version));
    for (const r of rows) {
      if (used.has(r) || (r.suite !== '*' && !versions.has(r.suite))) continue;
      failed++;
      console.log(
        `conformance: FAIL conformance-not-run.txt:${r.line} matches no scenario of the ` +
          `suites run: ${r.scenario}${r.check ? `:${r.check}` : ''}`,
      );
    }
  }

  console.log(`conformance ${tag}: ${notRun} not run (conformance-not-run.txt)`);
  console.log(`conformance ${tag}: ${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 ? 1 : 0;
}

main().catch((e) => {
  console.error(`conformance-run: ${e.stack ?? e}`);
  process.exitCode = 1;
});
