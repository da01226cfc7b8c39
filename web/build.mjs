// SPDX-License-Identifier: Apache-2.0
// Builds the dashboard into dist/: the bundled script and style sheet under content-hashed names
// in dist/assets/, index.html that loads them, and THIRD_PARTY_NOTICES.txt with the licence of
// every npm package that ends up in the bundle. Same sources and lockfile, same bytes: CI
// rebuilds and compares with the committed dist/, which the console embeds (CMakeLists.txt).

import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// --check: build into a scratch directory and compare with dist/ byte for byte (CI's check that
// the committed dist/, which the console embeds, is what these sources and the lockfile give).
const check = process.argv.includes('--check');
const committed = path.join(here, 'dist');
const dist = check ? mkdtempSync(path.join(tmpdir(), 'obx-web-')) : committed;
// Licences that allow shipping the code inside the console's binary with a notice.
const ALLOWED_LICENSES = new Set(['MIT', 'ISC', 'BSD-2-Clause', 'BSD-3-Clause', 'Apache-2.0', '0BSD']);

rmSync(dist, { recursive: true, force: true });
mkdirSync(path.join(dist, 'assets'), { recursive: true });

const result = await build({
  absWorkingDir: here,
  entryPoints: ['src/main.jsx'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: path.join(dist, 'assets'),
  entryNames: '[name]-[hash]',
  // xterm.js (the Terminal page's) is a chunk of its own, fetched with that page only.
  splitting: true,
  chunkNames: 'chunk-[hash]',
  assetNames: '[name]-[hash]',
  publicPath: '/assets/',
  legalComments: 'none',
  charset: 'utf8',
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => path.basename(p));
const pick = (re) => {
  const found = outputs.filter((f) => re.test(f));
  if (found.length !== 1) throw new Error(`expected one output matching ${re}, got ${found.join(', ') || 'none'}`);
  return found[0];
};
const js = pick(/^main-[A-Z0-9]+\.js$/);
const css = pick(/^main-[A-Z0-9]+\.css$/);
// The tab's icon: the logo under a content-hashed name (the page draws it inline).
const iconSvg = readFileSync(path.join(here, 'src/logo.svg'));
const iconHash = createHash('sha256').update(iconSvg).digest('hex').slice(0, 8).toUpperCase();
const icon = `icon-${iconHash}.svg`;
writeFileSync(path.join(dist, 'assets', icon), iconSvg);

writeFileSync(
  path.join(dist, 'index.html'),
  `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Onlyboxes console</title>
<link rel="icon" type="image/svg+xml" href="/assets/${icon}">
<link rel="stylesheet" href="/assets/${css}">
<link rel="preload" href="/api/v1/console/session" as="fetch" crossorigin>
<script type="module" src="/assets/${js}"></script>
</head>
<body>
<div id="app"></div>
<noscript>The Onlyboxes dashboard needs JavaScript.</noscript>
</body>
</html>
`,
);

// The npm packages whose code is in the bundle, from esbuild's list of inputs.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m) packages.set(m[1], path.join(here, 'node_modules', m[1]));
}
let notices =
  'Third-party software in the Onlyboxes console\'s web dashboard\n' +
  '===============================================================\n\n' +
  'The dashboard bundles the npm packages below (web/package-lock.json pins their versions).\n';
for (const name of [...packages.keys()].sort()) {
  const dir = packages.get(name);
  const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const license = typeof pkg.license === 'string' ? pkg.license : '';
  if (!ALLOWED_LICENSES.has(license)) throw new Error(`${name}@${pkg.version}: licence "${license}" is not on the allowed list`);
  const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
  if (!file) throw new Error(`${name}@${pkg.version}: no licence file in the package`);
  const text = readFileSync(path.join(dir, file), 'utf8').replace(/\r\n/g, '\n').trim();
  notices += `\n\n${name} ${pkg.version} (${license})\n${pkg.homepage || ''}\n${'-'.repeat(60)}\n${text}\n`;
}
writeFileSync(path.join(dist, 'THIRD_PARTY_NOTICES.txt'), notices);

/** Every file under dir: relative path -> bytes. */
function tree(dir) {
  const files = new Map();
  const walk = (d) => {
    if (!existsSync(d)) return;
    for (const f of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(d, f.name);
      if (f.isDirectory()) walk(p);
      else files.set(path.relative(dir, p), readFileSync(p));
    }
  };
  walk(dir);
  return files;
}

const built = tree(dist);
if (!check) {
  for (const [f, b] of built) console.log(`dist/${f}  ${b.length} bytes`);
} else {
  const old = tree(committed);
  const problems = [];
  for (const [f, b] of built) {
    if (!old.has(f)) problems.push(`dist/${f} is missing (the build makes it)`);
    else if (!old.get(f).equals(b)) problems.push(`dist/${f} differs from what the sources build`);
  }
  for (const f of old.keys()) if (!built.has(f)) problems.push(`dist/${f} is not made by the build (left over)`);
  rmSync(dist, { recursive: true, force: true });
  if (problems.length) {
    console.error(problems.join('\n') + '\nweb/dist/ is not built from web/src at this commit: run `npm run build` in web/ and commit dist/.');
    process.exit(1);
  }
  console.log(`web/dist/ matches a fresh build of the sources (${built.size} files)`);
}
