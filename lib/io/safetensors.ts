// The safetensors format: an 8-byte little-endian u64 header length N, N bytes of JSON
// header (padded with spaces so the data starts 8-byte aligned), then the raw
// little-endian tensor bytes. Header: { name: { dtype, shape, data_offsets: [begin, end] },
// "__metadata__": { string: string } }, offsets relative to the data section, tensors
// packed without gaps or overlaps.
//
// Everything read from a file is bounds-checked before any allocation is sized from it,
// so a corrupt or hostile file gives `nodegrad: safetensors: <what> in <file>`, never a
// crash or a huge allocation. Files are read one tensor at a time with positioned reads
// (openSafetensors), so a checkpoint need not fit in memory twice.
import { endianness } from 'node:os';
import { open, type FileHandle } from 'node:fs/promises';
import { isFloating, itemSize, type DType, type TypedArray } from '../dtype.js';
import { parseDevice, Storage, type Device } from '../storage.js';
import { Tensor } from '../tensor.js';
import { checkAlloc } from '../ops/alloc.js';
import { contiguousStrides, MAX_DIMS } from '../ops/dims.js';
import { writeFileAtomic, type WriteFn } from './atomic.js';

export type SafetensorsDType = 'F32' | 'F64' | 'I32' | 'BOOL' | 'BF16' | 'F16' | 'I64';
const ST_SIZE: Record<SafetensorsDType, number> = { F32: 4, F64: 8, I32: 4, BOOL: 1, BF16: 2, F16: 2, I64: 8 };
const TO_ST: Record<DType, SafetensorsDType> = {
  float32: 'F32', float64: 'F64', int32: 'I32', bool: 'BOOL', bfloat16: 'BF16', float16: 'F16',
};
/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsEntry { dtype: SafetensorsDType; shape: number[]; dataOffsets: [number, number] }
export interface LoadOptions {
  device?: Device;
  /** dtype of floating-point tensors (default: float32 for F32/BF16/F16, float64 for F64). Integer and bool tensors keep theirs. */
  dtype?: DType;
}
export type TensorDict = Record<string, Tensor> | Map<string, Tensor>;

function fail(what: string, file: string): never {
  throw new Error(`nodegrad: safetensors: ${what} in ${file}`);
}
function checkHost(file: string): void {
  if (endianness() !== 'LE') fail('big-endian hosts are not supported (the format is little-endian)', file);
}

// ---- header ---------------------------------------------------------------------------

