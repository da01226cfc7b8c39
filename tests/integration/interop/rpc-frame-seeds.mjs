#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// Writes the seed corpus of the rpc_frames fuzz target (tests/fuzz/corpus/rpc_frames/): every
// frame kind of registry.proto encoded by an independent encoder (protobufjs through
// @grpc/proto-loader), the original's frames and ours with extensions, plus a few hand-made
// inputs the decoder must refuse or see as no frame. The seeds are committed; run this again only
// when the proto changes:
//   node tests/integration/interop/rpc-frame-seeds.mjs

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeFull } from './proto.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(here, '../../fuzz/corpus/rpc_frames');
const SID = '3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e';
const NODE = '9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d';
const T = 1767225600000; // 2026-01-01, a fixed time so the seeds do not change

const req = (m) => encodeFull('request', m);
const resp = (m) => encodeFull('response', m);

const seeds = {
  'hello-original': req({
    hello: {
      node_id: NODE,
      node_name: 'worker-docker-9a8b7c6d',
      executor_kind: 'docker',
      labels: { source: 'console-ui', zone: 'eu' },
      version: '1.4.0',
      capabilities: [
        { name: 'echo', max_inflight: 4 },
        { name: 'pythonExec', max_inflight: 4 },
        { name: 'terminalExec', max_inflight: 4 },
      ],
      worker_secret: 'c0ffee'.repeat(10),
      terminal_session_capacity: { max_active_sessions: 16, active_session_count: 2 },
    },
  }),
  'hello-extensions': req({
    hello: {
      node_id: NODE,
      executor_kind: 'bubblewrap',
      capabilities: [{ name: 'echo', max_inflight: 0 }],
      worker_secret: 's',
      extensions: ['cancel', 'output', 'session-recovery'],
      live_sessions: [
        { session_id: 'obx:acc1:s1', lease_expires_unix_ms: T + 60000, busy: true },
        { session_id: 'obx:acc2:s9', lease_expires_unix_ms: T },
      ],
    },
  }),
  heartbeat: req({ heartbeat: { node_id: NODE, session_id: SID, active_session_count: 1 } }),
  'result-payload': req({
    command_result: { command_id: SID, payload_json: Buffer.from('{"output":"42\\n","stderr":"","exit_code":0}'), completed_unix_ms: T },
  }),
  'result-error': req({
    command_result: { command_id: SID, error: { code: 'session_not_found', message: 'session not found' }, completed_unix_ms: T },
  }),
  'result-empty-id': req({ command_result: { command_id: '', error: { code: 'invalid_command_id', message: 'command_id is required' } } }),
  'output-stdout': req({ command_output: { command_id: SID, stream: 1, data: Buffer.from('hello\n') } }),
  'output-log': req({ command_output: { command_id: SID, stream: 3, data: Buffer.from('pulling image'), log_level: 2 } }),
  'ack-original': resp({ connect_ack: { session_id: SID, heartbeat_interval_sec: 5 } }),
  'ack-extensions': resp({ connect_ack: { session_id: SID, heartbeat_interval_sec: 5, extensions: ['cancel', 'output'] } }),
  'heartbeat-ack': resp({ heartbeat_ack: { heartbeat_interval_sec: 5 } }),
  dispatch: resp({
    command_dispatch: {
      command_id: SID,
      capability: 'terminalexec',
      payload_json: Buffer.from('{"command":"pwd","session_id":"obx:acc1:s1","create_if_missing":true,"lease_ttl_sec":60}'),
      deadline_unix_ms: T + 60000,
    },
  }),
  cancel: resp({ command_cancel: { command_id: SID, reason: 'task canceled' } }),
  // No payload at all, and only a field neither side knows (50, varint 1): no frame.
  empty: Buffer.alloc(0),
  'unknown-field': Buffer.from([0x90, 0x03, 0x01]),
  // A hello whose node_id is not UTF-8: refused.
  'hello-not-utf8': Buffer.from([0x0a, 0x03, 0x0a, 0x01, 0xff]),
  // Two payloads in one message: the last one wins.
  'two-payloads': Buffer.concat([
    req({ heartbeat: { node_id: NODE, session_id: SID } }),
    req({ command_result: { command_id: SID, payload_json: Buffer.from('{}') } }),
  ]),
};
// A dispatch cut short in its payload: not a message.
seeds['dispatch-truncated'] = seeds.dispatch.subarray(0, seeds.dispatch.length - 7);

mkdirSync(out, { recursive: true });
for (const [name, bytes] of Object.entries(seeds)) writeFileSync(path.join(out, name), bytes);
console.log(`${Object.keys(seeds).length} seeds in ${out}`);
