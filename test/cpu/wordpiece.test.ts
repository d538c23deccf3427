import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BertTokenizer, type BertTokenizerOptions } from '../../lib/data/wordpiece.js';
import { GPT2Tokenizer } from '../../lib/data/bpe.js';
import { AutoTokenizer } from '../../lib/data/auto_tokenizer.js';

let dir = '';
beforeAll(() => { dir = mkdtempSync(path.join(tmpdir(), 'nodegrad-wordpiece-')); });
afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

// HF's test_tokenization_bert vocabulary.
const CLASSIC = ['[UNK]', '[CLS]', '[SEP]', 'want', '##want', '##ed', 'wa', 'un', 'runn', '##ing', ',', 'low', 'lowest'];
const bert = (vocab: string[], opts: Partial<BertTokenizerOptions> = {}): BertTokenizer => new BertTokenizer({ vocab, ...opts });
/** A vocabulary of whole words, each of their characters (and its ## form) and some punctuation. */
function vocabFor(words: string[], extra: string[] = []): string[] {
  const v = new Set(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', ...extra, ...words, ...'.,!?\'"$`^~+[]¿—']);
  for (const w of words) for (const c of w) { v.add(c); v.add('##' + c); }
  return [...v];
}

describe('BertTokenizer basic tokenization (HF test cases)', () => {
  it('splits "UNwant\\u00E9d,running" into the classic word pieces', () => {
    const t = bert(CLASSIC);
    expect(t.tokenize('UNwant\u00E9d,running')).toEqual(['un', '##want', '##ed', ',', 'runn', '##ing']);
    expect(t.convertTokensToIds(t.tokenize('UNwant\u00E9d,running'))).toEqual([7, 4, 5, 10, 8, 9]);
    expect(t.tokenize('')).toEqual([]);
    expect(t.tokenize('unwanted running')).toEqual(['un', '##want', '##ed', 'runn', '##ing']);
    expect(t.tokenize('unwantedX running')).toEqual(['[UNK]', 'runn', '##ing']);
  });

  it('lower-cases and strips accents as configured', () => {
    const text = ' \tHäLLo!how  \n Are yoU?  ';
    const words = (o: Partial<BertTokenizerOptions>, s: string): string[] => {
      const toks = ['hallo', 'hällo', 'HaLLo', 'HäLLo', 'HeLLo', 'hello', 'héllo', 'how', 'are', 'Are', 'you', 'yoU', '!', '?'];
      return bert(['[UNK]', ...toks], o).tokenize(s);
    };
    expect(words({}, text)).toEqual(['hallo', '!', 'how', 'are', 'you', '?']);
    expect(words({}, 'H\u00E9llo')).toEqual(['hello']);
    expect(words({ stripAccents: false }, text)).toEqual(['hällo', '!', 'how', 'are', 'you', '?']);
    expect(words({ stripAccents: false }, 'H\u00E9llo')).toEqual(['héllo']);
    expect(words({ stripAccents: true }, text)).toEqual(['hallo', '!', 'how', 'are', 'you', '?']);
    expect(words({ doLowerCase: false }, ' \tHeLLo!how  \n Are yoU?  ')).toEqual(['HeLLo', '!', 'how', 'Are', 'yoU', '?']);
    expect(words({ doLowerCase: false, stripAccents: false }, text)).toEqual(['HäLLo', '!', 'how', 'Are', 'yoU', '?']);
    expect(words({ doLowerCase: false, stripAccents: true }, text)).toEqual(['HaLLo', '!', 'how', 'Are', 'yoU', '?']);
    // Decomposed input is composed (NFC) before matching; a final capital sigma lower-cases to ς.
    expect(words({ doLowerCase: false }, 'He\u0301llo')).toEqual(['[UNK]']);
    expect(bert(['[UNK]', 'héllo'], { doLowerCase: false }).tokenize('he\u0301llo')).toEqual(['héllo']);
    expect(bert(['[UNK]', 'οδος'], { stripAccents: false }).tokenize('ΟΔΟΣ')).toEqual(['οδος']);
  });

  it('splits on ASCII symbols and Unicode punctuation, never on kept words', () => {
    const t = bert(vocabFor(['a', 'll', 'to', 'd', 'of', 'can', 't', 'b', 'c', 'e', 'f', 'g', '€']));
    expect(t.tokenize("a\n'll !!to?'d of, can't.")).toEqual(['a', "'", 'll', '!', '!', 'to', '?', "'", 'd', 'of', ',', 'can', "'", 't', '.']);
    expect(t.tokenize('a$b`c^d~e¿f—g')).toEqual(['a', '$', 'b', '`', 'c', '^', 'd', '~', 'e', '¿', 'f', '—', 'g']);
    expect(t.tokenize('a+b')).toEqual(['a', '+', 'b']);   // "+" is Sm in Unicode but punctuation for BERT (ASCII 33-47)
    expect(t.tokenize('a€b')).toEqual(['a', '##€', '##b']);   // "€" (Sc) outside ASCII is not
    const ns = bert(['[UNK]', 'HeLLo', 'how', 'Are', 'yoU', '!', '?'], { doLowerCase: false, neverSplit: ['[UNK]', 'x.y'] });
    expect(ns.tokenize(' \tHeLLo!how  \n Are yoU? [UNK]')).toEqual(['HeLLo', '!', 'how', 'Are', 'yoU', '?', '[UNK]']);
    expect(ns.tokenize('x.y')).toEqual(['x.y']);
    expect(ns.encode('x.y', { addSpecialTokens: false }).inputIds).toEqual([0]);
  });

  it('puts CJK ideographs in their own words unless disabled', () => {
    const t = bert(['[UNK]', 'ah', 'zz', '\u535A', '\u63A8', '的', '人', '有', '##人', '##有']);
    expect(t.tokenize('ah\u535A\u63A8zz')).toEqual(['ah', '\u535A', '\u63A8', 'zz']);
    expect(t.tokenize('的人有')).toEqual(['的', '人', '有']);
    expect(bert(['[UNK]', '的', '人', '有', '##人', '##有'], { tokenizeChineseChars: false }).tokenize('的人有')).toEqual(['的', '##人', '##有']);
    expect(t.tokenize('ひらがな')).toEqual(['[UNK]']);   // kana are not CJK ideographs
  });

  it('drops control and format characters and maps all whitespace to spaces', () => {
    const t = bert(['[UNK]', 'a', 'b', 'Test', 'test']);
    expect(t.tokenize('a\u0000b\ufffd\u0005')).toEqual(['[UNK]']);   // "ab" is not in the vocabulary
    expect(t.tokenize('a\u00a0b\u3000a\u2028b\u2029a\u2003b\tb\r\na')).toEqual(['a', 'b', 'a', 'b', 'a', 'b', 'b', 'a']);
    expect(t.tokenize('Te\u00adst \u200bte\u200dst\u0007')).toEqual(['test', 'test']);
    expect(bert(['[UNK]', 'a'], { doLowerCase: false }).tokenize('Test\u00ad test')).toEqual(['[UNK]', '[UNK]']);
  });

  it('maps words over maxInputCharsPerWord characters, or without a match, to [UNK]', () => {
    const t = bert(['[UNK]', 'a', '##a', 'b']);
    expect(t.tokenize('a'.repeat(100))).toEqual(['a', ...Array(99).fill('##a')]);
    expect(t.tokenize('a'.repeat(101) + ' b')).toEqual(['[UNK]', 'b']);
    expect(t.tokenize('ab b')).toEqual(['[UNK]', 'b']);
    expect(bert(['[UNK]', 'a', '##a'], { maxInputCharsPerWord: 3 }).tokenize('aaa aaaa')).toEqual(['a', '##a', '##a', '[UNK]']);
    expect(t.tokenize('😀😀')).toEqual(['[UNK]']);
  });

  it('keeps special tokens in the text whole, whatever the case setting', () => {
    const t = bert(vocabFor(['hello', 'world', 'cls']));
    expect(t.tokenize('[CLS] Hello[SEP]world [MASK]')).toEqual(['[CLS]', 'hello', '[SEP]', 'world', '[MASK]']);
    expect(t.tokenize('[cls]')).toEqual(['[', 'cls', ']']);
  });
});

