// SPDX-License-Identifier: Apache-2.0
import test from 'node:test';
import assert from 'node:assert/strict';
import { mcpUrl, tokenSnippets } from '../src/lib/snippets.js';

const TOKEN = 'obx_' + 'ab12'.repeat(16);

test('every snippet is filled with this console and the token', () => {
  const s = tokenSnippets('https://console.example.com:8443/', TOKEN);
  assert.deepEqual(s.map((x) => x.id), ['claude-code', 'claude-desktop', 'cursor', 'vscode', 'header', 'curl']);
  for (const x of s) assert.ok(x.text.includes(TOKEN), x.id);
  assert.equal(mcpUrl('https://console.example.com:8443/'), 'https://console.example.com:8443/mcp');
  const by = Object.fromEntries(s.map((x) => [x.id, x.text]));
  assert.equal(by['claude-code'], `claude mcp add --transport http onlyboxes 'https://console.example.com:8443/mcp' --header 'Authorization: Bearer ${TOKEN}'`);
  assert.equal(by.header, `Authorization: Bearer ${TOKEN}`);
  assert.ok(by.curl.startsWith("curl -sS -X POST 'https://console.example.com:8443/api/v1/commands/echo'"));
});

test('the JSON snippets are valid JSON in each client\'s own shape', () => {
  const s = Object.fromEntries(tokenSnippets('http://127.0.0.1:8089', TOKEN).map((x) => [x.id, JSON.parse(x.id === 'claude-code' || x.id === 'header' || x.id === 'curl' ? '{}' : x.text)]));
  assert.deepEqual(s.cursor, { mcpServers: { onlyboxes: { url: 'http://127.0.0.1:8089/mcp', headers: { Authorization: `Bearer ${TOKEN}` } } } });
  assert.deepEqual(s.vscode, { servers: { onlyboxes: { type: 'http', url: 'http://127.0.0.1:8089/mcp', headers: { Authorization: `Bearer ${TOKEN}` } } } });
  const desk = s['claude-desktop'].mcpServers.onlyboxes;
  assert.equal(desk.command, 'npx');
  assert.ok(desk.args.includes('http://127.0.0.1:8089/mcp'));
  assert.equal(desk.env.ONLYBOXES_AUTH, `Bearer ${TOKEN}`);
});

test('a shell-hostile origin stays one quoted word', () => {
  const s = tokenSnippets("http://it's.example", TOKEN).find((x) => x.id === 'claude-code');
  assert.ok(s.text.includes("'http://it'\\''s.example/mcp'"), s.text);
});
