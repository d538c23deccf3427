// matmul (PyTorch's rules: 1-D operands, batched, broadcast batch dims) and linear
// (x @ wᵀ + b). Both are one native GEMM call over strided views: transposed operands
// (as in every backward here) are read through their strides, never copied.
import type { TypedArray } from '../dtype.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import { isAutocastEnabled, lowPrecision } from '../autocast.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { cast, copy_ } from './elementwise.js';
import { sum, sumToShape } from './reduce.js';
import { expand, reshape, transpose, unsqueeze, squeeze } from './shape.js';
import { checkAlloc, empty } from './alloc.js';
import { checkFloat, checkSameDevice, checkTensor, fmt } from './check.js';
import { broadcastShapes } from './dims.js';
import { promoteTypes } from '../dtype.js';

declare module '../native.js' {
  interface NativeAddon {
    gemm(M: number, N: number, K: number, batchShape: number[],
      a: TypedArray, aOff: number, aSt: number[], b: TypedArray, bOff: number, bSt: number[],
      c: TypedArray, cOff: number, cSt: number[], alpha: number, beta: number): void;
    /** CUDA only: the project's own GEMM even where cuBLASLt is loaded (tests, benchmarks). */
    gemmOwn(M: number, N: number, K: number, batchShape: number[],
      a: TypedArray, aOff: number, aSt: number[], b: TypedArray, bOff: number, bSt: number[],
      c: TypedArray, cOff: number, cSt: number[], alpha: number, beta: number): void;
    /** CUDA only: C = A@B + bias (epilogue 0) or gelu_tanh(A@B + bias) (epilogue 1). */
    gemmBias(M: number, N: number, K: number, batchShape: number[],
      a: TypedArray, aOff: number, aSt: number[], b: TypedArray, bOff: number, bSt: number[],
      bias: TypedArray, biasOff: number, c: TypedArray, cOff: number, cSt: number[], epilogue: number): void;
    cudaGemmBackend?(device: number): string;
    setFloat32MatmulPrecision?(mode: number): void;
  }
}

const PRECISION = { highest: 0, high: 1, medium: 2 } as const;
let f32Precision: keyof typeof PRECISION = 'highest';
/**
 * float32 matmuls on CUDA (torch.set_float32_matmul_precision): 'highest' strict fp32
 * (default), 'high' TF32 tensor cores, 'medium' bf16 tensor cores. The CPU is always fp32.
 */
export function setFloat32MatmulPrecision(p: keyof typeof PRECISION): void {
  if (!(p in PRECISION)) throw new Error(`nodegrad: setFloat32MatmulPrecision: expected 'highest', 'high' or 'medium' (got ${String(p)})`);
  f32Precision = p;
  native.setFloat32MatmulPrecision?.(PRECISION[p]);
}
export function getFloat32MatmulPrecision(): keyof typeof PRECISION {
  return f32Precision;
}

/** C = alpha·A@B + beta·C for A [..., M, K], B [..., K, N] already broadcast to C's batch dims. */
export function gemmInto(a: Tensor, b: Tensor, c: Tensor, alpha = 1, beta = 0): void {
  if (c.device === 'cpu' && (c.dtype === 'bfloat16' || c.dtype === 'float16')) {
    // The CPU has no half GEMM: multiply the (exactly representable) float32 values with
    // float32 accumulation and round once, as the GPU's tensor cores do.
    noGrad(() => {
      const a32 = cast(a, 'float32'), b32 = cast(b, 'float32');
      const c32 = beta !== 0 ? cast(c, 'float32') : empty(c.shape, 'float32', 'cpu', false);
      gemmInto(a32, b32, c32, alpha, beta);
      copy_(c, c32);
      a32.dispose(); b32.dispose(); c32.dispose();
    });
    return;
  }
  const nd = c.ndim;
  const M = c.shape[nd - 2], N = c.shape[nd - 1], K = a.shape[a.ndim - 1];
  const batch = c.shape.slice(0, nd - 2) as number[];
  native.gemm(M, N, K, batch, a.storage.data, a.offset, a.strides as number[], b.storage.data, b.offset,
    b.strides as number[], c.storage.data, c.offset, c.strides as number[], alpha, beta);
}

function matmul2(a: Tensor, b: Tensor): Tensor {
  // a [..., M, K], b [..., K, N] with >= 2 dims each
  const M = a.shape[a.ndim - 2], K = a.shape[a.ndim - 1], N = b.shape[b.ndim - 1];
  if (b.shape[b.ndim - 2] !== K) {
    throw new Error(`nodegrad: matmul: inner dimensions differ: ${fmt(a.shape)} @ ${fmt(b.shape)}`);
  }
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul');
  const ae = expand(a, [...batch, M, K]);
  const be = expand(b, [...batch, K, N]);
  const out = empty([...batch, M, N], a.dtype, a.device, false, 'matmul');
  gemmInto(ae, be, out);
  if (ae !== a) ae.dispose();
  if (be !== b) be.dispose();
  return out;
}

