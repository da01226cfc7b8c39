// SPDX-License-Identifier: Apache-2.0
// pythonExec as a data scientist uses it, through the official SDK client on the runtime the suite
// runs on (ONLYBOXES_RUNTIME: bubblewrap, or docker with the data image): the data stack imports
// and works in a box; a pooled box's interpreter, started with ONLYBOXES_PYTHON_PRELOAD before the
// call, behaves as `python3 -c` and passes nothing to the next call; sessions keep variables,
// imports and definitions across calls (and not across sessions), reset starts over, a timeout
// interrupts the code and keeps the state, or says that it was lost; the value of a final
// expression comes back as text (a DataFrame as a table) and figures and images as image content
// that decodes, within the size bounds.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import {
  assertNoProcess,
  describeRun,
  marker,
  resultText,
  runCli,
  serverTest,
  sharedServer,
  sleep,
  sleepMarker,
  waitForProcess,
} from './lib.mjs';

const MAX_SIDE = 1568;
const MAX_BYTES = 400 * 1024;

/**
 * Decodes a PNG for real: signature, chunks, and the pixel data inflated to exactly the size the
 * header promises. Returns { width, height }.
 */
function decodePng(buf) {
  assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  let off = 8;
  let ihdr = null;
  const idat = [];
  let end = false;
  while (off + 8 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') ihdr = data;
    if (type === 'IDAT') idat.push(data);
    off += 12 + len;
    if (type === 'IEND') {
      end = true;
      break;
    }
  }
  assert.ok(ihdr && end, 'PNG has IHDR and IEND');
  const width = ihdr.readUInt32BE(0);
  const height = ihdr.readUInt32BE(4);
  const depth = ihdr[8];
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[ihdr[9]];
  assert.ok(channels && depth === 8, `PNG colour type ${ihdr[9]}, depth ${depth}`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  assert.equal(raw.length, height * (1 + width * channels), 'inflated pixel data has the size of the image');
  return { width, height };
}

/** The image items of a result, each decoded; checked against the size bounds. */
function images(r) {
  const items = (r.content ?? []).filter((c) => c.type === 'image');
  return items.map((c) => {
    const buf = Buffer.from(c.data, 'base64');
    assert.ok(buf.length <= MAX_BYTES, `an image of ${buf.length} bytes is over ${MAX_BYTES}`);
    let size;
    if (c.mimeType === 'image/png') size = decodePng(buf);
    else {
      assert.equal(c.mimeType, 'image/jpeg');
      assert.deepEqual([...buf.subarray(0, 2)], [0xff, 0xd8], 'JPEG start');
      assert.deepEqual([...buf.subarray(-2)], [0xff, 0xd9], 'JPEG end');
      size = null;
    }
    if (size) assert.ok(Math.max(size.width, size.height) <= MAX_SIDE, `${size.width}x${size.height} is over ${MAX_SIDE} px`);
    return { mime: c.mimeType, ...size, bytes: buf.length };
  });
}

/** pythonExec that must succeed; returns the whole CallToolResult. */
async function py(srv, code, extra = {}) {
  const r = await srv.call('pythonExec', { code, ...extra });
  assert.notEqual(r.isError, true, `pythonExec failed: ${resultText(r)}`);
  return r;
}

/**
 * Runs code until it runs in a pooled box's prepared interpreter: the pool
 * fills in the background after the server starts, and a call that finds it empty runs cold.
 * The code's output gets a last line saying whether pandas was imported before it ran; returns
 * the result of the first call that ran prepared, without that line.
 */
async function prepared(srv, code) {
  const probe = 'import sys as _obx_sys\n_obx_warm = "pandas" in _obx_sys.modules\ndel _obx_sys\n';
  const tail = '\nprint(_obx_warm)';
  const deadline = Date.now() + 100_000; // imports on a loaded machine take a while
  while (Date.now() < deadline) {
    const r = await py(srv, probe + code + tail);
    assert.equal(r.structuredContent.exit_code, 0, r.structuredContent.stderr);
    const out = r.structuredContent.output;
    if (out.endsWith('True\n')) {
      r.structuredContent.output = out.slice(0, -'True\n'.length);
      return r;
    }
    await sleep(500);
  }
  assert.fail('no call ever ran in a prepared interpreter');
}

describe('the data stack in a box', () => {
  const server = sharedServer();

  serverTest('numpy, pandas, matplotlib, pillow and scipy import and work', { server }, async (srv) => {
    const code = [
      'import numpy as np, pandas as pd, scipy.stats, PIL.Image, io',
      'import matplotlib, matplotlib.pyplot as plt',
      'df = pd.DataFrame({"a": np.arange(10)})',
      'print(df["a"].sum(), round(float(scipy.stats.norm.cdf(0)), 2), matplotlib.get_backend())',
      'fig = plt.figure(); plt.plot(df["a"]); b = io.BytesIO(); fig.savefig(b, format="png")',
      'print(PIL.Image.open(io.BytesIO(b.getvalue())).size)',
    ].join('\n');
    const r = await py(srv, code);
    assert.equal(r.structuredContent.stderr, '');
    assert.equal(r.structuredContent.output, '45 0.5 agg\n(640, 480)\n');
    // The same in a terminal session: python3 as the user runs it.
    const t = await srv.sh(`python3 -c 'import matplotlib.pyplot as plt, pandas; plt.plot([1]); plt.savefig("p.png"); print("ok")' && ls -A`);
    assert.equal(t.stdout, 'ok\np.png\n', t.stderr);
  });
});

describe('ONLYBOXES_PYTHON_PRELOAD', () => {
  test('doctor says which Python the boxes have and what of the preload imports there', () => {
    const r = runCli(['doctor'], { env: { ONLYBOXES_PYTHON_PRELOAD: 'numpy,obx_no_such_module' } });
    assert.equal(r.status, 0, describeRun(r));
    assert.match(r.stdout, /^python: +3\.\d+\.\d+ in a box; ONLYBOXES_PYTHON_PRELOAD numpy, obx_no_such_module: imported in \d+\.\d s; skipped, as not importable: obx_no_such_module \(ModuleNotFoundError: No module named 'obx_no_such_module'\)$/m, r.stdout);
  });

  test('a malformed list is refused, naming the variable and the entry', () => {
    for (const [value, why] of [
      ['numpy,,pandas', /ONLYBOXES_PYTHON_PRELOAD: "" is not a module name/],
      ['numpy;rm', /ONLYBOXES_PYTHON_PRELOAD: "numpy;rm" is not a module name/],
      ['numpy,', /ONLYBOXES_PYTHON_PRELOAD: the list ends with a comma/],
    ]) {
      const r = runCli(['doctor'], { env: { ONLYBOXES_PYTHON_PRELOAD: value } });
      assert.equal(r.status, 1, describeRun(r));
      assert.match(r.stdout, why, describeRun(r));
    }
  });
});

describe('a warm interpreter in every pooled box', () => {
  const server = sharedServer();

  serverTest('the call runs in a prepared interpreter, as python3 -c would run it', { server }, async (srv) => {
    const code = [
      'import os, sys',
      'print(__name__, sys.argv, sys.path[0] == "", os.getcwd(), os.listdir("."))',
      'print(sorted(k for k in globals() if not k.startswith("__") and not k.startswith("_obx")))',
    ].join('\n');
    const r = await prepared(srv, code);
    assert.equal(r.structuredContent.output, "__main__ ['-c'] True /workspace []\n['os', 'sys']\n");
    // What the exit status and a traceback look like is python3 -c's (tools.test.mjs checks the
    // same on whatever box takes the call).
    const err = await prepared(srv, 'import sys\ndef f():\n    raise ValueError("boom")\ntry:\n    f()\nexcept ValueError:\n    import traceback; traceback.print_exc(file=sys.stdout)');
    assert.match(err.structuredContent.output, /^Traceback \(most recent call last\):\n  File "<string>", line 8, in <module>\n  File "<string>", line 6, in f\nValueError: boom\n$/);
  });

  serverTest("the code has the box's memory limit on top of what the preload took", { server }, async (srv) => {
    // ONLYBOXES_BOX_MEMORY_MB (512 by default) is each process's address space: the preload's
    // imports do not eat into the code's share of it. Mapped, not touched, so that a box's
    // memory cgroup (docker's 256 MiB) is not what answers.
    const r = await prepared(srv, 'import mmap, sys\nm = mmap.mmap(-1, 400 << 20)\nprint(len(m) >> 20)');
    assert.equal(r.structuredContent.output, '400\n');
    const over = await prepared(srv, 'import mmap, sys\ntry:\n    m = mmap.mmap(-1, 600 << 20)\nexcept OSError as e:\n    print("refused", e.strerror)');
    assert.equal(over.structuredContent.output, 'refused Cannot allocate memory\n');
  });

  serverTest('nothing of a call is visible to the next one', { server }, async (srv) => {
    const m = marker('left');
    const first = [
      'import builtins, json, os, threading, time',
      `builtins.${m} = 1`,
      `${m} = 2`,
      'json.dumps = lambda *a, **k: "patched"',
      `open("/workspace/${m}.txt", "w").write("x")`,
      `open("/tmp/${m}.txt", "w").write("x")`,
      `os.environ["${m}"] = "1"`,
      `threading.Thread(target=time.sleep, args=(600,), name="${m}", daemon=True).start()`,
      'print("set")',
    ].join('\n');
    assert.equal((await prepared(srv, first)).structuredContent.output, 'set\n');
    const second = [
      'import builtins, json, os, threading',
      `print(hasattr(builtins, "${m}"), "${m}" in globals(), json.dumps([1]))`,
      `print(os.path.exists("/workspace/${m}.txt"), os.path.exists("/tmp/${m}.txt"), "${m}" in os.environ)`,
      `print([t.name for t in threading.enumerate() if t.name == "${m}"])`,
    ].join('\n');
    assert.equal((await prepared(srv, second)).structuredContent.output, 'False False [1]\nFalse False False\n[]\n');
  });

  serverTest('a timeout kills the prepared interpreter and what it started', { server }, async (srv) => {
    await prepared(srv, 'pass'); // the pool is warm: the next call most likely takes a prepared box
    const secs = sleepMarker();
    const code = `import subprocess, time\nsubprocess.Popen(["sleep", "${secs}"])\ntime.sleep(1000)`;
    const r = await srv.call('pythonExec', { code, timeout_ms: 1500 });
    assert.equal(r.isError, true, JSON.stringify(r));
    assert.match(resultText(r), /deadline_exceeded: command timed out after 1500 ms; its processes were killed/);
    await assertNoProcess(secs, 2000, 'after the timeout');
  });
});

describe('python that remembers, in a session', () => {
  const server = sharedServer();

  serverTest('variables, imports and definitions live on, in that session only', { server }, async (srv) => {
    const s = marker('py');
    const a = await py(srv, 'import math\nx = 41\ndef twice(v):\n    return 2 * v', { session_id: s, create_if_missing: true });
    assert.equal(a.structuredContent.created, true);
    assert.equal(a.structuredContent.interpreter, 'new');
    assert.equal(a.structuredContent.session_id, s);
    assert.equal(a.structuredContent.result, undefined);
    const b = await py(srv, 'x += 1\ntwice(x), math.pi > 3', { session_id: s });
    assert.equal(b.structuredContent.result, '(84, True)');
    assert.equal(b.structuredContent.interpreter, 'kept');
    assert.equal(b.structuredContent.created, false);
    // Another session knows nothing of it.
    const other = await py(srv, 'x', { session_id: marker('py'), create_if_missing: true });
    assert.equal(other.structuredContent.exit_code, 1);
    assert.match(other.structuredContent.stderr, /NameError: name 'x' is not defined/);
    // Without a session_id nothing is kept either.
    const fresh = await py(srv, 'print("x" in globals())');
    assert.equal(fresh.structuredContent.output, 'False\n');
    assert.equal(fresh.structuredContent.session_id, undefined);
    // An unknown session is an error unless create_if_missing.
    const missing = await srv.fails('pythonExec', { code: '1', session_id: marker('none') });
    assert.match(missing, /^session_not_found/);
  });

  serverTest('a session shares its files with terminalExec', { server }, async (srv) => {
    const s = marker('py');
    await srv.sh('echo from-shell > shared.txt', { session_id: s, create_if_missing: true });
    const r = await py(srv, 'open("shared.txt").read().strip()', { session_id: s });
    assert.equal(r.structuredContent.result, "'from-shell'");
    await py(srv, 'open("back.txt", "w").write("from-python")', { session_id: s });
    assert.equal((await srv.sh('cat back.txt', { session_id: s })).stdout, 'from-python');
  });

  serverTest('reset starts a fresh interpreter and keeps the files', { server }, async (srv) => {
    const s = marker('py');
    await py(srv, 'x = 1\nopen("kept.txt", "w").write("k")', { session_id: s, create_if_missing: true });
    const r = await py(srv, 'import os\nprint("x" in globals(), os.path.exists("kept.txt"))', { session_id: s, reset: true });
    assert.equal(r.structuredContent.output, 'False True\n');
    assert.equal(r.structuredContent.interpreter, 'new');
  });

  serverTest('a timeout interrupts the code, kills what it started and keeps the variables', { server }, async (srv) => {
    const s = marker('py');
    await py(srv, 'x = 7', { session_id: s, create_if_missing: true });
    const secs = sleepMarker();
    const code = `import subprocess, time\np = subprocess.Popen(["setsid", "sleep", "${secs}"])\ny = 1\ntime.sleep(1000)`;
    const r = await srv.call('pythonExec', { code, session_id: s, timeout_ms: 1500 });
    assert.equal(r.isError, true, JSON.stringify(r));
    assert.match(resultText(r), /^deadline_exceeded: the code ran past 1500 ms; it was interrupted \(KeyboardInterrupt\) and stopped, and the processes it started were killed: the session's variables, imports and definitions are kept$/);
    await assertNoProcess(secs, 2000, 'after the interrupt');
    const after = await py(srv, 'x, y', { session_id: s });
    assert.equal(after.structuredContent.result, '(7, 1)');
    assert.equal(after.structuredContent.interpreter, 'kept');
  });

  serverTest('code that ignores the interrupt is killed, and the session says its variables are gone', { server }, async (srv) => {
    const s = marker('py');
    await py(srv, 'x = 7', { session_id: s, create_if_missing: true });
    const code = 'import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass';
    const r = await srv.call('pythonExec', { code, session_id: s, timeout_ms: 1000 });
    assert.equal(r.isError, true, JSON.stringify(r));
    assert.match(resultText(r), /^deadline_exceeded: the code ran past 1000 ms; it was interrupted, but the interpreter did not stop within 1000 ms of the interrupt, so it was killed: the session's variables are gone/);
    const after = await py(srv, '"x" in globals()', { session_id: s });
    assert.equal(after.structuredContent.result, 'False');
    assert.equal(after.structuredContent.interpreter, 'new');
    assert.match(after.structuredContent.notes.join('\n'), /previous interpreter had ended \(the interpreter did not stop/);
  });

  serverTest('an interpreter that dies during a call is reported, and the next call starts anew', { server }, async (srv) => {
    const s = marker('py');
    await py(srv, 'x = 7', { session_id: s, create_if_missing: true });
    const r = await py(srv, 'import os\nprint("bye", flush=True)\nos._exit(5)', { session_id: s });
    assert.equal(r.structuredContent.exit_code, 5);
    assert.equal(r.structuredContent.output, 'bye\n');
    assert.match(r.structuredContent.notes.join('\n'), /during the call the interpreter exited with status 5: the session's variables are gone/);
    const after = await py(srv, '"x" in globals()', { session_id: s });
    assert.equal(after.structuredContent.result, 'False');
    assert.equal(after.structuredContent.interpreter, 'new');
  });

  serverTest('cancelling a session call interrupts it and keeps the variables', { server }, async (srv) => {
    const s = marker('py');
    await py(srv, 'x = 9', { session_id: s, create_if_missing: true });
    const secs = sleepMarker();
    const ac = new AbortController();
    const call = srv.call('pythonExec', { code: `import subprocess\nsubprocess.run(["sleep", "${secs}"])`, session_id: s }, { signal: ac.signal });
    assert.ok((await waitForProcess(secs, 20_000)).length > 0, 'the code never started');
    ac.abort('test cancels');
    await assert.rejects(call);
    await assertNoProcess(secs, 2000, 'after notifications/cancelled');
    // The session is free again (a cancelled call's session waits for its processes to go).
    const after = await py(srv, 'x', { session_id: s });
    assert.equal(after.structuredContent.result, '9');
  });

  serverTest('arguments that make no sense are refused with the field named', { server }, async (srv) => {
    assert.match(await srv.fails('pythonExec', { code: '1', reset: true }), /"reset" needs "session_id"/);
    assert.match(await srv.fails('pythonExec', { code: '1', create_if_missing: true }), /"create_if_missing" needs "session_id"/);
    assert.match(await srv.fails('pythonExec', { code: '1', lease_ttl_sec: 100 }), /"lease_ttl_sec" needs "session_id"/);
    assert.match(await srv.fails('pythonExec', { code: '1', session_id: 'bad id' }), /"session_id" must be 1-128 visible ASCII characters/);
    assert.match(await srv.fails('pythonExec', { code: '1', session_id: marker('py'), create_if_missing: true, lease_ttl_sec: 1 }), /lease_ttl_sec must be between/);
  });
});

describe('values and pictures', () => {
  const server = sharedServer();

  serverTest('the value of a final expression comes back as text, as a REPL shows it', { server }, async (srv) => {
    assert.equal((await py(srv, 'x = 20\nx + 22')).structuredContent.result, '42');
    assert.equal((await py(srv, '"a" * 3')).structuredContent.result, "'aaa'");
    assert.equal((await py(srv, 'print("only output")')).structuredContent.result, undefined);
    assert.equal((await py(srv, '1 + 1;')).structuredContent.result, undefined, 'a trailing semicolon hides it');
    assert.equal((await py(srv, 'None')).structuredContent.result, undefined);
    const long = await py(srv, '"x" * 300000');
    assert.ok(long.structuredContent.result.length < 110_000);
    assert.match(long.structuredContent.result, /the value's text is 300002 characters; the first 100000 are shown/);
  });

  serverTest('a DataFrame comes back as a readable table, cut with a note', { server }, async (srv) => {
    const small = await py(srv, 'import pandas as pd\npd.DataFrame({"name": ["a", "b"], "n": [1, 2]})');
    assert.equal(small.structuredContent.result, '  name  n\n0    a  1\n1    b  2');
    const big = await py(srv, 'import pandas as pd, numpy as np\npd.DataFrame(np.arange(30000).reshape(1000, 30))');
    const text = big.structuredContent.result;
    assert.ok(text.split('\n').length < 40, text);
    assert.match(text, /\[1000 rows x 30 columns\]/);
    assert.match(text, /DataFrame of 1000 rows and 30 columns, cut to fit/);
  });

  serverTest('matplotlib figures come back as PNG images that decode, shown or left open', { server }, async (srv) => {
    const code = [
      'import matplotlib.pyplot as plt',
      'plt.plot([1, 3, 2]); plt.title("first"); plt.show()',
      'plt.figure(figsize=(4, 3)); plt.bar(["a", "b"], [3, 5])',
    ].join('\n');
    const r = await py(srv, code);
    const got = images(r);
    assert.equal(got.length, 2, JSON.stringify(r.structuredContent));
    assert.ok(got.every((g) => g.mime === 'image/png'));
    assert.ok(got[0].width > 300 && got[0].width <= 640 && got[0].height <= 480, JSON.stringify(got));
    assert.ok(got[1].width <= 400 && got[1].height <= 300, JSON.stringify(got));
    // structuredContent lists them without their data.
    assert.deepEqual(r.structuredContent.images.map((i) => [i.mime_type, i.width, i.height]), got.map((g) => [g.mime, g.width, g.height]));
    assert.ok(!('data' in r.structuredContent.images[0]));
    assert.equal(r.structuredContent.notes, undefined);
  });

  serverTest('a figure too large is drawn smaller, and the note says so', { server }, async (srv) => {
    const r = await py(srv, 'import matplotlib.pyplot as plt\nfig = plt.figure(figsize=(40, 30), dpi=100)\nplt.plot(range(100))\nfig');
    const got = images(r);
    assert.equal(got.length, 1, 'the final value and the open figure are the same figure, shown once');
    assert.ok(Math.max(got[0].width, got[0].height) > 1000, JSON.stringify(got));
    assert.match(r.structuredContent.notes.join('\n'), /figure 1 was drawn at \d+x\d+ px \(\d+ dpi\) to fit the image limits \(longest side 1568 px, 400 KB\)/);
    assert.match(r.structuredContent.result, /^<Figure size 4000x3000 with 1 Axes>$/);
  });

  serverTest('a PIL image as the final value comes back as an image, scaled down when large', { server }, async (srv) => {
    const small = await py(srv, 'from PIL import Image\nImage.new("RGB", (120, 80), "red")');
    assert.deepEqual(images(small).map((g) => [g.mime, g.width, g.height]), [['image/png', 120, 80]]);
    const noisy = await py(srv, 'import os\nfrom PIL import Image\nImage.frombytes("RGB", (3000, 2000), os.urandom(3000 * 2000 * 3))');
    const got = images(noisy);
    assert.equal(got.length, 1);
    assert.match(noisy.structuredContent.notes.join('\n'), /the final value \(an image\) \(3000x2000 px\) was scaled down to 1568x1045 px/);
    assert.match(noisy.structuredContent.notes.join('\n'), /re-encoded as JPEG/);
  });

  serverTest('at most 8 images per call; the note counts the rest', { server }, async (srv) => {
    const r = await py(srv, 'import matplotlib.pyplot as plt\nfor i in range(11):\n    plt.figure(figsize=(2, 2)); plt.plot([i, 0])');
    assert.equal(images(r).length, 8);
    assert.match(r.structuredContent.notes.join('\n'), /3 more image\(s\) left out: at most 8 per call/);
  });

  serverTest('in a session, figures are shown once and the next call starts with none', { server }, async (srv) => {
    const s = marker('py');
    const a = await py(srv, 'import matplotlib.pyplot as plt\nplt.plot([1, 2])', { session_id: s, create_if_missing: true });
    assert.equal(images(a).length, 1);
    const b = await py(srv, 'len(plt.get_fignums())', { session_id: s });
    assert.equal(images(b).length, 0);
    assert.equal(b.structuredContent.result, '0');
  });
});
