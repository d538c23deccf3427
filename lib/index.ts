// The public surface: re-exports only.
export { Tensor } from './tensor.js';
export type { NestedArray, TensorLike, Dims } from './tensor.js';
export type { DType, TypedArray } from './dtype.js';
export type { Device } from './storage.js';
export { info, setNumThreads, getNumThreads } from './info.js';
export { manualSeed, initialSeed } from './random.js';
export { noGrad, enableGrad, isGradEnabled, setGradEnabled } from './autograd.js';
export { scope, scopeAsync, keep, dispose, memory } from './memory.js';
export { autocast, isAutocastEnabled, autocastDType, type AutocastOptions } from './autocast.js';
export {
  tensor, zeros, ones, full, zerosLike, onesLike, fullLike, arange, linspace, eye, rand, randn, randint, bernoulli,
} from './ops/creation.js';
export {
  add, sub, mul, div, pow, maximum, minimum, neg, exp, log, sqrt, rsqrt, abs, tanh, sigmoid, relu, gelu, silu,
  square, reciprocal, sin, cos, sign, floor, ceil, round, clamp, eq, ne, lt, le, gt, ge, where, maskedFill,
  logicalNot, logicalAnd, logicalOr, isnan, isinf, log1p, expm1, erf, leakyRelu, floorDivide, remainder,
} from './ops/elementwise.js';
export { sum, mean, prod, variance as var, std, amax, amin, maxDim as max, minDim as min, argmax, argmin, logsumexp, norm } from './ops/reduce.js';
export { reshape, view, flatten, permute, transpose, narrow, slice, select, expand, unsqueeze, squeeze, split, chunk, cat, stack, contiguous, clone, detach } from './ops/shape.js';
export { matmul, setFloat32MatmulPrecision, getFloat32MatmulPrecision } from './ops/matmul.js';
export { softmax, logSoftmax } from './ops/softmax.js';
export { gather, indexSelect, topk, scatterAdd, indexAdd } from './ops/indexing.js';
export { linear } from './ops/matmul.js';
export { gradcheck } from './gradcheck.js';
export * as cuda from './cuda.js';
export * as nn from './nn/index.js';
export * as models from './models/index.js';
export * as optim from './optim/index.js';
export * as data from './data/index.js';
export * as io from './io/index.js';
export * as train from './train/index.js';
export * as peft from './peft/index.js';
export * as distributed from './distributed/index.js';
export { generate, generateStream, sampleToken, type GenerateOptions } from './generate.js';
