// SPDX-License-Identifier: Apache-2.0
import test from 'node:test';
import assert from 'node:assert/strict';
import { clampPage, pageCount, pageItems, parsePage, rangeLabel } from '../src/lib/pagination.js';

test('page numbers from the URL', () => {
  assert.equal(parsePage('3'), 3);
  for (const bad of [undefined, null, '', '0', '-2', '1.5', 'abc', '1e3', '99999999999']) assert.equal(parsePage(bad), 1, String(bad));
});

test('page count and clamping', () => {
  assert.equal(pageCount(0, 25), 1);
  assert.equal(pageCount(25, 25), 1);
  assert.equal(pageCount(26, 25), 2);
  assert.equal(clampPage(5, 26, 25), 2);
  assert.equal(clampPage(0, 26, 25), 1);
  assert.equal(clampPage(2, 0, 25), 1);
});

test('page buttons: all of few pages, a window with gaps around the current one', () => {
  assert.deepEqual(pageItems(1, 1), [1]);
  assert.deepEqual(pageItems(3, 7), [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(pageItems(1, 20), [1, 2, null, 20]);
  assert.deepEqual(pageItems(10, 20), [1, null, 9, 10, 11, null, 20]);
  assert.deepEqual(pageItems(20, 20), [1, null, 19, 20]);
  assert.deepEqual(pageItems(3, 20), [1, 2, 3, 4, null, 20]);
});

test('range labels', () => {
  assert.equal(rangeLabel(1, 25, 0), '0 of 0');
  assert.equal(rangeLabel(1, 25, 7), '1–7 of 7');
  assert.equal(rangeLabel(2, 25, 60), '26–50 of 60');
  assert.equal(rangeLabel(3, 25, 60), '51–60 of 60');
  assert.equal(rangeLabel(9, 25, 60), '0 of 60');
});
