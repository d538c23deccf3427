// CUDA scaledDotProductAttention against the CPU kernel (the reference) and against a
// composed slow attention (matmul, softmax, matmul), forward and backward: no mask,
// causal, key-padding bool masks, additive float masks, odd and unequal lengths, head
// dims 32/64/96/128 (flash kernels in bfloat16/float16) and others (simple kernel),
// float32/float64 (simple kernel), fully masked rows, the dropout mask (same Philox
// draws as the CPU for the same seed), strided q/k/v views of a fused QKV projection,
// determinism of the backward, and errors.
import { expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Device, Tensor } from '../../lib/index.js';
import { scaledDotProductAttention as sdpa } from '../../lib/ops/attention.js';
import type { ScaledDotProductAttentionOptions } from '../../lib/ops/attention.js';
import { expectClose } from '../helpers.js';
import { compareCpuCuda, describeCuda, type FloatDType } from './helpers.js';

type Half = 'bfloat16' | 'float16';
const HALF: Half[] = ['bfloat16', 'float16'];

// Tolerances against the float32 CPU result (the CUDA side computes on rounded inputs).
function tol(dtype: FloatDType): { atol: number; rtol: number; gradAtol: number; gradRtol: number } {
  switch (dtype) {
    case 'bfloat16': return { atol: 3e-2, rtol: 3e-2, gradAtol: 8e-2, gradRtol: 8e-2 };
    case 'float16': return { atol: 5e-3, rtol: 5e-3, gradAtol: 2e-2, gradRtol: 2e-2 };
    case 'float32': return { atol: 2e-5, rtol: 2e-4, gradAtol: 1e-4, gradRtol: 1e-3 };
    // compareCpuCuda's CUDA loss goes through .float(): the upstream gradient is float32-rounded
    case 'float64': return { atol: 1e-10, rtol: 1e-9, gradAtol: 1e-5, gradRtol: 1e-5 };
  }
}

/** CPU inputs: float64 for float64 runs, float32 otherwise (compareCpuCuda casts them for the half types). */
function qkv(B: number, H: number, Tq: number, Tk: number, D: number, Dv = D, dtype: FloatDType = 'float32'): Tensor[] {
  const o = { dtype: dtype === 'float64' ? 'float64' as const : 'float32' as const };
  return [
    ng.randn([B, H, Tq, D], o).requiresGrad_(true),
    ng.randn([B, H, Tk, D], o).requiresGrad_(true),
    ng.randn([B, H, Tk, Dv], o).requiresGrad_(true),
  ];
}

function check(B: number, H: number, Tq: number, Tk: number, D: number, dtype: FloatDType,
  opts: (dev: Device) => ScaledDotProductAttentionOptions = () => ({}), Dv = D): void {
  const t = tol(dtype);
  compareCpuCuda((q, k, v) => sdpa(q, k, v, opts(q.device)), qkv(B, H, Tq, Tk, D, Dv, dtype), { grad: true, dtype, ...t });
}

/** Key padding: batch b attends its first Tk - b * 3 keys (at least one). [B, 1, 1, Tk] bool. */
function keyPadding(B: number, Tk: number, device: Device): Tensor {
  const m: number[] = [];
  for (let b = 0; b < B; b++) for (let j = 0; j < Tk; j++) m.push(j < Math.max(1, Tk - 3 * b) ? 1 : 0);
  return ng.tensor(m, { dtype: 'bool', shape: [B, 1, 1, Tk] }).to(device);
}

/** Composed slow attention with public ops (no fully masked rows). */
function composed(q: Tensor, k: Tensor, v: Tensor, o: { causal?: boolean; bias?: Tensor } = {}): Tensor {
  const D = q.shape[q.ndim - 1], Tq = q.shape[q.ndim - 2], Tk = k.shape[k.ndim - 2];
  let s = q.matmul(k.transpose(-2, -1)).mul(1 / Math.sqrt(D));
  if (o.bias) s = s.add(o.bias);
  if (o.causal) {
    const c: number[] = [];
    for (let i = 0; i < Tq; i++) for (let j = 0; j < Tk; j++) c.push(j <= i ? 0 : -1e30);
    s = s.add(ng.tensor(c, { shape: [Tq, Tk], device: q.device, dtype: s.dtype }));
  }
  return s.softmax(-1).matmul(v);
}