describe('BertTokenizer offsets', () => {
  it('maps tokens to character spans as HF\'s fast tokenizer does', () => {
    const sentence = 'A, naïve [MASK] AllenNLP sentence.';
    const cased = bert(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'A', ',', 'na', '##ï', '##ve', 'Allen', '##NL', '##P', 'sentence', '.'], { doLowerCase: false });
    const e = cased.encode(sentence, { returnOffsetsMapping: true });
    expect(cased.convertIdsToTokens(e.inputIds)).toEqual(['[CLS]', 'A', ',', 'na', '##ï', '##ve', '[MASK]', 'Allen', '##NL', '##P', 'sentence', '.', '[SEP]']);
    expect(e.offsetMapping).toEqual([[0, 0], [0, 1], [1, 2], [3, 5], [5, 6], [6, 8], [9, 15], [16, 21], [21, 23], [23, 24], [25, 33], [33, 34], [0, 0]]);
    const uncased = bert(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'a', ',', 'naive', 'allen', '##nl', '##p', 'sentence', '.']);
    const u = uncased.encode(sentence, { returnOffsetsMapping: true });
    expect(uncased.convertIdsToTokens(u.inputIds)).toEqual(['[CLS]', 'a', ',', 'naive', '[MASK]', 'allen', '##nl', '##p', 'sentence', '.', '[SEP]']);
    expect(u.offsetMapping).toEqual([[0, 0], [0, 1], [1, 2], [3, 8], [9, 15], [16, 21], [21, 23], [23, 24], [25, 33], [33, 34], [0, 0]]);
  });

  it('keeps spans through CJK splitting, NFC, expanding lower-case, surrogate pairs and control characters', () => {
    const t = bert(['[UNK]', 'ah', 'zz', '\u535A', '\u63A8', 'e', 'i', 'x', '##y', 'b']);
    const spans = (s: string, tk = t): [string, string][] => {
      const r = tk.tokenizeWithOffsets(s);
      return r.tokens.map((tok, i) => [tok, s.slice(r.offsets[i][0], r.offsets[i][1])]);
    };
    expect(t.tokenizeWithOffsets('ah\u535A\u63A8zz').offsets).toEqual([[0, 2], [2, 3], [3, 4], [4, 6]]);
    expect(spans('\u0130 \u00c9')).toEqual([['i', '\u0130'], ['e', '\u00c9']]);
    const keep = bert(['[UNK]', 'é', 'x', '##y'], { doLowerCase: false });
    expect(spans('e\u0301 x\u0007y', keep)).toEqual([['é', 'e\u0301'], ['x', 'x'], ['##y', 'y']]);
    expect(spans('😀x 𠀀b', t)).toEqual([['[UNK]', '😀x'], ['[UNK]', '𠀀'], ['b', 'b']]);
  });

  it('gives spans that slice back to each token on random mixed-script text', () => {
    let seed = 42;
    const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296; };
    const pool = ['a', 'B', 'z', 'Q', '7', ' ', ' ', '  ', '\t', '\n', ',', '!', "'", '-', 'é', 'e\u0301', 'A\u030a', '\u212b', 'ñ', 'n\u0303',
      '\u1100\u1161', '\u1100\u1161\u11a8', '가', '東', '京', '😀', '👍🏽', 'ß', 'Ж', 'ж', 'ά', 'α\u0301', '\u0627\u064e', '\u0915\u093f', '\u00a0'];
    const texts = Array.from({ length: 300 }, () => Array.from({ length: 1 + Math.floor(rand() * 25) }, () => pool[Math.floor(rand() * pool.length)]).join(''));
    const chars = new Set<string>();
    for (const t of texts) for (const c of t.normalize('NFC')) { chars.add(c); chars.add(c.toLowerCase()); for (const d of c.toLowerCase().normalize('NFD')) chars.add(d); }
    const vocab = vocabFor([...chars].filter((c) => c.trim() !== ''));
    const strip = (x: string): string => [...x.normalize('NFD')].filter((c) => !/\p{Mn}/u.test(c)).join('');
    for (const [opts, norm] of [[{ doLowerCase: false }, (x: string) => x], [{}, (x: string) => strip(x.toLowerCase())]] as const) {
      const tk = bert(vocab, opts);
      for (const text of texts) {
        const { tokens, offsets } = tk.tokenizeWithOffsets(text);
        // Tokens sharing one span (a character that normalises to several, e.g. 가 -> ᄀ ᅡ) together spell it.
        for (let i = 0; i < tokens.length;) {
          let j = i + 1;
          while (j < tokens.length && offsets[j][0] === offsets[i][0] && offsets[j][1] === offsets[i][1]) j++;
          const spelled = tokens.slice(i, j).map((x) => x.replace(/^##/, '')).join('');
          expect([spelled, i]).toEqual([norm(text.slice(offsets[i][0], offsets[i][1]).normalize('NFC')), i]);
          i = j;
        }
        expect(tokens.map((x) => x.replace(/^##/, '')).join('')).toBe(norm(text.normalize('NFC')).replace(/\s/g, ''));
      }
    }
  });
});

describe('BertTokenizer encode', () => {
  const words = ['the', 'cat', 'sat', 'on', 'mat', 'a', 'dog', 'ran', 'far', 'away', 'it', 's', 'fine', 'hello', 'world'];
  const t = bert(vocabFor(words));
  const id = (w: string): number => t.convertTokensToIds(w);
  const [CLS, SEP, PAD] = [id('[CLS]'), id('[SEP]'), id('[PAD]')];

  it('builds [CLS] A [SEP] B [SEP] with token type ids and attention masks', () => {
    const single = t.encode('the cat sat');
    expect(single.inputIds).toEqual([CLS, id('the'), id('cat'), id('sat'), SEP]);
    expect(single.tokenTypeIds).toEqual([0, 0, 0, 0, 0]);
    expect(single.attentionMask).toEqual([1, 1, 1, 1, 1]);
    const pair = t.encode('the cat', 'a dog ran');
    expect(pair.inputIds).toEqual([CLS, id('the'), id('cat'), SEP, id('a'), id('dog'), id('ran'), SEP]);
    expect(pair.tokenTypeIds).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    expect(t.encode('the cat', 'a', { addSpecialTokens: false }).inputIds).toEqual([id('the'), id('cat'), id('a')]);
    expect(t.encode('the cat', 'a', { addSpecialTokens: false }).tokenTypeIds).toEqual([0, 0, 1]);
    expect(t.encode('the cat', { addSpecialTokens: false }).inputIds).toEqual([id('the'), id('cat')]);
    const off = t.encode('the cat', 'a dog', { returnOffsetsMapping: true }).offsetMapping;
    expect(off).toEqual([[0, 0], [0, 3], [4, 7], [0, 0], [0, 1], [2, 5], [0, 0]]);
  });

  it('truncates with every strategy', () => {
    const A = 'the cat sat on the mat', B = 'a dog ran far';   // 6 and 4 tokens
    const lens = (e: { tokenTypeIds: number[] }): [number, number] => [e.tokenTypeIds.filter((x) => x === 0).length - 2, e.tokenTypeIds.filter((x) => x === 1).length - 1];
    expect(lens(t.encode(A, B, { maxLength: 9, truncation: 'longest_first' }))).toEqual([3, 3]);   // remove 4: 2 from the longer A, then alternately, ties from B
    expect(lens(t.encode(A, B, { maxLength: 10, truncation: 'longest_first' }))).toEqual([4, 3]);
    expect(lens(t.encode(A, B, { maxLength: 12 }))).toEqual([5, 4]);                               // default: longest_first
    expect(lens(t.encode(A, B, { maxLength: 12, truncation: true }))).toEqual([5, 4]);
    expect(lens(t.encode(A, B, { maxLength: 10, truncation: 'only_first' }))).toEqual([3, 4]);
    expect(lens(t.encode(A, B, { maxLength: 10, truncation: 'only_second' }))).toEqual([6, 1]);
    expect(lens(t.encode(A, B, { maxLength: 10, truncation: false }))).toEqual([6, 4]);
    expect(t.encode(A, B, { maxLength: 9 }).inputIds).toEqual([CLS, ...['the', 'cat', 'sat'].map(id), SEP, id('a'), id('dog'), id('ran'), SEP]);
    expect(t.encode(A, { maxLength: 4 }).inputIds).toEqual([CLS, id('the'), id('cat'), SEP]);
    expect(t.encode(A, { maxLength: 4, returnOffsetsMapping: true }).offsetMapping).toEqual([[0, 0], [0, 3], [4, 7], [0, 0]]);
    expect(() => t.encode(A, B, { maxLength: 5, truncation: 'only_second' })).toThrow(/nodegrad: BertTokenizer.encode: truncation 'only_second' must remove 8 tokens but the second sequence has 4/);
    expect(() => t.encode(A, B, { maxLength: 5, truncation: 'only_first' })).toThrow(/truncation 'only_first' must remove 8 tokens but the first sequence has 6/);
    expect(() => t.encode(A, { maxLength: 4, truncation: 'only_second' })).toThrow(/'only_second' needs a text pair/);
    expect(() => t.encode(A, B, { maxLength: 2 })).toThrow(/maxLength 2 cannot hold the 3 special tokens/);
    expect(() => t.encode(A, { maxLength: 4, truncation: 'sideways' as never })).toThrow(/truncation must be true, false, 'longest_first'/);
    expect(() => t.encode(A, { maxLength: -1 })).toThrow(/maxLength must be a non-negative integer/);
  });

  it('pads to maxLength or to the longest row, on either side', () => {
    const e = t.encode('the cat', { maxLength: 6, padding: 'max_length', returnOffsetsMapping: true });
    expect(e.inputIds).toEqual([CLS, id('the'), id('cat'), SEP, PAD, PAD]);
    expect(e.attentionMask).toEqual([1, 1, 1, 1, 0, 0]);
    expect(e.tokenTypeIds).toEqual([0, 0, 0, 0, 0, 0]);
    expect(e.offsetMapping).toEqual([[0, 0], [0, 3], [4, 7], [0, 0], [0, 0], [0, 0]]);
    expect(t.encode('the cat', { padding: 'longest' }).inputIds).toHaveLength(4);
    const b = t.encodeBatch(['the cat sat', ['a dog', 'ran'], 'hello'], { padding: 'longest' });
    expect(b.inputIds).toEqual([
      [CLS, id('the'), id('cat'), id('sat'), SEP, PAD],
      [CLS, id('a'), id('dog'), SEP, id('ran'), SEP],
      [CLS, id('hello'), SEP, PAD, PAD, PAD],
    ]);
    expect(b.tokenTypeIds).toEqual([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]]);
    expect(b.attentionMask).toEqual([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]);
    const left = t.encodeBatch(['hello', 'the cat'], { padding: true, paddingSide: 'left', returnOffsetsMapping: true });
    expect(left.inputIds[0]).toEqual([PAD, CLS, id('hello'), SEP]);
    expect(left.attentionMask[0]).toEqual([0, 1, 1, 1]);
    expect(left.offsetMapping![0]).toEqual([[0, 0], [0, 0], [0, 5], [0, 0]]);
    const fixed = t.encodeBatch(['hello', 'the cat sat on the mat'], { padding: 'max_length', maxLength: 5 });
    expect(fixed.inputIds.map((r) => r.length)).toEqual([5, 5]);
    expect(fixed.inputIds[1]).toEqual([CLS, id('the'), id('cat'), id('sat'), SEP]);
    expect(t.encodeBatch(['hello', 'the cat']).inputIds.map((r) => r.length)).toEqual([3, 4]);
    expect(() => bert(CLASSIC).encode('want', { maxLength: 5, padding: 'max_length' })).toThrow(/padding needs the pad token "\[PAD\]", which is not in the vocabulary/);
    expect(() => bert(['[UNK]', 'x']).encode('x')).toThrow(/the vocabulary has no \[CLS\] token \(pass addSpecialTokens: false\)/);
  });

  it('returns int32 tensors for padded batches', () => {
    const b = t.encodeBatch([['the cat', 'sat'], 'a dog ran far away'], { padding: 'longest', returnTensors: 'ng' });
    expect(b.inputIds.dtype).toBe('int32');
    expect(b.inputIds.shape).toEqual([2, 7]);
    expect(b.tokenTypeIds.tolist()).toEqual([[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0]]);
    expect(b.attentionMask.tolist()).toEqual([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]]);
    expect(b.inputIds.tolist()).toEqual(t.encodeBatch([['the cat', 'sat'], 'a dog ran far away'], { padding: 'longest' }).inputIds);
    for (const x of [b.inputIds, b.tokenTypeIds, b.attentionMask]) x.dispose();
    expect(() => t.encodeBatch(['a', 'a dog'], { returnTensors: 'ng' })).toThrow(/nodegrad: BertTokenizer.encodeBatch: returnTensors needs rows of one length/);
    expect(() => t.encodeBatch([3 as unknown as string])).toThrow(/input 0 must be a string or a \[text, textPair\] pair/);
  });

  it('decodes back to the text, joining ## pieces and tidying punctuation', () => {
    const text = "hello, world! it's fine. the cat sat on the mat?";
    const ids = t.encode(text).inputIds;
    expect(t.decode(ids, { skipSpecialTokens: true })).toBe(text);
    expect(t.decode(ids)).toBe(`[CLS] ${text} [SEP]`);
    expect(t.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false })).toBe("hello , world ! it ' s fine . the cat sat on the mat ?");
    const c = bert(CLASSIC);
    expect(c.decode(c.encode('unwanted running,low').inputIds, { skipSpecialTokens: true })).toBe('unwanted running, low');
    expect(c.decode([0, 1, 2])).toBe('[UNK] [CLS] [SEP]');
    expect(c.decode([0, 1, 2], { skipSpecialTokens: true })).toBe('');
    expect(() => c.decode([13])).toThrow(/nodegrad: BertTokenizer.decode: token id 13 at position 0 is out of range \(vocab size 13\)/);
    expect(c.convertTokensToIds(['want', 'nope'])).toEqual([3, 0]);
    expect(c.convertIdsToTokens([3, 4])).toEqual(['want', '##want']);
  });

  it('tokenizes 100,000 characters quickly', () => {
    const big = ('The cat sat on the mat, naïve café 東京 😀 ' + 'a dog ran far away! ').repeat(1700);
    const t0 = performance.now();
    const toks = t.tokenize(big);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(toks.length).toBeGreaterThan(20000);
  });
});

