// SPDX-License-Identifier: Apache-2.0
// Terminal sessions and tasks as the Sessions and Tasks pages show them. Pure functions, unit
// tested.

import { formatDuration } from './terminal.js';

export const SESSIONS_PAGE_SIZE = 25;
export const TASKS_PAGE_SIZE = 25;
export const TASK_STATUSES = ['all', 'running', 'succeeded', 'failed', 'timeout', 'canceled'];
/** Statuses of a task that has not ended. */
const LIVE = new Set(['queued', 'dispatched', 'running']);

/** How long a session's lease has left at now (ms since the epoch): "4m 10s", "expired". */
export function leaseText(session, now) {
  const until = Number(session && session.lease_expires_unix_ms);
  if (!Number.isFinite(until) || until <= 0) return '—';
  const left = until - now;
  if (left <= 0) return 'expired';
  return 'in ' + formatDuration(left);
}

const CAPABILITIES = ['echo', 'pythonExec', 'terminalExec', 'terminalResource', 'terminalFiles', 'terminalSession', 'readImage', 'computerUse'];

/** A capability as the tools name it ("terminalexec" is stored lower-case: terminalExec). */
export function capabilityName(c) {
  const s = String(c || '');
  return CAPABILITIES.find((k) => k.toLowerCase() === s.toLowerCase()) || s;
}

export function isLive(task) {
  return LIVE.has(task && task.status);
}

/** The "status" query value, one of TASK_STATUSES ("all" for anything else). */
export function parseTaskStatus(s) {
  return TASK_STATUSES.includes(s) ? s : 'all';
}

/** How long a task ran (to now while it runs); NaN without a start. */
export function taskDuration(task, now) {
  const start = Date.parse(task.created_at || '');
  const end = task.completed_at ? Date.parse(task.completed_at) : isLive(task) ? now : Date.parse(task.updated_at || '');
  return end - start;
}

export function taskDurationText(task, now) {
  return formatDuration(taskDuration(task, now));
}

/** The exit code in a task's result, or null. */
export function taskExitCode(task) {
  const r = task && task.result;
  return r && Number.isInteger(r.exit_code) ? r.exit_code : null;
}

/**
 * A task's output streams for the detail view: [{name, text, truncated}], from the result's
 * shape (terminalExec: stdout/stderr; pythonExec: output/stderr; echo: message).
 */
export function taskOutputs(task) {
  const r = (task && task.result) || {};
  const out = [];
  const add = (name, key, cut) => {
    if (typeof r[key] === 'string') out.push({ name, text: r[key], truncated: !!r[cut] });
  };
  add('stdout', 'stdout', 'stdout_truncated');
  add('output', 'output', 'output_truncated');
  add('stderr', 'stderr', 'stderr_truncated');
  add('message', 'message', '');
  if (typeof r.result === 'string') out.push({ name: 'value', text: r.result, truncated: false });
  return out;
}

/** The session a task ran in, when it names one. */
export function taskSession(task) {
  const r = (task && task.result) || {};
  return typeof r.session_id === 'string' ? r.session_id : null;
}
