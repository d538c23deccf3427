// The fuzz cases: one generator per family of public ops. A generator draws mostly valid
// arguments with a few bad ones mixed in (wrong shapes and dtypes, disposed tensors,
// NaN / huge / fractional sizes, wrong JavaScript types, out-of-range indices, empty
// tensors), so that both the first checks and the deeper ones are reached.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ng from '../../../lib/index.js';
import {
  anyArg, arr, badJs, badNumber, badScalar, countArg, createOpts, dimArg, DTYPES, HUGE_SIZES, indexSpec, isFloatDT, maybe,
  obj, randomShape, Rng, shapeArg, tspec, val, type Spec, type TensorSpec,
} from './gen.js';

const F = ng.nn.functional;
// Bad arguments are the point here: the public functions are called through this type.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Fn = (...args: any[]) => unknown;

export interface CaseDef {
  /** What is called, for the log ("add", "Tensor.narrow", ...). */
  name: string;
  args: Spec[];
  call: Fn;
  /** Op names an error of this case may carry after "nodegrad: " (default: the family's). */
  ops?: string[];
}
export type Family = { name: string; ops: string[]; gen: (r: Rng) => CaseDef };

const pickFn = <T extends Record<string, unknown>>(r: Rng, fns: T): [string, Fn] => {
  const k = r.pick(Object.keys(fns));
  return [k, fns[k] as unknown as Fn];
};

// ---- creation -------------------------------------------------------------------------------

const creation: Family = {
  name: 'creation',
  ops: ['tensor', 'full', 'arange', 'linspace', 'eye', 'rand', 'randn', 'randint', 'bernoulli', 'reshape', 'to'],
  gen(r) {
    const kind = r.int(9);
    if (kind === 0) {
      // nested arrays with odd leaves
      const leaf = (): unknown => (r.chance(0.8) ? Math.round(r.next() * 10) / 2 : r.chance(0.5) ? badNumber(r) : badJs(r));
      const shape = randomShape(r, 3, 3);
      const build = (d: number): unknown => (d === shape.length ? leaf() : Array.from({ length: shape[d] + (r.chance(0.05) ? 1 : 0) }, () => build(d + 1)));
      const data = r.chance(0.1) ? badJs(r) : build(0);
      return { name: 'tensor', args: [val(data), createOpts(r)], call: ng.tensor as Fn };
    }
    if (kind === 1) {
      const n = r.range(0, 6);
      const Ctor = r.pick([Float32Array, Float64Array, Int32Array, Uint8Array, Uint16Array, Int8Array, BigInt64Array]);
      const data = Ctor === BigInt64Array ? new BigInt64Array(n) : new (Ctor as Float64ArrayConstructor)(Array.from({ length: n }, () => (r.chance(0.2) ? badNumber(r) : r.next() * 8 - 4)));
      const opts = r.chance(0.5) ? obj({ shape: val(shapeArg(r, [n])), dtype: val(r.pick([...DTYPES, 'int64'])) }) : createOpts(r);
      return { name: 'tensor', args: [val(data), opts], call: ng.tensor as Fn };
    }
    if (kind === 2) {
      const [name, fn] = pickFn(r, { zeros: ng.zeros, ones: ng.ones });
      return { name, args: [val(shapeArg(r)), createOpts(r)], call: fn, ops: ['full'] };
    }
    if (kind === 3) {
      return { name: 'full', args: [val(shapeArg(r)), val(r.chance(0.6) ? r.pick([0, 1, -2.5, 7]) : badScalar(r)), createOpts(r)], call: ng.full as Fn };
    }
    if (kind === 4) {
      const a = [r.chance(0.7) ? r.range(-5, 5) : badScalar(r), r.chance(0.6) ? r.range(-5, 10) : r.chance(0.3) ? r.pick(HUGE_SIZES) : badScalar(r),
        r.chance(0.7) ? r.pick([1, 2, -1, 0.5, 3]) : badScalar(r)];
      return { name: 'arange', args: [val(a[0]), val(a[1]), val(a[2]), createOpts(r)], call: ng.arange as Fn };
    }
    if (kind === 5) {
      return {
        name: 'linspace', args: [val(maybe(r, 0.2, 0, () => badScalar(r))), val(maybe(r, 0.2, 1, () => badScalar(r))),
          val(countArg(r, r.range(0, 6))), createOpts(r)], call: ng.linspace as Fn,
      };
    }
    if (kind === 6) {
      return { name: 'eye', args: [val(countArg(r, r.range(0, 4))), val(countArg(r, r.range(0, 4))), createOpts(r)], call: ng.eye as Fn };
    }
    if (kind === 7) {
      const [name, fn] = pickFn(r, { rand: ng.rand, randn: ng.randn, bernoulli: ng.bernoulli, randint: ng.randint });
      if (name === 'bernoulli') return { name, args: [val(shapeArg(r)), val(maybe(r, 0.3, 0.5, () => badScalar(r))), createOpts(r)], call: fn };
      if (name === 'randint') {
        return { name, args: [val(maybe(r, 0.3, 0, () => badScalar(r))), val(maybe(r, 0.3, 5, () => r.pick([...HUGE_SIZES, 2 ** 31 + 1, -5]))), val(shapeArg(r)), createOpts(r)], call: fn };
      }
      const o = createOpts(r);
      if (o.t === 'object' && r.chance(0.4)) Object.assign(o.fields, name === 'rand' ? { low: val(badScalar(r)), high: val(maybe(r, 0.5, 1, () => badScalar(r))) } : { mean: val(badScalar(r)), std: val(badScalar(r)) });
      return { name, args: [val(shapeArg(r)), o], call: fn };
    }
    const [name, fn] = pickFn(r, { zerosLike: ng.zerosLike, onesLike: ng.onesLike, fullLike: ng.fullLike });
    const args: Spec[] = [anyArg(r)];
    if (name === 'fullLike') args.push(val(maybe(r, 0.3, 2, () => badScalar(r))));
    args.push(createOpts(r));
    return { name, args, call: fn, ops: ['full', name] };
  },
};

// ---- elementwise ------------------------------------------------------------------------------

