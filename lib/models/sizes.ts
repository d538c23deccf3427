// Model sizes before anything is built. The model files compute their exact parameter
// count and shapes from a config (gpt.ts, bert.ts); this file holds what they share: how
// config fields are named in messages (config.nLayer, a config.json field, a CLI flag),
// how much memory the machine or the GPU has, and the check that refuses a config the
// machine cannot hold with a message saying how much it needs. Everything here is
// arithmetic on the config, so a config of 1e9 layers fails in microseconds instead of
// allocating for a minute and then crashing.
import os from 'node:os';
import { native } from '../native.js';
import { cudaIndex, type Device } from '../storage.js';

/** Most elements one CPU tensor can hold (V8's largest typed array). */
export const MAX_TENSOR_ELEMENTS = 2 ** 32;

/** Where a config's values came from, so that errors name the file, field or flag. */
export interface ConfigSource {
  /** The operation in `nodegrad: <op>: ...` (default: the model's name). */
  op?: string;
  /** The config file the values were read from. */
  file?: string;
  /** What each field is called there, e.g. { nLayer: 'n_layer' } or { nLayer: '--n-layer' } (default: its own name). */
  names?: Record<string, string>;
  /** Full labels for fields that came from elsewhere, e.g. { numLabels: 'option numLabels' }. */
  labels?: Record<string, string>;
}

/** Error helpers for one config source: label('nLayer') -> `config.nLayer`, `field "n_layer" of <file>` or `--n-layer`. */
export class ConfigErrors {
  readonly op: string;
  constructor(readonly src: ConfigSource, defaultOp: string) { this.op = src.op ?? defaultOp; }
  /** The short name of a field (for messages relating two fields). */
  name(k: string): string { return this.src.names?.[k] ?? k; }
  /** The full name of a field, saying where it came from. */
  label(k: string): string {
    const given = this.src.labels?.[k];
    if (given) return given;
    const n = this.name(k);
    if (this.src.file) return `field "${n}" of ${this.src.file}`;
    return n.startsWith('-') ? n : `config.${n}`;
  }
  /** " (in <file>)" when the values came from a file, for messages that name several fields. */
  get where(): string { return this.src.file ? ` (in ${this.src.file})` : ''; }
  /** What a size message is about: the file, or "config" (values passed in code), or "the model" (flags). */
  get subject(): string {
    if (this.src.file) return this.src.file;
    return Object.values(this.src.names ?? {}).some((n) => n.startsWith('-')) ? 'the model' : 'config';
  }
  error(what: string): Error { return new Error(`nodegrad: ${this.op}: ${what}`); }

  /** A required size: a safe integer >= min. */
  int(c: Record<string, unknown>, k: string, min = 1): number {
    const v = c[k];
    const want = min === 1 ? 'a positive integer' : `an integer >= ${min}`;
    if (v === undefined || v === null) throw this.error(`${this.label(k)} is missing (expected ${want})`);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw this.error(`${this.label(k)} must be ${want} (got ${show(v)})`);
    return v;
  }
  /** An optional number; undefined gives dflt. */
  num(c: Record<string, unknown>, k: string, dflt: number, ok: (x: number) => boolean, want: string): number {
    const v = c[k] ?? dflt;
    if (typeof v !== 'number' || !ok(v)) throw this.error(`${this.label(k)} must be ${want} (got ${show(v)})`);
    return v;
  }
  /** An optional boolean; undefined gives dflt. */
  bool(c: Record<string, unknown>, k: string, dflt: boolean): boolean {
    const v = c[k] ?? dflt;
    if (typeof v !== 'boolean') throw this.error(`${this.label(k)} must be true or false (got ${show(v)})`);
    return v;
  }
  /** "n_layer 1000000000, n_embd 768, ..." for the fields given. */
  describe(c: Record<string, unknown>, keys: string[]): string {
    return keys.map((k) => `${this.name(k)} ${String(c[k])}`).join(', ');
  }
}

/** A value as a message shows it: strings quoted, so "12" and 12 read differently. */
export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  try {
    const s = JSON.stringify(v);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    return String(v);
  }
}

/** Bytes in decimal units, two significant figures: 4.0 TB, 24 GB, 512 kB. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return `${n} bytes`;
  const units = ['bytes', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  if (n >= 1000) return `${n.toExponential(1).replace('e+', 'e')} ${units[i]}`;
  return i === 0 ? `${Math.round(n)} bytes` : `${n < 9.95 ? n.toFixed(1) : n.toFixed(0)} ${units[i]}`;
}

/** A count as 123456 below a million, else 1.2e9. */
export function formatCount(n: number): string {
  return n < 1e6 ? String(n) : n.toExponential(1).replace('e+', 'e');
}

export interface MemoryBudget {
  /** "this machine" or the CUDA device. */
  where: string;
  total: number;
  /** What can still be allocated: free memory (reclaimable caches included) on the host, total minus what nodegrad holds on a GPU. */
  available: number;
}

/** Memory of the host (cgroup limits included) or of a CUDA device. */
export function memoryBudget(device: Device = 'cpu'): MemoryBudget {
  if (device === 'cpu') {
    const limit = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() ?? 0 : 0;
    const total = limit > 0 && limit < os.totalmem() ? limit : os.totalmem();
    return { where: 'this machine', total, available: Math.min(total, os.freemem()) };
  }
  const i = cudaIndex(device);
  const d = native.cudaInfo().devices.find((x) => x.index === i);
  if (!d) return { where: device, total: Infinity, available: Infinity };
  let held = 0;
  try {
    held = native.cudaMemoryStats(i).reserved;
  } catch { /* no stats yet: nothing held */ }
  return { where: `${device} (${d.name})`, total: d.totalMemory, available: Math.max(0, d.totalMemory - held) };
}

/**
 * Throws when `bytes` exceed what `device` can still allocate. `what` gets the formatted
 * size and says what needs it: (need) => `config (...) needs ${need} for ... parameters`.
 */
export function checkFits(err: ConfigErrors, bytes: number, what: (need: string) => string, device: Device = 'cpu'): void {
  const m = memoryBudget(device);
  if (!(bytes <= m.available)) {
    throw err.error(`${what(formatBytes(bytes))}; ${m.where} has ${formatBytes(m.total)} (${formatBytes(m.available)} available)`);
  }
}

/** Throws when one CPU tensor would have more elements than JavaScript can allocate. */
export function checkTensorElements(err: ConfigErrors, what: string, numel: number): void {
  if (!(numel <= MAX_TENSOR_ELEMENTS)) {
    throw err.error(`${what} would hold ${formatCount(numel)} elements, more than the ${formatCount(MAX_TENSOR_ELEMENTS)} one CPU tensor can hold`);
  }
}

/** Bytes per parameter: float32 weights, plus gradients and AdamW's two moments when training. */
export const BYTES_PER_PARAMETER = { inference: 4, training: 16 } as const;
