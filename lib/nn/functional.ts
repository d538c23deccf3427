// nn.functional (F): PyTorch's functional names in camelCase.
export { relu, gelu, silu, sigmoid, tanh, leakyRelu } from '../ops/elementwise.js';
export { softmax, logSoftmax } from '../ops/softmax.js';
export { matmul, linear } from '../ops/matmul.js';
export { layerNorm, addLayerNorm } from '../ops/layernorm.js';
export { rmsNorm, addRmsNorm, rotaryEmbedding, rotaryEmbedding_, swiglu } from '../ops/llama.js';
export { embedding } from '../ops/embedding.js';
export { dropout } from '../ops/dropout.js';
export { crossEntropy, mseLoss, binaryCrossEntropyWithLogits, nllLoss } from '../ops/loss.js';
export { scaledDotProductAttention } from '../ops/attention.js';
export { conv2d } from '../ops/conv.js';
export { maxPool2d, maxPool2dWithIndices, avgPool2d, adaptiveAvgPool2d } from '../ops/pool.js';
export { batchNorm } from '../ops/batchnorm.js';
