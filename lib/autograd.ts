// Reverse-mode autograd on a tape. Each op that produces a tensor needing a gradient
// records a GradNode on it: the inputs to differentiate and a backward function that
// maps the output's gradient to theirs (written with public ops, next to the forward,
// in lib/ops/*). backward() walks the nodes in reverse topological order.
//
// A node also lists the tensors its backward reads (`saved`) with their storage's version
// at record time; backward checks them first, so an in-place change made since (to the
// tensor, a view of it or its base) or a disposed one is an error, never a silently wrong
// gradient (PyTorch's saved-variable version check).
import type { Tensor } from './tensor.js';
import { keep, releaseHeld, scope } from './memory.js';
import { lastStorageId } from './storage.js';

/**
 * A backward's gradient that is zero outside one view of the input (select and slice
 * return one): `values` at a view of a tensor of `shape`. The engine adds it in place into
 * that view of a gradient for the same input that this pass made and nothing else holds;
 * otherwise it makes the dense gradient (zeros, then the values). The three selects that
 * take q, k and v out of a fused projection then cost one zero-filled gradient and three
 * copies, instead of three zero-filled gradients, three copies and two full-size adds.
 */
export class PartialGrad {
  constructor(
    readonly shape: readonly number[],
    readonly values: Tensor,
    /** Adds values into their view of `full` (a tensor of `shape`), in place. */
    readonly addInto: (full: Tensor) => void,
    /** The dense gradient: zeros of `shape` with values at their view. */
    readonly dense: () => Tensor,
  ) {}
}

export interface GradNode {
  readonly name: string;
  readonly inputs: readonly (Tensor | null)[];
  backward: (grad: Tensor) => readonly (Tensor | PartialGrad | null | undefined)[];
  released?: boolean;
  /** The tensors backward reads (inputs, the output, or tensors made in the forward). */
  saved: readonly Tensor[];
  /** saved[i].storage.version when the node was recorded. */
  versions: readonly number[];
  /** Internal (lib/memory.ts): saved tensors a scope handed to this graph, freed on release. */
  held?: Tensor[];
  /**
   * Where each input's gradient goes, fixed when the node is recorded: the input's gradFn
   * then (its history at that time, even after an in-place op gave the tensor a new one),
   * the input itself for a leaf, null for an input that did not require grad.
   */
  edges?: readonly (GradNode | Tensor | null)[];
  /** The tensor the node was recorded on (its retainGrad() and scope() holds). */
  out?: Tensor;
  /** Recorded by an in-place op: `out` is older than the node. */
  inplace?: boolean;
}

/** True for a GradNode (a Tensor has no versions). */
export function isNode(v: GradNode | Tensor): v is GradNode {
  return (v as GradNode).versions !== undefined;
}

/** The gradient edge of an input: its current history, itself for a leaf, null when it needs no gradient. */
function edgeOf(x: Tensor | null): GradNode | Tensor | null {
  return x !== null && x.requiresGrad ? x.gradFn ?? x : null;
}

// Storages that views recorded on the tape share with their base: an in-place op recorded
// on one of them would leave the base's (or the view's) history behind.
const graphViews = new WeakSet<object>();

/** Whether a view of this storage was recorded on the tape (its base or a view is part of a graph). */
export function hasGraphViews(storage: object): boolean {
  return graphViews.has(storage);
}

const NOTHING: readonly Tensor[] = [];
const NO_VERSIONS: readonly number[] = [];

let gradEnabled = true;

// Post-accumulate-grad hooks (torch's register_post_accumulate_grad_hook): fn(leaf) runs
// once backward has added this pass's gradient into leaf.grad. DistributedDataParallel
// starts a bucket's all-reduce from them while backward goes on with earlier layers.
const postAccumulateGradHooks = new WeakMap<Tensor, ((t: Tensor) => void)[]>();
export function registerPostAccumulateGradHook(t: Tensor, fn: (t: Tensor) => void): () => void {
  const list = postAccumulateGradHooks.get(t) ?? [];
  list.push(fn);
  postAccumulateGradHooks.set(t, list);
  return () => {
    const l = postAccumulateGradHooks.get(t);
    if (l) l.splice(l.indexOf(fn) >>> 0, 1);
  };
}
function runPostAccumulateGradHooks(t: Tensor): void {
  const list = postAccumulateGradHooks.get(t);
  if (list) for (const fn of [...list]) fn(t);
}

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

