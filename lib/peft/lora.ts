// LoraLinear: a Linear with low-rank adapters, y = x Wᵀ + b + s · dropout(x) Aᵀ Bᵀ with
// s = loraAlpha / r, or loraAlpha / √r with rsLoRA (PEFT's lora.Linear). The update runs as
// two thin matmuls on the low-rank path; B·A is formed only when merging. The base weight and bias are the very
// tensors of the Linear it replaces, under the same names (weight, bias), so the base
// model's checkpoints and exports are unchanged while it is adapted.
//
// One Linear may stand for several HF modules (BERT's fused query|key|value): each
// adapted part has its own A [r, in] and B [rows, r]; the parts' A are stacked so one
// matmul gives every part's hidden [.., parts·r], and a block matrix of the B's
// (zeros where a part does not reach) maps it onto the full output in one more matmul.
// The parts of one fused layer share one dropout mask on x (PEFT draws one per HF module;
// with loraDropout 0, the default, the two are the same computation). On the CPU the whole
// layer is one op (lora_op.ts: each part's update GEMM-added into its output columns);
// elsewhere the composed path below.
import { noGrad } from '../autograd.js';
import { isAutocastEnabled } from '../autocast.js';
import { rand, zeros } from '../ops/creation.js';
import { dropout } from '../ops/dropout.js';
import { add, cast, mul } from '../ops/elementwise.js';
import { linear, matmul } from '../ops/matmul.js';
import { cat } from '../ops/shape.js';
import type { Tensor } from '../tensor.js';
import type { Linear } from '../nn/layers.js';
import { Module, parameter } from '../nn/module.js';
import { loraLinear } from './lora_op.js';

/** One adapted part of a Linear's output: rows [start, start + length), named by its HF module. */
export interface LoraPart { hf: string; start: number; length: number }

/** The A/B pair of one part for one adapter. */
export class LoraPair extends Module {
  loraA: Tensor;
  loraB: Tensor;
  constructor(inFeatures: number, rows: number, r: number, init: boolean, device: Tensor['device']) {
    super();
    // kaiming_uniform_(a=√5) on A [r, in]: bound = gain·√(3/fan_in) with gain = √(2/(1+5)) = 1/√in
    const bound = 1 / Math.sqrt(inFeatures);
    this.loraA = parameter(rand([r, inFeatures], { low: -bound, high: bound }).to(device));
    // B zeros: the adapted model starts equal to the base (init false: random B, for tests)
    const b = init ? zeros([rows, r]) : rand([rows, r], { low: -bound, high: bound });
    this.loraB = parameter(b.to(device));
  }
  forward(): never { throw new Error('nodegrad: LoraPair: has no forward (a part of LoraLinear)'); }
}

/** The pairs of one adapter, by part (property "p0", "p1", ... in part order). */
export class LoraAdapter extends Module {
  constructor(readonly scaling: number, readonly dropoutP: number, readonly parts: LoraPart[], pairs: LoraPair[]) {
    super();
    pairs.forEach((p, i) => { (this as unknown as Record<string, LoraPair>)[`p${i}`] = p; });
  }
  pair(i: number): LoraPair { return (this as unknown as Record<string, LoraPair>)[`p${i}`]; }
  pairs(): LoraPair[] { return this.parts.map((_, i) => this.pair(i)); }
  forward(): never { throw new Error('nodegrad: LoraAdapter: has no forward (a part of LoraLinear)'); }
}