const UNARY = {
  neg: ng.neg, exp: ng.exp, log: ng.log, sqrt: ng.sqrt, rsqrt: ng.rsqrt, abs: ng.abs, tanh: ng.tanh, sigmoid: ng.sigmoid,
  relu: ng.relu, silu: ng.silu, square: ng.square, reciprocal: ng.reciprocal, sin: ng.sin, cos: ng.cos, sign: ng.sign,
  floor: ng.floor, ceil: ng.ceil, round: ng.round, logicalNot: ng.logicalNot, isnan: ng.isnan, isinf: ng.isinf,
  log1p: ng.log1p, expm1: ng.expm1, erf: ng.erf,
};
const unary: Family = {
  name: 'unary',
  ops: [...Object.keys(UNARY), 'gelu', 'leakyRelu', 'clamp', 'to'],
  gen(r) {
    const k = r.int(10);
    if (k === 0) return { name: 'gelu', args: [anyArg(r), val(r.chance(0.5) ? undefined : { approximate: r.pick(['none', 'tanh', 'fast', null, 1]) })], call: ng.gelu as Fn };
    if (k === 1) return { name: 'leakyRelu', args: [anyArg(r), val(maybe(r, 0.4, 0.1, () => badScalar(r)))], call: ng.leakyRelu as Fn };
    if (k === 2) return { name: 'clamp', args: [anyArg(r), val(maybe(r, 0.4, -1, () => badScalar(r))), val(maybe(r, 0.4, 1, () => badScalar(r)))], call: ng.clamp as Fn };
    const [name, fn] = pickFn(r, UNARY);
    return { name, args: [anyArg(r)], call: fn };
  },
};

const BINARY = {
  add: ng.add, sub: ng.sub, mul: ng.mul, div: ng.div, pow: ng.pow, maximum: ng.maximum, minimum: ng.minimum, eq: ng.eq,
  ne: ng.ne, lt: ng.lt, le: ng.le, gt: ng.gt, ge: ng.ge, logicalAnd: ng.logicalAnd, logicalOr: ng.logicalOr,
  floorDivide: ng.floorDivide, remainder: ng.remainder,
};
const BIN_OPS: Record<string, string[]> = { floorDivide: ['floorDiv'], logicalAnd: ['logicalAnd', 'to'], logicalOr: ['logicalOr', 'to'] };

/** Two broadcast-compatible shapes (or deliberately incompatible ones). */
function pairShapes(r: Rng): [number[], number[]] {
  const a = randomShape(r, 3, 3);
  if (r.chance(0.15)) return [a, randomShape(r, 3, 3)];
  const b = a.slice(r.int(a.length + 1)).map((d) => (r.chance(0.3) ? 1 : d));
  return r.chance(0.5) ? [a, b] : [b, a];
}

const binary: Family = {
  name: 'binary',
  ops: [...Object.keys(BINARY), 'floorDiv', 'to'],
  gen(r) {
    const [name, fn] = pickFn(r, BINARY);
    const [sa, sb] = pairShapes(r);
    const arg = (s: number[]): Spec => (r.chance(0.2) ? val(r.chance(0.5) ? r.pick([2, -1.5, 0, 3e10]) : badScalar(r)) : anyArg(r, { shape: s, dtype: 'float32' }));
    const args = [arg(sa), arg(sb)];
    if ((name === 'add' || name === 'sub') && r.chance(0.3)) args.push(val(maybe(r, 0.5, 2, () => badScalar(r))));
    return { name, args, call: fn, ops: BIN_OPS[name] ?? [name, 'to'] };
  },
};

const whereFamily: Family = {
  name: 'where',
  ops: ['where', 'maskedFill', 'to', 'full'],
  gen(r) {
    const [sa, sb] = pairShapes(r);
    if (r.chance(0.5)) {
      return {
        name: 'maskedFill',
        args: [anyArg(r, { shape: sa }), anyArg(r, { shape: sb, dtype: 'bool' }), val(maybe(r, 0.4, 1.5, () => badScalar(r)))], call: ng.maskedFill as Fn,
      };
    }
    const side = (): Spec => (r.chance(0.25) ? val(r.chance(0.5) ? r.pick([0, 2.5, 3e10]) : badScalar(r)) : anyArg(r, { shape: sa }));
    return { name: 'where', args: [anyArg(r, { shape: sb, dtype: 'bool' }), side(), side()], call: ng.where as Fn };
  },
};

// ---- reductions --------------------------------------------------------------------------------

const REDUCE = {
  sum: ng.sum, mean: ng.mean, prod: ng.prod, amax: ng.amax, amin: ng.amin, max: ng.max, min: ng.min, argmax: ng.argmax,
  argmin: ng.argmin, logsumexp: ng.logsumexp,
};
const reductions: Family = {
  name: 'reduce',
  ops: [...Object.keys(REDUCE), 'var', 'std', 'norm', 'to', 'reshape'],
  gen(r) {
    const x = tspec(r, { dtype: 'float32' });
    const nd = x.shape.length;
    const dims = (): unknown => (r.chance(0.3) ? undefined : r.chance(0.3) ? [dimArg(r, nd), dimArg(r, nd)] : dimArg(r, nd));
    const keep = (): unknown => maybe(r, 0.15, r.chance(0.5), () => badJs(r));
    const k = r.int(12);
    if (k === 0) return { name: 'var', args: [x, val(dims()), val(r.chance(0.5) ? undefined : { correction: maybe(r, 0.5, 1, () => badScalar(r)), keepdim: keep() })], call: ng.var as Fn, ops: ['var', 'to'] };
    if (k === 1) return { name: 'std', args: [x, val(dims()), val(r.chance(0.5) ? undefined : { correction: maybe(r, 0.5, 0, () => badScalar(r)) })], call: ng.std as Fn, ops: ['var', 'std', 'sqrt', 'to'] };
    if (k === 2) return { name: 'norm', args: [x, val(maybe(r, 0.5, r.pick([1, 2, Infinity, 3]), () => badScalar(r))), val(dims()), val(keep())], call: ng.norm as Fn, ops: ['norm', 'sum', 'amax', 'abs', 'pow', 'to'] };
    const [name, fn] = pickFn(r, REDUCE);
    const single = name === 'max' || name === 'min' || name === 'argmax' || name === 'argmin';
    return { name, args: [x, val(single ? (r.chance(0.2) ? undefined : dimArg(r, nd)) : dims()), val(keep())], call: fn };
  },
};

// ---- matmul / linear ------------------------------------------------------------------------------

const matmulFamily: Family = {
  name: 'matmul',
  ops: ['matmul', 'linear', 'to', 'reshape', 'expand'],
  gen(r) {
    const M = r.range(0, 4), K = r.range(0, 4), N = r.range(0, 4);
    const batch = r.chance(0.3) ? [r.range(1, 3)] : [];
    if (r.chance(0.5)) {
      const a = r.chance(0.15) ? [K] : [...batch, M, K];
      const b = r.chance(0.15) ? [K] : [...(r.chance(0.5) ? batch : []), r.chance(0.1) ? K + 1 : K, N];
      return { name: 'matmul', args: [anyArg(r, { shape: a, dtype: 'float32' }), anyArg(r, { shape: b, dtype: 'float32' })], call: ng.matmul as Fn };
    }
    const x = anyArg(r, { shape: [...batch, M, r.chance(0.1) ? K + 1 : K], dtype: 'float32' });
    const w = anyArg(r, { shape: r.chance(0.1) ? [N, K, 1] : [N, K], dtype: 'float32' });
    const b = r.chance(0.4) ? val(r.chance(0.5) ? null : undefined) : anyArg(r, { shape: [r.chance(0.1) ? N + 1 : N], dtype: 'float32' });
    return { name: 'linear', args: [x, w, b], call: ng.linear as Fn };
  },
};

