// SPDX-License-Identifier: Apache-2.0
// Shaping the workers API's answers for the table: capabilities with their in-flight counters,
// labels, the status filter.

export const STATUS_FILTERS = ['all', 'online', 'offline'];
export const WORKERS_PAGE_SIZE = 25;
export const STALE_AFTER_SEC = 30;

export function parseStatus(value) {
  return STATUS_FILTERS.includes(value) ? value : 'all';
}

/**
 * A worker's capabilities as { name, inflight, max }: the counters of GET /api/v1/workers/inflight
 * name capabilities in lower case, the list as the worker declared them, so they are matched
 * without regard to case. inflight is null for a worker that has no live connection.
 */
export function capabilitiesWithInflight(worker, inflight) {
  const live = (inflight && inflight.workers ? inflight.workers : []).find((w) => w.node_id === worker.node_id);
  const counters = new Map();
  for (const c of live ? live.capabilities || [] : []) counters.set(String(c.name).toLowerCase(), c);
  return (worker.capabilities || []).map((c) => {
    const n = counters.get(String(c.name).toLowerCase());
    return {
      name: c.name,
      inflight: n ? n.inflight : null,
      max: n && n.max_inflight ? n.max_inflight : c.max_inflight,
    };
  });
}

/** Labels as [key, value] pairs, sorted by key. */
export function labelEntries(labels) {
  return Object.entries(labels || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The KEY=value words in front of a startup command ("A=1 B=2 onlyboxes worker"). */
export function commandEnv(command) {
  const env = {};
  for (const word of String(command || '').trim().split(/\s+/)) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(word);
    if (!m) break;
    env[m[1]] = m[2];
  }
  return env;
}
