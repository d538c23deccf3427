// Tensor lifetimes. JavaScript's collector does not see native or GPU memory, so
// tensors are freed explicitly: dispose(), scope(fn), `using`, and, as a backstop for
// tensors nobody disposed, a FinalizationRegistry.
import { countTensor, deviceStats, type Storage } from './storage.js';

export interface Disposable { dispose(): void; readonly isDisposed: boolean }
interface Tracked extends Disposable { readonly storage: Storage; readonly device: string; _gcRegistered: boolean }

const scopes: Set<Tracked>[] = [];
let liveTensors = 0;

const registry = new FinalizationRegistry<{ storage: Storage; device: string }>((held) => {
  // The tensor was collected without dispose(): drop its storage reference.
  held.storage.release();
  countTensor(held.device, -1);
  liveTensors--;
});

// Only tensors outside every scope need the collector as a backstop: a scope holds its
// tensors and disposes them when it ends. A tensor is registered when it is created
// outside a scope or leaves the outermost one (returned or kept), which keeps the
// registry off the hot path of scoped training steps.
function registerForGC(t: Tracked): void {
  if (t._gcRegistered || t.isDisposed) return;
  t._gcRegistered = true;
  registry.register(t, { storage: t.storage, device: t.device }, t);
}

/** Called by the Tensor constructor. */
export function trackTensor(t: Tracked): void {
  liveTensors++;
  countTensor(t.device, 1);
  const top = scopes.length > 0 ? scopes[scopes.length - 1] : undefined;
  if (top) top.add(t);
  else registerForGC(t);
}

/** Called by Tensor.dispose() (once). */
export function untrackTensor(t: Tracked): void {
  if (t._gcRegistered) registry.unregister(t);
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

function endScope(result: unknown): void {
  const s = scopes.pop()!;
  // what survives: nothing for a non-object result (a number: no search), the result
  // itself for a tensor, else every tensor found in it
  let single: unknown = null;
  let keepers: Set<unknown> | null = null;
  if (result !== null && typeof result === 'object') {
    if (isTensor(result)) single = result;
    else collect(result, (keepers = new Set()), new Set());
  }
  const parent = scopes.length > 0 ? scopes[scopes.length - 1] : undefined;
  for (const t of s) {
    if (t === single || (keepers !== null && keepers.has(t))) {
      if (parent) parent.add(t);
      else registerForGC(t);
    } else if (!t.isDisposed) {
      t.dispose();
    }
  }
}

/**
 * Runs fn and disposes every tensor created inside it except the ones it returns
 * (found in returned arrays, plain objects and Maps) and the ones passed to keep().
 * Works with async functions too: the scope ends when the promise settles.
 */
export function scope<T>(fn: () => T): T {
  scopes.push(new Set());
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
  scopes.push(new Set());
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
