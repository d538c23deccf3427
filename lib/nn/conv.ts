// Convolutional-network layers: Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten,
// BatchNorm1d/BatchNorm2d. Defaults and initialisation follow PyTorch.
import { noGrad } from '../autograd.js';
import type { DType } from '../dtype.js';
import { full, rand, zeros } from '../ops/creation.js';
import { batchNorm } from '../ops/batchnorm.js';
import { conv2d, pair, type IntPair } from '../ops/conv.js';
import { adaptiveAvgPool2d, avgPool2d, maxPool2d } from '../ops/pool.js';
import { flatten } from '../ops/shape.js';
import { fmt } from '../ops/check.js';
import type { Tensor } from '../tensor.js';
import { Module, parameter } from './module.js';

function checkPositiveInt(v: number, what: string, op: string): void {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`nodegrad: ${op}: ${what} must be a positive integer (got ${String(v)})`);
}

export interface Conv2dModuleOptions {
  stride?: IntPair;
  padding?: IntPair | 'same' | 'valid';
  dilation?: IntPair;
  groups?: number;
  bias?: boolean;
  dtype?: DType;
}

/**
 * 2-D convolution layer: weight [outChannels, inChannels/groups, kH, kW], bias [outChannels].
 * Initialised as PyTorch (kaiming uniform with a = √5, i.e. U(±1/√fanIn) for both).
 */
export class Conv2d extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly kernelSize: [number, number];
  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: IntPair,
    readonly opts: Conv2dModuleOptions = {}) {
    super();
    checkPositiveInt(inChannels, 'inChannels', 'Conv2d');
    checkPositiveInt(outChannels, 'outChannels', 'Conv2d');
    const groups = opts.groups ?? 1;
    checkPositiveInt(groups, 'groups', 'Conv2d');
    if (inChannels % groups !== 0 || outChannels % groups !== 0) {
      throw new Error(`nodegrad: Conv2d: groups=${groups} must divide inChannels (${inChannels}) and outChannels (${outChannels})`);
    }
    this.kernelSize = pair(kernelSize, 1, 'kernelSize', 'Conv2d', 1);
    const fanIn = (inChannels / groups) * this.kernelSize[0] * this.kernelSize[1];
    const bound = 1 / Math.sqrt(fanIn);
    const dtype = opts.dtype ?? 'float32';
    this.weight = parameter(rand([outChannels, inChannels / groups, ...this.kernelSize], { low: -bound, high: bound, dtype }));
    this.bias = opts.bias === false ? null : parameter(rand([outChannels], { low: -bound, high: bound, dtype }));
  }
  forward(x: Tensor): Tensor {
    const { stride, padding, dilation, groups } = this.opts;
    return conv2d(x, this.weight, this.bias, { stride, padding, dilation, groups });
  }
}

export interface MaxPool2dModuleOptions { stride?: IntPair | null; padding?: IntPair; dilation?: IntPair; ceilMode?: boolean }

export class MaxPool2d extends Module {
  constructor(readonly kernelSize: IntPair, readonly opts: MaxPool2dModuleOptions = {}) { super(); }
  forward(x: Tensor): Tensor { return maxPool2d(x, { kernelSize: this.kernelSize, ...this.opts }); }
}

export interface AvgPool2dModuleOptions {
  stride?: IntPair | null; padding?: IntPair; ceilMode?: boolean; countIncludePad?: boolean; divisorOverride?: number | null;
}

export class AvgPool2d extends Module {
  constructor(readonly kernelSize: IntPair, readonly opts: AvgPool2dModuleOptions = {}) { super(); }
  forward(x: Tensor): Tensor { return avgPool2d(x, { kernelSize: this.kernelSize, ...this.opts }); }
}

export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: number | (number | null)[]) { super(); }
  forward(x: Tensor): Tensor { return adaptiveAvgPool2d(x, this.outputSize); }
}

/** Flattens dims startDim..endDim (default: all but the batch dim). */
export class Flatten extends Module {
  constructor(readonly startDim = 1, readonly endDim = -1) { super(); }
  forward(x: Tensor): Tensor { return flatten(x, this.startDim, this.endDim); }
}

export interface BatchNormModuleOptions {
  eps?: number;
  /** null: cumulative average over all batches seen (1 / numBatchesTracked). */
  momentum?: number | null;
  affine?: boolean;
  trackRunningStats?: boolean;
  dtype?: DType;
}

abstract class BatchNormBase extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  runningMean: Tensor | null = null;
  runningVar: Tensor | null = null;
  numBatchesTracked: Tensor | null = null;
  protected abstract readonly name: string;
  protected abstract readonly ranks: number[];
  constructor(readonly numFeatures: number, readonly opts: BatchNormModuleOptions = {}) {
    super();
    checkPositiveInt(numFeatures, 'numFeatures', 'BatchNorm');
    const dtype = opts.dtype ?? 'float32';
    const affine = opts.affine ?? true;
    this.weight = affine ? parameter(full([numFeatures], 1, { dtype })) : null;
    this.bias = affine ? parameter(zeros([numFeatures], { dtype })) : null;
    if (opts.trackRunningStats ?? true) {
      this.registerBuffer('runningMean', zeros([numFeatures], { dtype }));
      this.registerBuffer('runningVar', full([numFeatures], 1, { dtype }));
      this.registerBuffer('numBatchesTracked', zeros([], { dtype: 'int32' }));
    }
  }
  get eps(): number { return this.opts.eps ?? 1e-5; }
  get momentum(): number | null { return this.opts.momentum === undefined ? 0.1 : this.opts.momentum; }

  /** Resets the running statistics to mean 0, variance 1 and no batches seen. */
  resetRunningStats(): void {
    noGrad(() => {
      this.runningMean?.zero_();
      this.runningVar?.fill_(1);
      this.numBatchesTracked?.zero_();
    });
  }

  forward(x: Tensor): Tensor {
    if (!this.ranks.includes(x.ndim)) {
      throw new Error(`nodegrad: ${this.name}: expected a ${this.ranks.join('-D or ')}-D input (got shape ${fmt(x.shape)})`);
    }
    let factor = this.momentum ?? 0;
    if (this.training && this.numBatchesTracked) {
      const n = this.numBatchesTracked;
      noGrad(() => n.add_(1));
      if (this.momentum === null) factor = 1 / n.item();
    }
    // Batch statistics when training, or when there are no running statistics to use.
    const useBatch = this.training || this.runningMean === null;
    return batchNorm(x, this.runningMean, this.runningVar, this.weight, this.bias,
      { training: useBatch, momentum: factor, eps: this.eps });
  }
}

/** Batch normalisation over the channels of [N, C, H, W] inputs. */
export class BatchNorm2d extends BatchNormBase {
  protected readonly name = 'BatchNorm2d';
  protected readonly ranks = [4];
}

/** Batch normalisation over the features of [N, C] or [N, C, L] inputs. */
export class BatchNorm1d extends BatchNormBase {
  protected readonly name = 'BatchNorm1d';
  protected readonly ranks = [2, 3];
}
