import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Tensor } from '../../lib/tensor.js';
import { ByteTokenizer, CharTokenizer, tokenizerFromJSON } from '../../lib/data/tokenizers.js';
import { Rng, TokenDataset } from '../../lib/data/dataset.js';

let dir = '';
beforeAll(() => { dir = mkdtempSync(path.join(tmpdir(), 'nodegrad-data-')); });
afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

const rows = (t: Tensor): number[][] => t.tolist() as number[][];

describe('CharTokenizer', () => {
  it('builds a sorted vocabulary of distinct characters and round-trips text', () => {
    const tok = CharTokenizer.fromText('hello world');
    expect(tok.chars).toEqual([' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']);
    expect(tok.vocabSize).toBe(8);
    expect(tok.encode('hello')).toEqual([3, 2, 4, 4, 5]);
    expect(tok.decode(tok.encode('world hello'))).toBe('world hello');
  });

  it('treats multi-byte characters and emoji as single tokens', () => {
    const text = 'añb€c😀d😀';
    const tok = CharTokenizer.fromText(text);
    expect(tok.vocabSize).toBe(7);
    expect(tok.encode('😀')).toHaveLength(1);
    expect(tok.decode(tok.encode(text))).toBe(text);
  });

  it('rejects unknown characters unless an unk token is configured', () => {
    const tok = CharTokenizer.fromText('abc');
    expect(() => tok.encode('abz')).toThrow(/nodegrad: CharTokenizer.encode: character "z" \(U\+007A\) at offset 2 is not in the vocabulary/);
    const withUnk = CharTokenizer.fromText('abc', { unk: '<unk>' });
    expect(withUnk.vocabSize).toBe(4);
    expect(withUnk.encode('azb')).toEqual([0, 3, 1]);
    expect(withUnk.decode([0, 3, 1])).toBe('a<unk>b');
    expect(() => tok.decode([0, 3])).toThrow(/nodegrad: CharTokenizer.decode: token id 3 at position 1 is out of range \(vocab size 3\)/);
    expect(() => tok.encode(5 as unknown as string)).toThrow(/text must be a string/);
  });

  it('saves and restores through JSON', () => {
    const tok = CharTokenizer.fromText('zyx 😀', { unk: '?' });
    const back = tokenizerFromJSON(JSON.parse(JSON.stringify(tok)));
    expect(back).toBeInstanceOf(CharTokenizer);
    expect(back.toJSON()).toEqual(tok.toJSON());
    expect(back.encode('x😀q')).toEqual(tok.encode('x😀q'));
    expect(() => CharTokenizer.fromJSON({ type: 'char', chars: ['a', 'a'] })).toThrow(/duplicate vocabulary entry "a"/);
    expect(() => CharTokenizer.fromJSON({ type: 'char', chars: ['ab'] })).toThrow(/must be a single character/);
    expect(() => tokenizerFromJSON({ type: 'bpe' })).toThrow(/nodegrad: tokenizerFromJSON: unknown tokenizer type "bpe"/);
  });
});

