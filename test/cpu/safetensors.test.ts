import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Tensor } from '../../lib/tensor.js';
import * as ng from '../../lib/ops/creation.js';
import { Storage } from '../../lib/storage.js';
import { contiguousStrides } from '../../lib/ops/dims.js';
import {
  f32ToBf16, f32ToF16, loadSafetensors, openSafetensors, parseSafetensors, safetensorsWriter, saveSafetensors,
  serializeSafetensors,
} from '../../lib/io/safetensors.js';
import { resolveCheckpointDir, writeDirAtomic, writeFileAtomic } from '../../lib/io/atomic.js';

let dir = '';
beforeAll(() => { dir = mkdtempSync(path.join(tmpdir(), 'nodegrad-st-')); });
afterAll(() => { rmSync(dir, { recursive: true, force: true }); });
let fileNo = 0;
const tmpPath = (name = 'f'): string => path.join(dir, `${name}-${fileNo++}`);

function half(dtype: 'bfloat16' | 'float16', bits: number[], shape = [bits.length]): Tensor {
  const u = Uint16Array.from(bits);
  return new Tensor(new Storage('cpu', dtype, u.length, u), shape, contiguousStrides(shape), 0);
}
const arr = (t: Tensor): number[] => Array.from(t.dataSync() as ArrayLike<number>);

/** A file from a header (object or raw JSON text) and data bytes, as the format lays it out. */
function build(header: object | string | Buffer, data: number[] | Uint8Array = []): Buffer {
  const json = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.from(data)]);
}
const entry = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });

