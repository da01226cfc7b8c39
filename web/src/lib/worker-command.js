// SPDX-License-Identifier: Apache-2.0
// The worker startup tool: from a form's values to the command that starts `onlyboxes worker`
// (or the environment file of its systemd unit), with the checks `onlyboxes worker` makes at
// start-up done here first, and warnings for settings that work but are probably not meant.
// Runs in the browser only: no value goes to the console.

import { quote, quoteIfNeeded } from './shell.js';

const MIB = 1024 * 1024;

/**
 * Every setting, in the form's order. kind: text | int | bool | choice | lines (one entry per
 * line, joined with commas) | labels (k=v per line). An empty value means the worker's default
 * and is left out of the command, except for required settings. min/max: the worker's bounds.
 */
export const WORKER_FIELDS = [
  { key: 'WORKER_CONSOLE_GRPC_TARGET', group: 'connection', kind: 'text', label: 'Console gRPC address', required: true, def: '127.0.0.1:50051', help: 'HOST:PORT of the console\'s workers port (CONSOLE_GRPC_ADDR or CONSOLE_GRPC_PUBLIC_ADDR).' },
  { key: 'WORKER_CONSOLE_INSECURE', group: 'connection', kind: 'bool', label: 'Plaintext connection (no TLS)', help: 'Only for a console whose workers port has no certificate.' },
  { key: 'WORKER_CONSOLE_CA_FILE', group: 'connection', kind: 'text', label: 'CA file', placeholder: "the system's roots", help: 'PEM CA bundle that signed the console\'s certificate.' },
  { key: 'WORKER_CONSOLE_CERT_FILE', group: 'connection', kind: 'text', label: 'Client certificate file', help: 'PEM, for a console that requires mutual TLS.' },
  { key: 'WORKER_CONSOLE_KEY_FILE', group: 'connection', kind: 'text', label: 'Client key file', help: 'The private key of that certificate.' },

  { key: 'WORKER_ID', group: 'identity', kind: 'text', label: 'Worker ID', required: true, help: 'The node id the console showed when it created the worker.' },
  { key: 'WORKER_SECRET', group: 'identity', kind: 'text', label: 'Worker secret', required: true, secret: true, help: 'Shown once by the console, with the ID.' },
  { key: 'WORKER_NODE_NAME', group: 'identity', kind: 'text', label: 'Node name', placeholder: 'worker-RUNTIME-ID', help: 'The name the console shows.' },
  { key: 'WORKER_VERSION', group: 'identity', kind: 'text', label: 'Version', placeholder: "this build's", help: 'The version the console shows.' },
  { key: 'WORKER_LABELS', group: 'identity', kind: 'labels', label: 'Labels', placeholder: 'zone=eu-1', help: 'One key=value per line.' },

  { key: 'WORKER_HEARTBEAT_INTERVAL_SEC', group: 'heartbeat', kind: 'int', label: 'Heartbeat interval (s)', min: 1, max: 3600, def: 5, emit: true, help: 'Until the console says its own.' },
  { key: 'WORKER_HEARTBEAT_JITTER_PCT', group: 'heartbeat', kind: 'int', label: 'Heartbeat jitter (%)', min: 0, max: 100, def: 20, emit: true, help: 'Random spread of the interval.' },
  { key: 'WORKER_CALL_TIMEOUT_SEC', group: 'heartbeat', kind: 'int', label: 'Call timeout (s)', min: 1, max: 3600, manualOnly: true, help: 'How long an answer from the console may take; automatic: 2.5 × the interval.' },
  { key: 'WORKER_DRAIN_TIMEOUT_SEC', group: 'heartbeat', kind: 'int', label: 'Drain timeout (s)', min: 0, max: 86400, def: 30, help: 'On SIGTERM, how long running commands may go on.' },

  { key: 'WORKER_MAX_INFLIGHT', group: 'capacity', kind: 'int', label: 'Calls per capability at once', min: 1, max: 256, def: 16 },
  { key: 'ONLYBOXES_MAX_SESSIONS', group: 'capacity', kind: 'int', label: 'Terminal sessions', min: 1, max: 4096, def: 64 },
  { key: 'ONLYBOXES_WARM_POOL', group: 'capacity', kind: 'int', label: 'Warm boxes per image', min: 0, max: 32, def: 2 },
  { key: 'WORKER_TERMINAL_LEASE_MIN_SEC', group: 'capacity', kind: 'int', label: 'Shortest session lease (s)', min: 1, max: 86400, def: 60 },
  { key: 'WORKER_TERMINAL_LEASE_MAX_SEC', group: 'capacity', kind: 'int', label: 'Longest session lease (s)', min: 1, max: 86400, def: 1800 },
  { key: 'WORKER_TERMINAL_LEASE_DEFAULT_SEC', group: 'capacity', kind: 'int', label: 'Default session lease (s)', min: 1, max: 86400, def: 60 },
  { key: 'WORKER_TERMINAL_OUTPUT_LIMIT_BYTES', group: 'capacity', kind: 'int', label: 'Output kept per stream (bytes)', min: 1024, max: 16 * MIB, def: MIB },
  { key: 'WORKER_READ_IMAGE_LIMIT_BYTES', group: 'capacity', kind: 'int', label: 'Largest image read (bytes)', min: 1024, max: 16 * MIB, def: 5 * MIB },

  { key: 'ONLYBOXES_RUNTIME', group: 'boxes', kind: 'choice', label: 'Runtime', choices: ['auto', 'bubblewrap', 'docker'], help: 'auto: docker when its daemon answers, else bubblewrap.' },
  { key: 'ONLYBOXES_BOX_MEMORY_MB', group: 'boxes', kind: 'int', label: 'Memory per process (MiB)', min: 16, max: 65536, def: 512 },
  { key: 'ONLYBOXES_BOX_PIDS', group: 'boxes', kind: 'int', label: 'Processes per box', min: 8, max: 65536, def: 128 },
  { key: 'ONLYBOXES_BOX_WORKSPACE_MB', group: 'boxes', kind: 'int', label: 'Workspace size (MiB)', min: 16, max: 65536, placeholder: "the runtime's" },
  { key: 'WORKER_PYTHON_EXEC_DOCKER_IMAGE', group: 'boxes', kind: 'text', label: 'pythonExec image (docker)', placeholder: 'the default image' },
  { key: 'WORKER_TERMINAL_EXEC_DOCKER_IMAGE', group: 'boxes', kind: 'text', label: 'Terminal image (docker)', placeholder: 'the default image' },
  { key: 'ONLYBOXES_ALLOW_NETWORK', group: 'boxes', kind: 'choice', label: 'Full network for boxes that ask', choices: ['false', 'true'], help: '"network": true in a call.' },
  { key: 'WORKER_EGRESS_ALLOW', group: 'boxes', kind: 'lines', label: 'Egress allow-list', placeholder: 'pypi.org\nfiles.pythonhosted.org', help: 'Hosts a box started with "network": "allowlist" may reach, one per line.' },
  { key: 'ONLYBOXES_LOG_LEVEL', group: 'boxes', kind: 'choice', label: 'Log level', choices: ['debug', 'info', 'warn', 'error'] },
];