/**
 * Attaches a node to `out` (a fresh op result). `saved` lists every tensor whose values
 * (or liveness) `backward` reads: entries that are not tensors (numbers, null, false) are
 * skipped, so `needA && b` reads well. Left out, it is the inputs and `out` (the safe
 * choice for an op that did not say).
 */
export function record(out: Tensor, name: string, inputs: readonly (Tensor | null)[], backward: GradNode['backward'],
  saved?: readonly (Tensor | number | null | undefined | false)[]): Tensor {
  const list: Tensor[] = [];
  const src = saved ?? [...inputs, out];
  for (let i = 0; i < src.length; i++) {
    const t = src[i];
    if (t && typeof t === 'object') list.push(t);
  }
  let versions: number[] | readonly number[] = NO_VERSIONS;
  if (list.length > 0) {
    versions = new Array<number>(list.length);
    for (let i = 0; i < list.length; i++) (versions as number[])[i] = list[i].storage.version;
  }
  const edges = new Array<GradNode | Tensor | null>(inputs.length);
  for (let i = 0; i < inputs.length; i++) {
    const x = inputs[i];
    edges[i] = edgeOf(x);
    if (x !== null && x !== out && x.storage === out.storage) graphViews.add(out.storage);
  }
  out.gradFn = { name, inputs, backward, saved: list.length > 0 ? list : NOTHING, versions, edges, out };
  out.requiresGrad = true;
  return out;
}

/**
 * Records an in-place op on t (PyTorch's rebase_history): t's gradFn becomes a node whose
 * backward maps the gradient of t's new value to its old value (input 0, t's history
 * before the op) and to the op's other inputs.
 */
export function recordInplace(t: Tensor, name: string, inputs: readonly (Tensor | null)[], backward: GradNode['backward'],
  saved: readonly (Tensor | number | null | undefined | false)[]): Tensor {
  record(t, name, [t, ...inputs], backward, saved);
  t.gradFn!.inplace = true;
  return t;
}

const NO_EDGES: readonly (GradNode | Tensor | null)[] = [];

/** A node's edges (a node built by hand, without record(), takes its inputs' current ones). */
export function nodeEdges(node: GradNode): readonly (GradNode | Tensor | null)[] {
  return node.edges ?? (node.edges = node.inputs.map(edgeOf));
}

function describeSaved(node: GradNode, x: Tensor, out: Tensor): string {
  const i = node.inputs.indexOf(x);
  const which = i >= 0 ? `input ${i} of ${node.name}` : x === out ? `its output` : `a tensor ${node.name} saved`;
  return `${which}, shape [${x.shape.join(',')}] (${x.dtype})`;
}

/** Throws unless every tensor node's backward reads is alive and unchanged since it was saved. */
function checkSaved(node: GradNode, out: Tensor): void {
  const { saved, versions } = node;
  for (let i = 0; i < saved.length; i++) {
    const x = saved[i];
    if (x.isDisposed) {
      throw new Error(`nodegrad: backward: a tensor needed for the gradient of ${node.name} was disposed before backward: ` +
        `${describeSaved(node, x, out)}; keep it alive until backward() (keep() it, or return from scope() the tensor that needs it)`);
    }
    if (x.storage.version !== versions[i]) {
      throw new Error(`nodegrad: backward: a tensor needed for the gradient of ${node.name} was modified in place by ` +
        `${x.storage.modifiedBy} (version ${versions[i]} when saved, now ${x.storage.version}): ${describeSaved(node, x, out)}; ` +
        'clone() it before changing it in place, or change it after backward()');
    }
  }
}

