// nn.functional (F): PyTorch's functional names in camelCase.
export { relu, gelu, silu, sigmoid, tanh, leakyRelu } from '../ops/elementwise.js';
export { softmax, logSoftmax } from '../ops/softmax.js';
export { matmul } from '../ops/matmul.js';