describe('ByteTokenizer', () => {
  const tok = new ByteTokenizer();

  it('encodes UTF-8 bytes and round-trips multi-byte text and emoji', () => {
    expect(tok.vocabSize).toBe(256);
    expect(tok.encode('Ab')).toEqual([65, 98]);
    expect(tok.encode('€')).toEqual([0xe2, 0x82, 0xac]);
    for (const s of ['', 'héllo wörld', '日本語テキスト', '👍🏽 family: 👨‍👩‍👧', 'a\u0000b\n']) {
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
  });

  it('decodes a split multi-byte sequence without throwing and joins it when streaming', () => {
    const bytes = tok.encode('x😀y');
    expect(tok.decode(bytes.slice(0, 3))).toBe('x\uFFFD');
    const d = tok.createDecoder();
    let out = '';
    for (const b of bytes) out += d.push([b]);
    expect(out + d.flush()).toBe('x😀y');
    expect(() => tok.decode([256])).toThrow(/nodegrad: ByteTokenizer.decode: token id 256 at position 0 is out of range \(vocab size 256\)/);
  });

  it('gives special tokens ids after the bytes', () => {
    const sp = new ByteTokenizer({ specialTokens: ['<|endoftext|>', '<|pad|>'] });
    expect(sp.vocabSize).toBe(258);
    expect(sp.tokenId('<|endoftext|>')).toBe(256);
    const text = 'hi<|endoftext|>é<|pad|>';
    expect(sp.encode(text, { allowSpecial: true })).toEqual([104, 105, 256, 0xc3, 0xa9, 257]);
    expect(sp.encode('<|pad|>')).toHaveLength(7);
    expect(sp.decode(sp.encode(text, { allowSpecial: true }))).toBe(text);
    expect(sp.decode([0xf0, 0x9f, 256, 65])).toBe('\uFFFD<|endoftext|>A');
    expect(() => sp.tokenId('<|x|>')).toThrow(/no special token "<\|x\|>"/);
    const back = tokenizerFromJSON(JSON.stringify(sp));
    expect(back).toBeInstanceOf(ByteTokenizer);
    expect(back.vocabSize).toBe(258);
    expect(back.decode([256])).toBe('<|endoftext|>');
  });
});

describe('Rng', () => {
  it('is deterministic by seed, covers its range and restores its state', () => {
    const a = new Rng(42), b = new Rng(42), c = new Rng(43);
    const da = Array.from({ length: 8 }, () => a.nextU32());
    expect(Array.from({ length: 8 }, () => b.nextU32())).toEqual(da);
    expect(Array.from({ length: 8 }, () => c.nextU32())).not.toEqual(da);
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) {
      const v = a.nextInt(7);
      expect(v >= 0 && v < 7 && Number.isInteger(v)).toBe(true);
      seen.add(v);
    }
    expect(seen.size).toBe(7);
    const st = a.getState();
    const next = [a.nextU32(), a.nextU32()];
    expect([Rng.fromState(JSON.parse(JSON.stringify(st))).nextU32()]).toEqual([next[0]]);
    expect(() => a.setState({ kind: 'xoshiro128**', s: [0, 0, 0, 0] })).toThrow(/nodegrad: Rng.setState/);
    expect(() => new Rng(-1)).toThrow(/seed must be a non-negative integer/);
  });
});