function disposedInput(node: GradNode, i: number, x: Tensor): Error {
  return new Error(`nodegrad: backward: a tensor that requires grad was disposed before backward, so its gradient has ` +
    `nowhere to go: input ${i} of ${node.name}, shape [${x.shape.join(',')}] (${x.dtype}); keep it alive until backward()`);
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
  if (gradient !== undefined && (gradient === null || typeof gradient !== 'object' || !Array.isArray(gradient.shape))) {
    throw new Error(`nodegrad: backward: gradient must be a Tensor (got ${gradient === null ? 'null' : typeof gradient})`);
  }
  if (gradient !== undefined && gradient.isDisposed) gradient.assertLive('backward');
  if (gradient !== undefined && gradient.shape.join(',') !== root.shape.join(',')) {
    throw new Error(
      `nodegrad: backward: gradient shape [${gradient.shape.join(',')}] does not match the tensor's shape [${root.shape.join(',')}]`,
    );
  }
  // Reverse topological order by iterative DFS over the graph's vertices: nodes, and the
  // leaves that take a gradient. Edges go to the history an input had when it was used, so
  // an in-place op recorded later (a new gradFn on the same tensor) does not redirect them.
  type Vertex = GradNode | Tensor;
  const start: Vertex = root.gradFn ?? root;
  const order: Vertex[] = [];
  const visited = new Set<Vertex>();
  const stack: [Vertex, number][] = [[start, 0]];
  visited.add(start);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [v, i] = top;
    // a released node's inputs are not visited: processing it throws the clearer error
    const node = isNode(v) ? v : null;
    const edges = node && !node.released ? nodeEdges(node) : NO_EDGES;
    if (i < edges.length) {
      top[1]++;
      const e = edges[i];
      if (e && !visited.has(e)) {
        // a disposed leaf cannot take a gradient (a disposed intermediate keeps its
        // gradFn, and its node checks the tensors it reads)
        if (!isNode(e) && e.isDisposed) throw disposedInput(node!, i, e);
        visited.add(e);
        stack.push([e, 0]);
      }
    } else {
      stack.pop();
      order.push(v);
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
      const grads = new Map<Vertex, Tensor>();
      const refs = new Map<Tensor, number>();
      const keepers = new Set<Tensor>();
      const hold = (x: Vertex, g: Tensor): void => {
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
      hold(start, g0);
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
        const v = order[k];
        const g = grads.get(v);
        if (!g) continue;
        grads.delete(v);
        drop(g);
        if (!isNode(v)) {
          accumulateLeaf(v, g);
          runPostAccumulateGradHooks(v);
          release(g);
          continue;
        }
        const node = v;
        const t = node.out;
        // retainGrad(): the gradient of the tensor's current value only
        if (t && t.retainsGrad && !t.isDisposed && t.gradFn === node) accumulateLeaf(t, g);
        if (node.released) releasedBackward();
        if (node.saved.length > 0) checkSaved(node, t ?? root);
        const gin = node.backward(g);
        const done: (Tensor | null | undefined)[] = [g];
        const edges = nodeEdges(node);
        node.inputs.forEach((x, i) => {
          let gi = gin[i];
          const e = edges[i];
          if (!x || !e || !gi) {
            done.push(gi instanceof PartialGrad ? gi.values : gi);
            return;
          }
          if (gi.shape.join(',') !== x.shape.join(',')) {
            throw new Error(
              `nodegrad: backward of ${node.name}: gradient shape [${gi.shape.join(',')}] differs from input shape [${x.shape.join(',')}]`,
            );
          }
          const prevG = grads.get(e);
          if (gi instanceof PartialGrad) {
            done.push(gi.values);
            // in place only into a gradient this pass made, held by this entry alone, whose
            // storage no other view (a leaf's .grad, another entry) shares
            if (prevG && prevG.storage.id >= firstId && !keepers.has(prevG) && refs.get(prevG) === 1 &&
              prevG.storage.refs === 1 && prevG.dtype === gi.values.dtype) {
              gi.addInto(prevG);
              return;
            }
            gi = gi.dense();
          }
          if (prevG) {
            const sum = prevG.add(gi);
            drop(prevG);
            hold(e, sum);
            done.push(prevG, gi);
          } else hold(e, gi);
        });
        // only after every input took its gradient: the same tensor may feed several
        for (const d of done) release(d);
        if (!opts.retainGraph) {
          node.released = true;
          node.backward = releasedBackward;
          node.saved = NOTHING;
          if (node.held) releaseHeld(node);
        }
      }
    });
  } finally {
    gradEnabled = prev;
  }
}
