// Basic layers: Linear, Embedding, LayerNorm, Dropout, GELU, Sequential, ModuleList.
import { noGrad } from '../autograd.js';
import { full, rand, randn, zeros } from '../ops/creation.js';
import { gelu, relu } from '../ops/elementwise.js';
import { dropout } from '../ops/dropout.js';
import { embedding } from '../ops/embedding.js';
import { layerNorm } from '../ops/layernorm.js';
import { linear } from '../ops/matmul.js';
import type { Tensor } from '../tensor.js';
import type { DType } from '../dtype.js';
import { Module, parameter } from './module.js';

function checkPositiveInt(v: number, what: string, op: string): void {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`nodegrad: ${op}: ${what} must be a positive integer (got ${String(v)})`);
}

export interface LinearOptions { bias?: boolean; dtype?: DType }

/** y = x Wᵀ + b, weight [outFeatures, inFeatures]; PyTorch's default init (uniform ±1/√in). */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: LinearOptions = {}) {
    super();
    checkPositiveInt(inFeatures, 'inFeatures', 'Linear');
    checkPositiveInt(outFeatures, 'outFeatures', 'Linear');
    const bound = 1 / Math.sqrt(inFeatures);
    const dtype = opts.dtype ?? 'float32';
    this.weight = parameter(rand([outFeatures, inFeatures], { low: -bound, high: bound, dtype }));
    this.bias = opts.bias === false ? null : parameter(rand([outFeatures], { low: -bound, high: bound, dtype }));
  }
  forward(x: Tensor): Tensor { return linear(x, this.weight, this.bias); }
}

/** Lookup table [numEmbeddings, embeddingDim]; init N(0, 1) as PyTorch. */
export class Embedding extends Module {
  weight: Tensor;
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, readonly opts: { paddingIdx?: number; dtype?: DType } = {}) {
    super();
    checkPositiveInt(numEmbeddings, 'numEmbeddings', 'Embedding');
    checkPositiveInt(embeddingDim, 'embeddingDim', 'Embedding');
    this.weight = parameter(randn([numEmbeddings, embeddingDim], { dtype: opts.dtype ?? 'float32' }));
    if (opts.paddingIdx !== undefined) noGrad(() => this.weight.select(0, opts.paddingIdx!).zero_());
  }
  forward(ids: Tensor): Tensor { return embedding(ids, this.weight, { paddingIdx: this.opts.paddingIdx }); }
}

export class LayerNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  readonly normalizedShape: number[];
  constructor(normalizedShape: number | number[], readonly opts: { eps?: number; elementwiseAffine?: boolean; bias?: boolean; dtype?: DType } = {}) {
    super();
    this.normalizedShape = Array.isArray(normalizedShape) ? normalizedShape : [normalizedShape];
    const affine = opts.elementwiseAffine ?? true;
    const dtype = opts.dtype ?? 'float32';
    this.weight = affine ? parameter(full(this.normalizedShape, 1, { dtype })) : null;
    this.bias = affine && opts.bias !== false ? parameter(zeros(this.normalizedShape, { dtype })) : null;
  }
  get eps(): number { return this.opts.eps ?? 1e-5; }
  forward(x: Tensor): Tensor { return layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps); }
}

export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p <= 1)) throw new Error(`nodegrad: Dropout: p must be in [0, 1] (got ${p})`);
  }
  forward(x: Tensor): Tensor { return dropout(x, this.p, this.training); }
}

export class GELU extends Module {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') { super(); }
  forward(x: Tensor): Tensor { return gelu(x, { approximate: this.approximate }); }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor { return relu(x); }
}

/** Children stored under "0", "1", ... like PyTorch's containers. */
export class ModuleList<M extends Module = Module> extends Module {
  constructor(modules: M[] = []) {
    super();
    modules.forEach((m) => this.append(m));
  }
  get length(): number { return this.namedChildren().length; }
  append(m: M): this {
    (this as unknown as Record<string, Module>)[String(this.length)] = m;
    return this;
  }
  at(i: number): M {
    const m = (this as unknown as Record<string, M>)[String(i < 0 ? this.length + i : i)];
    if (!m) throw new Error(`nodegrad: ModuleList: index ${i} is out of range for ${this.length} modules`);
    return m;
  }
  *[Symbol.iterator](): IterableIterator<M> {
    for (let i = 0; i < this.length; i++) yield this.at(i);
  }
  forward(..._args: unknown[]): unknown { throw new Error('nodegrad: ModuleList: has no forward; iterate over its modules'); }
}

type Fwd = Module & { forward(x: Tensor): Tensor };

export class Sequential extends ModuleList<Fwd> {
  constructor(...modules: Fwd[]) { super(modules); }
  override forward(x: Tensor): Tensor {
    let y = x;
    for (const m of this) y = m.forward(y);
    return y;
  }
}
