// Reverse-mode autograd on a tape. Each op that produces a tensor needing a gradient
// records a GradNode on it: the inputs to differentiate and a backward function that
// maps the output's gradient to theirs (written with public ops, next to the forward,
// in lib/ops/*). backward() walks the nodes in reverse topological order.
import type { Tensor } from './tensor.js';
import { keep, scope } from './memory.js';
import { lastStorageId } from './storage.js';

export interface GradNode {
  readonly name: string;
  readonly inputs: readonly (Tensor | null)[];
  backward: (grad: Tensor) => readonly (Tensor | null | undefined)[];
  released?: boolean;
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn with gradient recording off (like torch.no_grad()). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function enableGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function setGradEnabled(on: boolean): void {
  gradEnabled = on;
}

/** True when an op over these inputs must record a node. */
export function needsGrad(...inputs: (Tensor | null | undefined | number)[]): boolean {
  if (!gradEnabled) return false;
  for (const t of inputs) if (t && typeof t === 'object' && t.requiresGrad) return true;
  return false;
}

/** Attaches a node to `out` (a fresh op result). */
export function record(out: Tensor, name: string, inputs: readonly (Tensor | null)[], backward: GradNode['backward']): Tensor {
  out.gradFn = { name, inputs, backward };
  out.requiresGrad = true;
  return out;
}

function releasedBackward(): never {
  throw new Error(
    'nodegrad: backward: trying to backward through the graph a second time; pass { retainGraph: true } to the first backward()',
  );
}

export interface BackwardOptions { retainGraph?: boolean }

export function backward(root: Tensor, gradient?: Tensor, opts: BackwardOptions = {}): void {
  if (root.isDisposed) throw new Error('nodegrad: backward: the tensor was disposed');
  if (!root.requiresGrad) {
    throw new Error('nodegrad: backward: the tensor does not require grad and has no grad_fn');
  }
  if (gradient === undefined && root.numel !== 1) {
    throw new Error(
      `nodegrad: backward: grad can be implicitly created only for scalar outputs (got shape [${root.shape.join(',')}]); pass a gradient`,
    );
  }
  if (gradient !== undefined && gradient.shape.join(',') !== root.shape.join(',')) {
    throw new Error(
      `nodegrad: backward: gradient shape [${gradient.shape.join(',')}] does not match the tensor's shape [${root.shape.join(',')}]`,
    );
  }
  // Reverse topological order by iterative DFS over tensors.
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.gradFn ? t.gradFn.inputs : [];
    if (i < inputs.length) {
      top[1]++;
      const x = inputs[i];
      if (x && x.requiresGrad && !visited.has(x)) {
        visited.add(x);
        stack.push([x, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  const firstId = lastStorageId() + 1;
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    scope(() => {
      // Gradients of intermediate tensors are freed as soon as nothing needs them (as
      // PyTorch does), not at the end of backward: on a GPU that bounds backward's peak
      // memory by one layer's gradients instead of all of them. refs counts the map entries
      // holding a tensor; only tensors this pass allocated are freed, never the caller's
      // gradient nor one handed to a leaf as its .grad.
      const grads = new Map<Tensor, Tensor>();
      const refs = new Map<Tensor, number>();
      const keepers = new Set<Tensor>();
      const hold = (x: Tensor, g: Tensor): void => {
        grads.set(x, g);
        refs.set(g, (refs.get(g) ?? 0) + 1);
      };
      const drop = (g: Tensor): void => {
        refs.set(g, (refs.get(g) ?? 1) - 1);
      };
      const release = (g: Tensor | null | undefined): void => {
        if (!g || g.isDisposed || keepers.has(g) || (refs.get(g) ?? 0) > 0 || g.storage.id < firstId) return;
        g.dispose();
      };
      // an explicit gradient of another dtype (float64 for a float32 output) is converted
      const g0 = gradient ? gradient.to(root.dtype) : root.onesLike();
      if (g0 === gradient) keepers.add(g0);
      hold(root, g0);
      const claimed = new Set<number>();
      const accumulateLeaf = (leaf: Tensor, g: Tensor): void => {
        if (leaf.grad === null || leaf.grad.isDisposed) {
          // Take g as the .grad tensor when it is a fresh, unshared, dense result of this
          // backward pass; otherwise copy it.
          const own = g.isContiguous() && g.offset === 0 && g.storage.length === g.numel &&
            g.storage.id >= firstId && !claimed.has(g.storage.id) && g.dtype === leaf.dtype;
          const gt = own ? g : g.to(leaf.dtype).clone();
          claimed.add(gt.storage.id);
          keepers.add(gt);
          leaf.grad = keep(gt);
        } else {
          leaf.grad.add_(g);
        }
      };
      for (let k = order.length - 1; k >= 0; k--) {
        const t = order[k];
        const g = grads.get(t);
        if (!g) continue;
        grads.delete(t);
        drop(g);
        if (!t.gradFn) {
          accumulateLeaf(t, g);
          release(g);
          continue;
        }
        if (t.retainsGrad) accumulateLeaf(t, g);
        const node = t.gradFn;
        if (node.released) releasedBackward();
        const gin = node.backward(g);
        const done: (Tensor | null | undefined)[] = [g];
        node.inputs.forEach((x, i) => {
          const gi = gin[i];
          if (!x || !x.requiresGrad || !gi) {
            done.push(gi);
            return;
          }
          if (gi.shape.join(',') !== x.shape.join(',')) {
            throw new Error(
              `nodegrad: backward of ${node.name}: gradient shape [${gi.shape.join(',')}] differs from input shape [${x.shape.join(',')}]`,
            );
          }
          const prevG = grads.get(x);
          if (prevG) {
            const sum = prevG.add(gi);
            drop(prevG);
            hold(x, sum);
            done.push(prevG, gi);
          } else hold(x, gi);
        });
        // only after every input took its gradient: the same tensor may feed several
        for (const d of done) release(d);
        if (!opts.retainGraph) {
          node.released = true;
          node.backward = releasedBackward;
        }
      }
    });
  } finally {
    gradEnabled = prev;
  }
}