// ---- softmax, layerNorm, attention, losses, embedding --------------------------------------------

const softmaxFamily: Family = {
  name: 'softmax',
  ops: ['softmax', 'logSoftmax'],
  gen(r) {
    const x = tspec(r, { dtype: 'float32' });
    const [name, fn] = pickFn(r, { softmax: ng.softmax, logSoftmax: ng.logSoftmax });
    return { name, args: [r.chance(0.1) ? val(badScalar(r)) : x, val(dimArg(r, x.shape.length))], call: fn };
  },
};

const layerNormFamily: Family = {
  name: 'layerNorm',
  ops: ['layerNorm', 'addLayerNorm', 'add'],
  gen(r) {
    const shape = randomShape(r, 3, 4);
    const k = r.int(Math.max(1, shape.length) + 1);
    const ns = shape.slice(shape.length - k);
    const nsArg = maybe(r, 0.25, ns, () => r.pick<unknown>([[], [0], [-1], [1.5], [NaN], [2 ** 53], 3, null, 'a', [...ns, 2], [9]]));
    const param = (): Spec => (r.chance(0.3) ? val(r.chance(0.5) ? null : undefined) : anyArg(r, { shape: r.chance(0.1) ? [...ns, 1] : ns, dtype: 'float32' }));
    const eps = val(maybe(r, 0.25, 1e-5, () => badScalar(r)));
    if (r.chance(0.3)) {
      return {
        name: 'addLayerNorm', args: [anyArg(r, { shape, dtype: 'float32' }), anyArg(r, { shape, dtype: 'float32' }), val(nsArg), param(), param(), eps],
        call: F.addLayerNorm as Fn,
      };
    }
    return { name: 'layerNorm', args: [anyArg(r, { shape, dtype: 'float32' }), val(nsArg), param(), param(), eps], call: F.layerNorm as Fn };
  },
};

const attentionFamily: Family = {
  name: 'attention',
  ops: ['scaledDotProductAttention', 'to'],
  gen(r) {
    const lead = r.chance(0.5) ? [r.range(1, 2), r.range(1, 2)] : r.chance(0.5) ? [r.range(1, 2)] : [];
    const Tq = r.range(0, 4), Tk = r.range(0, 4), D = r.range(0, 4), Dv = r.range(1, 4);
    const bump = (n: number): number => (r.chance(0.1) ? n + 1 : n);
    const q = anyArg(r, { shape: [...lead, Tq, D], dtype: 'float32' });
    const k = anyArg(r, { shape: [...lead, Tk, bump(D)], dtype: 'float32' });
    const v = anyArg(r, { shape: [...lead, bump(Tk), Dv], dtype: 'float32' });
    const f: Record<string, Spec> = {};
    if (r.chance(0.4)) f.isCausal = val(maybe(r, 0.2, r.chance(0.5), () => badJs(r)));
    if (r.chance(0.3)) f.attnMask = anyArg(r, { shape: r.chance(0.8) ? [Tq, Tk] : [Tq + 1, Tk], dtype: r.chance(0.5) ? 'bool' : 'float32' });
    if (r.chance(0.3)) f.dropoutP = val(maybe(r, 0.5, 0.2, () => badScalar(r)));
    if (r.chance(0.3)) f.scale = val(maybe(r, 0.5, 0.5, () => badScalar(r)));
    return { name: 'scaledDotProductAttention', args: [q, k, v, r.chance(0.05) ? val(badJs(r)) : obj(f)], call: F.scaledDotProductAttention as Fn };
  },
};

const lossFamily: Family = {
  name: 'loss',
  ops: ['crossEntropy', 'nllLoss', 'mseLoss', 'binaryCrossEntropyWithLogits', 'sum', 'div', 'mean', 'to'],
  gen(r) {
    const N = r.range(0, 4), C = r.range(0, 5);
    const k = r.int(4);
    if (k <= 1) {
      const extra = r.chance(0.2) ? [r.range(1, 3)] : [];
      const logits = anyArg(r, { shape: r.chance(0.1) ? [C] : [N, C, ...extra], dtype: 'float32' });
      const targets = r.chance(0.15) ? anyArg(r, { dtype: 'int32' }) : indexSpec(r, r.chance(0.1) ? [N + 1] : [N, ...extra], C);
      const f: Record<string, Spec> = {};
      if (r.chance(0.3)) f.ignoreIndex = val(maybe(r, 0.5, r.pick([-100, 0, 1]), () => badScalar(r)));
      if (r.chance(0.3)) f.reduction = val(r.pick(['mean', 'sum', 'none', 'avg', null, 1]));
      if (r.chance(0.2)) f.weight = anyArg(r, { shape: [r.chance(0.8) ? C : C + 1], dtype: 'float32' });
      if (k === 0 && r.chance(0.3)) f.labelSmoothing = val(maybe(r, 0.5, 0.1, () => badScalar(r)));
      return k === 0
        ? { name: 'crossEntropy', args: [logits, targets, obj(f)], call: F.crossEntropy as Fn }
        : { name: 'nllLoss', args: [logits, targets, obj(f)], call: F.nllLoss as Fn };
    }
    const shape = randomShape(r, 3, 3);
    const other = r.chance(0.15) ? randomShape(r, 3, 3) : shape;
    if (k === 2) return { name: 'mseLoss', args: [anyArg(r, { shape, dtype: 'float32' }), anyArg(r, { shape: other, dtype: 'float32' }), val(r.chance(0.5) ? undefined : { reduction: r.pick(['mean', 'sum', 'none', 'x']) })], call: F.mseLoss as Fn };
    const f: Record<string, Spec> = {};
    if (r.chance(0.3)) f.posWeight = anyArg(r, { shape: shape.slice(-1), dtype: 'float32' });
    if (r.chance(0.3)) f.weight = anyArg(r, { shape: other, dtype: 'float32' });
    return { name: 'binaryCrossEntropyWithLogits', args: [anyArg(r, { shape, dtype: 'float32' }), anyArg(r, { shape: other, dtype: 'float32' }), obj(f)], call: F.binaryCrossEntropyWithLogits as Fn };
  },
};

