// Tensor lifetimes. JavaScript's collector does not see native or GPU memory, so
// tensors are freed explicitly: dispose(), scope(fn), `using`, and, as a backstop for
// tensors nobody disposed, a FinalizationRegistry.
//
// A tensor returned from a scope keeps its autograd graph (as in PyTorch, where the graph
// lives while its output does). Disposing a tensor keeps its gradFn, so backward still
// walks through it; but the intermediates a backward formula reads (GradNode.saved) must
// keep their values: at the end of a scope, those the graph of a returned or kept tensor
// needs are handed to that graph instead of disposed. They live on, outside the scope,
// until the backward that reads them releases its node, or until every tensor returned
// with the graph is disposed.
import type { GradNode } from './autograd.js';
import type { Tensor } from './tensor.js';
import { countTensor, deviceStats, type Storage, type StorageLife } from './storage.js';

export interface Disposable { dispose(): void; readonly isDisposed: boolean }
interface Tracked extends Disposable {
  readonly storage: Storage;
  readonly device: string;
  /** The backstop's state: 0 none, 1 waiting to be registered (in `pending`), 2 registered. */
  _gc: number;
  /** Creation order: a tensor made before a scope began cannot depend on one made inside it. */
  _seq: number;
  gradFn: GradNode | null;
  readonly requiresGrad: boolean;
  /** Graph holds this tensor keeps alive (it was returned from a scope with its graph). */
  _holds: GraphHold[] | null;
  /** The graph hold this tensor was handed to (it is a saved tensor of that graph). */
  _heldBy: GraphHold | null;
  /** Unreleased nodes of that graph that read this tensor. */
  _savers: number;
}

/** Tensors a scope handed to the graph of the tensors it returned (roots). */
export interface GraphHold { owned: Set<Tracked>; roots: Set<Tracked> }

const scopes: Set<Tracked>[] = [];
// per open scope: the first _seq made inside it, and tensors keep() took out of it that have a graph
const scopeStart: number[] = [];
const scopeKept: (Tracked[] | null)[] = [];
let nextSeq = 1;
let liveTensors = 0;

const registry = new FinalizationRegistry<StorageLife>((life) => {
  // The tensor was collected without dispose(): drop its storage reference. (The
  // storage's count is kept here, not the storage, and its CPU buffer only within a
  // bound: see StorageLife.)
  life.releaseCollected();
  countTensor(life.device, -1);
  liveTensors--;
});

// Only tensors outside every scope need the collector as a backstop: a scope holds its
// tensors and disposes them when it ends. A tensor is registered when it is created
// outside a scope or leaves the outermost one (returned or kept), which keeps the
// registry off the hot path of scoped training steps.
//
// Registering costs about 0.4 us (more than a small op's kernel), and most such tensors
// are disposed right away (`add(a, b).dispose()`, `using`): so they wait in `pending`
// and are registered in a batch, at the end of the current job (a microtask) or when
// PENDING_MAX tensors or PENDING_BYTES of storage are waiting, whichever comes first;
// those disposed by then are never registered. The wait holds them strongly, so it is
// bounded in count and bytes.
const PENDING_MAX = 1024;
const PENDING_BYTES = 64 * 1024 * 1024;
let pending: Tracked[] = [];
let pendingBytes = 0;
let flushQueued = false;

function flushPending(): void {
  const list = pending;
  pending = [];
  pendingBytes = 0;
  for (const t of list) {
    if (t._gc !== 1) continue;
    if (t.isDisposed) {
      t._gc = 0;
      continue;
    }
    t._gc = 2;
    t.storage.keepForCollector();
    registry.register(t, t.storage.life, t);
  }
}
function flushQueuedPending(): void {
  flushQueued = false;
  flushPending();
}

function registerForGC(t: Tracked): void {
  if (t._gc !== 0 || t.isDisposed) return;
  t._gc = 1;
  pending.push(t);
  pendingBytes += t.storage.nbytes;
  if (pending.length >= PENDING_MAX || pendingBytes >= PENDING_BYTES) flushPending();
  else if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flushQueuedPending);
  }
}

/** Called by the Tensor constructor. */
export function trackTensor(t: Tracked): void {
  t._seq = nextSeq++;
  liveTensors++;
  countTensor(t.device, 1);
  const top = scopes.length > 0 ? scopes[scopes.length - 1] : undefined;
  if (top) top.add(t);
  else registerForGC(t);
}