describeCuda('scaledDotProductAttention on CUDA: simple kernel (float32, float64)', () => {
  for (const dtype of ['float32', 'float64'] as FloatDType[]) {
    test(`${dtype}: no mask, causal, Tq != Tk, odd lengths`, () => {
      check(2, 3, 7, 7, 16, dtype);
      check(1, 2, 65, 65, 32, dtype, () => ({ isCausal: true }));
      check(2, 1, 13, 200, 24, dtype, () => ({ isCausal: true }), 8);
      check(1, 1, 1, 1, 5, dtype);
    });
  }
  test('float32: key padding mask, additive float mask, odd head dim', () => {
    check(3, 2, 33, 33, 40, 'float32', (d) => ({ attnMask: keyPadding(3, 33, d) }));
    const bias = ng.randn([33, 70]);
    check(2, 2, 33, 70, 20, 'float32', (d) => ({ attnMask: bias.to(d) }));
  });
  test('float32: gradient of a float mask that requires grad', () => {
    compareCpuCuda((q, k, v, m) => sdpa(q, k, v, { attnMask: m }),
      [...qkv(2, 2, 9, 11, 8), ng.randn([2, 1, 9, 11]).requiresGrad_(true)], { grad: true, ...tol('float32') });
  });
  test('float32: head dims above the flash kernels (160, 256) and Dv != D', () => {
    check(1, 2, 20, 30, 160, 'float32', () => ({ isCausal: true }));
    check(1, 1, 10, 10, 256, 'float32', () => ({}), 64);
  });
});

describeCuda('scaledDotProductAttention on CUDA: flash kernels (bfloat16, float16)', () => {
  for (const dtype of HALF) {
    for (const D of [32, 64, 96, 128]) {
      test(`${dtype} D=${D}: no mask and causal, T = 1, 7, 65, 200`, () => {
        for (const T of [1, 7, 65, 200]) {
          check(2, 2, T, T, D, dtype);
          check(2, 2, T, T, D, dtype, () => ({ isCausal: true }));
        }
      });
    }
    test(`${dtype}: Tq != Tk (causal is top-left aligned)`, () => {
      check(2, 2, 65, 200, 64, dtype);
      check(2, 2, 200, 7, 64, dtype, () => ({ isCausal: true }));
      check(1, 2, 130, 129, 128, dtype, () => ({ isCausal: true }));
    });
    test(`${dtype}: key padding mask [B, 1, 1, Tk] and additive float mask`, () => {
      check(3, 2, 70, 70, 64, dtype, (d) => ({ attnMask: keyPadding(3, 70, d) }));
      check(3, 2, 70, 70, 64, dtype, (d) => ({ attnMask: keyPadding(3, 70, d), isCausal: true }));
      const bias = ng.randn([2, 1, 50, 90]);
      check(2, 2, 50, 90, 32, dtype, (d) => ({ attnMask: bias.to(d) }));
    });
    test(`${dtype}: unsupported head dims fall back to the simple kernel`, () => {
      check(1, 2, 33, 33, 48, dtype, () => ({ isCausal: true }));
      check(1, 2, 33, 33, 64, dtype, () => ({}), 32);
    });
  }
  test('bfloat16: long rows (T = 1030, D = 64, causal)', () => {
    check(1, 2, 1030, 1030, 64, 'bfloat16', () => ({ isCausal: true }));
  });
});

describeCuda('scaledDotProductAttention on CUDA: against the composed slow attention', () => {
  for (const dtype of ['float32', 'bfloat16', 'float16'] as FloatDType[]) {
    test(`${dtype}: fused equals matmul-softmax-matmul, forward and backward`, () => {
      ng.scope(() => {
        const [q, k, v] = qkv(2, 2, 65, 65, 64).map((t) => t.detach());
        const bias = ng.randn([65, 65]).mul(0.5);
        for (const o of [{}, { causal: true }, { bias }]) {
          const ins = [q, k, v].map((t) => t.to('cuda').to(dtype).requiresGrad_(true));
          const ref = [q, k, v].map((t) => t.to('cuda').requiresGrad_(true));
          const opts: ScaledDotProductAttentionOptions = { isCausal: 'causal' in o, attnMask: 'bias' in o ? bias.to('cuda').to(dtype) : null };
          const y = sdpa(ins[0], ins[1], ins[2], opts);
          const yr = composed(ref[0], ref[1], ref[2], { causal: 'causal' in o, bias: 'bias' in o ? bias.to('cuda') : undefined });
          const t = tol(dtype);
          expectClose(y.float().cpu(), yr.cpu(), { atol: t.atol, rtol: t.rtol });
          const w = ng.randn([...y.shape]).to('cuda');
          y.float().mul(w).sum().backward();
          yr.mul(w).sum().backward();
          for (let i = 0; i < 3; i++) expectClose(ins[i].grad!.float().cpu(), ref[i].grad!.cpu(), { atol: t.gradAtol, rtol: t.gradRtol });
        }
      });
    });
  }
});