const embeddingFamily: Family = {
  name: 'embedding',
  ops: ['embedding'],
  gen(r) {
    const V = r.range(0, 5), C = r.range(0, 4);
    const ids = r.chance(0.15) ? anyArg(r, { dtype: 'int32' }) : indexSpec(r, randomShape(r, 2, 3), V);
    const w = anyArg(r, { shape: r.chance(0.1) ? [V] : [V, C], dtype: 'float32' });
    const opts = r.chance(0.6) ? val(undefined) : val({ paddingIdx: maybe(r, 0.5, 0, () => badScalar(r)) });
    return { name: 'embedding', args: [ids, w, opts], call: F.embedding as Fn };
  },
};

// ---- indexing ------------------------------------------------------------------------------------

const indexingFamily: Family = {
  name: 'indexing',
  ops: ['gather', 'indexSelect', 'topk', 'scatterAdd', 'indexAdd', 'reshape'],
  gen(r) {
    const x = tspec(r, { dtype: r.chance(0.8) ? 'float32' : 'int32' });
    // a huge broadcast view here would be legitimate but endless work (topk reads it in place)
    if (x.view === 'expand') x.expandTo = [3, ...x.shape];
    const nd = x.shape.length;
    const dim = dimArg(r, nd);
    const d = typeof dim === 'number' && Number.isInteger(dim) && dim >= -nd && dim < nd ? (dim + nd) % Math.max(nd, 1) : 0;
    const n = x.shape[d] ?? 1;
    const k = r.int(5);
    if (k === 0 || k === 1) {
      const ishape = x.shape.map((s, i) => (i === d ? r.range(0, 3) : r.chance(0.1) ? s + 1 : Math.min(s, r.range(0, s))));
      const index = r.chance(0.1) ? anyArg(r) : indexSpec(r, ishape, n);
      if (k === 0) return { name: 'gather', args: [x, val(dim), index], call: ng.gather as Fn };
      const src = anyArg(r, { shape: ishape, dtype: x.dtype });
      return { name: 'scatterAdd', args: [x, val(dim), index, src], call: ng.scatterAdd as Fn };
    }
    if (k === 2 || k === 3) {
      const m = r.range(0, 4);
      const index = r.chance(0.1) ? anyArg(r) : indexSpec(r, r.chance(0.1) ? [m, 1] : [m], n);
      if (k === 2) return { name: 'indexSelect', args: [x, val(dim), index], call: ng.indexSelect as Fn };
      const sshape = x.shape.map((s, i) => (i === d ? m : s));
      return { name: 'indexAdd', args: [x, val(dim), index, anyArg(r, { shape: sshape, dtype: x.dtype })], call: ng.indexAdd as Fn };
    }
    const opts = r.chance(0.3) ? val(undefined) : val({ dim, largest: maybe(r, 0.1, r.chance(0.5), () => badJs(r)), sorted: maybe(r, 0.1, true, () => badJs(r)) });
    return { name: 'topk', args: [x, val(countArg(r, r.range(0, n))), opts], call: ng.topk as Fn };
  },
};

// ---- shapes and views -----------------------------------------------------------------------------

const shapeFamily: Family = {
  name: 'shape',
  ops: ['reshape', 'view', 'flatten', 'permute', 'transpose', 'narrow', 'slice', 'select', 'expand', 'unsqueeze', 'squeeze',
    'split', 'chunk', 'contiguous', 'clone', 'detach', 'size', 't'],
  gen(r) {
    const x = tspec(r);
    const nd = x.shape.length;
    const n = x.shape[0] ?? 1;
    const k = r.int(15);
    const shp = (): unknown => {
      const numel = x.shape.reduce((a, b) => a * b, 1);
      return maybe(r, 0.4, r.chance(0.5) ? [numel] : [-1, ...(numel % 2 === 0 && numel > 0 ? [2] : [])], () => shapeArg(r));
    };
    switch (k) {
      case 0: return { name: 'reshape', args: [x, val(shp())], call: ng.reshape as Fn };
      case 1: return { name: 'view', args: [x, val(shp())], call: ng.view as Fn };
      case 2: return { name: 'flatten', args: [x, val(dimArg(r, nd)), val(dimArg(r, nd))], call: ng.flatten as Fn, ops: ['flatten', 'reshape'] };
      case 3: {
        const perm = x.shape.map((_, i) => nd - 1 - i);
        return { name: 'permute', args: [x, val(maybe(r, 0.4, perm, () => r.pick<unknown>([[0, 0], [nd], [], [0.5], null, 'ab', [...perm, nd]])))], call: ng.permute as Fn };
      }
      case 4: return { name: 'transpose', args: [x, val(dimArg(r, nd)), val(dimArg(r, nd))], call: ng.transpose as Fn, ops: ['transpose', 'permute'] };
      case 5: return { name: 'narrow', args: [x, val(dimArg(r, nd)), val(countArg(r, r.range(-n, n))), val(countArg(r, r.range(0, n)))], call: ng.narrow as Fn, ops: ['narrow', 'slice'] };
      case 6: return {
        name: 'slice', args: [x, val(dimArg(r, nd)), val(maybe(r, 0.3, r.range(-n, n), () => badScalar(r))), val(maybe(r, 0.3, r.range(-n, n + 2), () => badScalar(r))),
          val(maybe(r, 0.3, r.range(1, 3), () => badScalar(r)))], call: ng.slice as Fn,
      };
      case 7: return { name: 'select', args: [x, val(dimArg(r, nd)), val(countArg(r, r.range(-n, n - 1)))], call: ng.select as Fn };
      case 8: return { name: 'expand', args: [x, val(maybe(r, 0.5, [2, ...x.shape.map((s) => (s === 1 ? 3 : s))], () => shapeArg(r)))], call: ng.expand as Fn };
      case 9: return { name: 'unsqueeze', args: [x, val(dimArg(r, nd + 1))], call: ng.unsqueeze as Fn, ops: ['unsqueeze', 'reshape'] };
      case 10: return { name: 'squeeze', args: [x, val(r.chance(0.3) ? undefined : r.chance(0.2) ? [dimArg(r, nd)] : dimArg(r, nd))], call: ng.squeeze as Fn, ops: ['squeeze', 'reshape'] };
      case 11: return { name: 'split', args: [x, val(maybe(r, 0.4, r.chance(0.5) ? 1 : [n], () => r.chance(0.5) ? badScalar(r) : [n, -1, 1])), val(dimArg(r, nd))], call: ng.split as Fn, ops: ['split', 'narrow'] };
      case 12: return { name: 'chunk', args: [x, val(countArg(r, r.range(1, 3))), val(dimArg(r, nd))], call: ng.chunk as Fn, ops: ['chunk', 'split', 'narrow'] };
      case 13: {
        const [name, fn] = pickFn(r, { contiguous: ng.contiguous, clone: ng.clone, detach: ng.detach });
        return { name, args: [r.chance(0.15) ? val(badJs(r)) : x], call: fn };
      }
      default: {
        // the same ops as Tensor methods with spread arguments
        const m = r.pick(['reshape', 'view', 'permute', 'expand', 'size', 't', 'T', 'flatten', 'squeeze', 'unsqueeze']);
        const s = shp();
        const args: unknown[] = m === 'size' || m === 'squeeze' || m === 'unsqueeze' ? [dimArg(r, nd)] : m === 't' || m === 'T' ? [] : m === 'flatten' ? [dimArg(r, nd), dimArg(r, nd)]
          : r.chance(0.5) ? [s] : Array.isArray(s) ? s : [badScalar(r), badScalar(r)];
        return {
          name: `Tensor.${m}`, args: [x, val(args)],
          call: (t: ng.Tensor, a: unknown[]) => (m === 'T' ? t.T : (t as unknown as Record<string, Fn>)[m](...a)),
          ops: [m, 'reshape', 'permute', 'transpose', 'view', 'expand', 'size', 't', 'flatten', 'squeeze', 'unsqueeze'],
        };
      }
    }
  },
};

