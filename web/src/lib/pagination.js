// SPDX-License-Identifier: Apache-2.0
// Page arithmetic shared by every paged table (workers, accounts, and the pages to come).

/** A positive page number from a URL value; anything else is page 1. */
export function parsePage(value) {
  const s = String(value ?? '').trim();
  if (!/^[0-9]{1,9}$/.test(s)) return 1;
  const n = Number(s);
  return n >= 1 ? n : 1;
}

export function pageCount(total, pageSize) {
  if (!(total > 0) || !(pageSize > 0)) return 1;
  return Math.ceil(total / pageSize);
}

/** The page to show: a page past the end (the last row of it was deleted) becomes the last one. */
export function clampPage(page, total, pageSize) {
  return Math.min(Math.max(1, page), pageCount(total, pageSize));
}

/**
 * The page buttons to draw: every page when there are few, else the first, the last and a window
 * around the current one, with null where pages are left out.
 */
export function pageItems(current, count, window = 1) {
  if (count <= 7) return Array.from({ length: count }, (_, i) => i + 1);
  const items = [1];
  const lo = Math.max(2, current - window);
  const hi = Math.min(count - 1, current + window);
  if (lo > 2) items.push(null);
  for (let p = lo; p <= hi; p++) items.push(p);
  if (hi < count - 1) items.push(null);
  items.push(count);
  return items;
}

/** "26–50 of 120"; "0 of 0" for an empty table. */
export function rangeLabel(page, pageSize, total) {
  if (!(total > 0)) return '0 of 0';
  const first = (page - 1) * pageSize + 1;
  if (first > total) return `0 of ${total}`;
  const last = Math.min(total, page * pageSize);
  return `${first}–${last} of ${total}`;
}
