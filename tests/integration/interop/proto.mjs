// SPDX-License-Identifier: Apache-2.0
// The worker protocol for the interoperability peers, loaded with @grpc/proto-loader from the
// repository's proto/onlyboxes/registry/v1/registry.proto in two forms:
//   original  the file without its extension fields (numbers of 100 and above), i.e. the schema an
//             original Onlyboxes console or worker is built from: a frame whose payload is an
//             extension decodes there with no payload at all, as it does for the original;
//   full      the whole file, used only to observe what a peer really sent (e.g. the extensions a
//             worker names in its hello), never to decide how an original peer behaves.
// Messages are plain objects with the proto's field names; int64 values are JS numbers.

import { readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PROTO_FILE = path.resolve(here, '../../../proto/onlyboxes/registry/v1/registry.proto');
export const PACKAGE = 'onlyboxes.registry.v1';
export const SERVICE = `${PACKAGE}.WorkerRegistryService`;
/** The first field number of the extensions (registry.proto's header says so). */
export const FIRST_EXTENSION_FIELD = 100;

const LOADER_OPTIONS = {
  keepCase: true,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
};

/** A field declaration line: optional `repeated`, a type (maybe map<,>), a name, `= N;`. */
const FIELD_LINE = /^\s*(?:repeated\s+)?[\w.]+(?:<[\w.]+,\s*[\w.]+>)?\s+\w+\s*=\s*(\d+)\s*;.*$/;

/** registry.proto's text without the declarations of fields numbered 100 and above. */
export function originalProtoText(text = readFileSync(PROTO_FILE, 'utf8')) {
  return text
    .split('\n')
    .filter((line) => {
      const m = FIELD_LINE.exec(line);
      return !m || Number(m[1]) < FIRST_EXTENSION_FIELD;
    })
    .join('\n');
}

function load(text) {
  const dir = mkdtempSync(path.join(tmpdir(), 'obx-interop-proto-'));
  try {
    const file = path.join(dir, 'registry.proto');
    writeFileSync(file, text);
    return protoLoader.loadSync(file, LOADER_OPTIONS);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const originalDefinition = load(originalProtoText());
export const fullDefinition = load(readFileSync(PROTO_FILE, 'utf8'));

/** The field numbers a message type declares in a definition (for checking the stripping). */
export function fieldNumbers(definition, message) {
  return definition[`${PACKAGE}.${message}`].type.field.map((f) => f.number);
}

const origConnect = originalDefinition[SERVICE].Connect;
const fullConnect = fullDefinition[SERVICE].Connect;

/**
 * A decoded frame as a peer sees it: `frame` by the original schema (`frame.payload` names the
 * member that is set, undefined for a frame the original does not know), `full` by the whole file,
 * `bytes` as received.
 */
function wrapDecoder(origDecode, fullDecode) {
  return (bytes) => ({ frame: origDecode(bytes), full: fullDecode(bytes), bytes });
}

/** Encodes a message with the original schema; a Buffer is sent as it is (see encodeFull). */
function passBuffers(encode) {
  return (value) => (Buffer.isBuffer(value) ? value : encode(value));
}

/**
 * The Connect service as an original peer has it: it encodes only the original's fields (an
 * already encoded Buffer goes out as it is), and every frame it reads comes as {frame, full, bytes}
 * (above).
 */
export const originalService = {
  Connect: {
    ...origConnect,
    requestSerialize: passBuffers(origConnect.requestSerialize),
    responseSerialize: passBuffers(origConnect.responseSerialize),
    requestDeserialize: wrapDecoder(origConnect.requestDeserialize, fullConnect.requestDeserialize),
    responseDeserialize: wrapDecoder(origConnect.responseDeserialize, fullConnect.responseDeserialize),
  },
};

/** A client constructor for originalService. */
export const OriginalClient = grpc.makeGenericClientConstructor(originalService, 'WorkerRegistryService');

/**
 * Encodes a ConnectRequest or ConnectResponse with the FULL schema, as a Buffer that the peers'
 * sendRaw() writes as it is: for tests that play a peer which wrongly sends an extension (the
 * original peers cannot encode one).
 */
export function encodeFull(direction, message) {
  return direction === 'request' ? fullConnect.requestSerialize(message) : fullConnect.responseSerialize(message);
}

/** The gRPC status names, by code, for messages. */
export const STATUS_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

export { grpc };
