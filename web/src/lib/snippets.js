// SPDX-License-Identifier: Apache-2.0
// Ready-made ways to use a new API token, filled with this console's address: MCP clients reach
// it at /mcp with the token as a Bearer header; scripts call the REST API.

import { quote } from './shell.js';

/** The console's /mcp endpoint for a page served at origin ("https://console.example.com"). */
export function mcpUrl(origin) {
  return String(origin).replace(/\/+$/, '') + '/mcp';
}

const json = (v) => JSON.stringify(v, null, 2);

/**
 * The snippets for token at origin: [{ id, title, where, text }]. Every one holds the token in
 * clear: they are shown with it, once, and go when the dialog closes.
 */
export function tokenSnippets(origin, token) {
  const base = String(origin).replace(/\/+$/, '');
  const url = mcpUrl(base);
  const header = `Bearer ${token}`;
  return [
    {
      id: 'claude-code',
      title: 'Claude Code',
      where: 'Run in a terminal (add --scope user for every project).',
      text: `claude mcp add --transport http onlyboxes ${quote(url)} --header ${quote('Authorization: ' + header)}`,
    },
    {
      id: 'claude-desktop',
      title: 'Claude Desktop',
      where: 'claude_desktop_config.json, then restart the app. Claude Desktop starts the mcp-remote bridge from npm (needs Node.js).',
      text: json({
        mcpServers: {
          onlyboxes: {
            command: 'npx',
            args: ['-y', 'mcp-remote', url, '--header', 'Authorization:${ONLYBOXES_AUTH}'],
            env: { ONLYBOXES_AUTH: header },
          },
        },
      }),
    },
    {
      id: 'cursor',
      title: 'Cursor',
      where: '~/.cursor/mcp.json, or .cursor/mcp.json in a project.',
      text: json({ mcpServers: { onlyboxes: { url, headers: { Authorization: header } } } }),
    },
    {
      id: 'vscode',
      title: 'VS Code',
      where: '.vscode/mcp.json in a workspace (Copilot agent mode).',
      text: json({ servers: { onlyboxes: { type: 'http', url, headers: { Authorization: header } } } }),
    },
    {
      id: 'header',
      title: 'HTTP header',
      where: `Any MCP client: the endpoint is ${url}; send this header with every request.`,
      text: `Authorization: ${header}`,
    },
    {
      id: 'curl',
      title: 'curl',
      where: 'Calls the echo command of the REST API: a quick check that the token works.',
      text:
        `curl -sS -X POST ${quote(base + '/api/v1/commands/echo')} \\\n` +
        `  -H ${quote('Authorization: ' + header)} \\\n` +
        `  -H 'Content-Type: application/json' \\\n` +
        `  -d '{"message":"hello from onlyboxes"}'`,
    },
  ];
}