export const WORKER_GROUPS = [
  { id: 'connection', title: 'Connection' },
  { id: 'identity', title: 'Identity' },
  { id: 'heartbeat', title: 'Heartbeat and shutdown' },
  { id: 'capacity', title: 'Capacity and terminal sessions' },
  { id: 'boxes', title: 'Boxes, network and logs' },
];

/** The form's starting values: every field empty but the defaults a user expects to see. */
export function defaultWorkerValues() {
  const v = { binary: 'onlyboxes', callTimeoutMode: 'auto' };
  for (const f of WORKER_FIELDS) {
    if (f.kind === 'bool') v[f.key] = false;
    else if (f.key === 'WORKER_CONSOLE_GRPC_TARGET' || f.emit) v[f.key] = String(f.def);
    else v[f.key] = '';
  }
  return v;
}

/** HOST:PORT, [IPv6]:PORT: false when there is no port from 1 to 65535 or no host. */
export function validTarget(target) {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(target);
  return !!m && Number(m[2]) >= 1 && Number(m[2]) <= 65535;
}

function loopbackTarget(target) {
  return /^(localhost|127\.[0-9.]+|\[::1\]):/.test(target);
}

/** WORKER_LABELS from "k=v" lines: the last value of a key wins; bad lines are reported. */
export function parseLabels(text) {
  const map = new Map();
  const bad = [];
  for (const raw of String(text || '').split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.indexOf('=');
    const key = eq > 0 ? line.slice(0, eq).trim() : '';
    const value = eq > 0 ? line.slice(eq + 1).trim() : '';
    if (!key || line.includes(',') || /\s/.test(key)) {
      bad.push(line);
      continue;
    }
    map.delete(key); // a repeated key moves to where it was given last
    map.set(key, value);
  }
  return { csv: [...map].map(([k, v]) => `${k}=${v}`).join(','), bad };
}