/** Called by Tensor.dispose() (once). */
export function untrackTensor(t: Tracked): void {
  if (t._gc === 2) registry.unregister(t);
  liveTensors--;
  countTensor(t.device, -1);
  const top = scopes.length > 0 ? scopes[scopes.length - 1] : undefined;
  if (top) top.delete(t);
}

function collect(value: unknown, out: Set<unknown>, seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (isTensor(value)) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, out, seen);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, out, seen);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value as Record<string, unknown>)) collect(v, out, seen);
  }
}

function isTensor(value: object): boolean {
  return (value as { storage?: unknown }).storage !== undefined && 'isDisposed' in value;
}

function openScope(): void {
  scopes.push(new Set());
  scopeStart.push(nextSeq);
  scopeKept.push(null);
}

function hasLiveGraph(t: Tracked): boolean {
  return t.gradFn !== null && !t.gradFn.released && !t.isDisposed;
}

function addHold(r: Tracked, h: GraphHold): void {
  h.roots.add(r);
  if (r._holds === null) r._holds = [h];
  else if (!r._holds.includes(h)) r._holds.push(h);
}

/**
 * Walks the live graph of `roots` over the tensors made in the closing scope `s` (made
 * from seq `start` on) and returns the tensors of s that its backward reads: they are
 * handed to the graph (a GraphHold of the roots) instead of disposed.
 */
function graphNeeds(roots: Tracked[], s: Set<Tracked>, start: number, survives: (t: Tracked) => boolean): Set<Tracked> {
  const hold: GraphHold = { owned: new Set(), roots: new Set() };
  const saved = new Set<Tracked>();
  const touched = new Set<GraphHold>();
  // the walk goes over nodes along their edges (an input's history when it was used, which
  // an in-place op recorded since does not replace); node.out is the tensor it belongs to
  const seen = new Set<GradNode>();
  const stack: [Tracked, GradNode][] = [];
  for (const r of roots) {
    if (r.gradFn !== null && !seen.has(r.gradFn)) {
      seen.add(r.gradFn);
      stack.push([r, r.gradFn]);
    }
  }
  while (stack.length > 0) {
    const [t, node] = stack.pop()!;
    if (node.released) continue;
    // graphs returned from inner scopes that this graph reaches now live while it does
    if (t._holds !== null && s.has(t)) for (const h of t._holds) touched.add(h);
    if (t._heldBy !== null) touched.add(t._heldBy);
    for (const x of node.saved as unknown as Tracked[]) {
      if (x._heldBy !== null && x._heldBy !== hold) touched.add(x._heldBy);
      if (!s.has(x) || x.isDisposed || survives(x)) continue;
      saved.add(x);
      if (x._heldBy === null) {
        x._heldBy = hold;
        hold.owned.add(x);
      }
      if (x._heldBy === hold) {
        x._savers++;
        (node.held ??= []).push(x as unknown as Tensor);
      }
    }
    const edges = node.edges ?? node.inputs.map((x) => (x !== null && x.requiresGrad ? x.gradFn : null));
    edges.forEach((e, i) => {
      // leaves hold no graph; a node recorded before the scope reads nothing made in it
      // (an in-place node is younger than its tensor, so its age is not its tensor's)
      if (e === null || (e as GradNode).versions === undefined || seen.has(e as GradNode)) return;
      const n = e as GradNode;
      const x = (n.out ?? node.inputs[i]) as unknown as Tracked | null;
      if (x === null || (x._seq < start && !n.inplace)) return;
      seen.add(n);
      stack.push([x, n]);
    });
  }
  for (const h of touched) for (const r of roots) addHold(r, h);
  if (hold.owned.size > 0) for (const r of roots) addHold(r, hold);
  return saved;
}

