// Shared test utilities: closeness checks and the per-backend test runner.
import { describe, expect } from 'vitest';
import * as ng from '../lib/index.js';
import type { Tensor } from '../lib/index.js';

export type Backend = 'cpu' | 'cuda';

/** Backends present on this machine: cpu always, cuda when a device is usable. */
export function backends(): Backend[] {
  const out: Backend[] = ['cpu'];
  if (ng.info().cuda.available) out.push('cuda');
  return out;
}

/** Runs the same test body once per backend present (tfjs's describeWithFlags, candle's test_device!). */
export function describeBackends(name: string, body: (device: Backend) => void): void {
  for (const d of backends()) describe(`${name} [${d}]`, () => body(d));
}

function toFlat(x: Tensor | ArrayLike<number> | number): number[] {
  if (typeof x === 'number') return [x];
  if (x instanceof ng.Tensor) return Array.from(x.dataSync() as ArrayLike<number>);
  return Array.from(x);
}

/** |a - b| <= atol + rtol * |b| elementwise, with the worst element in the message. */
export function expectClose(actual: Tensor | ArrayLike<number> | number, expected: Tensor | ArrayLike<number> | number,
  opts: { atol?: number; rtol?: number } = {}): void {
  const a = toFlat(actual), b = toFlat(expected);
  const atol = opts.atol ?? 1e-5, rtol = opts.rtol ?? 1e-4;
  expect(a.length, 'element count').toBe(b.length);
  let worst = -1, worstErr = 0;
  for (let i = 0; i < a.length; i++) {
    const bothNaN = Number.isNaN(a[i]) && Number.isNaN(b[i]);
    const same = a[i] === b[i];
    const err = bothNaN || same ? 0 : Math.abs(a[i] - b[i]) - (atol + rtol * Math.abs(b[i]));
    if (!(err <= 0) && (worst < 0 || err > worstErr || Number.isNaN(err))) {
      worst = i;
      worstErr = Number.isNaN(err) ? Infinity : err;
    }
  }
  if (worst >= 0) {
    expect.fail(`element ${worst}: got ${a[worst]}, expected ${b[worst]} (atol ${atol}, rtol ${rtol})`);
  }
}

/** Deterministic pseudo-random numbers for building reference inputs in plain JS. */
export function lcg(seed = 1): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 * 2 - 1;
  };
}