/** One entry per non-empty line, trimmed. */
function lines(text) {
  return String(text || '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

function intValue(s) {
  const t = String(s ?? '').trim();
  return /^-?[0-9]+$/.test(t) ? Number(t) : NaN;
}

/**
 * Builds the startup command from the form's values. Returns
 * { errors: [{ key, message }], warnings: [string], env: [[NAME, value]], command, envFile }.
 * command and envFile are '' while there are errors.
 */
export function buildWorkerCommand(values) {
  const errors = [];
  const warnings = [];
  const env = [];
  const ints = {};
  const err = (key, message) => errors.push({ key, message });

  for (const f of WORKER_FIELDS) {
    const raw = values[f.key];
    if (f.kind === 'bool') continue;
    const text = typeof raw === 'string' ? raw.trim() : '';
    if (f.kind !== 'lines' && f.kind !== 'labels' && /[\n\r\0]/.test(text)) {
      err(f.key, `${f.key} must be one line.`);
      continue;
    }
    if (f.required && !text) {
      err(f.key, `${f.label} is required (${f.key}).`);
      continue;
    }
    if (f.kind === 'int') {
      if (f.manualOnly && values.callTimeoutMode !== 'manual') continue;
      if (!text) {
        if (f.manualOnly) err(f.key, `${f.label}: enter a number of seconds, or choose automatic.`);
        continue;
      }
      const n = intValue(text);
      if (!Number.isInteger(n) || n < f.min || n > f.max) {
        err(f.key, `${f.key} must be a whole number from ${f.min} to ${f.max}.`);
        continue;
      }
      ints[f.key] = n;
    }
  }
  if (!String(values.binary || '').trim()) err('binary', 'The path of onlyboxes is required.');

  const id = String(values.WORKER_ID || '').trim();
  if (id && new TextEncoder().encode(id).length > 128) err('WORKER_ID', 'WORKER_ID may be at most 128 bytes.');
  const target = String(values.WORKER_CONSOLE_GRPC_TARGET || '').trim();
  if (target && !validTarget(target)) err('WORKER_CONSOLE_GRPC_TARGET', 'The console address must be HOST:PORT (IPv6 as [ADDRESS]:PORT).');
  const cert = String(values.WORKER_CONSOLE_CERT_FILE || '').trim();
  const key = String(values.WORKER_CONSOLE_KEY_FILE || '').trim();
  if (!cert !== !key) err(cert ? 'WORKER_CONSOLE_KEY_FILE' : 'WORKER_CONSOLE_CERT_FILE', 'A client certificate needs both its certificate file and its key file.');

  const labels = parseLabels(values.WORKER_LABELS);
  if (labels.bad.length) {
    warnings.push(`${labels.bad.length} label line${labels.bad.length > 1 ? 's are' : ' is'} not key=value (or holds a comma) and left out: ${labels.bad.join('; ')}.`);
  }

  // Leases: the worker raises the longest to the shortest and clamps the default; say so.
  const leaseMin = ints.WORKER_TERMINAL_LEASE_MIN_SEC ?? 60;
  let leaseMax = ints.WORKER_TERMINAL_LEASE_MAX_SEC ?? 1800;
  if (leaseMax < leaseMin) {
    warnings.push(`The longest lease (${leaseMax} s) is below the shortest (${leaseMin} s): it becomes ${leaseMin} s.`);
    leaseMax = leaseMin;
    ints.WORKER_TERMINAL_LEASE_MAX_SEC = leaseMax;
  }
  if ('WORKER_TERMINAL_LEASE_DEFAULT_SEC' in ints) {
    const d = ints.WORKER_TERMINAL_LEASE_DEFAULT_SEC;
    const c = Math.min(Math.max(d, leaseMin), leaseMax);
    if (c !== d) {
      warnings.push(`The default lease (${d} s) is outside ${leaseMin}–${leaseMax} s: it becomes ${c} s.`);
      ints.WORKER_TERMINAL_LEASE_DEFAULT_SEC = c;
    }
  }

  const interval = ints.WORKER_HEARTBEAT_INTERVAL_SEC ?? 5;
  if (values.callTimeoutMode === 'manual' && ints.WORKER_CALL_TIMEOUT_SEC !== undefined && ints.WORKER_CALL_TIMEOUT_SEC < 2 * interval) {
    warnings.push(`A call timeout below twice the heartbeat interval (${2 * interval} s) can drop a healthy connection on a slow network.`);
  }
  if (values.WORKER_CONSOLE_INSECURE) {
    if (target && !loopbackTarget(target)) warnings.push('Plaintext: the secret and every command and result cross the network unencrypted. Use it only on a network you trust.');
    if (String(values.WORKER_CONSOLE_CA_FILE || '').trim() || cert) warnings.push('The TLS files are not used on a plaintext connection.');
  }
  if (values.ONLYBOXES_ALLOW_NETWORK === 'true') warnings.push('Boxes that ask for it get the full network of this host.');
  if (values.ONLYBOXES_RUNTIME === 'bubblewrap' && (String(values.WORKER_PYTHON_EXEC_DOCKER_IMAGE || '').trim() || String(values.WORKER_TERMINAL_EXEC_DOCKER_IMAGE || '').trim())) {
    warnings.push('The docker images are not used with the bubblewrap runtime.');
  }

  if (errors.length) return { errors, warnings, env: [], command: '', envFile: '' };

  for (const f of WORKER_FIELDS) {
    const raw = values[f.key];
    if (f.kind === 'bool') {
      if (raw) env.push([f.key, 'true']);
      continue;
    }
    if (f.kind === 'int') {
      if (f.key in ints) env.push([f.key, String(ints[f.key])]);
      continue;
    }
    if (f.kind === 'labels') {
      if (labels.csv) env.push([f.key, labels.csv]);
      continue;
    }
    if (f.kind === 'lines') {
      const l = lines(raw);
      if (l.length) env.push([f.key, l.join(',')]);
      continue;
    }
    const text = String(raw || '').trim();
    if (text) env.push([f.key, text]);
  }
  const binary = String(values.binary).trim();
  const command = env.map(([k, v]) => `${k}=${quote(v)} \\`).concat(`${quoteIfNeeded(binary)} worker`).join('\n');
  const envFile = env.map(([k, v]) => `${k}=${envFileValue(v)}`).join('\n') + '\n';
  return { errors, warnings, env, command, envFile };
}

/** A value for a systemd EnvironmentFile line: bare when plain, else double-quoted. */
function envFileValue(v) {
  return /^[A-Za-z0-9_@%+=:,./-]*$/.test(v) ? v : '"' + v.replace(/[\\"$`]/g, (c) => '\\' + c) + '"';
}