function headerLength(first8: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8) fail(`file too short for a header length (${fileSize} bytes)`, file);
  const n = Buffer.from(first8.buffer, first8.byteOffset, 8).readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n} exceeds the ${MAX_HEADER_BYTES / 1024 / 1024} MB limit`, file);
  if (n + 8n > BigInt(fileSize)) fail(`header length ${n} exceeds the file size (${fileSize} bytes)`, file);
  if (n < 2n) fail(`header length ${n} is too small to hold a JSON object`, file);
  return Number(n);
}

/** Top-level keys of a JSON object text in order, duplicates included (JSON.parse drops them). */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0, expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = depth === 1;
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return keys;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function parseEntry(name: string, v: unknown, dataLen: number, file: string): SafetensorsEntry {
  const q = JSON.stringify(name);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(`entry ${q} is not an object`, file);
  const { dtype, shape, data_offsets: off } = v as Record<string, unknown>;
  if (typeof dtype !== 'string' || !Object.hasOwn(ST_SIZE, dtype)) {
    fail(`unknown dtype ${JSON.stringify(dtype)} for tensor ${q} (supported: ${Object.keys(ST_SIZE).join(', ')})`, file);
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) fail(`shape of tensor ${q} is not an array of non-negative integers`, file);
  if (!Array.isArray(off) || off.length !== 2 || !off.every(isCount)) {
    fail(`data_offsets of tensor ${q} is not a pair of non-negative integers`, file);
  }
  const [begin, end] = off as [number, number];
  if (begin > end || end > dataLen) {
    fail(`data_offsets [${begin},${end}] of tensor ${q} lie outside the data section (${dataLen} bytes)`, file);
  }
  let numel = 1;
  for (const s of shape as number[]) {
    numel *= s;
    if (numel > dataLen) fail(`shape [${shape.join(',')}] of tensor ${q} is larger than the data section`, file);
  }
  const need = numel * ST_SIZE[dtype as SafetensorsDType];
  if (end - begin !== need) {
    fail(`tensor ${q} has ${end - begin} bytes but shape [${shape.join(',')}] of ${dtype} needs ${need}`, file);
  }
  return { dtype: dtype as SafetensorsDType, shape: shape as number[], dataOffsets: [begin, end] };
}

interface Header { entries: Map<string, SafetensorsEntry>; metadata: Record<string, string> }

function parseHeader(bytes: Uint8Array, dataLen: number, file: string): Header {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    fail('header is not valid UTF-8', file);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(`malformed header JSON (${(e as Error).message})`, file);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('header is not a JSON object', file);
  const seen = new Set<string>();
  for (const k of topLevelKeys(text)) {
    if (seen.has(k)) fail(`duplicate tensor name ${JSON.stringify(k)}`, file);
    seen.add(k);
  }
  let metadata: Record<string, string> = {};
  const list: [string, SafetensorsEntry][] = [];
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) fail('__metadata__ is not an object', file);
      for (const [mk, mv] of Object.entries(v as Record<string, unknown>)) {
        if (typeof mv !== 'string') fail(`__metadata__ value of ${JSON.stringify(mk)} is not a string`, file);
      }
      metadata = Object.fromEntries(Object.entries(v as Record<string, string>));
    } else list.push([name, parseEntry(name, v, dataLen, file)]);
  }
  list.sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  let pos = 0;
  for (const [name, e] of list) {
    const [begin, end] = e.dataOffsets;
    if (begin < pos) fail(`tensor ${JSON.stringify(name)} [${begin},${end}] overlaps the previous tensor (ending at ${pos})`, file);
    if (begin > pos) fail(`gap in the data section before tensor ${JSON.stringify(name)} (bytes ${pos}..${begin} unused)`, file);
    pos = end;
  }
  if (pos !== dataLen) fail(`data section has ${dataLen - pos} trailing bytes not covered by any tensor`, file);
  return { entries: new Map(list), metadata };
}

// ---- half-precision conversions (the CPU backend computes in float32) ---------------------

let f16Table: Float32Array | null = null;
function f16ToF32(src: Uint16Array): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
      f16Table[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
    }
  }
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16Table[src[i]];
  return out;
}
function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}
/** float32 -> bfloat16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const u = bits[i];
    out[i] = (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x40 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
  return out;
}
/** float32 -> IEEE float16 bits, round to nearest even (overflow -> inf, NaN stays NaN). */
export function f32ToF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const u = bits[i], sign = (u >>> 16) & 0x8000, exp = (u >>> 23) & 0xff;
    let mant = u & 0x7fffff, h: number;
    const e = exp - 112;
    if (exp === 0xff) h = 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
    else if (e >= 31) h = 0x7c00;
    else if (e <= 0) {
      if (e < -10) h = 0;
      else {
        mant |= 0x800000;
        const shift = 14 - e, half = 1 << (shift - 1), rem = mant & ((1 << shift) - 1);
        h = mant >>> shift;
        if (rem > half || (rem === half && h & 1)) h++;
      }
    } else {
      h = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
    }
    out[i] = sign | h;
  }
  return out;
}

// ---- tensors <-> bytes --------------------------------------------------------------------

/** Builds a tensor from `ab`, which holds exactly the entry's bytes (and is owned by us). */
function decodeTensor(name: string, e: SafetensorsEntry, ab: ArrayBuffer, opts: LoadOptions, file: string): Tensor {
  checkHost(file);
  if (e.shape.length > MAX_DIMS) fail(`tensor ${JSON.stringify(name)} has ${e.shape.length} dims (at most ${MAX_DIMS} supported)`, file);
  let data: TypedArray, dtype: DType;
  switch (e.dtype) {
    case 'I32': data = new Int32Array(ab); dtype = 'int32'; break;
    case 'BOOL': {
      const b = new Uint8Array(ab);
      for (let i = 0; i < b.length; i++) b[i] = b[i] ? 1 : 0;
      data = b; dtype = 'bool'; break;
    }
    case 'I64': {
      const src = new BigInt64Array(ab), out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i];
        if (v > 2147483647n || v < -2147483648n) fail(`I64 value ${v} at index ${i} of tensor ${JSON.stringify(name)} does not fit in int32`, file);
        out[i] = Number(v);
      }
      data = out; dtype = 'int32'; break;
    }
    default: {
      const want = opts.dtype ?? (e.dtype === 'F64' ? 'float64' : 'float32');
      const raw: TypedArray = e.dtype === 'F32' ? new Float32Array(ab) : e.dtype === 'F64' ? new Float64Array(ab) : new Uint16Array(ab);
      data = convertFloat(raw, e.dtype, want);
      dtype = want;
    }
  }
  let t = new Tensor(new Storage('cpu', dtype, data.length, data), [...e.shape], contiguousStrides(e.shape), 0);
  const device = parseDevice(opts.device, 'safetensors');
  if (device !== 'cpu') {
    const moved = t.to(device);
    if (moved !== t) t.dispose();
    t = moved;
  }
  return t;
}

function convertFloat(raw: TypedArray, from: SafetensorsDType, to: DType): TypedArray {
  if (TO_ST[to] === from) return raw;
  const f32 = from === 'F32' ? (raw as Float32Array) : from === 'BF16' ? bf16ToF32(raw as Uint16Array)
    : from === 'F16' ? f16ToF32(raw as Uint16Array) : null;
  if (to === 'float64') return Float64Array.from(f32 ?? raw);
  const single = f32 ?? Float32Array.from(raw as Float64Array);
  if (to === 'float32') return single;
  return to === 'bfloat16' ? f32ToBf16(single) : f32ToF16(single);
}

function checkOpts(opts: LoadOptions, file: string): void {
  parseDevice(opts.device, 'safetensors');
  if (opts.dtype !== undefined && !(typeof opts.dtype === 'string' && Object.hasOwn(TO_ST, opts.dtype) && isFloating(opts.dtype))) {
    fail(`load dtype must be a floating dtype (float32, float64, bfloat16, float16), got ${JSON.stringify(opts.dtype)}`, file);
  }
}

interface Planned { header: Buffer; items: { name: string; bytes: Uint8Array }[]; total: number }

function plan(tensors: TensorDict, metadata: Record<string, string> | undefined): Planned {
  const file = '<output>';
  checkHost(file);
  if (tensors === null || typeof tensors !== 'object') fail('tensors must be a Record or Map of name -> Tensor', file);
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const meta: string[] = [];
  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== 'object') fail('metadata must be an object of string -> string', file);
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') fail(`metadata value of ${JSON.stringify(k)} is not a string (got ${typeof v})`, file);
      meta.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
  }
  for (const [name, t] of list) {
    if (typeof name !== 'string' || name === '' || name === '__metadata__') fail(`invalid tensor name ${JSON.stringify(name)}`, file);
    if (!(t instanceof Tensor)) fail(`value of ${JSON.stringify(name)} is not a Tensor`, file);
    t.assertLive('safetensors');
    checkAlloc(t.shape, t.dtype, 'cpu', 'safetensors');
  }
  // Widest dtype first, then by name (as the reference writer): every tensor starts
  // aligned to its item size, since the data section starts 8-byte aligned.
  list.sort((a, b) => itemSize[b[1].dtype] - itemSize[a[1].dtype] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const parts: string[] = [];
  if (metadata !== undefined) parts.push(`"__metadata__":{${meta.join(',')}}`);
  const items: Planned['items'] = [];
  let pos = 0;
  for (const [name, t] of list) {
    const d = t.device === 'cpu' && t.isContiguous() ? t.storage.data.subarray(t.offset, t.offset + t.numel) : t.dataSync();
    const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    const info = { dtype: TO_ST[t.dtype], shape: [...t.shape], data_offsets: [pos, pos + bytes.length] };
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    items.push({ name, bytes });
    pos += bytes.length;
  }
  let json = `{${parts.join(',')}}`;
  const n = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (n % 8)) % 8);
  const header = Buffer.alloc(8 + Buffer.byteLength(json, 'utf8'));
  header.writeBigUInt64LE(BigInt(header.length - 8), 0);
  header.write(json, 8, 'utf8');
  return { header, items, total: header.length + pos };
}

// ---- public API ---------------------------------------------------------------------------

/** The whole file as one Buffer. */
export function serializeSafetensors(tensors: TensorDict, metadata?: Record<string, string>): Buffer {
  const p = plan(tensors, metadata);
  const out = Buffer.allocUnsafe(p.total);
  p.header.copy(out, 0);
  let pos = p.header.length;
  for (const it of p.items) {
    out.set(it.bytes, pos);
    pos += it.bytes.length;
  }
  return out;
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  const CHUNK = 1 << 30;
  for (let off = 0; off < bytes.length;) {
    const { bytesWritten } = await fh.write(bytes, off, Math.min(CHUNK, bytes.length - off));
    off += bytesWritten;
  }
}

/**
 * A write function that streams the file tensor by tensor (for writeFileAtomic / writeDirAtomic).
 * Contiguous CPU tensors are written from their storage without a copy: do not update them
 * in place until the write has finished.
 */
export function safetensorsWriter(tensors: TensorDict, metadata?: Record<string, string>): WriteFn {
  const p = plan(tensors, metadata);
  return async (fh) => {
    await writeAll(fh, p.header);
    for (const it of p.items) await writeAll(fh, it.bytes);
  };
}

/** Writes a safetensors file atomically (temp file + fsync + rename); see safetensorsWriter on in-place updates meanwhile. */
export async function saveSafetensors(file: string, tensors: TensorDict, metadata?: Record<string, string>): Promise<void> {
  await writeFileAtomic(file, safetensorsWriter(tensors, metadata));
}

/** Parses a whole safetensors file held in memory. `name` only labels error messages. */
export function parseSafetensors(buf: Buffer | Uint8Array, opts: LoadOptions = {}, name = '<buffer>'):
  { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  if (!(buf instanceof Uint8Array)) fail('input is not a Buffer or Uint8Array', name);
  checkOpts(opts, name);
  const n = headerLength(buf.subarray(0, 8), buf.length, name);
  const h = parseHeader(buf.subarray(8, 8 + n), buf.length - 8 - n, name);
  const tensors = new Map<string, Tensor>();
  try {
    for (const [k, e] of h.entries) {
      const ab = new ArrayBuffer(e.dataOffsets[1] - e.dataOffsets[0]);
      new Uint8Array(ab).set(buf.subarray(8 + n + e.dataOffsets[0], 8 + n + e.dataOffsets[1]));
      tensors.set(k, decodeTensor(k, e, ab, opts, name));
    }
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  }
  return { tensors, metadata: h.metadata };
}

/** A lazily read safetensors file: the header is parsed up front, tensors are read on demand. */
export class SafetensorsReader {
  readonly path: string;
  readonly metadata: Record<string, string>;
  private fh: FileHandle | null;
  private readonly entries: Map<string, SafetensorsEntry>;
  private readonly dataStart: number;

  /** Use openSafetensors(). */
  constructor(file: string, fh: FileHandle, header: Header, dataStart: number) {
    this.path = file;
    this.fh = fh;
    this.entries = header.entries;
    this.metadata = header.metadata;
    this.dataStart = dataStart;
  }
  /** Tensor names in file order. */
  keys(): string[] { return [...this.entries.keys()]; }
  has(name: string): boolean { return this.entries.has(name); }
  /** dtype, shape and data offsets of one tensor, without reading it. */
  info(name: string): SafetensorsEntry {
    const e = this.entries.get(name);
    if (!e) fail(`no tensor named ${JSON.stringify(name)} (${this.entries.size} tensors present)`, this.path);
    return { dtype: e.dtype, shape: [...e.shape], dataOffsets: [...e.dataOffsets] };
  }
  /** Reads one tensor with a positioned read. */
  async get(name: string, opts: LoadOptions = {}): Promise<Tensor> {
    checkOpts(opts, this.path);
    const e = this.info(name);
    if (!this.fh) fail(`reader is closed (reading ${JSON.stringify(name)})`, this.path);
    const [begin, end] = e.dataOffsets;
    const ab = new ArrayBuffer(end - begin);
    await readFully(this.fh, new Uint8Array(ab), this.dataStart + begin, this.path);
    return decodeTensor(name, e, ab, opts, this.path);
  }
  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }
  async [Symbol.asyncDispose](): Promise<void> { await this.close(); }
}

async function readFully(fh: FileHandle, dst: Uint8Array, position: number, file: string): Promise<void> {
  const CHUNK = 1 << 30;
  for (let off = 0; off < dst.length;) {
    const { bytesRead } = await fh.read(dst, off, Math.min(CHUNK, dst.length - off), position + off);
    if (bytesRead === 0) fail(`file ended early (${dst.length - off} bytes missing at offset ${position + off})`, file);
    off += bytesRead;
  }
}

/** Opens a safetensors file for lazy, one-tensor-at-a-time reading. Close it when done. */
export async function openSafetensors(file: string): Promise<SafetensorsReader> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    // ENOENT, EACCES, EISDIR...: the message names the file; `code` is kept for callers that test it
    const err = new Error(`nodegrad: safetensors: cannot open ${file} (${(e as Error).message})`, { cause: e });
    (err as NodeJS.ErrnoException).code = (e as NodeJS.ErrnoException).code;
    throw err;
  }
  try {
    const size = (await fh.stat()).size;
    const first8 = new Uint8Array(8);
    if (size >= 8) await readFully(fh, first8, 0, file);
    const n = headerLength(first8, size, file);
    const hb = new Uint8Array(n);
    await readFully(fh, hb, 8, file);
    return new SafetensorsReader(file, fh, parseHeader(hb, size - 8 - n, file), 8 + n);
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Loads every tensor of a safetensors file. */
export async function loadSafetensors(file: string, opts: LoadOptions = {}):
  Promise<{ tensors: Map<string, Tensor>; metadata: Record<string, string> }> {
  checkOpts(opts, file);
  const r = await openSafetensors(file);
  const tensors = new Map<string, Tensor>();
  try {
    for (const k of r.keys()) tensors.set(k, await r.get(k, opts));
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    throw e;
  } finally {
    await r.close();
  }
  return { tensors, metadata: r.metadata };
}
