// SPDX-License-Identifier: Apache-2.0
// The hellos an original console refuses, with the gRPC status code and message it refuses each
// with (reference §3.2), for any console under test: run each on a bare Connect stream and compare
// the stream's status.

import { grpc } from './proto.mjs';
import { openStream } from './original-worker.mjs';

const S = grpc.status;

/**
 * nodeId and secret: a provisioned worker's. Each case: name, the frames to send (then the stream
 * is half-closed), the expected {code, details}.
 */
export function handshakeCases({ nodeId, secret }) {
  const hello = (fields) => ({
    hello: {
      node_id: nodeId,
      node_name: 'handshake-check',
      executor_kind: 'docker',
      version: 'original-worker',
      capabilities: [{ name: 'echo', max_inflight: 4 }],
      worker_secret: secret,
      ...fields,
    },
  });
  return [
    { name: 'no frame at all', frames: [], code: S.INVALID_ARGUMENT, details: 'first frame must be hello' },
    {
      name: 'a heartbeat first',
      frames: [{ heartbeat: { node_id: nodeId, session_id: '00000000-0000-4000-8000-000000000000' } }],
      code: S.INVALID_ARGUMENT,
      details: 'first frame must be hello',
    },
    {
      name: 'a command result first',
      frames: [{ command_result: { command_id: 'c1', payload_json: Buffer.from('{}') } }],
      code: S.INVALID_ARGUMENT,
      details: 'first frame must be hello',
    },
    { name: 'a blank node_id', frames: [hello({ node_id: '  ' })], code: S.INVALID_ARGUMENT, details: 'node_id is required' },
    { name: 'a node_id of 129 bytes', frames: [hello({ node_id: 'n'.repeat(129) })], code: S.INVALID_ARGUMENT, details: 'node_id is too long' },
    {
      name: 'an unknown worker id',
      frames: [hello({ node_id: '5b0c4a52-3e1f-4e0a-9d2c-000000000000' })],
      code: S.UNAUTHENTICATED,
      details: 'unknown worker_id',
    },
    { name: 'no secret', frames: [hello({ worker_secret: '' })], code: S.UNAUTHENTICATED, details: 'worker_secret is required' },
    { name: 'a blank secret', frames: [hello({ worker_secret: ' \t ' })], code: S.UNAUTHENTICATED, details: 'worker_secret is required' },
    { name: 'a wrong secret', frames: [hello({ worker_secret: secret + 'x' })], code: S.UNAUTHENTICATED, details: 'invalid worker credential' },
  ];
}

/** Runs one case against target; resolves the status the stream ended with and what came back. */
export async function runHandshakeCase(target, c) {
  const s = openStream(target);
  for (const f of c.frames) s.write(f);
  s.end();
  const status = await s.status;
  return { ...status, frames: s.frames };
}