const catFamily: Family = {
  name: 'cat',
  ops: ['cat', 'stack', 'unsqueeze', 'reshape'],
  gen(r) {
    const shape = randomShape(r, 3, 3);
    const nd = shape.length;
    const n = r.range(0, 3);
    const items: Spec[] = [];
    for (let i = 0; i < n; i++) {
      const s = r.chance(0.15) ? randomShape(r, 3, 3) : shape.map((d, j) => (j === 0 && r.chance(0.5) ? r.range(0, 3) : d));
      items.push(r.chance(0.08) ? val(badScalar(r)) : tspec(r, { shape: s, dtype: 'float32' }));
    }
    const list = r.chance(0.07) ? val(badJs(r)) : arr(items);
    return r.chance(0.5)
      ? { name: 'cat', args: [list, val(r.chance(0.3) ? undefined : dimArg(r, nd))], call: ng.cat as Fn }
      : { name: 'stack', args: [list, val(r.chance(0.3) ? undefined : dimArg(r, nd + 1))], call: ng.stack as Fn };
  },
};

// ---- conv and pooling -------------------------------------------------------------------------------

const intPair = (r: Rng, valid: number | [number, number]): unknown =>
  maybe(r, 0.25, valid, () => r.pick<() => unknown>([() => badScalar(r), () => [1], () => [1, 2, 3], () => [r.pick(HUGE_SIZES), 1], () => [1e9, 1e9], () => 'same', () => [1.5, 1]])());

const convFamily: Family = {
  name: 'conv',
  ops: ['conv2d', 'maxPool2d', 'avgPool2d', 'adaptiveAvgPool2d', 'reshape'],
  gen(r) {
    const N = r.range(0, 2), C = r.range(1, 3), H = r.range(0, 6), W = r.range(1, 6);
    const xs = r.chance(0.15) ? [C, H, W] : r.chance(0.1) ? [H, W] : [N, C, H, W];
    const x = anyArg(r, { shape: xs, dtype: 'float32' });
    const k = r.int(5);
    if (k <= 1) {
      const groups = r.chance(0.8) ? 1 : r.pick([C, 2, 0, 1.5, -1, 1e9]);
      const O = r.range(1, 3) * (typeof groups === 'number' && Number.isInteger(groups) && groups > 0 && groups < 10 ? groups : 1);
      const Cg = r.chance(0.9) && typeof groups === 'number' && groups > 0 && Number.isInteger(groups) && C % groups === 0 ? C / groups : C + 1;
      const kh = r.range(0, 3), kw = r.range(1, 3);
      const w = anyArg(r, { shape: r.chance(0.1) ? [O, Cg, kh] : [O, Cg, kh, kw], dtype: 'float32' });
      const b = r.chance(0.5) ? val(undefined) : anyArg(r, { shape: [r.chance(0.9) ? O : O + 1], dtype: 'float32' });
      const opts: Record<string, unknown> = {};
      if (r.chance(0.4)) opts.stride = intPair(r, r.range(1, 2));
      if (r.chance(0.4)) opts.padding = r.chance(0.2) ? r.pick(['same', 'valid', 'full']) : intPair(r, r.range(0, 2));
      if (r.chance(0.3)) opts.dilation = intPair(r, r.range(1, 2));
      if (groups !== 1) opts.groups = groups;
      return { name: 'conv2d', args: [x, w, b, val(opts)], call: F.conv2d as Fn };
    }
    if (k === 2 || k === 3) {
      const name = k === 2 ? 'maxPool2d' : 'avgPool2d';
      const opts: Record<string, unknown> = { kernelSize: intPair(r, r.range(1, 3)) };
      if (r.chance(0.4)) opts.stride = intPair(r, r.range(1, 2));
      if (r.chance(0.4)) opts.padding = intPair(r, r.range(0, 1));
      if (k === 2 && r.chance(0.3)) opts.dilation = intPair(r, r.range(1, 2));
      if (r.chance(0.3)) opts.ceilMode = maybe(r, 0.2, true, () => badJs(r));
      if (k === 3 && r.chance(0.3)) opts.divisorOverride = maybe(r, 0.5, 2, () => badScalar(r));
      const o = r.chance(0.2) ? (r.chance(0.5) ? opts.kernelSize : badJs(r)) : opts;
      return { name, args: [x, val(o)], call: (k === 2 ? F.maxPool2d : F.avgPool2d) as Fn };
    }
    return { name: 'adaptiveAvgPool2d', args: [x, val(maybe(r, 0.4, r.chance(0.5) ? r.range(1, 3) : [r.range(1, 3), null], () => r.pick<unknown>([0, -1, 1.5, [1], [null, null, 1], 2 ** 53, [2 ** 40, 2 ** 40], 'a', null])))], call: F.adaptiveAvgPool2d as Fn };
  },
};

