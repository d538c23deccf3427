// The global generator: a seed and a counter. Every random op consumes a range of
// Philox counters, so a sequence of ops after manualSeed(s) is reproducible and the
// same draws are produced by every backend.
let seed = 0x2545f491;
let offset = 0;

export function manualSeed(s: number): void {
  if (typeof s !== 'number' || !Number.isInteger(s) || s < 0 || s > Number.MAX_SAFE_INTEGER) {
    throw new Error(`nodegrad: manualSeed: seed must be a non-negative integer (got ${String(s)})`);
  }
  seed = s;
  offset = 0;
}

export function initialSeed(): number {
  return seed;
}

/** Reserves n counters and returns [seed, first counter]. */
export function nextRandom(n: number): [number, number] {
  const o = offset;
  offset += Math.max(1, n);
  if (offset > Number.MAX_SAFE_INTEGER) offset = 0;
  return [seed, o];
}

export function getRngState(): { seed: number; offset: number } {
  return { seed, offset };
}
export function setRngState(s: { seed: number; offset: number }): void {
  seed = s.seed;
  offset = s.offset;
}
