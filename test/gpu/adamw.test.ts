// Fused multi-tensor AdamW (and SGD, clipping) on CUDA against the CPU kernels: ~20
// tensors of odd sizes (1 element to several kernel chunks, unaligned offsets), two
// weight-decay groups, several steps, bf16/f16 model copies, grad scaling and the
// device-side clip coefficient.
import { expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { AdamW } from '../../lib/optim/adamw.js';
import { clipGradNorm, clipGradNormTensor } from '../../lib/optim/clip.js';
import { native } from '../../lib/native.js';
import { expectClose } from '../helpers.js';
import { describeCuda } from './helpers.js';

// Sizes around the 32768-element chunk and the 4-element vector width.
const SHAPES: number[][] = [[1], [3], [5, 7], [127], [1000], [33, 65], [4099], [32768], [32769], [65537],
  [2, 40000], [768], [768, 3], [17, 17, 17], [2], [4096], [100003], [9], [31, 33], [12345]];

interface Setup { cpu: Tensor[]; gpu: Tensor[] }

function setup(seed: number): Setup {
  ng.manualSeed(seed);
  const cpu = SHAPES.map((s) => ng.randn(s).requiresGrad_(true));
  const gpu = cpu.map((t) => t.detach().to('cuda').requiresGrad_(true));
  return { cpu, gpu };
}

/** Gives both copies the same fresh gradient. */
function setGrads(s: Setup, step: number): void {
  ng.manualSeed(1000 + step);
  s.cpu.forEach((p, i) => {
    const g = ng.randn(p.shape).mul(i % 3 === 0 ? 10 : 0.1);
    p.zeroGrad();
    s.gpu[i].zeroGrad();
    p.grad = g.keep();
    s.gpu[i].grad = g.to('cuda').keep();
  });
}

function groups(ps: Tensor[]): { params: Tensor[]; weightDecay: number; lr?: number }[] {
  return [
    { params: ps.filter((_, i) => i % 2 === 0), weightDecay: 0.1 },
    { params: ps.filter((_, i) => i % 2 === 1), weightDecay: 0, lr: 3e-3 },
  ];
}

function expectSame(s: Setup, tol = { atol: 2e-6, rtol: 2e-5 }): void {
  s.cpu.forEach((p, i) => expectClose(s.gpu[i].detach().cpu(), p.detach(), tol));
}

describeCuda('AdamW on CUDA', () => {
  test('fused step matches the CPU over several steps, two decay groups', () => {
    const s = setup(1);
    const oc = new AdamW(groups(s.cpu), { lr: 1e-2, betas: [0.8, 0.95], eps: 1e-6 });
    const og = new AdamW(groups(s.gpu), { lr: 1e-2, betas: [0.8, 0.95], eps: 1e-6 });
    expect(og.fused).toBe(true);
    for (let step = 0; step < 5; step++) {
      setGrads(s, step);
      oc.step();
      og.step();
    }
    expectSame(s);
    const sc = oc.stateDict().state[3], sg = og.stateDict().state[3];
    expect(sg.step).toBe(sc.step);
    expectClose((sg.expAvgSq as Tensor).cpu(), sc.expAvgSq as Tensor, { atol: 1e-6, rtol: 1e-5 });
  });

  test('unfused (one launch per tensor) gives the same result as fused', () => {
    const a = setup(2), b = setup(2);
    const fa = new AdamW(a.gpu, { lr: 1e-3, weightDecay: 0.05 });
    const fb = new AdamW(b.gpu, { lr: 1e-3, weightDecay: 0.05, fused: false });
    for (let step = 0; step < 3; step++) {
      setGrads(a, step);
      setGrads(b, step);
      fa.step();
      fb.step();
    }
    a.gpu.forEach((p, i) => expectClose(p.detach().cpu(), b.gpu[i].detach().cpu(), { atol: 0, rtol: 0 }));
  });

  test('gradScale and a changing learning rate match the CPU', () => {
    const s = setup(3);
    const oc = new AdamW(s.cpu, { lr: 1e-2 }), og = new AdamW(s.gpu, { lr: 1e-2 });
    for (let step = 0; step < 4; step++) {
      setGrads(s, step);
      for (const o of [oc, og]) o.paramGroups[0].lr = 1e-2 * (step + 1);
      oc.step({ gradScale: 0.25 });
      og.step({ gradScale: 0.25 });
    }
    expectSame(s);
  });

  for (const dtype of ['bfloat16', 'float16'] as const) {
    test(`${dtype} model copies are written in the same pass`, () => {
      const s = setup(4);
      const oc = new AdamW(s.cpu, { lr: 1e-2 }), og = new AdamW(s.gpu, { lr: 1e-2 });
      const copies = s.gpu.map((p, i) => (i % 4 === 3 ? null : ng.zeros(p.shape, { dtype, device: 'cuda' }).keep()));
      copies.forEach((c, i) => { if (c) og.setModelCopy(s.gpu[i], c); });
      for (let step = 0; step < 3; step++) {
        setGrads(s, step);
        oc.step();
        og.step();
      }
      expectSame(s);
      copies.forEach((c, i) => {
        if (!c) return;
        // the copy is the updated fp32 parameter rounded once
        expectClose(c.cpu().to('float32'), s.gpu[i].detach().cpu().to(dtype).to('float32'), { atol: 0, rtol: 0 });
      });
    });
  }

  test('maxGradNorm: the device clip coefficient matches clipping on the CPU', () => {
    const s = setup(5);
    const oc = new AdamW(s.cpu, { lr: 1e-2 }), og = new AdamW(s.gpu, { lr: 1e-2 });
    for (let step = 0; step < 3; step++) {
      setGrads(s, step);
      const norm = clipGradNorm(s.cpu, 1.0);
      oc.step();
      og.step({ maxGradNorm: 1.0 });
      expect(og.lastGradNorm!.item()).toBeCloseTo(norm, 1);
      expect(Math.abs(og.lastGradNorm!.item() - norm) / norm).toBeLessThan(1e-5);
    }
    expectSame(s, { atol: 1e-5, rtol: 1e-4 });
  });

  test('maxGradNorm with gradScale on the CPU path equals the CUDA path', () => {
    const s = setup(6);
    const oc = new AdamW(s.cpu, { lr: 1e-2 }), og = new AdamW(s.gpu, { lr: 1e-2 });
    setGrads(s, 0);
    oc.step({ gradScale: 0.5, maxGradNorm: 2 });
    og.step({ gradScale: 0.5, maxGradNorm: 2 });
    expectSame(s, { atol: 1e-5, rtol: 1e-4 });
    expect(og.lastGradNorm!.item()).toBeCloseTo(oc.lastGradNorm!.item(), 2);
  });

  test('float64 parameters on CUDA are refused', () => {
    const p = ng.randn([4], { device: 'cuda' }).to('float64').requiresGrad_(true);
    p.grad = ng.randn([4], { device: 'cuda' }).to('float64').keep();
    expect(() => new AdamW([p]).step()).toThrow(/float32/);
  });
});

describeCuda('multi-tensor SGD, norm and scale on CUDA', () => {
  // The addon's sgdStep on device buffers (lib/optim/sgd.ts keeps its own CPU checks).
  for (const momentum of [0, 0.9]) {
    test(`sgdStep, momentum ${momentum}, matches the CPU kernel`, () => {
      const s = setup(7);
      setGrads(s, 0);
      const run = (ps: Tensor[], dev: 'cpu' | 'cuda'): Tensor[] => {
        const bufs = ps.map((p) => (momentum > 0 ? ng.zeros(p.shape, { device: dev }).keep() : null));
        for (let step = 0; step < 3; step++) {
          native.sgdStep(ps.map((p) => p.storage.data), ps.map((p) => p.grad!.storage.data),
            bufs.map((b) => (b ? b.storage.data : null)), ps.map(() => 0), ps.map((p) => p.numel),
            ps.map(() => 0.05), ps.map((_, i) => (i % 2 ? 0.01 : 0)), ps.map(() => momentum), ps.map(() => 0.1),
            ps.map(() => (momentum > 0 ? 1 : 0)), ps.map(() => (step === 0 ? 1 : 0)), 0.5);
        }
        return ps;
      };
      run(s.cpu, 'cpu');
      run(s.gpu, 'cuda');
      expectSame(s);
    });
  }

  for (const p of [2, 1, 3, 'inf'] as const) {
    test(`clipGradNorm (norm ${p}) matches the CPU and scales the gradients`, () => {
      const s = setup(8);
      setGrads(s, 0);
      const nc = clipGradNorm(s.cpu, 0.5, p), ng_ = clipGradNorm(s.gpu, 0.5, p);
      expect(Math.abs(ng_ - nc) / nc).toBeLessThan(1e-6);
      s.cpu.forEach((t, i) => expectClose(s.gpu[i].grad!.cpu(), t.grad!, { atol: 1e-7, rtol: 1e-5 }));
    });
  }

  test('clipGradNormTensor leaves the norm on the device', () => {
    const s = setup(9);
    setGrads(s, 0);
    const nc = clipGradNorm(s.cpu, 1e9);
    const t = clipGradNormTensor(s.gpu, 1e9);
    expect(t.device.startsWith('cuda')).toBe(true);
    expect(Math.abs(t.item() - nc) / nc).toBeLessThan(1e-6);
  });
});
