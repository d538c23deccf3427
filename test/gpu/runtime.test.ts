// CUDA runtime: transfers, async reads, the caching allocator, device errors.
import { expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { describeCuda } from './helpers.js';
import { expectClose, lcg } from '../helpers.js';

describeCuda('CUDA device runtime', () => {
  test('cuda namespace describes the device', () => {
    expect(ng.cuda.isAvailable()).toBe(true);
    expect(ng.cuda.deviceCount()).toBeGreaterThan(0);
    expect(ng.cuda.getDeviceName().length).toBeGreaterThan(0);
    const [maj] = ng.cuda.getDeviceCapability();
    expect(maj).toBeGreaterThanOrEqual(7);
  });

  test('to(cuda) and back keeps values for every dtype', () => {
    const r = lcg(3);
    const f = Float32Array.from({ length: 1000 }, () => r() * 100);
    for (const dtype of ['float32', 'float64', 'int32', 'bool'] as const) {
      const c = ng.tensor(f, { dtype });
      const g = c.to('cuda');
      expect(g.device).toBe('cuda:0');
      expect(g.dtype).toBe(dtype);
      expect(Array.from(g.cpu().dataSync() as ArrayLike<number>)).toEqual(Array.from(c.dataSync() as ArrayLike<number>));
    }
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const c = ng.tensor(f).to(dtype);
      const g = ng.tensor(f, { device: 'cuda' }).to(dtype);
      expect(Array.from(g.cpu().dataSync() as ArrayLike<number>)).toEqual(Array.from(c.dataSync() as ArrayLike<number>));
    }
  });

  test('non-contiguous and offset views move correctly', () => {
    const x = ng.arange(0, 60, 1, { dtype: 'float32' }).reshape([3, 4, 5]);
    const v = x.permute(2, 0, 1).slice(1, 1, 3);
    const g = v.to('cuda');
    expect(g.shape).toEqual(v.shape);
    expect(g.tolist()).toEqual(v.tolist());
    const gx = x.cuda();
    expect(gx.permute(2, 0, 1).slice(1, 1, 3).tolist()).toEqual(v.tolist());
    expect(gx.select(0, 2).contiguous().tolist()).toEqual(x.select(0, 2).tolist());
  });

  test('creation ops run on the device', () => {
    expect(ng.zeros([3, 2], { device: 'cuda' }).tolist()).toEqual([[0, 0], [0, 0], [0, 0]]);
    expect(ng.full([2], 2.5, { device: 'cuda' }).tolist()).toEqual([2.5, 2.5]);
    expect(ng.arange(5, undefined, 1, { device: 'cuda' }).tolist()).toEqual([0, 1, 2, 3, 4]);
    expect(ng.eye(2, 2, { device: 'cuda' }).tolist()).toEqual([[1, 0], [0, 1]]);
    expect(ng.tensor([[1, 2], [3, 4]], { device: 'cuda' }).tolist()).toEqual([[1, 2], [3, 4]]);
    expect(ng.full([3], 1.5, { device: 'cuda', dtype: 'float16' }).float().tolist()).toEqual([1.5, 1.5, 1.5]);
  });

  test('await data() reads without blocking and sees the kernels queued before it', async () => {
    const n = 1 << 20;
    const a = ng.ones([n], { device: 'cuda' });
    const b = a.mul(3);
    const p = b.data();
    b.fill_(7); // queued after the read: must not be seen by it
    const d = (await p) as Float32Array;
    expect(d.length).toBe(n);
    expect(d[0]).toBe(3);
    expect(d[n - 1]).toBe(3);
    expect((b.dataSync() as Float32Array)[5]).toBe(7);
  });

  test('autograd moves gradients back across devices', () => {
    const x = ng.tensor([1, 2, 3], { requiresGrad: true });
    const y = x.to('cuda').mul(2).sum();
    y.backward();
    expect(x.grad!.device).toBe('cpu');
    expectClose(x.grad!, [2, 2, 2]);
  });

  test('mixing devices is an Error naming the op', () => {
    const a = ng.ones([2]), b = ng.ones([2], { device: 'cuda' });
    expect(() => a.add(b)).toThrow(/nodegrad: add: .*different devices/);
    expect(() => ng.ones([2], { device: 'cuda:99' })).toThrow(/nodegrad: .*cuda:99.*does not exist/);
  });

  test('using a disposed CUDA tensor is an Error, not a crash', () => {
    const a = ng.ones([4], { device: 'cuda' });
    a.dispose();
    expect(() => a.add(1)).toThrow(/nodegrad: .*disposed/);
  });

  test('the allocator reuses freed blocks and reports stats', () => {
    ng.cuda.synchronize();
    ng.cuda.emptyCache();
    const before = ng.cuda.memoryStats();
    const t = ng.zeros([1 << 20], { device: 'cuda' });
    const mid = ng.cuda.memoryStats();
    expect(mid.allocated - before.allocated).toBeGreaterThanOrEqual(4 << 20);
    t.dispose();
    const after = ng.cuda.memoryStats();
    expect(after.allocated).toBe(before.allocated);
    expect(after.reserved).toBe(mid.reserved); // cached, not returned
    const mallocs = after.numCudaMallocs;
    const u = ng.zeros([1 << 20], { device: 'cuda' });
    expect(ng.cuda.memoryStats().numCudaMallocs).toBe(mallocs); // reused
    u.dispose();
    ng.cuda.emptyCache();
    expect(ng.cuda.memoryStats().reserved).toBeLessThan(mid.reserved);
    expect(ng.cuda.maxMemoryAllocated()).toBeGreaterThanOrEqual(4 << 20);
  });

  test('out of memory releases the cache, retries once, then throws a clear Error', () => {
    ng.cuda.synchronize();
    ng.cuda.emptyCache();
    const base = ng.cuda.memoryStats().reserved;
    try {
      ng.cuda.setMemoryLimit(base + (64 << 20));
      // fill the cache with freed 16 MiB blocks, then ask for one 48 MiB block: only the
      // flush-and-retry path can satisfy it
      const ts = [0, 1, 2].map(() => ng.zeros([4 << 20], { device: 'cuda' }));
      for (const t of ts) t.dispose();
      const oomsBefore = ng.cuda.memoryStats().numOoms;
      const big = ng.zeros([12 << 20], { device: 'cuda' });
      expect(ng.cuda.memoryStats().numOoms).toBe(oomsBefore + 1);
      big.dispose();
      expect(() => ng.zeros([64 << 20], { device: 'cuda' })).toThrow(/nodegrad: .*CUDA out of memory allocating 256 MiB/);
      // the process goes on
      expect(ng.ones([2], { device: 'cuda' }).sum().item()).toBe(2);
    } finally {
      ng.cuda.setMemoryLimit(0);
    }
  });

  test('no leak over 10,000 scoped steps', () => {
    const w = ng.randn([64, 64], { device: 'cuda' }).keep();
    ng.scope(() => w.matmul(w).relu().sum());
    ng.cuda.synchronize();
    const before = ng.cuda.memoryStats().allocated;
    const tensorsBefore = ng.memory().numTensors;
    for (let i = 0; i < 10000; i++) ng.scope(() => { w.matmul(w).relu().sum(); });
    ng.cuda.synchronize();
    expect(ng.cuda.memoryStats().allocated).toBe(before);
    expect(ng.memory().numTensors).toBe(tensorsBefore);
    w.dispose();
  });
});
