// SPDX-License-Identifier: Apache-2.0
// Quoting for the shell commands the dashboard hands out.

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** One POSIX shell word: single quotes, a quote inside written as '\''. */
export function quote(value) {
  return "'" + String(value).replace(/'/g, "'\\''") + "'";
}

/** Like quote(), but a word that needs no quoting stays as it is. */
export function quoteIfNeeded(value) {
  const s = String(value);
  return s !== '' && SAFE.test(s) ? s : quote(s);
}
