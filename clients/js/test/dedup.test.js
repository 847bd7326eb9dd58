// IdWindow: duplicates are recognised, memory is bounded, and the oldest id is forgotten first.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { IdWindow } from '../src/dedup.js';

test('a repeated id is a duplicate', () => {
  const w = new IdWindow(10);
  assert.equal(w.add('a'), true);
  assert.equal(w.add('b'), true);
  assert.equal(w.add('a'), false);
  assert.equal(w.add('b'), false);
  assert.equal(w.size, 2);
});

test('the window is bounded: the oldest id is forgotten first', () => {
  const w = new IdWindow(3);
  for (const id of ['a', 'b', 'c', 'd']) assert.equal(w.add(id), true);
  assert.equal(w.size, 3);
  assert.equal(w.has('a'), false, 'a was the oldest and left when d arrived');
  assert.equal(w.has('b'), true);
  assert.equal(w.add('b'), false, 'b is still remembered');
  assert.equal(w.add('a'), true, 'a is new again');
  assert.equal(w.has('b'), false, 're-adding a pushed out b, now the oldest');
  assert.deepEqual(['c', 'd', 'a'].map((id) => w.has(id)), [true, true, true]);
});

test('seeing a duplicate does not refresh it', () => {
  const w = new IdWindow(2);
  w.add('x');
  w.add('y');
  assert.equal(w.add('x'), false);
  w.add('z'); // x is still the oldest by first arrival
  assert.equal(w.has('x'), false);
  assert.equal(w.has('y'), true);
});

test('the default window remembers the last 1000 ids', () => {
  const w = new IdWindow();
  assert.equal(w.capacity, 1000);
  for (let i = 0; i <= 1000; i++) assert.equal(w.add(`id-${i}`), true);
  assert.equal(w.size, 1000);
  assert.equal(w.has('id-0'), false);
  assert.equal(w.add('id-1'), false);
  assert.equal(w.add('id-1000'), false);
});

test('a long run keeps exactly the last `size` ids', () => {
  const w = new IdWindow(100);
  for (let i = 0; i < 10_000; i++) w.add(String(i));
  assert.equal(w.size, 100);
  for (let i = 9_900; i < 10_000; i++) assert.equal(w.has(String(i)), true);
  assert.equal(w.has('9899'), false);
});

test('size 0 turns de-duplication off', () => {
  const w = new IdWindow(0);
  assert.equal(w.add('a'), true);
  assert.equal(w.add('a'), true);
  assert.equal(w.size, 0);
});

test('a bad size is refused', () => {
  assert.throws(() => new IdWindow(-1), /dedupWindow/);
  assert.throws(() => new IdWindow(1.5), /dedupWindow/);
});