describeCuda('scaledDotProductAttention on CUDA: masks, dropout, layouts, determinism', () => {
  for (const dtype of ['float32', ...HALF] as FloatDType[]) {
    test(`${dtype}: fully masked rows give zeros and zero gradients, never NaN`, () => {
      ng.scope(() => {
        const T = 40, D = 64;
        const m: number[] = [];
        for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) m.push(i % 5 === 0 ? 0 : 1);  // rows 0, 5, ... see nothing
        const mask = ng.tensor(m, { dtype: 'bool', shape: [T, T] });
        check(2, 2, T, T, D, dtype, (d) => ({ attnMask: mask.to(d) }));
        const [q, k, v] = qkv(2, 2, T, T, D).map((t) => t.detach().to('cuda').to(dtype).requiresGrad_(true));
        const y = sdpa(q, k, v, { attnMask: mask.to('cuda') });
        y.float().sum().backward();
        for (const t of [y, q.grad!, k.grad!, v.grad!]) expect(t.float().isnan().float().sum().item()).toBe(0);
        const row0 = y.float().cpu().select(2, 0);
        expect(row0.abs().sum().item()).toBe(0);
      });
    });
    test(`${dtype}: dropout keeps exactly the CPU's elements for the same seed`, () => {
      ng.scope(() => {
        // q = k = 0 makes P uniform (1 / Tk); v = I then shows each kept/dropped element.
        const B = 2, H = 2, T = 64, p = 0.3;
        const q = ng.zeros([B, H, T, T]), k = ng.zeros([B, H, T, T]);
        const v = ng.eye(T).reshape([1, 1, T, T]).expand([B, H, T, T]).contiguous();
        for (const isCausal of [false, true]) {
          ng.manualSeed(99);
          const yc = sdpa(q, k, v, { dropoutP: p, isCausal });
          ng.manualSeed(99);
          const yg = sdpa(q.to('cuda').to(dtype), k.to('cuda').to(dtype), v.to('cuda').to(dtype), { dropoutP: p, isCausal });
          const a = yc.dataSync(), b = yg.float().cpu().dataSync();
          for (let i = 0; i < a.length; i++) expect(b[i] === 0, `element ${i}`).toBe(a[i] === 0);
        }
      });
    });
    test(`${dtype}: dropout forward and backward match the CPU for the same seed`, () => {
      const t = tol(dtype);
      compareCpuCuda((q, k, v) => {
        ng.manualSeed(4321);
        return sdpa(q, k, v, { dropoutP: 0.2, isCausal: true });
      }, qkv(2, 2, 65, 65, 64), { grad: true, dtype, ...t });
    });
    test(`${dtype}: strided q/k/v views of a fused [B, T, 3, H, D] projection`, () => {
      const B = 2, T = 37, H = 3, D = 32;
      const t = tol(dtype);
      compareCpuCuda((x) => {
        const parts = x.reshape([B, T, 3, H, D]).permute(2, 0, 3, 1, 4);
        return sdpa(parts.select(0, 0), parts.select(0, 1), parts.select(0, 2), { isCausal: true });
      }, [ng.randn([B, T, 3 * H * D]).requiresGrad_(true)], { grad: true, dtype, ...t });
    });
  }
  test('bfloat16 backward is deterministic (bitwise equal across runs)', () => {
    ng.scope(() => {
      const [q, k, v] = qkv(2, 4, 300, 300, 64).map((t) => t.detach().to('cuda').to('bfloat16'));
      const grads = (): number[][] => {
        const ins = [q, k, v].map((t) => t.detach().requiresGrad_(true));
        sdpa(ins[0], ins[1], ins[2], { isCausal: true }).float().sum().backward();
        return ins.map((t) => Array.from(t.grad!.float().cpu().dataSync()));
      };
      expect(grads()).toEqual(grads());
    });
  });
});

describeCuda('scaledDotProductAttention on CUDA: errors', () => {
  test('rejects integer inputs, mixed devices and head dims beyond the kernels', () => {
    const q = ng.zeros([1, 4, 8], { device: 'cuda' });
    expect(() => sdpa(q.to('int32'), q.to('int32'), q.to('int32'))).toThrow(/nodegrad: scaledDotProductAttention: .*float32, float64, bfloat16 or float16/);
    expect(() => sdpa(q, ng.zeros([1, 4, 8]), q)).toThrow(/nodegrad: scaledDotProductAttention: .*different devices/);
    const big = ng.zeros([1, 4, 300], { device: 'cuda' });
    expect(() => { sdpa(big, big, big); ng.cuda.synchronize(); }).toThrow(/nodegrad: scaledDotProductAttention: head dim too large/);
  });
});
