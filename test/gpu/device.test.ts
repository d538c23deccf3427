// GPU suite: runs only where a CUDA device is usable, and says why it is skipped otherwise.
import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';

const cuda = ng.info().cuda;
const why = cuda.available ? '' : `no usable CUDA device: ${cuda.unavailableReason ?? 'the CUDA backend is not available'}`;
if (why) console.log(`test/gpu: skipped (${why})`);

describe.skipIf(!cuda.available)('CUDA device discovery', () => {
  test('reports at least one device with a name and compute capability', () => {
    expect(cuda.deviceCount).toBeGreaterThan(0);
    expect(cuda.devices[0].name.length).toBeGreaterThan(0);
    expect(cuda.devices[0].computeCapability).toMatch(/^\d+\.\d+$/);
  });
});

describe('CUDA build', () => {
  test('info() explains whether CUDA is compiled in and usable', () => {
    expect(typeof cuda.compiled).toBe('boolean');
    if (!cuda.available) expect(cuda.unavailableReason).toBeTruthy();
  });
});
