// SPDX-License-Identifier: Apache-2.0
// How times and ages read in the tables.

/** An age in milliseconds as "12s ago", "5m ago", "3h ago", "2d ago". */
export function formatAge(ms) {
  if (!Number.isFinite(ms)) return '—';
  const s = Math.floor(Math.max(0, ms) / 1000);
  if (s < 60) return `${s}s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ago`;
  return `${Math.floor(h / 24)}d ago`;
}

const pad = (n) => String(n).padStart(2, '0');

/** A console timestamp as "2026-01-31 14:05:09" in the browser's time zone; "—" when missing. */
export function formatTime(value) {
  const t = typeof value === 'number' ? value : Date.parse(value || '');
  if (!Number.isFinite(t)) return '—';
  const d = new Date(t);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** Milliseconds between two console timestamps (later - earlier); NaN when one is missing. */
export function between(earlier, later) {
  return Date.parse(later || '') - Date.parse(earlier || '');
}