describe('safetensors round trip', () => {
  it('round-trips every dtype through a file, with metadata', async () => {
    const f = tmpPath('all.safetensors');
    const src = {
      f32: ng.tensor(Float32Array.from([1.5, -2, 3.25, 1e-20, -0, 7]), { shape: [2, 3] }),
      f64: ng.tensor(Float64Array.from([Math.PI, -1e300, 5e-324]), { shape: [3] }),
      i32: ng.tensor(Int32Array.from([-2147483648, 2147483647, 0, 42]), { shape: [2, 2] }),
      bool: ng.tensor([[true, false, true]]),
      bf16: half('bfloat16', [0x3f80, 0xc040, 0x7f80, 0x0001]),
      f16: half('float16', [0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00], [5, 1]),
    };
    await saveSafetensors(f, src, { format: 'pt', note: 'ünïcode ✓' });
    const { tensors, metadata } = await loadSafetensors(f);
    expect(metadata).toEqual({ format: 'pt', note: 'ünïcode ✓' });
    expect([...tensors.keys()].sort()).toEqual(Object.keys(src).sort());
    for (const k of ['f32', 'f64', 'i32', 'bool'] as const) {
      const t = tensors.get(k)!;
      expect(t.dtype).toBe(src[k].dtype);
      expect(t.shape).toEqual(src[k].shape);
      expect(arr(t)).toEqual(arr(src[k]));
    }
    // Half precision is read into float32 by default ...
    expect(tensors.get('bf16')!.dtype).toBe('float32');
    expect(arr(tensors.get('bf16')!)).toEqual([1, -3, Infinity, 2 ** -133]);
    expect(tensors.get('f16')!.shape).toEqual([5, 1]);
    expect(arr(tensors.get('f16')!)).toEqual([1, -2, 65504, 2 ** -24, Infinity]);
    // ... and kept bit-exact when asked for.
    const bf = (await loadSafetensors(f, { dtype: 'bfloat16' })).tensors;
    expect(bf.get('bf16')!.dtype).toBe('bfloat16');
    expect(arr(bf.get('bf16')!)).toEqual([0x3f80, 0xc040, 0x7f80, 0x0001]);
    expect(bf.get('i32')!.dtype).toBe('int32');
    expect(arr(bf.get('f32')!)).toEqual(Array.from(f32ToBf16(Float32Array.from([1.5, -2, 3.25, 1e-20, -0, 7]))));
    const h = (await loadSafetensors(f, { dtype: 'float16' })).tensors;
    expect(arr(h.get('f16')!)).toEqual([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00]);
    const d = (await loadSafetensors(f, { dtype: 'float64' })).tensors;
    expect(d.get('f32')!.dtype).toBe('float64');
    expect(arr(d.get('f32')!)).toEqual(arr(src.f32));
  });

  it('writes non-contiguous tensors contiguously', () => {
    const base = ng.tensor(Float32Array.from({ length: 12 }, (_, i) => i), { shape: [3, 4] });
    const tr = base.transpose(0, 1);
    const sl = base.slice(1, 0, 4, 2);
    const hb = half('bfloat16', [1, 2, 3, 4, 5, 6], [2, 3]).transpose(0, 1);
    expect(tr.isContiguous()).toBe(false);
    const { tensors } = parseSafetensors(serializeSafetensors(new Map([['tr', tr], ['sl', sl], ['hb', hb]])), { dtype: 'bfloat16' });
    expect(tensors.get('tr')!.shape).toEqual([4, 3]);
    expect(arr(tensors.get('hb')!)).toEqual([1, 4, 2, 5, 3, 6]);
    const f = parseSafetensors(serializeSafetensors({ tr, sl })).tensors;
    expect(arr(f.get('tr')!)).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    expect(arr(f.get('sl')!)).toEqual([0, 2, 4, 6, 8, 10]);
  });

  it('round-trips empty and scalar tensors', () => {
    const src = { e0: ng.zeros([0]), e1: ng.zeros([2, 0, 3], { dtype: 'int32' }), s: ng.tensor(2.5), b: ng.zeros([0], { dtype: 'bool' }) };
    const { tensors, metadata } = parseSafetensors(serializeSafetensors(src));
    expect(metadata).toEqual({});
    expect(tensors.get('e0')!.shape).toEqual([0]);
    expect(tensors.get('e1')!.shape).toEqual([2, 0, 3]);
    expect(tensors.get('e1')!.dtype).toBe('int32');
    expect(tensors.get('s')!.shape).toEqual([]);
    expect(tensors.get('s')!.item()).toBe(2.5);
  });

  it('serializes to exactly the bytes of a hand-built file', () => {
    const json = '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
      '"b":{"dtype":"I32","shape":[2],"data_offsets":[4,12]},"c":{"dtype":"BOOL","shape":[3],"data_offsets":[12,15]}}';
    const padded = json + ' '.repeat((8 - (json.length % 8)) % 8);
    const expected = Buffer.concat([
      Buffer.from([padded.length, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from(padded, 'ascii'),
      Buffer.from([0x00, 0x00, 0xc0, 0x3f]), // 1.5f
      Buffer.from([1, 0, 0, 0, 2, 0, 0, 0]),
      Buffer.from([1, 0, 1]),
    ]);
    // Written widest dtype first, then by name: the insertion order does not matter.
    const got = serializeSafetensors({ c: ng.tensor([true, false, true]), b: ng.tensor(Int32Array.from([1, 2])), a: ng.tensor([1.5]) }, { format: 'pt' });
    expect(padded.length % 8).toBe(0);
    expect(got.equals(expected)).toBe(true);
  });

  it('reads I64 into int32 and F16 from a hand-built file', () => {
    const i64 = Buffer.alloc(24);
    [-3n, 2147483647n, -2147483648n].forEach((v, i) => i64.writeBigInt64LE(v, i * 8));
    const f16 = Buffer.from([0x00, 0x3c, 0x00, 0xb8]); // 1, -0.5
    const file = build({ ids: entry('I64', [3], 0, 24), h: entry('F16', [2], 24, 28) }, Buffer.concat([i64, f16]));
    const { tensors } = parseSafetensors(file);
    expect(tensors.get('ids')!.dtype).toBe('int32');
    expect(arr(tensors.get('ids')!)).toEqual([-3, 2147483647, -2147483648]);
    expect(arr(tensors.get('h')!)).toEqual([1, -0.5]);
    const big = Buffer.alloc(8);
    big.writeBigInt64LE(1n << 40n);
    expect(() => parseSafetensors(build({ ids: entry('I64', [1], 0, 8) }, big))).toThrow(/nodegrad: safetensors: I64 value 1099511627776 .* does not fit in int32 in <buffer>/);
  });

  it('converts float32 to float16 and bfloat16 with round-to-nearest-even', () => {
    const x = Float32Array.from([1, -2, 65504, 65520, 1e6, 2 ** -24, 2 ** -25, 2 ** -25 * 1.5, 6.103515625e-5, 1 + 2 ** -11, 1 + 3 * 2 ** -11, NaN, -Infinity]);
    expect(Array.from(f32ToF16(x))).toEqual([0x3c00, 0xc000, 0x7bff, 0x7c00, 0x7c00, 0x0001, 0x0000, 0x0001, 0x0400, 0x3c00, 0x3c02, 0x7e00, 0xfc00]);
    const y = Float32Array.from([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -3.5]);
    expect(Array.from(f32ToBf16(y))).toEqual([0x3f80, 0x3f80, 0x3f82, 0xc060]);
  });
});

describe('safetensors malformed files', () => {
  const good = (): Buffer => build({ a: entry('F32', [2], 0, 8) }, new Uint8Array(8));
  const cases: [string, () => Buffer, RegExp][] = [
    ['a file shorter than 8 bytes', () => Buffer.from([1, 2, 3]), /file too short/],
    ['a header length beyond the file size', () => { const b = good(); b.writeBigUInt64LE(1000n); return b; }, /header length 1000 exceeds the file size/],
    ['a header length over 100 MB', () => { const b = good(); b.writeBigUInt64LE(200_000_000n); return b; }, /exceeds the 100 MB limit/],
    ['a header length of 2^64-1', () => { const b = good(); b.writeBigUInt64LE(2n ** 64n - 1n); return b; }, /exceeds the 100 MB limit/],
    ['malformed JSON', () => build('{"a": {"dtype": "F32",', new Uint8Array(8)), /malformed header JSON/],
    ['a header that is not an object', () => build('[1,2]'), /header is not a JSON object/],
    ['a header that is not UTF-8', () => build(Buffer.from([0x7b, 0xff, 0x7d])), /header is not valid UTF-8/],
    ['an unknown dtype', () => build({ a: entry('U8', [2], 0, 2) }, [1, 2]), /unknown dtype "U8" for tensor "a"/],
    ['a missing dtype', () => build({ a: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), /unknown dtype undefined/],
    ['a negative shape', () => build({ a: entry('F32', [-1], 0, 4) }, new Uint8Array(4)), /shape of tensor "a" is not an array of non-negative integers/],
    ['offsets outside the data section', () => build({ a: entry('F32', [2], 0, 8) }, new Uint8Array(4)), /data_offsets \[0,8\] of tensor "a" lie outside the data section \(4 bytes\)/],
    ['offsets that are not a pair', () => build({ a: entry('F32', [1], 0, 4), b: { dtype: 'F32', shape: [1], data_offsets: [4] } }, new Uint8Array(8)), /data_offsets of tensor "b" is not a pair/],
    ['begin after end', () => build({ a: entry('F32', [0], 4, 0) }, new Uint8Array(4)), /lie outside the data section/],
    ['a size that does not match the shape', () => build({ a: entry('F32', [3], 0, 8) }, new Uint8Array(8)), /tensor "a" has 8 bytes but shape \[3\] of F32 needs 12/],
    ['a huge shape', () => build({ a: entry('F64', [2 ** 30, 2 ** 30, 2 ** 30], 0, 8) }, new Uint8Array(8)), /is larger than the data section/],
    ['overlapping ranges', () => build({ a: entry('F32', [2], 0, 8), b: entry('F32', [2], 4, 12) }, new Uint8Array(12)), /tensor "b" \[4,12\] overlaps the previous tensor/],
    ['a gap between tensors', () => build({ a: entry('F32', [1], 0, 4), b: entry('F32', [1], 8, 12) }, new Uint8Array(12)), /gap in the data section before tensor "b"/],
    ['trailing bytes', () => build({ a: entry('F32', [1], 0, 4) }, new Uint8Array(12)), /8 trailing bytes not covered/],
    ['duplicate names', () => build('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Uint8Array(8)), /duplicate tensor name "a"/],
    ['a non-string metadata value', () => build({ __metadata__: { n: 1 } }), /__metadata__ value of "n" is not a string/],
    ['too many dims', () => build({ a: entry('F32', [1, 1, 1, 1, 1, 1, 1, 1, 1], 0, 4) }, new Uint8Array(4)), /has 9 dims/],
  ];
  for (const [what, make, re] of cases) {
    it(`rejects ${what} with a clear error`, async () => {
      expect(() => parseSafetensors(make())).toThrow(new RegExp(`nodegrad: safetensors: .*(${re.source}).* in <buffer>`));
      const f = tmpPath('bad.safetensors');
      writeFileSync(f, make());
      const esc = f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      await expect(loadSafetensors(f)).rejects.toThrow(new RegExp(`nodegrad: safetensors: .*(${re.source}).* in ${esc}`));
    });
  }

  it('accepts a duplicate-looking key nested inside an entry or string', () => {
    const file = build('{"__metadata__":{"a":"\\"a\\",{"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4));
    const { tensors, metadata } = parseSafetensors(file);
    expect(metadata).toEqual({ a: '"a",{' });
    expect(tensors.get('a')!.shape).toEqual([1]);
  });

  it('rejects bad inputs to the writer and loader', () => {
    expect(() => serializeSafetensors({ a: [1, 2] as unknown as Tensor })).toThrow(/nodegrad: safetensors: value of "a" is not a Tensor/);
    expect(() => serializeSafetensors({ __metadata__: ng.zeros([1]) })).toThrow(/invalid tensor name "__metadata__"/);
    expect(() => serializeSafetensors({ a: ng.zeros([1]) }, { n: 3 as unknown as string })).toThrow(/metadata value of "n" is not a string/);
    const t = ng.zeros([2]);
    t.dispose();
    expect(() => serializeSafetensors({ t })).toThrow(/disposed/);
    expect(() => parseSafetensors(serializeSafetensors({ a: ng.zeros([1]) }), { dtype: 'int32' })).toThrow(/load dtype must be a floating dtype/);
  });
});

describe('safetensors lazy reader', () => {
  it('reads one tensor at a time by name', async () => {
    const f = tmpPath('lazy.safetensors');
    await saveSafetensors(f, { w: ng.tensor([[1, 2], [3, 4]]), b: ng.tensor(Int32Array.from([7, 8, 9])) }, { step: '12' });
    const r = await openSafetensors(f);
    try {
      expect(r.keys().sort()).toEqual(['b', 'w']);
      expect(r.metadata).toEqual({ step: '12' });
      expect(r.has('w')).toBe(true);
      expect(r.info('b')).toEqual({ dtype: 'I32', shape: [3], dataOffsets: [0, 12] });
      const b = await r.get('b');
      expect(arr(b)).toEqual([7, 8, 9]);
      const w = await r.get('w', { dtype: 'float64' });
      expect(w.dtype).toBe('float64');
      expect(w.tolist()).toEqual([[1, 2], [3, 4]]);
      await expect(r.get('nope')).rejects.toThrow(/nodegrad: safetensors: no tensor named "nope" .* in .*lazy\.safetensors/);
    } finally {
      await r.close();
    }
    await expect(r.get('w')).rejects.toThrow(/reader is closed/);
  });

  it('reports a file truncated after the header was read', async () => {
    const f = tmpPath('trunc.safetensors');
    await saveSafetensors(f, { a: ng.zeros([64]) });
    const r = await openSafetensors(f);
    writeFileSync(f, readFileSync(f).subarray(0, 100));
    await expect(r.get('a')).rejects.toThrow(/nodegrad: safetensors: file ended early/);
    await r.close();
    await expect(openSafetensors(f)).rejects.toThrow(/lie outside the data section/);
  });
});

describe('atomic writes', () => {
  const leftovers = (d: string, base: string): string[] => readdirSync(d).filter((n) => n.startsWith(`${base}.`));

  it('replaces a file and leaves no temp file', async () => {
    const f = tmpPath('atomic.txt');
    await writeFileAtomic(f, 'one');
    await writeFileAtomic(f, Buffer.from('two'));
    expect(readFileSync(f, 'utf8')).toBe('two');
    expect(leftovers(dir, path.basename(f))).toEqual([]);
  });

  it('keeps the previous checkpoint intact when a write fails half way', async () => {
    const f = tmpPath('ckpt.safetensors');
    await saveSafetensors(f, { w: ng.tensor([1, 2, 3]) }, { step: '1' });
    const next = serializeSafetensors({ w: ng.tensor([4, 5, 6]) }, { step: '2' });
    await expect(writeFileAtomic(f, async (fh) => {
      await fh.write(next.subarray(0, next.length >> 1));
      throw new Error('disk unplugged');
    })).rejects.toThrow(/disk unplugged/);
    const { tensors, metadata } = await loadSafetensors(f);
    expect(metadata.step).toBe('1');
    expect(arr(tensors.get('w')!)).toEqual([1, 2, 3]);
    expect(leftovers(dir, path.basename(f))).toEqual([]);
  });

  it('swaps checkpoint directories atomically and survives a failing second write', async () => {
    const d = tmpPath('run');
    await writeDirAtomic(d, { 'model.safetensors': safetensorsWriter({ w: ng.tensor([1, 2]) }), 'config.json': '{"n":1}', 'extra.txt': 'x' });
    expect(readdirSync(d).sort()).toEqual(['config.json', 'extra.txt', 'model.safetensors']);
    await expect(writeDirAtomic(d, {
      'config.json': '{"n":2}',
      'model.safetensors': async (fh) => { await fh.write(Buffer.alloc(10)); throw new Error('crash'); },
    })).rejects.toThrow(/crash/);
    expect(readFileSync(path.join(d, 'config.json'), 'utf8')).toBe('{"n":1}');
    expect(arr((await loadSafetensors(path.join(d, 'model.safetensors'))).tensors.get('w')!)).toEqual([1, 2]);
    expect(leftovers(dir, path.basename(d))).toEqual([]);

    await writeDirAtomic(d, { 'model.safetensors': serializeSafetensors({ w: ng.tensor([3]) }), 'config.json': '{"n":3}' });
    // files the save does not name are kept, unless it says to remove them
    expect(readdirSync(d).sort()).toEqual(['config.json', 'extra.txt', 'model.safetensors']);
    await writeDirAtomic(d, { 'config.json': '{"n":4}' }, { remove: ['extra.txt', 'config.json'] });
    expect(readdirSync(d).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(readFileSync(path.join(d, 'config.json'), 'utf8')).toBe('{"n":4}');
    expect(leftovers(dir, path.basename(d))).toEqual([]);
    expect(await resolveCheckpointDir(d)).toBe(d);
  });

  it('recovers the old checkpoint after a crash between the two renames', async () => {
    const d = tmpPath('crash');
    await writeDirAtomic(d, { 'config.json': '{"v":1}' });
    // The state a crash leaves: the old directory moved aside, the new one not yet in place.
    const old = `${path.resolve(d)}.old-${Date.now()}-1-abc`;
    renameSync(d, old);
    expect(await resolveCheckpointDir(d)).toBe(old);
    expect(readFileSync(path.join(await resolveCheckpointDir(d), 'config.json'), 'utf8')).toBe('{"v":1}');
    // The next write restores it first, then swaps in the new one.
    await expect(writeDirAtomic(d, { 'config.json': async () => { throw new Error('again'); } })).rejects.toThrow(/again/);
    expect(readFileSync(path.join(d, 'config.json'), 'utf8')).toBe('{"v":1}');
    await writeDirAtomic(d, { 'config.json': '{"v":2}' });
    expect(readFileSync(path.join(d, 'config.json'), 'utf8')).toBe('{"v":2}');
    expect(existsSync(old)).toBe(false);
    expect(leftovers(dir, path.basename(d))).toEqual([]);
  });

  it('rejects bad names and missing checkpoints', async () => {
    await expect(writeDirAtomic(tmpPath('x'), { '../evil': 'x' })).rejects.toThrow(/nodegrad: writeDirAtomic: file name "..\/evil" must be a plain name/);
    await expect(resolveCheckpointDir(tmpPath('none'))).rejects.toThrow(/nodegrad: resolveCheckpointDir: no checkpoint at/);
    const f = tmpPath('plain');
    writeFileSync(f, 'x');
    await expect(writeDirAtomic(f, { a: 'b' })).rejects.toThrow(/exists and is not a directory/);
  });
});