const dropoutFamily: Family = {
  name: 'dropout',
  ops: ['dropout', 'batchNorm', 'mul', 'var', 'mean', 'to'],
  gen(r) {
    if (r.chance(0.5)) {
      return { name: 'dropout', args: [anyArg(r, { dtype: 'float32' }), val(maybe(r, 0.3, r.pick([0, 0.5, 1]), () => badScalar(r))), val(maybe(r, 0.2, true, () => badJs(r)))], call: F.dropout as Fn };
    }
    const N = r.range(0, 3), C = r.range(0, 3);
    const x = anyArg(r, { shape: r.chance(0.5) ? [N, C] : [N, C, r.range(1, 3)], dtype: 'float32' });
    const ch = (): Spec => (r.chance(0.3) ? val(null) : anyArg(r, { shape: [r.chance(0.9) ? C : C + 1], dtype: 'float32', allowGrad: false }));
    const opts = val({ training: maybe(r, 0.2, r.chance(0.5), () => badJs(r)), momentum: maybe(r, 0.2, 0.1, () => badScalar(r)), eps: maybe(r, 0.2, 1e-5, () => badScalar(r)) });
    return { name: 'batchNorm', args: [x, ch(), ch(), ch(), ch(), opts], call: F.batchNorm as Fn };
  },
};

// ---- optimizers ------------------------------------------------------------------------------------

const optimFamily: Family = {
  name: 'optim',
  ops: ['AdamW', 'SGD', 'AdamW.loadStateDict', 'SGD.loadStateDict', 'AdamW.setModelCopy'],
  gen(r) {
    const adam = r.chance(0.5);
    const params: Spec[] = [];
    for (let i = 0, n = r.range(0, 3); i < n; i++) params.push(r.chance(0.85) ? tspec(r, { dtype: 'float32', allowViews: r.chance(0.2), allowGrad: false }) : val(badScalar(r)));
    const gradShapes = params.map((p) => (p.t === 'tensor' ? (r.chance(0.1) ? randomShape(r) : (p as TensorSpec).shape) : [1]));
    const grads = params.map((p, i) => (r.chance(0.2) ? val(null) : tspec(r, { shape: p.t === 'tensor' ? gradShapes[i] : [1], dtype: 'float32', allowGrad: false })));
    const o: Record<string, unknown> = {};
    const hyper = adam ? ['lr', 'betas', 'eps', 'weightDecay', 'amsgrad', 'fused'] : ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov'];
    for (const h of hyper) {
      if (!r.chance(0.3)) continue;
      o[h] = h === 'betas' ? maybe(r, 0.5, [0.9, 0.99], () => r.pick<unknown>([[1, 0.9], [0.9], [NaN, 0.9], 'x', null])) : h === 'nesterov' || h === 'amsgrad' || h === 'fused'
        ? maybe(r, 0.3, r.chance(0.5), () => badJs(r)) : maybe(r, 0.4, 0.01, () => badScalar(r));
    }
    if (r.chance(0.05)) o.bogus = 1;
    const stepOpts = r.chance(0.6) ? undefined : { gradScale: maybe(r, 0.5, 0.5, () => badScalar(r)), ...(adam && r.chance(0.3) ? { maxGradNorm: maybe(r, 0.5, 1, () => badScalar(r)) } : {}) };
    const asGroups = r.chance(0.2);
    const action = r.int(4);
    return {
      name: adam ? 'AdamW.step' : 'SGD.step',
      args: [arr(params), arr(grads), val(o), val(stepOpts), val(asGroups), val(action)],
      call: (ps: unknown[], gs: unknown[], opts: unknown, so: unknown, groups: boolean, act: number) => {
        ps.forEach((p, i) => { if (p instanceof ng.Tensor && !p.isDisposed && isFloatDT(p.dtype) && p.isLeaf) { p.requiresGrad_(true); p.grad = gs[i] as ng.Tensor; } });
        const Ctor = (adam ? ng.optim.AdamW : ng.optim.SGD) as unknown as new (p: unknown, o: unknown) => ng.optim.Optimizer<{ lr: number }>;
        const opt = new Ctor(groups ? [{ params: ps }] : ps, opts);
        try {
          if (act === 3) {
            opt.step(so as never);
            const sd = opt.stateDict();
            // a state dict with one entry changed
            const e = Object.values(sd.state)[0] as Record<string, unknown> | undefined;
            if (e) { const key = Object.keys(e)[0]; e[key] = act % 2 ? ng.zeros([7]) : NaN; }
            opt.loadStateDict(sd);
          } else {
            opt.step(so as never);
            opt.step(so as never);
            opt.zeroGrad({ setToNone: act === 1 });
          }
        } finally {
          opt.dispose();
        }
      },
    };
  },
};

// ---- Tensor methods ---------------------------------------------------------------------------------

const METHODS = ['item', 'tolist', 'dataSync', 'toString', 'to', 'copy_', 'fill_', 'add_', 'sub_', 'mul_', 'div_', 'clamp_',
  'backward', 'requiresGrad_', 'float', 'int', 'bool', 'double', 'zeroGrad', 'dispose', 'size', 'isContiguous', 'zero_',
  'onesLike', 'zerosLike', 'matmul', 'softmax', 'gather', 'indexSelect', 'topk', 'sum', 'max', 'cuda', 'cpu', 'retainGrad', 'numel'] as const;

const tensorMethods: Family = {
  name: 'Tensor',
  ops: [...METHODS, 'data', 'full', 'copy', 'backward', 'to', 'fill', 'clamp', 'size', 'matmul', 'softmax', 'gather', 'indexSelect',
    'topk', 'sum', 'amax', 'max', 'mul', 'add', 'sub', 'div'],
  gen(r) {
    const x = tspec(r);
    const m = r.pick(METHODS);
    const nd = x.shape.length;
    let args: unknown[] | Spec = [];
    switch (m) {
      case 'to': args = [r.chance(0.6) ? r.pick([...DTYPES, 'cpu', 'cuda', 'cuda:1']) : r.pick<unknown>(['gpu', 'int64', 'cuda0', null, undefined, 3, {}, { dtype: 'gpu' }, { device: 'tpu' }, { dtype: 'int32', device: 'cpu' }])]; break;
      case 'copy_': args = arr([anyArg(r, { shape: x.shape.slice(r.int(nd + 1)) })]); break;
      case 'fill_': args = [maybe(r, 0.5, 2, () => badScalar(r))]; break;
      case 'add_': case 'sub_': case 'mul_': case 'div_':
        args = arr([r.chance(0.4) ? val(maybe(r, 0.5, 2, () => badScalar(r))) : anyArg(r, { shape: x.shape }), val(maybe(r, 0.7, undefined, () => badScalar(r)))]); break;
      case 'clamp_': args = [maybe(r, 0.3, -1, () => badScalar(r)), maybe(r, 0.3, 1, () => badScalar(r))]; break;
      case 'backward': args = arr([r.chance(0.5) ? val(undefined) : anyArg(r, { shape: r.chance(0.7) ? x.shape : randomShape(r) }), val(r.chance(0.7) ? undefined : { retainGraph: badJs(r) })]); break;
      case 'requiresGrad_': args = [maybe(r, 0.3, true, () => badJs(r))]; break;
      case 'size': args = [dimArg(r, nd)]; break;
      case 'matmul': args = arr([anyArg(r, { shape: [...x.shape.slice(-1), 2], dtype: 'float32' })]); break;
      case 'softmax': args = [dimArg(r, nd)]; break;
      case 'gather': case 'indexSelect': args = arr([val(dimArg(r, nd)), indexSpec(r, m === 'gather' ? x.shape : [2], x.shape[0] ?? 1)]); break;
      case 'topk': args = [countArg(r, 1), { dim: dimArg(r, nd) }]; break;
      case 'sum': case 'max': args = [dimArg(r, nd), maybe(r, 0.2, false, () => badJs(r))]; break;
      case 'cuda': args = [maybe(r, 0.5, undefined, () => badScalar(r))]; break;
      default: args = [];
    }
    const argSpec: Spec = Array.isArray(args) ? val(args) : args;
    return {
      name: `Tensor.${m}`, args: [x, argSpec],
      call: (t: ng.Tensor, a: unknown[]) => {
        if (m === 'backward' && t.requiresGrad) t = t.mul(2);   // a non-leaf root too
        const f = (t as unknown as Record<string, unknown>)[m];
        return typeof f === 'function' ? (f as Fn).apply(t, a) : f;
      },
    };
  },
};