describe('TokenDataset', () => {
  const ids = Int32Array.from({ length: 1000 }, (_, i) => i);

  it('returns [B,T] int32 batches of windows with y = x shifted by one', () => {
    const ds = new TokenDataset(ids, { seed: 1 });
    const { x, y } = ds.getBatch(4, 16);
    expect(x.shape).toEqual([4, 16]);
    expect(y.shape).toEqual([4, 16]);
    expect(x.dtype).toBe('int32');
    expect(y.dtype).toBe('int32');
    const xr = rows(x), yr = rows(y);
    for (let b = 0; b < 4; b++) {
      const s = xr[b][0];
      expect(s >= 0 && s + 16 < 1000).toBe(true);
      expect(xr[b]).toEqual(Array.from({ length: 16 }, (_, t) => s + t));
      expect(yr[b]).toEqual(xr[b].map((v) => v + 1));
    }
  });

  it('can draw every window, including the last one', () => {
    const ds = new TokenDataset([5, 6, 7, 8], { seed: 3 });
    const starts = new Set<number>();
    for (let i = 0; i < 50; i++) starts.add(rows(ds.getBatch(1, 2).x)[0][0]);
    expect([...starts].sort()).toEqual([5, 6]);
  });

  it('is deterministic by seed and resumes from a saved sampler state', () => {
    const draw = (ds: TokenDataset, n: number): number[][][] => Array.from({ length: n }, () => rows(ds.getBatch(3, 8).x));
    const a = new TokenDataset(ids, { seed: 7 }), b = new TokenDataset(ids, { seed: 7 }), c = new TokenDataset(ids, { seed: 8 });
    const first = draw(a, 3);
    expect(draw(b, 3)).toEqual(first);
    expect(draw(c, 3)).not.toEqual(first);
    const state = JSON.parse(JSON.stringify(a.getState()));
    const next = draw(a, 2);
    const resumed = new TokenDataset(ids, { seed: 7 });
    resumed.setState(state);
    expect(draw(resumed, 2)).toEqual(next);
    // A one-off seed or a caller's generator leaves the dataset's own sampler alone.
    const d = new TokenDataset(ids, { seed: 7 });
    expect(rows(d.getBatch(3, 8, { seed: 99 }).x)).toEqual(rows(d.getBatch(3, 8, { seed: 99 }).x));
    expect(rows(d.getBatch(3, 8, { rng: new Rng(7) }).x)).toEqual(first[0]);
    expect(draw(d, 1)).toEqual([first[0]]);
  });

  it('splits contiguously with the validation part at the end', () => {
    const { train, val } = new TokenDataset(ids).split(0.1);
    expect(train.length).toBe(900);
    expect(val.length).toBe(100);
    expect(train.tokens[899]).toBe(899);
    expect(val.tokens[0]).toBe(900);
    expect(new TokenDataset(ids).split(0).val.length).toBe(0);
    expect(() => new TokenDataset(ids).split(1)).toThrow(/nodegrad: TokenDataset.split: valFraction must be in \[0, 1\)/);
  });

  it('covers the data once in order with sequential batches', () => {
    const ds = new TokenDataset(Int32Array.from({ length: 23 }, (_, i) => i));
    // (23 - 1) / 4 = 5 windows: batches of 2, 2, 1.
    expect(ds.numSequentialBatches(2, 4)).toBe(3);
    const batches = [...ds.sequentialBatches(2, 4)];
    expect(batches.map((b) => b.x.shape)).toEqual([[2, 4], [2, 4], [1, 4]]);
    const xs = batches.flatMap((b) => rows(b.x));
    expect(xs.flat()).toEqual(Array.from({ length: 20 }, (_, i) => i));
    const ys = batches.flatMap((b) => rows(b.y));
    expect(ys.flat()).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it('reports data shorter than blockSize + 1 and bad arguments', () => {
    const ds = new TokenDataset([1, 2, 3, 4]);
    expect(() => ds.getBatch(1, 4)).toThrow(/nodegrad: TokenDataset.getBatch: the dataset has 4 tokens; blockSize 4 needs at least blockSize\+1 = 5/);
    expect(() => ds.sequentialBatches(1, 8).next()).toThrow(/needs at least blockSize\+1 = 9/);
    expect(() => ds.getBatch(0, 2)).toThrow(/batchSize must be a positive integer/);
    expect(() => ds.getBatch(1, 2.5)).toThrow(/blockSize must be a positive integer/);
    expect(() => new TokenDataset([1, -2])).toThrow(/nodegrad: TokenDataset: token 1 is -2/);
    expect(() => new TokenDataset([0.5])).toThrow(/token ids must be integers/);
  });

  it('reads a text file through a tokenizer and a raw uint16 token file', async () => {
    const txt = path.join(dir, 'input.txt');
    writeFileSync(txt, 'to be or not to be');
    const tok = CharTokenizer.fromText('to be or not to be');
    const ds = await TokenDataset.fromTextFile(txt, tok, { seed: 1 });
    expect(ds.length).toBe(18);
    expect(tok.decode(ds.tokens)).toBe('to be or not to be');
    const bin = path.join(dir, 'train.bin');
    writeFileSync(bin, Buffer.from(Uint16Array.from([1, 65535, 3]).buffer));
    expect(Array.from((await TokenDataset.fromBinFile(bin)).tokens)).toEqual([1, 65535, 3]);
    writeFileSync(bin, Buffer.from([1, 2, 3]));
    await expect(TokenDataset.fromBinFile(bin)).rejects.toThrow(/not a multiple of 2/);
  });
});