export class LoraLinear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Adapters by name (properties "lora_<name>"); at most one is active. */
  private readonly adapterNames: string[] = [];
  activeAdapter: string | null = null;
  /** false inside disableAdapter(): the base layer alone. */
  adaptersEnabled = true;

  constructor(base: Linear) {
    super();
    this.weight = base.weight;
    this.bias = base.bias;
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
    // the replaced Linear, kept out of the module tree (not a child: no duplicate parameters)
    Object.defineProperty(this, 'baseLayer', { value: base, enumerable: false, writable: false });
  }
  declare readonly baseLayer: Linear;

  adapter(name: string): LoraAdapter | undefined {
    return (this as unknown as Record<string, LoraAdapter | undefined>)[`lora_${name}`];
  }
  adapters(): string[] { return [...this.adapterNames]; }

  addAdapter(name: string, parts: LoraPart[], opts: { r: number; scaling: number; loraDropout: number; initLoraWeights: boolean }): LoraAdapter {
    if (this.adapter(name)) throw new Error(`nodegrad: LoraLinear: adapter '${name}' already exists`);
    // parts (and their pairs) in row order
    const order = parts.map((p) => ({ p, pair: new LoraPair(this.inFeatures, p.length, opts.r, opts.initLoraWeights, this.weight.device) }))
      .sort((x, y) => x.p.start - y.p.start);
    const a = new LoraAdapter(opts.scaling, opts.loraDropout, order.map((o) => o.p), order.map((o) => o.pair));
    (this as unknown as Record<string, LoraAdapter>)[`lora_${name}`] = a;
    this.adapterNames.push(name);
    return a;
  }

  deleteAdapter(name: string): void {
    const a = this.adapter(name);
    if (!a) return;
    a.dispose();
    delete (this as unknown as Record<string, unknown>)[`lora_${name}`];
    this.adapterNames.splice(this.adapterNames.indexOf(name), 1);
    if (this.activeAdapter === name) this.activeAdapter = null;
  }

  /** s · B·A as a [out, in] update (zeros outside the adapted rows); for merging only. */
  deltaWeight(name: string): Tensor {
    const a = this.adapter(name);
    if (!a) throw new Error(`nodegrad: LoraLinear: no adapter '${name}'`);
    return noGrad(() => {
      const blocks: Tensor[] = [];
      let row = 0;
      a.parts.forEach((p, i) => {
        if (p.start > row) blocks.push(zeros([p.start - row, this.inFeatures], { device: this.weight.device }));
        const pr = a.pair(i);
        blocks.push(mul(matmul(pr.loraB, pr.loraA), a.scaling));
        row = p.start + p.length;
      });
      if (row < this.outFeatures) blocks.push(zeros([this.outFeatures - row, this.inFeatures], { device: this.weight.device }));
      return blocks.length === 1 ? blocks[0] : cat(blocks, 0);
    });
  }

  forward(x: Tensor): Tensor {
    const a = this.adaptersEnabled && this.activeAdapter !== null ? this.adapter(this.activeAdapter) : undefined;
    if (!a) return linear(x, this.weight, this.bias);
    const pairs = a.pairs();
    const p0 = pairs[0].loraA;
    if (this.fusable(x, p0)) {
      const xa = dropout(x, a.dropoutP, this.training);
      return loraLinear(x, this.weight, this.bias, xa, a.parts.map((p, i) => ({ start: p.start, length: p.length, A: pairs[i].loraA, B: pairs[i].loraB })), a.scaling);
    }
    const y = linear(x, this.weight, this.bias);
    // adapters may train in float32 beside a half-precision base: the low-rank path runs in the adapter's dtype
    let xa = x.dtype === p0.dtype || p0.dtype !== 'float32' ? x : cast(x, p0.dtype);
    xa = dropout(xa, a.dropoutP, this.training);
    const whole = a.parts.length === 1 && a.parts[0].start === 0 && a.parts[0].length === this.outFeatures;
    let delta: Tensor;
    if (whole) {
      delta = linear(mul(linear(xa, p0), a.scaling), pairs[0].loraB);
    } else {
      const A = pairs.length === 1 ? p0 : cat(pairs.map((p) => p.loraA), 0); // [parts·r, in]
      const h = mul(linear(xa, A), a.scaling);
      delta = linear(h, this.blockB(a, pairs));
    }
    return add(y, delta.dtype === y.dtype ? delta : cast(delta, y.dtype));
  }

  /**
   * Whether the one-op path (lora_op.ts) runs: on the CPU, outside autocast, with the base
   * and the adapters in one float32/float64 dtype. Elsewhere (a half-precision base beside
   * float32 adapters, CUDA, autocast) the path is composed of linear, matmul and add.
   */
  private fusable(x: Tensor, a: Tensor): boolean {
    const dt = x.dtype;
    return x.device === 'cpu' && !isAutocastEnabled() && (dt === 'float32' || dt === 'float64') &&
      this.weight.dtype === dt && a.dtype === dt && (this.bias === null || this.bias.dtype === dt);
  }

  /** [out, parts·r]: part i's B in its rows and its r columns, zeros elsewhere. */
  private blockB(a: LoraAdapter, pairs: LoraPair[]): Tensor {
    const dev = this.weight.device, dt = pairs[0].loraB.dtype;
    const r = pairs[0].loraB.shape[1], R = r * pairs.length;
    const rows: Tensor[] = [];
    let row = 0;
    a.parts.forEach((p, i) => {
      if (p.start > row) rows.push(zeros([p.start - row, R], { device: dev, dtype: dt }));
      const B = pairs[i].loraB;
      const cols: Tensor[] = [];
      if (i > 0) cols.push(zeros([p.length, i * r], { device: dev, dtype: dt }));
      cols.push(B);
      if (i < pairs.length - 1) cols.push(zeros([p.length, R - (i + 1) * r], { device: dev, dtype: dt }));
      rows.push(cols.length === 1 ? B : cat(cols, 1));
      row = p.start + p.length;
    });
    if (row < this.outFeatures) rows.push(zeros([this.outFeatures - row, R], { device: dev, dtype: dt }));
    return rows.length === 1 ? rows[0] : cat(rows, 0);
  }
}