const tensorCtor: Family = {
  name: 'Tensor.constructor',
  ops: ['Tensor', 'data', 'tolist', 'safetensors'],
  gen(r) {
    const len = r.range(0, 8);
    const shape = maybe(r, 0.3, randomShape(r, 3, 3), () => shapeArg(r));
    const nd = Array.isArray(shape) ? shape.length : 1;
    const strides = maybe(r, 0.5, Array.from({ length: nd }, () => r.range(0, 3)), () => r.pick<unknown>([[-1], [0.5], [NaN], [2 ** 53], null, 'a', [1, 1, 1, 1, 1], [1e9]]));
    const offset = maybe(r, 0.4, r.range(0, len), () => badScalar(r));
    return {
      name: 'new Tensor', args: [val(len), val(shape), val(strides), val(offset), val(r.chance(0.1))],
      call: (n: number, s: unknown, st: unknown, off: unknown, freed: boolean) => {
        const base = ng.zeros([n]);
        if (freed) base.dispose();
        const t = new ng.Tensor(freed || r.chance(0.9) ? base.storage : ({} as never), s as number[], st as number[], off as number);
        return [t.tolist(), ng.io.serializeSafetensors({ t })];
      },
    };
  },
};

// ---- safetensors ---------------------------------------------------------------------------------------

let tmp: string | null = null;
function tmpDir(): string {
  tmp ??= mkdtempSync(join(tmpdir(), 'nodegrad-fuzz-'));
  return tmp;
}
export function fuzzTmpDir(): string | null { return tmp; }

const safetensorsFamily: Family = {
  name: 'safetensors',
  ops: ['safetensors', 'Tensor'],
  gen(r) {
    const k = r.int(4);
    if (k === 0) {
      // serialize a dict with odd names and values
      const fields: Record<string, Spec> = {};
      for (let i = 0, n = r.range(0, 3); i < n; i++) {
        const name = r.chance(0.85) ? `w${i}` : r.pick(['', '__metadata__', 'a"b', '\u0000', 'ü']);
        fields[name] = r.chance(0.85) ? tspec(r) : val(badScalar(r));
      }
      const meta = r.chance(0.7) ? undefined : r.pick<unknown>([{ a: 'b' }, { a: 1 }, null, 'x', { 'ü': '\u0000' }]);
      return { name: 'serializeSafetensors', args: [obj(fields), val(meta)], call: ng.io.serializeSafetensors as Fn };
    }
    // parse (or save and load) a valid file with a few bytes or header fields changed
    const mutation = r.int(9);
    const pos = r.int(200), byte = r.int(256);
    const opts = r.chance(0.7) ? {} : { dtype: r.pick<unknown>(['float64', 'bfloat16', 'int32', 'x', null]), device: r.pick<unknown>(['cpu', 'cuda', 'gpu', undefined]) };
    const headerEdit = r.pick<unknown>([{ dtype: 'I64' }, { dtype: 'U8' }, { shape: [2 ** 53, 2] }, { shape: [-1] }, { shape: [1e9, 1e9] }, { data_offsets: [0, 2 ** 60] },
      { data_offsets: [8, 4] }, { shape: [1, 1, 1, 1, 1, 1, 1, 1, 1] }, { shape: 'x' }, { data_offsets: null }]);
    return {
      name: k === 1 ? 'parseSafetensors' : k === 2 ? 'saveSafetensors+loadSafetensors' : 'openSafetensors',
      args: [tspec(r, { allowViews: true }), val(mutation), val(pos), val(byte), val(opts), val(headerEdit)],
      call: (t: unknown, mut: number, p: number, b: number, o: unknown, edit: Record<string, unknown>) => {
        const dict = { a: t as ng.Tensor, b: ng.arange(0, 6, 1, { dtype: 'int32' }) };
        let buf: Buffer = mut === 8 ? Buffer.from('not a file') : Buffer.from(ng.io.serializeSafetensors(dict));
        if (mut <= 2 && buf.length > 0) buf[p % buf.length] = b;                      // a random byte
        else if (mut === 3) buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(b) << BigInt(p % 64)), 0);  // the header length
        else if (mut === 4) buf = buf.subarray(0, p % buf.length);                    // truncated
        else if (mut === 5 || mut === 6) {
          // a header field replaced (the length prefix kept consistent)
          const n = Number(buf.readBigUInt64LE(0));
          const h = JSON.parse(buf.subarray(8, 8 + n).toString()) as Record<string, Record<string, unknown>>;
          Object.assign(h[mut === 5 ? 'a' : 'b'], edit);
          const js = Buffer.from(JSON.stringify(h));
          const head = Buffer.alloc(8);
          head.writeBigUInt64LE(BigInt(js.length));
          buf = Buffer.concat([head, js, buf.subarray(8 + n)]);
        }
        if (k === 1) return ng.io.parseSafetensors(buf, o as never);
        const file = join(tmpDir(), `f${p}-${b}.safetensors`);
        if (k === 2) {
          return (async () => {
            await ng.io.saveSafetensors(file, dict);
            writeFileSync(file, buf);
            return ng.io.loadSafetensors(file, o as never);
          })();
        }
        writeFileSync(file, buf);
        return (async () => {
          const rd = await ng.io.openSafetensors(mut === 7 ? join(tmpDir(), 'missing.safetensors') : file);
          try {
            return [rd.keys(), rd.info(r.pick(['a', 'b', 'c'])), await rd.get(r.pick(['a', 'b']), o as never)];
          } finally {
            await rd.close();
          }
        })();
      },
    };
  },
};

