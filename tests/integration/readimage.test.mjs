// SPDX-License-Identifier: Apache-2.0
// readImage: a file made in a terminal session comes back as MCP image content, typed by its
// bytes, not its name.

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { serverTest, sharedServer } from './lib.mjs';

const server = sharedServer();

// Writes a valid 2x2 RGB PNG to the path in argv[1] and prints the file's base64.
const MAKE_PNG = String.raw`
import base64, struct, sys, zlib
def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xffffffff)
rows = b"".join(b"\x00" + bytes([255, 0, 0, 0, 255, 0]) for _ in range(2))
png = (b"\x89PNG\r\n\x1a\n"
       + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows))
       + chunk(b"IEND", b""))
open(sys.argv[1], "wb").write(png)
print(base64.b64encode(png).decode())
`;

function writePng(srv, session_id, file) {
  const cmd = `cat > /tmp/mkpng.py <<'PYEOF'\n${MAKE_PNG}\nPYEOF\npython3 /tmp/mkpng.py ${file}`;
  return srv.sh(cmd, { session_id });
}

describe('readImage', () => {
  serverTest('returns a PNG written in the session, byte for byte', { server }, async (srv) => {
    const { session_id } = await srv.sh('true');
    const w = await writePng(srv, session_id, '/workspace/img.png');
    assert.equal(w.exit_code, 0, w.stderr);
    const written = Buffer.from(w.stdout.trim(), 'base64');

    const r = await srv.call('readImage', { session_id, file_path: 'img.png' });
    assert.notEqual(r.isError, true, JSON.stringify(r));
    assert.equal(r.content.length, 1, JSON.stringify(r));
    const [img] = r.content;
    assert.equal(img.type, 'image');
    assert.equal(img.mimeType, 'image/png');
    assert.match(img.data, /^[A-Za-z0-9+/]+={0,2}$/, 'plain standard base64, no prefix or line breaks');
    const bytes = Buffer.from(img.data, 'base64');
    assert.deepEqual(bytes.subarray(0, 4), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    assert.ok(bytes.equals(written), 'readImage must return the exact bytes of the file');

    // An absolute path reads the same file.
    const abs = await srv.call('readImage', { session_id, file_path: '/workspace/img.png' });
    assert.equal(abs.content[0].data, img.data);
  });

  serverTest('the type comes from the content, not the name', { server }, async (srv) => {
    const { session_id } = await srv.sh('true');
    await writePng(srv, session_id, '/workspace/picture.txt');
    await srv.sh('printf "just some words\\n" > fake.png', { session_id });

    const png = await srv.call('readImage', { session_id, file_path: 'picture.txt' });
    assert.equal(png.content[0].type, 'image');
    assert.equal(png.content[0].mimeType, 'image/png');

    const text = await srv.call('readImage', { session_id, file_path: 'fake.png' });
    assert.equal(text.content.length, 1, JSON.stringify(text));
    assert.equal(text.content[0].type, 'text');
    assert.equal(text.content[0].text, 'unsupported mime type: text/plain; expected image/*');
  });

  serverTest('a missing file is file_not_found', { server }, async (srv) => {
    const { session_id } = await srv.sh('true');
    const text = await srv.fails('readImage', { session_id, file_path: 'nope.png' });
    assert.match(text, /file_not_found/);
  });

  serverTest('a directory is path_is_directory', { server }, async (srv) => {
    const { session_id } = await srv.sh('mkdir -p d');
    const text = await srv.fails('readImage', { session_id, file_path: 'd' });
    assert.match(text, /path_is_directory/);
  });

  serverTest('an unknown session is session_not_found', { server }, async (srv) => {
    const text = await srv.fails('readImage', { session_id: 'no-such-session-obx', file_path: 'x.png' });
    assert.match(text, /session_not_found/);
  });

  serverTest('argument errors name the field', { server }, async (srv) => {
    assert.match(await srv.fails('readImage', { file_path: 'x.png' }), /session_id/);
    const { session_id } = await srv.sh('true');
    assert.match(await srv.fails('readImage', { session_id }), /file_path/);
    assert.match(await srv.fails('readImage', { session_id, file_path: '' }), /file_path/);
  });
});
