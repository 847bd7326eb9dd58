// Backoff: the bounds double up to the cap, every delay stays inside its bound, and the jitter
// spreads delays uniformly over the whole window (a statistical test on a seeded source, so
// the outcome is reproducible).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Backoff } from '../src/backoff.js';
import { seededRandom } from './helpers/fakes.js';

test('bounds double from the base and stop at the cap', () => {
  const b = new Backoff({ baseMs: 100, capMs: 1000 });
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 10, 64, 2000].map((n) => b.bound(n)),
    [100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000],
  );
});

test('defaults are 1 s base and 30 s cap', () => {
  const b = new Backoff();
  assert.equal(b.baseMs, 1000);
  assert.equal(b.capMs, 30000);
  assert.equal(b.bound(1), 1000);
  assert.equal(b.bound(6), 30000);
});

test('every delay lies in [0, bound) for its failure count', () => {
  const b = new Backoff({ baseMs: 250, capMs: 20000, random: seededRandom(7) });
  for (let round = 0; round < 200; round++) {
    b.reset();
    for (let n = 1; n <= 12; n++) {
      const d = b.fail();
      assert.equal(b.failures, n);
      assert.ok(Number.isInteger(d), `whole milliseconds, got ${d}`);
      assert.ok(d >= 0 && d < b.bound(n), `failure ${n}: ${d} outside [0, ${b.bound(n)})`);
    }
  }
});

test('the extremes of the random source map to the ends of the window', () => {
  const lows = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0 });
  assert.deepEqual([lows.fail(), lows.fail(), lows.fail()], [0, 0, 0]);
  const highs = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.999999 });
  assert.deepEqual(
    Array.from({ length: 6 }, () => highs.fail()),
    [99, 199, 399, 799, 999, 999],
  );
  // A broken source (1, NaN) cannot push a delay outside the window.
  assert.equal(new Backoff({ random: () => 1 }).fail(), 0);
  assert.equal(new Backoff({ random: () => Number.NaN }).fail(), 0);
});

test('full jitter: delays spread uniformly over the whole window', () => {
  const random = seededRandom(20260101);
  const b = new Backoff({ baseMs: 1000, capMs: 30000, random });
  const samples = 20000;
  const bins = 10;
  // At the cap (failure 10: 1000 * 2^9 > 30000) and below it (failure 3: window 4000 ms).
  for (const failures of [3, 10]) {
    const bound = b.bound(failures);
    const counts = new Array(bins).fill(0);
    let sum = 0;
    for (let i = 0; i < samples; i++) {
      const d = b.jitter(bound);
      counts[Math.floor((d / bound) * bins)] += 1;
      sum += d;
    }
    // Each tenth of the window holds 10 % ± 1 % of the delays (expected sd 0.21 %).
    for (const [i, c] of counts.entries()) {
      const fraction = c / samples;
      assert.ok(
        fraction > 0.09 && fraction < 0.11,
        `failure ${failures}, bin ${i}: ${(fraction * 100).toFixed(2)} % of delays`,
      );
    }
    // Chi-square against uniform, 9 degrees of freedom: 27.88 is the 0.1 % critical value.
    const expected = samples / bins;
    const chi2 = counts.reduce((acc, c) => acc + (c - expected) ** 2 / expected, 0);
    assert.ok(chi2 < 27.88, `chi-square ${chi2.toFixed(2)} says the delays are not uniform`);
    // Mean near half the window (sd of the mean: bound / sqrt(12 * samples) = 0.2 % of bound).
    const mean = sum / samples;
    assert.ok(Math.abs(mean / bound - 0.5) < 0.01, `mean ${mean} for window ${bound}`);
  }
});

test('a crowd failing together spreads out instead of returning in waves', () => {
  // 1000 clients, each with its own random stream, after their 4th failure (window 8 s):
  // no 100 ms slice of the window gets more than 3x its fair share.
  const delays = Array.from({ length: 1000 }, (_, i) => {
    const b = new Backoff({ baseMs: 1000, capMs: 30000, random: seededRandom(1000 + i) });
    let d = 0;
    for (let n = 0; n < 4; n++) d = b.fail();
    return d;
  });
  const slices = new Array(80).fill(0);
  for (const d of delays) slices[Math.floor(d / 100)] += 1;
  const fair = 1000 / 80;
  assert.ok(Math.max(...slices) < 3 * fair, `busiest 100 ms slice: ${Math.max(...slices)}`);
  assert.ok(slices.filter((n) => n === 0).length < 3, 'nearly every slice is used');
});

test('reset() starts again at the base window', () => {
  const b = new Backoff({ baseMs: 100, capMs: 10000, random: () => 0.5 });
  for (let i = 0; i < 5; i++) b.fail();
  assert.equal(b.failures, 5);
  b.reset();
  assert.equal(b.failures, 0);
  assert.equal(b.fail(), 50);
});

test('bad settings are refused with the option named', () => {
  assert.throws(() => new Backoff({ baseMs: 0 }), /baseMs/);
  assert.throws(() => new Backoff({ baseMs: -5 }), /baseMs/);
  assert.throws(() => new Backoff({ baseMs: 1000, capMs: 500 }), /capMs/);
  assert.throws(() => new Backoff({ capMs: Number.POSITIVE_INFINITY }), /capMs/);
  assert.throws(() => new Backoff({ random: 3 }), /random/);
});