export function matmul(a: Tensor, b: Tensor): Tensor {
  checkTensor(a, 'matmul', 'input');
  checkTensor(b, 'matmul', 'other');
  if (isAutocastEnabled()) {
    const al = lowPrecision(a), bl = lowPrecision(b);
    if (al !== a || bl !== b) return matmul(al, bl);
  }
  checkSameDevice('matmul', a, b);
  checkFloat(a, 'matmul', 'input');
  checkFloat(b, 'matmul', 'other');
  if (a.ndim === 0 || b.ndim === 0) {
    throw new Error(`nodegrad: matmul: both arguments must have at least 1 dim (got ${fmt(a.shape)} @ ${fmt(b.shape)}); use mul for scalars`);
  }
  const dt = promoteTypes(a.dtype, b.dtype);
  const A0 = cast(a, dt), B0 = cast(b, dt);
  // 1-D operands: prepend / append a unit dim, removed from the result.
  const A = A0.ndim === 1 ? unsqueeze(A0, 0) : A0;
  const B = B0.ndim === 1 ? unsqueeze(B0, 1) : B0;
  if (A.shape[A.ndim - 1] !== B.shape[B.ndim - 2]) {
    throw new Error(`nodegrad: matmul: inner dimensions differ: ${fmt(a.shape)} @ ${fmt(b.shape)}`);
  }
  let out = matmul2(A, B);
  if (a.ndim === 1 && b.ndim === 1) out = reshape(out, []);
  else if (a.ndim === 1) out = squeeze(out, -2);
  else if (b.ndim === 1) out = squeeze(out, -1);
  if (needsGrad(a, b)) {
    const aShape = [...A.shape], bShape = [...B.shape];
    const outShapeFull = [...out.shape];
    record(out, 'matmul', [a, b], (g) => {
      // bring g back to [..., M, N]
      let G = g;
      if (a.ndim === 1 && b.ndim === 1) G = reshape(g, [1, 1]);
      else if (a.ndim === 1) G = unsqueeze(g, -2);
      else if (b.ndim === 1) G = unsqueeze(g, -1);
      void outShapeFull;
      const ga = a.requiresGrad ? reshape(sumToShape(matmul(G, transpose(B, -1, -2)), aShape), [...a.shape]) : null;
      const gb = b.requiresGrad ? reshape(sumToShape(matmul(transpose(A, -1, -2), G), bShape), [...b.shape]) : null;
      return [ga && ga.dtype !== a.dtype ? cast(ga, a.dtype) : ga, gb && gb.dtype !== b.dtype ? cast(gb, b.dtype) : gb];
    }, [a.requiresGrad && B, b.requiresGrad && A]);
  }
  return out;
}

/** y = x @ weightᵀ + bias, x [..., in], weight [out, in], bias [out]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  checkTensor(x, 'linear', 'input');
  checkTensor(weight, 'linear', 'weight');
  if (bias) checkTensor(bias, 'linear', 'bias');
  if (isAutocastEnabled()) {
    const xl = lowPrecision(x), wl = lowPrecision(weight), bl = lowPrecision(bias);
    if (xl !== x || wl !== weight || bl !== (bias ?? null)) return linear(xl, wl, bl);
  }
  checkSameDevice('linear', x, weight, bias);
  checkFloat(x, 'linear', 'input');
  if (weight.ndim !== 2) throw new Error(`nodegrad: linear: weight must be 2-D [out, in] (got ${fmt(weight.shape)})`);
  const [outF, inF] = weight.shape;
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== inF) {
    throw new Error(`nodegrad: linear: input's last dim must equal in_features: input ${fmt(x.shape)}, weight ${fmt(weight.shape)} (expected [..., ${inF}])`);
  }
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== outF)) {
    throw new Error(`nodegrad: linear: bias must have shape [${outF}] (got ${fmt(bias.shape)})`);
  }
  if (weight.dtype !== x.dtype || (bias && bias.dtype !== x.dtype)) {
    throw new Error(`nodegrad: linear: dtypes differ: input ${x.dtype}, weight ${weight.dtype}${bias ? `, bias ${bias.dtype}` : ''}`);
  }
  const lead = x.shape.slice(0, -1) as number[];
  if (!x.isContiguous()) checkAlloc(x.shape, x.dtype, x.device, 'linear');  // the reshape below may copy x
  const x2 = reshape(x, [-1, inF]);
  const rows = x2.shape[0];
  const out = empty([rows, outF], x.dtype, x.device, false, 'linear');
  const wt = transpose(weight, 0, 1);
  if (bias && out.device !== 'cpu' && bias.strides[0] === 1) {
    // CUDA: the bias is added in the GEMM's epilogue (no separate pass over the output)
    native.gemmBias(rows, outF, inF, [], x2.storage.data, x2.offset, x2.strides as number[], wt.storage.data, wt.offset,
      wt.strides as number[], bias.storage.data, bias.offset, out.storage.data, 0, [outF, 1], 0);
  } else {
    let beta = 0;
    if (bias) {
      native.copy([rows, outF], out.storage.data, 0, [outF, 1], bias.storage.data, bias.offset, [0, bias.strides[0]]);
      beta = 1;
    }
    gemmInto(x2, wt, out, 1, beta);
  }
  const y = reshape(out, [...lead, outF]);
  if (y !== out) out.dispose();
  if (needsGrad(x, weight, bias)) {
    record(y, 'linear', [x, weight, bias ?? null], (g) => {
      const g2 = reshape(g, [-1, outF]);
      const gx = x.requiresGrad ? reshape(matmul(g2, weight), [...x.shape]) : null;
      const gw = weight.requiresGrad ? matmul(transpose(g2, 0, 1), x2) : null;
      const gb = bias?.requiresGrad ? sum(g2, 0) : null;
      return [gx, gw, gb];
    }, [x.requiresGrad && weight, weight.requiresGrad && x2]);
  }
  return y;
}