function endScope(result: unknown): void {
  const s = scopes.pop()!;
  const start = scopeStart.pop()!;
  const kept = scopeKept.pop()!;
  // what survives: nothing for a non-object result (a number: no search), the result
  // itself for a tensor, else every tensor found in it
  let single: unknown = null;
  let keepers: Set<unknown> | null = null;
  if (result !== null && typeof result === 'object') {
    if (isTensor(result)) single = result;
    else collect(result, (keepers = new Set()), new Set());
  }
  const survives = (t: Tracked): boolean => t === single || (keepers !== null && keepers.has(t));
  // the tensors leaving the scope with a graph that has not run its backward yet
  let roots: Tracked[] | null = null;
  if (single !== null && hasLiveGraph(single as Tracked)) roots = [single as Tracked];
  else if (keepers !== null) for (const t of keepers) if (hasLiveGraph(t as Tracked)) (roots ??= []).push(t as Tracked);
  if (kept !== null) for (const t of kept) if (hasLiveGraph(t)) (roots ??= []).push(t);
  const needed = roots !== null ? graphNeeds(roots, s, start, survives) : null;
  const parent = scopes.length > 0 ? scopes[scopes.length - 1] : undefined;
  for (const t of s) {
    if (survives(t) || (needed !== null && needed.has(t) && !t.isDisposed)) {
      if (parent) parent.add(t);
      else registerForGC(t);
    } else if (!t.isDisposed) {
      t.dispose();
    }
  }
}

/** Called by backward when it releases a node: frees the handed tensors no other node still reads. */
export function releaseHeld(node: GradNode): void {
  const held = node.held as unknown as Tracked[];
  node.held = undefined;
  for (const x of held) {
    if (x._heldBy !== null && --x._savers <= 0 && !x.isDisposed) x.dispose();
  }
}

/** Called by Tensor.dispose() for a tensor that holds a graph or was handed to one. */
export function releaseGraphRefs(t: Tracked): void {
  if (t._heldBy !== null) {
    t._heldBy.owned.delete(t);
    t._heldBy = null;
  }
  const holds = t._holds;
  if (holds === null) return;
  t._holds = null;
  for (const h of holds) {
    h.roots.delete(t);
    if (h.roots.size > 0) continue;
    // the last tensor returned with this graph is gone: so is what it held
    const owned = [...h.owned];
    h.owned.clear();
    for (const x of owned) x.dispose();
  }
}

/**
 * Runs fn and disposes every tensor created inside it except the ones it returns
 * (found in returned arrays, plain objects and Maps) and the ones passed to keep().
 * Works with async functions too: the scope ends when the promise settles.
 */
export function scope<T>(fn: () => T): T {
  openScope();
  let result: T;
  try {
    result = fn();
  } catch (e) {
    endScope(undefined);
    throw e;
  }
  if (result instanceof Promise) {
    endScope(undefined);
    throw new Error('nodegrad: scope: the function returned a Promise; use scopeAsync for async work');
  }
  endScope(result);
  return result;
}

/** scope() for async functions. Tensors created by other code while it awaits are also collected. */
export async function scopeAsync<T>(fn: () => Promise<T>): Promise<T> {
  openScope();
  const depth = scopes.length;
  try {
    const result = await fn();
    while (scopes.length > depth) endScope(undefined);
    endScope(result);
    return result;
  } catch (e) {
    while (scopes.length >= depth) endScope(undefined);
    throw e;
  }
}

/** Removes a tensor (or the tensors in an array/object) from every enclosing scope. */
export function keep<T>(value: T): T {
  const found = new Set<unknown>();
  collect(value, found, new Set());
  for (const t of found) {
    for (const s of scopes) s.delete(t as Tracked);
    // a kept tensor with a graph keeps what that graph needs, as a returned one does
    if (hasLiveGraph(t as Tracked)) for (let i = 0; i < scopeKept.length; i++) (scopeKept[i] ??= []).push(t as Tracked);
    registerForGC(t as Tracked);
  }
  return value;
}

/** Disposes every tensor found in value (a tensor, array, object or Map of them). */
export function dispose(value: unknown): void {
  const found = new Set<unknown>();
  collect(value, found, new Set());
  for (const t of found) (t as Disposable).dispose();
}

export interface MemoryInfo {
  numTensors: number;
  numBytes: number;
  devices: Record<string, { tensors: number; bytes: number; peakBytes: number }>;
}

/** Live tensors and bytes of live storage, in total and per device. */
export function memory(): MemoryInfo {
  const devices: MemoryInfo['devices'] = {};
  let numBytes = 0;
  for (const [d, s] of deviceStats()) {
    devices[d] = { ...s };
    numBytes += s.bytes;
  }
  return { numTensors: liveTensors, numBytes, devices };
}

export function scopeDepth(): number {
  return scopes.length;
}