describe('BertTokenizer files and AutoTokenizer', () => {
  const sub = (name: string): string => { const d = path.join(dir, name); mkdirSync(d, { recursive: true }); return d; };

  it('loads vocab.txt with tokenizer_config.json and round-trips through savePretrained', async () => {
    const d = sub('cased');
    writeFileSync(path.join(d, 'vocab.txt'), [...CLASSIC, '[PAD]', 'UN', '##want'].join('\r\n') + '\r\n');
    writeFileSync(path.join(d, 'tokenizer_config.json'), JSON.stringify({ do_lower_case: false, model_max_length: 6 }));
    const t = await BertTokenizer.fromPretrained(d);
    expect(t.doLowerCase).toBe(false);
    expect(t.vocabSize).toBe(16);
    expect(t.tokenize('UNwant')).toEqual(['UN', '##want']);
    expect(t.convertTokensToIds('##want')).toBe(15);   // a repeated token keeps its last line, as HF's load_vocab
    expect(t.encode('want want want want want', { truncation: true }).inputIds).toHaveLength(6);
    const auto = await AutoTokenizer.fromPretrained(d);
    expect(auto).toBeInstanceOf(BertTokenizer);
    expect((auto as BertTokenizer).tokenize('UNwant')).toEqual(['UN', '##want']);

    const lower = bert([...CLASSIC, '[PAD]', '[MASK]', 'x'], { addedTokens: [{ id: 16, content: '<new>', special: false }], modelMaxLength: 32 });
    const out = sub('saved');
    await lower.savePretrained(out);
    expect(readFileSync(path.join(out, 'vocab.txt'), 'utf8').split('\n')).toEqual([...CLASSIC, '[PAD]', '[MASK]', 'x', '']);
    const text = 'UNwant\u00E9d,running <new> x [MASK]';
    const want = lower.encode(text, 'low lowest', { returnOffsetsMapping: true });
    expect(lower.tokenize(text)).toEqual(['un', '##want', '##ed', ',', 'runn', '##ing', '<new>', 'x', '[MASK]']);
    const viaJson = await AutoTokenizer.fromPretrained(out);
    expect(viaJson).toBeInstanceOf(BertTokenizer);
    expect((viaJson as BertTokenizer).encode(text, 'low lowest', { returnOffsetsMapping: true })).toEqual(want);
    expect(viaJson.vocabSize).toBe(17);
    rmSync(path.join(out, 'tokenizer.json'));
    const viaTxt = await BertTokenizer.fromPretrained(out);
    expect(viaTxt.encode(text, 'low lowest', { returnOffsetsMapping: true })).toEqual(want);
    expect(viaTxt.modelMaxLength).toBe(32);
    expect(viaTxt.decode(want.inputIds, { skipSpecialTokens: true })).toBe('unwanted, running <new> x low lowest');
  });

  it('reads the normalizer and special tokens of a tokenizer.json', async () => {
    const d = sub('json');
    const t = bert(['[UNK]', '<s>', '</s>', 'Hä', '##LLo'], { doLowerCase: false, clsToken: '<s>', sepToken: '</s>' });
    writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify(t.toJSON()));
    const back = await AutoTokenizer.fromPretrained(d) as BertTokenizer;
    expect(back.doLowerCase).toBe(false);
    expect(back.encode('HäLLo').inputIds).toEqual([1, 3, 4, 2]);
    const j = t.toJSON() as { post_processor: unknown };
    j.post_processor = { type: 'BertProcessing', sep: ['</s>', 2], cls: ['<s>', 1] };
    writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify(j));
    expect((await BertTokenizer.fromPretrained(d)).encode('HäLLo').inputIds).toEqual([1, 3, 4, 2]);
  });

  it('chooses GPT2Tokenizer for vocab.json + merges.txt and for BPE tokenizer.json', async () => {
    const d = sub('bpe');
    writeFileSync(path.join(d, 'vocab.json'), JSON.stringify({ a: 0, b: 1, ab: 2 }));
    writeFileSync(path.join(d, 'merges.txt'), '#version: 0.2\na b\n');
    const t = await AutoTokenizer.fromPretrained(d);
    expect(t).toBeInstanceOf(GPT2Tokenizer);
    expect(t.encode('abab')).toEqual([2, 2]);
    await (t as GPT2Tokenizer).savePretrained(sub('bpe-json'));
    rmSync(path.join(dir, 'bpe-json', 'vocab.json'));
    expect(await AutoTokenizer.fromPretrained(path.join(dir, 'bpe-json'))).toBeInstanceOf(GPT2Tokenizer);
  });

  it('names the directory and the files looked for when vocabulary files are missing or malformed', async () => {
    const empty = sub('empty');
    await expect(AutoTokenizer.fromPretrained(empty)).rejects.toThrow(/nodegrad: AutoTokenizer.fromPretrained: no tokenizer files in .*empty \(looked for tokenizer\.json, vocab\.json \+ merges\.txt, vocab\.txt\)/);
    await expect(AutoTokenizer.fromPretrained(path.join(dir, 'nowhere'))).rejects.toThrow(/AutoTokenizer.fromPretrained: directory .*nowhere does not exist/);
    await expect(BertTokenizer.fromPretrained(empty)).rejects.toThrow(/BertTokenizer.fromPretrained: no WordPiece vocabulary in .*empty \(looked for tokenizer\.json, vocab\.txt\)/);
    const half = sub('half');
    writeFileSync(path.join(half, 'vocab.json'), '{}');
    await expect(AutoTokenizer.fromPretrained(half)).rejects.toThrow(/vocab\.txt; vocab\.json has no merges\.txt beside it\)/);
    const blank = sub('blank');
    writeFileSync(path.join(blank, 'vocab.txt'), '');
    await expect(AutoTokenizer.fromPretrained(blank)).rejects.toThrow(/BertTokenizer.fromPretrained: .*blank.vocab\.txt is empty/);
    const noUnk = sub('nounk');
    writeFileSync(path.join(noUnk, 'vocab.txt'), 'a\nb\n');
    await expect(AutoTokenizer.fromPretrained(noUnk)).rejects.toThrow(/the unk token "\[UNK\]" is not in the vocabulary \(loading .*nounk\)/);
    const badJson = sub('badjson');
    writeFileSync(path.join(badJson, 'tokenizer.json'), '{"model": ');
    await expect(AutoTokenizer.fromPretrained(badJson)).rejects.toThrow(/AutoTokenizer.fromPretrained: .*badjson.tokenizer\.json is not valid JSON/);
    const badCfg = sub('badcfg');
    writeFileSync(path.join(badCfg, 'vocab.txt'), '[UNK]\n');
    writeFileSync(path.join(badCfg, 'tokenizer_config.json'), '[1, 2');
    await expect(AutoTokenizer.fromPretrained(badCfg)).rejects.toThrow(/badcfg.tokenizer_config\.json is not valid JSON/);
    const unigram = sub('unigram');
    writeFileSync(path.join(unigram, 'tokenizer.json'), JSON.stringify({ model: { type: 'Unigram', vocab: [] } }));
    await expect(AutoTokenizer.fromPretrained(unigram)).rejects.toThrow(/unigram.tokenizer\.json has model type "Unigram" \(supported: "BPE", "WordPiece"\)/);
    const gaps = sub('gaps');
    writeFileSync(path.join(gaps, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordPiece', vocab: { '[UNK]': 0, a: 5 } }, normalizer: null, pre_tokenizer: { type: 'BertPreTokenizer' } }));
    await expect(AutoTokenizer.fromPretrained(gaps)).rejects.toThrow(/gaps.tokenizer\.json: token ids must be the integers 0\.\.1 without gaps \(token "a" has id 5\)/);
    const norm = sub('norm');
    writeFileSync(path.join(norm, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordPiece', vocab: { '[UNK]': 0 } }, normalizer: { type: 'NFKC' }, pre_tokenizer: { type: 'BertPreTokenizer' } }));
    await expect(AutoTokenizer.fromPretrained(norm)).rejects.toThrow(/only the BertNormalizer is supported \(got "NFKC"\)/);
    expect(() => new BertTokenizer({ vocab: [] })).toThrow(/nodegrad: BertTokenizer: the vocabulary is empty/);
    expect(() => bert(CLASSIC).tokenize(5 as unknown as string)).toThrow(/nodegrad: BertTokenizer.tokenize: text must be a string/);
  });
});
