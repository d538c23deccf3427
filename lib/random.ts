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

/**
 * A small seeded generator of uniform numbers in [0, 1) for host-side sampling (token
 * sampling, synthetic data); tensors use the Philox generator above.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