// ---- tokenizers -------------------------------------------------------------------------------------------

function gpt2Tokenizer(): ng.data.GPT2Tokenizer {
  // the 256 byte-level symbols plus a few merges
  const encoder: Record<string, number> = {};
  for (let b = 0; b < 256; b++) encoder[ng.data.bytesToUnicode(String.fromCharCode(b)).slice(0, 1)] ??= Object.keys(encoder).length;
  const sym = (s: string): string => ng.data.bytesToUnicode(s);
  for (const t of [sym('he'), sym('ll'), sym('hell'), sym(' t'), '<|endoftext|>']) encoder[t] ??= Object.keys(encoder).length;
  return new ng.data.GPT2Tokenizer({ encoder, merges: [`${sym('h')} ${sym('e')}`, `${sym('l')} ${sym('l')}`, `${sym('he')} ${sym('ll')}`, `${sym(' ')} ${sym('t')}`] });
}

const TEXTS: unknown[] = ['hello', '', ' the cat', 'héllo wörld', '\ud800', '\udc00x', '<|endoftext|>', '[CLS] hi [SEP]', 'a'.repeat(300),
  '日本語', '\u0000\u0001', 'x\r\n\t y', '😀', 'ab'.repeat(2000)];

const tokenizerFamily: Family = {
  name: 'tokenizer',
  ops: ['CharTokenizer', 'ByteTokenizer', 'GPT2Tokenizer', 'BertTokenizer', 'tokenizerFromJSON', 'CharTokenizer.encode', 'CharTokenizer.decode',
    'ByteTokenizer.encode', 'ByteTokenizer.decode', 'GPT2Tokenizer.encode', 'GPT2Tokenizer.decode', 'GPT2Tokenizer.encodeBatch',
    'BertTokenizer.encode', 'BertTokenizer.decode', 'BertTokenizer.encodeBatch', 'BertTokenizer.tokenize', 'CharTokenizer.fromJSON',
    'ByteTokenizer.fromJSON', 'GPT2Tokenizer.tokenize', 'CharTokenizer.fromText'],
  gen(r) {
    const text = r.chance(0.8) ? r.pick(TEXTS) : badJs(r);
    const kind = r.pick(['char', 'byte', 'gpt2', 'bert', 'json']);
    const op = r.pick(['encode', 'decode', 'encodeBatch']);
    const ids = r.chance(0.6) ? [0, 1, 2] : r.pick<unknown>([[-1], [1.5], [NaN], [2 ** 31], [1e9], 'abc', null, [300], new Float32Array([1, 2.5]), [undefined]]);
    const encOpts = r.chance(0.5) ? undefined : r.pick<unknown>([{ maxLength: r.pick([0, 1, 3, -1, NaN, 1.5, 2 ** 53]), truncation: r.pick([true, false, 'only_second', 'x']), padding: r.pick([true, 'max_length', 'longest', 'x', 1]) },
      { allowedSpecial: r.pick(['all', ['<|endoftext|>'], 'x', 3, null]) }, { allowSpecial: true }, { returnTensors: r.pick(['ng', 'pt']) }, { paddingSide: r.pick(['left', 'x']) }, null]);
    return {
      name: `${kind}.${op}`, args: [val(text), val(ids), val(encOpts)],
      call: (tx: unknown, ii: unknown, eo: unknown) => {
        if (kind === 'json') return ng.data.tokenizerFromJSON(r.pick<unknown>(['{"type":"char","chars":["a"]}', '{bad json', '[]', 'null', { type: 'char', chars: [1] }, { type: 'byte', specialTokens: 'x' }, tx]));
        const tok = kind === 'char' ? ng.data.CharTokenizer.fromText(typeof tx === 'string' && r.chance(0.5) ? tx : 'abc', { unk: r.chance(0.5) ? '?' : undefined })
          : kind === 'byte' ? new ng.data.ByteTokenizer({ specialTokens: ['<|endoftext|>'] })
            : kind === 'gpt2' ? gpt2Tokenizer()
              : new ng.data.BertTokenizer({ vocab: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'hello', 'the', 'cat', '##s', 'h', '##e'] });
        const t = tok as unknown as Record<string, Fn>;
        if (op === 'decode') return t.decode(ii);
        if (op === 'encodeBatch' && typeof t.encodeBatch === 'function') return t.encodeBatch(r.chance(0.7) ? [tx, 'the cat'] : tx, eo);
        return t.encode(tx, eo);
      },
    };
  },
};

// ---- nn modules ----------------------------------------------------------------------------------------------

const nnFamily: Family = {
  name: 'nn',
  ops: ['Linear', 'Embedding', 'LayerNorm', 'Conv2d', 'Dropout', 'linear', 'embedding', 'layerNorm', 'conv2d', 'dropout', 'full', 'rand', 'randn',
    'select', 'zero_', 'fill_'],
  gen(r) {
    const size = (): unknown => (r.chance(0.75) ? r.range(1, 4) : r.chance(0.5) ? r.pick(HUGE_SIZES) : badScalar(r));
    const kind = r.pick(['Linear', 'Embedding', 'LayerNorm', 'Conv2d', 'Dropout']);
    const a = [size(), size(), r.chance(0.5) ? size() : r.range(1, 3)];
    const input = anyArg(r, { shape: randomShape(r, 4, 4), dtype: kind === 'Embedding' ? 'int32' : 'float32' });
    return {
      name: `nn.${kind}`, args: [val(a), input, val(r.chance(0.7) ? {} : { paddingIdx: badScalar(r), bias: badJs(r), eps: badScalar(r) })],
      call: (ps: unknown[], x: unknown, o: unknown) => {
        const C = (ng.nn as unknown as Record<string, new (...a: unknown[]) => { forward(x: unknown): unknown }>)[kind];
        const m = kind === 'Dropout' ? new C(ps[0]) : kind === 'LayerNorm' ? new C(r.chance(0.5) ? ps[0] : ps.slice(0, 2), o) : kind === 'Conv2d' ? new C(ps[0], ps[1], ps[2], o) : new C(ps[0], ps[1], o);
        return m.forward(x);
      },
    };
  },
};

export const FAMILIES: Family[] = [
  creation, unary, binary, whereFamily, reductions, matmulFamily, softmaxFamily, layerNormFamily, attentionFamily, lossFamily,
  embeddingFamily, indexingFamily, shapeFamily, catFamily, convFamily, dropoutFamily, optimFamily, tensorMethods, tensorCtor,
  safetensorsFamily, tokenizerFamily, nnFamily,
];
