// Activation checkpointing (torch.utils.checkpoint): the forward runs without recording
// a graph, so the activations inside fn are freed as soon as it returns; backward runs
// fn again with recording on, from the same inputs and the same random state (dropout
// draws the same masks), and backpropagates through that recomputed graph. Memory for
// a block's activations drops to its input and output at the cost of one more forward.
import { backward, enableGrad, isGradEnabled, noGrad, record } from '../autograd.js';
import { scope } from '../memory.js';
import { getRngState, setRngState } from '../random.js';
import { Tensor } from '../tensor.js';

/**
 * Runs fn(...inputs) checkpointed. Gradients reach the inputs that require grad and every
 * parameter fn uses (accumulated into their .grad during the recomputation). fn must be
 * deterministic given its inputs and the random state (it is, for nodegrad's modules).
 */
export function checkpoint(fn: (...xs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor {
  for (const x of inputs) {
    if (!(x instanceof Tensor)) throw new Error(`nodegrad: checkpoint: inputs must be Tensors (got ${typeof x})`);
    x.assertLive('checkpoint');
  }
  if (!isGradEnabled()) return fn(...inputs);
  const rng = getRngState();
  const out = noGrad(() => fn(...inputs));
  if (!(out instanceof Tensor)) throw new Error('nodegrad: checkpoint: fn must return a single Tensor');
  return record(out, 'checkpoint', inputs, (g) => {
    const resume = getRngState();
    setRngState(rng);
    try {
      return enableGrad(() => scope(() => {
        const det = inputs.map((x) => {
          const d = x.detach();
          if (x.requiresGrad) d.requiresGrad_(true);
          return d;
        });
        const y = fn(...det);
        if (y.requiresGrad) backward(y, g);
        // the inner backward kept the inputs' gradients outside every scope: hand the
        // outer backward copies it owns, and free the originals
        return det.map((d) => {
          const gi = d.grad;
          if (!gi) return null;
          const c = gi.clone();
          gi.dispose();
          d.grad = null;
          return c;
        });
      }));
    } finally {
      setRngState(resume);
    }
  }, inputs);
}
