// SPDX-License-Identifier: Apache-2.0
// A local agent working on a project of this host without the host: `onlyboxes mcp --stdio
// --mount HOST_DIR:BOX_PATH[:ro|:rw]`, through the MCP SDK client, on bubblewrap and (where a
// daemon runs) docker. The directory is seen by terminal sessions and pythonExec boxes alike,
// read-only unless :rw; what a box writes through :rw is on the host; and the mounts that would
// hand a box the host are refused at start with a message naming why. exportFile copies a file
// of a session into --export-dir, never over another file, and is not offered without it.

import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { McpServer, runCli } from './lib.mjs';
import { dockerUnavailable } from '../fault/lib.mjs';

const dir = mkdtempSync(path.join(tmpdir(), 'obx-mounts-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const project = path.join(dir, 'project');
mkdirSync(path.join(project, 'src'), { recursive: true });
writeFileSync(path.join(project, 'src', 'main.py'), 'print("from the host")\n');
writeFileSync(path.join(project, 'test_ok.py'), 'import src.main\n');
chmodSync(dir, 0o755);
chmodSync(project, 0o755);
const out = path.join(dir, 'out');
mkdirSync(out);
// Boxes write as a user of their own (uid 65532 in docker, a host uid per box under a root
// worker): the directory must let them, as docs/tools.md says.
chmodSync(out, 0o777);

const runtimes = [['bubblewrap', false], ['docker', dockerUnavailable()]];

for (const [runtime, skip] of runtimes) {
  describe(`--mount on ${runtime}`, { skip: skip || false }, () => {
    let srv;
    after(async () => {
      await srv?.close();
    });

    test('the project is seen read-only by sessions and pythonExec; :rw writes reach the host', async () => {
      srv = await new McpServer({
        args: ['--runtime', runtime, '--mount', `${project}:/workspace/project`, '--mount', `${out}:/mnt/out:rw`],
        env: { ONLYBOXES_RUNTIME: runtime },
      }).start();
      const run = await srv.sh('cd /workspace/project && python3 src/main.py && ls', { session_id: 'm1', create_if_missing: true });
      assert.equal(run.stdout, 'from the host\nsrc\ntest_ok.py\n', run.stderr);
      const ro = await srv.sh('touch /workspace/project/new 2>&1; echo $?', { session_id: 'm1' });
      assert.match(ro.stdout, /Read-only file system\n1\n$/);
      assert.equal(existsSync(path.join(project, 'new')), false);
      const w = await srv.sh(`echo "written in the box" > /mnt/out/result-${runtime}.txt`, { session_id: 'm1' });
      assert.equal(w.exit_code, 0, w.stderr);
      assert.equal(readFileSync(path.join(out, `result-${runtime}.txt`), 'utf8'), 'written in the box\n');
      const py = await srv.ok('pythonExec', { code: 'print(open("/workspace/project/src/main.py").read().strip())' });
      assert.equal(py.output, 'print("from the host")\n');
      // The workspace around the mount is still the box's own.
      const ws = await srv.sh('echo mine > /workspace/own && ls /workspace', { session_id: 'm1' });
      assert.equal(ws.stdout, 'own\nproject\n');
      assert.equal(existsSync(path.join(project, 'own')), false);
      assert.match(srv.stderr, new RegExp(`boxes see ${project} at /workspace/project \\(read-only\\)`));
    });
  });
}

describe('mounts that would hand a box the host are refused at start', () => {
  const refuse = (spec, re) => {
    const r = runCli(['mcp', '--stdio', '--runtime', 'bubblewrap', '--mount', spec], { timeoutMs: 20_000 });
    assert.equal(r.status, 2, `${spec}: ${r.stderr}`);
    assert.match(r.stderr, re, spec);
  };

  test('the root, the home directory and above it, /etc, the docker socket, the state directory', () => {
    refuse('/:/mnt/all', /refusing to mount \/ \(the whole host\)/);
    const home = homedir();
    refuse(`${home}:/mnt/home`, /it is the home directory .*; mount the project directory inside it instead/);
    if (path.dirname(home) !== '/') refuse(`${path.dirname(home)}:/mnt/h`, /it holds the home directory/);
    refuse('/etc:/mnt/etc', /part of the host's system directory \/etc/);
    refuse('/etc/ssl:/mnt/ssl', /system directory \/etc/);
    if (existsSync('/var/run/docker.sock')) refuse('/var/run:/mnt/run', /holds the docker socket .*root on this host/);
    const state = process.env.XDG_RUNTIME_DIR ? path.join(process.env.XDG_RUNTIME_DIR, 'onlyboxes') : `/tmp/onlyboxes-${process.getuid()}`;
    mkdirSync(state, { recursive: true });
    refuse(`${state}:/mnt/state`, /the boxes' state directory/);
  });

  test('a box path over the box\'s system, a bad form, a missing directory, twice one path', () => {
    refuse(`${project}:/usr/local`, /would cover the box's own \/usr/);
    refuse(`${project}:/tmp`, /would cover the box's own \/tmp/);
    refuse(`${project}:relative`, /the box path must be absolute and plain/);
    refuse(`${project}:/mnt/../etc`, /the box path must be absolute and plain/);
    refuse(`${project}`, /expected HOST_DIR:BOX_PATH/);
    refuse(`${path.join(dir, 'nope')}:/mnt/x`, /No such file or directory/);
    refuse(`${path.join(project, 'test_ok.py')}:/mnt/x`, /is not a directory/);
    const r = runCli(['mcp', '--stdio', '--mount', `${project}:/mnt/a`, '--mount', `${out}:/mnt/a:rw`], { timeoutMs: 20_000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /two directories for one box path \/mnt\/a/);
  });
});

describe('exportFile in local mode', () => {
  const exports = path.join(dir, 'exports');
  mkdirSync(exports);
  let srv;
  after(async () => {
    await srv?.close();
  });

  test('copies the file into --export-dir under its name, never over another file', async () => {
    srv = await new McpServer({ args: ['--export-dir', exports], env: { ONLYBOXES_RUNTIME: 'bubblewrap' } }).start();
    const tools = await srv.client.listTools();
    assert.ok(tools.tools.some((t) => t.name === 'exportFile'));
    await srv.sh('mkdir -p build && cd build && printf "artifact v1" > app.tar.gz', { session_id: 'e1', create_if_missing: true });
    const a = await srv.ok('exportFile', { session_id: 'e1', file_path: 'app.tar.gz' });
    assert.deepEqual(a, { path: path.join(exports, 'app.tar.gz'), filename: 'app.tar.gz', size_bytes: 11, mime_type: 'text/plain' });
    assert.equal(readFileSync(a.path, 'utf8'), 'artifact v1');
    await srv.sh('printf "artifact v2" > app.tar.gz', { session_id: 'e1' });
    const b = await srv.ok('exportFile', { session_id: 'e1', file_path: '/workspace/build/app.tar.gz' });
    assert.equal(b.path, path.join(exports, 'app-1.tar.gz'));
    assert.equal(readFileSync(a.path, 'utf8'), 'artifact v1', 'the first export is untouched');
    assert.equal(readFileSync(b.path, 'utf8'), 'artifact v2');
    const d = await srv.fails('exportFile', { session_id: 'e1', file_path: '.' });
    assert.match(d, /^path_is_directory: \. is not a regular file/);
    const m = await srv.fails('exportFile', { session_id: 'e1', file_path: 'missing' });
    assert.match(m, /^file_not_found/);
  });

  test('without --export-dir it is not offered, and a call says what to do', async () => {
    const plain = await new McpServer({ env: { ONLYBOXES_RUNTIME: 'bubblewrap' } }).start();
    try {
      const tools = await plain.client.listTools();
      assert.equal(tools.tools.some((t) => t.name === 'exportFile'), false);
      const text = await plain.fails('exportFile', { session_id: 'x', file_path: 'y' });
      assert.match(text, /start onlyboxes mcp with --export-dir DIR/);
    } finally {
      await plain.close();
    }
    const r = runCli(['mcp', '--stdio', '--export-dir', path.join(dir, 'nope')], { timeoutMs: 20_000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--export-dir .*nope: No such file or directory/);
  });
});
