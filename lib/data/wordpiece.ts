// WordPiece as BERT (Hugging Face's BertTokenizer): a basic tokenizer (drop control
// characters, map whitespace to spaces, put spaces around CJK ideographs, NFC, split on
// whitespace, lower-case and strip accents (NFD, drop Mn), split off punctuation), then
// greedy longest-match-first WordPiece with "##" continuation pieces and [UNK] for words
// longer than maxInputCharsPerWord or with no match. Special tokens ([CLS], [SEP], ...) in
// the text are kept whole. Every normalised character remembers the span of the original
// text it came from, so each token maps back to [start, end) offsets (UTF-16 indices, the
// ones text.slice() takes).
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Tensor } from '../tensor.js';
import { writeFileAtomic } from '../io/atomic.js';
import {
  type AddedToken, type PaddingStrategy, batchLength, checkDir, checkMaxLength, escapeRegExp, fileExists, padRow,
  optionsOf, parseAddedTokens, readJSONFile, readTokenizerConfig, rowsToTensor, tokenName, vocabList,
} from './bpe.js';

// Character classes as BERT defines them. ASCII goes through a table; other code points
// through Unicode property regexes compiled once.
const WS = 1, CTRL = 2, PUNCT = 4;
const ASCII = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  if (c === 9 || c === 10 || c === 13 || c === 32) ASCII[c] = WS;
  else if (c < 32 || c === 127) ASCII[c] = CTRL;
  else if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) ASCII[c] = PUNCT;
}
const RE_ZS = /\p{Zs}/u, RE_C = /\p{C}/u, RE_P = /\p{P}/u, RE_MN = /\p{Mn}/u, RE_M = /\p{M}/u, RE_S = /\s/u;

function charClass(cp: number, c: string): number {
  if (cp < 128) return ASCII[cp];
  return RE_ZS.test(c) ? WS : RE_C.test(c) ? CTRL : RE_P.test(c) ? PUNCT : 0;
}
function isChinese(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df)
    || (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf)
    || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}
/** Python's str.split() separators (FEFF is a format character, not a space, there). */
function isSplitSpace(c: string): boolean {
  const cp = c.charCodeAt(0);
  if (cp < 128) return cp === 32 || (cp >= 9 && cp <= 13) || (cp >= 0x1c && cp <= 0x1f);
  return cp === 0x85 || (cp !== 0xfeff && RE_S.test(c));
}
/** Continues a canonical-composition cluster: combining marks and Hangul medial/final jamo. */
function continuesCluster(cp: number, c: string): boolean {
  return (cp >= 0x1160 && cp <= 0x11ff) || (cp >= 0xd7b0 && cp <= 0xd7ff) || (cp >= 0x300 && RE_M.test(c));
}

/** Normalised characters with the original span [start, end) each came from. */
class Stream {
  ch: string[] = []; s: number[] = []; e: number[] = [];
  push(c: string, s: number, e: number): void { this.ch.push(c); this.s.push(s); this.e.push(e); }
  pushAll(str: string, s: number, e: number): void { for (const c of str) this.push(c, s, e); }
}

export type Truncation = boolean | 'longest_first' | 'only_first' | 'only_second';
export interface BertEncodeOptions {
  addSpecialTokens?: boolean;
  maxLength?: number;
  /** Default: 'longest_first' when maxLength is given, else none. */
  truncation?: Truncation;
  padding?: PaddingStrategy;
  paddingSide?: 'right' | 'left';
  /** Adds offsetMapping: [start, end) in the text each token came from ([0, 0] for special and padding tokens). */
  returnOffsetsMapping?: boolean;
}
export interface BertEncoding { inputIds: number[]; tokenTypeIds: number[]; attentionMask: number[]; offsetMapping?: [number, number][] }
export interface BertBatchEncoding<T> { inputIds: T; tokenTypeIds: T; attentionMask: T; offsetMapping?: [number, number][][] }

export interface BertTokenizerOptions {
  /** Tokens in id order (vocab.txt) or token -> id with ids 0..N-1. */
  vocab: readonly string[] | Record<string, number> | Map<string, number>;
  doLowerCase?: boolean;
  /** null (default): strip accents exactly when lower-casing. */
  stripAccents?: boolean | null;
  tokenizeChineseChars?: boolean;
  /** Drops control characters and maps whitespace to spaces (default true). */
  cleanText?: boolean;
  /** Words kept whole (neither lower-cased nor split). */
  neverSplit?: readonly string[];
  unkToken?: string; sepToken?: string; padToken?: string; clsToken?: string; maskToken?: string;
  addedTokens?: AddedToken[];
  maxInputCharsPerWord?: number;
  continuingSubwordPrefix?: string;
  cleanUpTokenizationSpaces?: boolean;
  modelMaxLength?: number;
}

export class BertTokenizer {
  readonly doLowerCase: boolean;
  readonly stripAccents: boolean | null;
  readonly tokenizeChineseChars: boolean;
  readonly cleanText: boolean;
  readonly unkToken: string; readonly sepToken: string; readonly padToken: string; readonly clsToken: string; readonly maskToken: string;
  readonly maxInputCharsPerWord: number;
  readonly continuingSubwordPrefix: string;
  readonly cleanUpTokenizationSpaces: boolean;
  readonly modelMaxLength: number | undefined;
  private readonly vocab = new Map<string, number>();
  private readonly tokens: string[];
  private readonly neverSplit: Set<string>;
  private readonly added: AddedToken[];
  private readonly addedByContent = new Map<string, AddedToken>();
  private readonly specialIds = new Set<number>();
  private readonly specialRe: RegExp | null;
  private readonly maxTokenChars: number;
  private readonly hasDuplicates: boolean;

  constructor(opts: BertTokenizerOptions) {
    const who = 'BertTokenizer';
    if (!opts || typeof opts !== 'object') throw new Error(`nodegrad: ${who}: expected { vocab }`);
    if (Array.isArray(opts.vocab)) {
      if (opts.vocab.length === 0) throw new Error(`nodegrad: ${who}: the vocabulary is empty`);
      opts.vocab.forEach((t, i) => { if (typeof t !== 'string') throw new Error(`nodegrad: ${who}: vocabulary entry ${i} must be a string`); });
      this.tokens = [...opts.vocab as string[]];
    } else this.tokens = vocabList(who, 'vocab', opts.vocab);
    this.tokens.forEach((t, i) => this.vocab.set(t, i));   // a repeated token keeps its last id, as HF's load_vocab
    this.hasDuplicates = this.vocab.size !== this.tokens.length;
    this.doLowerCase = opts.doLowerCase ?? true;
    this.stripAccents = opts.stripAccents ?? null;
    this.tokenizeChineseChars = opts.tokenizeChineseChars ?? true;
    this.cleanText = opts.cleanText ?? true;
    this.unkToken = opts.unkToken ?? '[UNK]';
    this.sepToken = opts.sepToken ?? '[SEP]';
    this.padToken = opts.padToken ?? '[PAD]';
    this.clsToken = opts.clsToken ?? '[CLS]';
    this.maskToken = opts.maskToken ?? '[MASK]';
    this.maxInputCharsPerWord = opts.maxInputCharsPerWord ?? 100;
    this.continuingSubwordPrefix = opts.continuingSubwordPrefix ?? '##';
    this.cleanUpTokenizationSpaces = opts.cleanUpTokenizationSpaces ?? true;
    this.modelMaxLength = opts.modelMaxLength;
    if (!this.vocab.has(this.unkToken)) throw new Error(`nodegrad: ${who}: the unk token ${JSON.stringify(this.unkToken)} is not in the vocabulary`);
    this.neverSplit = new Set(opts.neverSplit ?? []);

    const added: AddedToken[] = [];
    for (const t of opts.addedTokens ?? []) {
      if (!t || typeof t.content !== 'string' || t.content === '' || !Number.isInteger(t.id) || t.id < 0) {
        throw new Error(`nodegrad: ${who}: added tokens need a non-empty content and a non-negative integer id (got ${JSON.stringify(t)})`);
      }
      const inVocab = this.vocab.get(t.content);
      if ((inVocab !== undefined && inVocab !== t.id && this.tokens[t.id] !== t.content) || (inVocab === undefined && t.id < this.tokens.length)) {
        throw new Error(`nodegrad: ${who}: added token ${JSON.stringify(t.content)} with id ${t.id} conflicts with the vocabulary (${inVocab !== undefined ? `it has id ${inVocab}` : `id ${t.id} is ${JSON.stringify(this.tokens[t.id])}`})`);
      }
      added.push({ id: t.id, content: t.content, special: t.special !== false });
    }
    for (const t of [this.unkToken, this.sepToken, this.padToken, this.clsToken, this.maskToken]) {
      const id = this.vocab.get(t);
      if (id !== undefined && !added.some((a) => a.content === t)) added.push({ id, content: t, special: true });
    }
    this.added = added.sort((a, b) => a.id - b.id);
    for (const t of this.added) {
      this.addedByContent.set(t.content, t);
      if (t.special) this.specialIds.add(t.id);
    }
    const byLength = this.added.map((t) => t.content).sort((a, b) => b.length - a.length);
    this.specialRe = byLength.length ? new RegExp(byLength.map(escapeRegExp).join('|'), 'g') : null;
    let maxChars = 1;
    for (const t of this.vocab.keys()) { let n = 0; for (const _ of t) n++; if (n > maxChars) maxChars = n; }
    this.maxTokenChars = maxChars;
  }

  get vocabSize(): number {
    let n = this.tokens.length;
    for (const t of this.added) n = Math.max(n, t.id + 1);
    return n;
  }
  get addedTokens(): readonly AddedToken[] { return this.added; }
  get unkTokenId(): number { return this.vocab.get(this.unkToken)!; }
  get clsTokenId(): number | undefined { return this.tokenToId(this.clsToken); }
  get sepTokenId(): number | undefined { return this.tokenToId(this.sepToken); }
  get padTokenId(): number | undefined { return this.tokenToId(this.padToken); }
  get maskTokenId(): number | undefined { return this.tokenToId(this.maskToken); }
  private tokenToId(t: string): number | undefined { return this.addedByContent.get(t)?.id ?? this.vocab.get(t); }
  private idToToken(id: number, who: string, pos: number): string {
    const t = Number.isInteger(id) ? this.tokens[id] ?? this.added.find((a) => a.id === id)?.content : undefined;
    if (t === undefined) throw new Error(`nodegrad: BertTokenizer.${who}: token id ${id} at position ${pos} is out of range (vocab size ${this.vocabSize})`);
    return t;
  }

  convertTokensToIds(tokens: string): number;
  convertTokensToIds(tokens: readonly string[]): number[];
  convertTokensToIds(tokens: string | readonly string[]): number | number[] {
    const one = (t: string): number => this.tokenToId(t) ?? this.unkTokenId;
    return typeof tokens === 'string' ? one(tokens) : tokens.map(one);
  }
  convertIdsToTokens(ids: ArrayLike<number>): string[] {
    return Array.from(ids, (id, i) => this.idToToken(id, 'convertIdsToTokens', i));
  }

  /** WordPiece tokens of `text`. */
  tokenize(text: string): string[] { return this.run(text, 'tokenize').tokens; }

  /** WordPiece tokens with the [start, end) span of `text` each one came from. */
  tokenizeWithOffsets(text: string): { tokens: string[]; offsets: [number, number][] } {
    const { tokens, offs } = this.run(text, 'tokenizeWithOffsets');
    return { tokens, offsets: pairs(offs, 0, tokens.length) };
  }

  /** Tokens and their spans, flat: token i came from [offs[2i], offs[2i+1]). */
  private run(text: string, who: string): { tokens: string[]; offs: number[] } {
    if (typeof text !== 'string') throw new Error(`nodegrad: BertTokenizer.${who}: text must be a string (got ${typeof text})`);
    const tokens: string[] = [], offs: number[] = [];
    let last = 0;
    const re = this.specialRe;
    if (re !== null) {
      re.lastIndex = 0;
      for (let m = re.exec(text); m !== null; m = re.exec(text)) {
        this.basicTokenize(text, last, m.index, tokens, offs);
        tokens.push(m[0]);
        offs.push(m.index, m.index + m[0].length);
        last = m.index + m[0].length;
      }
    }
    this.basicTokenize(text, last, text.length, tokens, offs);
    return { tokens, offs };
  }

  private basicTokenize(text: string, from: number, to: number, tokens: string[], offs: number[]): void {
    if (from >= to) return;
    let st = new Stream();
    for (let i = from; i < to;) {
      const cp = text.codePointAt(i)!;
      const n = cp > 0xffff ? 2 : 1;
      const c = n === 1 ? text[i] : text.slice(i, i + 2);
      const cls = charClass(cp, c);
      if (this.cleanText && (cp === 0 || cp === 0xfffd || cls === CTRL)) { i += n; continue; }
      if (this.cleanText && cls === WS) st.push(' ', i, i + n);
      else if (this.tokenizeChineseChars && isChinese(cp)) { st.push(' ', i, i + n); st.push(c, i, i + n); st.push(' ', i, i + n); }
      else st.push(c, i, i + n);
      i += n;
    }
    const joined = st.ch.join('');
    if (joined.normalize('NFC') !== joined) st = nfc(st);
    const { ch } = st;
    for (let k = 0; k < ch.length;) {
      if (isSplitSpace(ch[k])) { k++; continue; }
      let q = k + 1;
      while (q < ch.length && !isSplitSpace(ch[q])) q++;
      this.splitWord(st, k, q, tokens, offs);
      k = q;
    }
  }

  /** One whitespace-delimited word: never-split check, case and accents, punctuation, WordPiece. */
  private splitWord(st: Stream, p: number, q: number, tokens: string[], offs: number[]): void {
    const keep = (w: Stream, a: number, b: number): boolean => {
      if (this.neverSplit.size === 0) return false;
      const word = w.ch.slice(a, b).join('');
      if (!this.neverSplit.has(word)) return false;
      tokens.push(word);
      offs.push(w.s[a], w.e[b - 1]);
      return true;
    };
    if (keep(st, p, q)) return;
    let w = st, a = p, b = q;
    const strip = (this.doLowerCase && this.stripAccents !== false) || this.stripAccents === true;
    if (this.doLowerCase || strip) {
      let simple = true;   // below U+00C0 only A-Z change case and nothing decomposes: work in place
      for (let k = p; k < q && simple; k++) simple = st.ch[k].charCodeAt(0) < 0xc0;
      if (simple) {
        if (this.doLowerCase) for (let k = p; k < q; k++) { const c = st.ch[k].charCodeAt(0); if (c >= 65 && c <= 90) st.ch[k] = String.fromCharCode(c + 32); }
      } else {
        if (this.doLowerCase) { w = lower(st, p, q); a = 0; b = w.ch.length; }
        if (strip) { w = stripAccents(w, a, b); a = 0; b = w.ch.length; }
        if (a === b) return;
      }
      if (keep(w, a, b)) return;
    }
    let start = a;
    for (let k = a; k < b; k++) {
      const c = w.ch[k];
      if (charClass(c.codePointAt(0)!, c) !== PUNCT) continue;
      this.wordpiece(w, start, k, tokens, offs);
      this.wordpiece(w, k, k + 1, tokens, offs);
      start = k + 1;
    }
    this.wordpiece(w, start, b, tokens, offs);
  }

  /** Greedy longest-match-first WordPiece over characters [a, b) of a stream. */
  private wordpiece(w: Stream, a: number, b: number, tokens: string[], offs: number[]): void {
    const n = b - a;
    if (n <= 0) return;
    if (n > this.maxInputCharsPerWord) { tokens.push(this.unkToken); offs.push(w.s[a], w.e[b - 1]); return; }
    const word = n === 1 ? w.ch[a] : w.ch.slice(a, b).join('');
    if (this.vocab.has(word)) { tokens.push(word); offs.push(w.s[a], w.e[b - 1]); return; }
    let bnd: number[] | null = null;   // UTF-16 index of each character when some take two units
    if (word.length !== n) {
      bnd = [0];
      for (let i = 0; i < n; i++) bnd.push(bnd[i] + w.ch[a + i].length);
    }
    const first = tokens.length;
    for (let start = 0; start < n;) {
      let end = Math.min(n, start + this.maxTokenChars);
      let piece: string | null = null;
      for (; end > start; end--) {
        const sub = bnd === null ? word.slice(start, end) : word.slice(bnd[start], bnd[end]);
        const cand = start > 0 ? this.continuingSubwordPrefix + sub : sub;
        if (this.vocab.has(cand)) { piece = cand; break; }
      }
      if (piece === null) {
        tokens.length = first; offs.length = 2 * first;
        tokens.push(this.unkToken); offs.push(w.s[a], w.e[b - 1]);
        return;
      }
      tokens.push(piece); offs.push(w.s[a + start], w.e[a + end - 1]);
      start = end;
    }
  }

  /**
   * [CLS] A [SEP] (B [SEP]) with token type ids 0 for A and 1 for B; truncation to maxLength
   * ('longest_first' takes tokens from the longer sequence, ties from B), padding to maxLength
   * with 'max_length'. Offsets of B's tokens index into `textPair`.
   */
  encode(text: string, textPair?: string | null | BertEncodeOptions, opts: BertEncodeOptions = {}): BertEncoding {
    if (textPair !== null && typeof textPair === 'object') { opts = textPair; textPair = undefined; }
    const who = 'BertTokenizer.encode';
    opts = optionsOf(who, opts);
    const enc = this.encodeUnpadded(who, text, textPair ?? null, opts);
    const maxLength = checkMaxLength(who, opts.maxLength);
    return this.pad(who, [enc], opts.padding === 'max_length' ? batchLength(who, [enc.inputIds.length], 'max_length', maxLength) : -1, opts)[0];
  }

  /** Encodes texts or [text, pair] tuples; padding 'longest' pads to the longest row. */
  encodeBatch(inputs: readonly (string | readonly [string, string])[], opts: BertEncodeOptions & { returnTensors: 'ng' }): BertBatchEncoding<Tensor>;
  encodeBatch(inputs: readonly (string | readonly [string, string])[], opts?: BertEncodeOptions): BertBatchEncoding<number[][]>;
  encodeBatch(inputs: readonly (string | readonly [string, string])[], opts: BertEncodeOptions & { returnTensors?: 'ng' } = {}): BertBatchEncoding<number[][] | Tensor> {
    const who = 'BertTokenizer.encodeBatch';
    if (!Array.isArray(inputs)) throw new Error(`nodegrad: ${who}: inputs must be an array of texts or [text, textPair] pairs`);
    opts = optionsOf(who, opts);
    const encs = inputs.map((x, i) => {
      if (typeof x === 'string') return this.encodeUnpadded(who, x, null, opts);
      if (Array.isArray(x) && x.length === 2) return this.encodeUnpadded(who, x[0] as string, x[1] as string, opts);
      throw new Error(`nodegrad: ${who}: input ${i} must be a string or a [text, textPair] pair`);
    });
    const len = batchLength(who, encs.map((e) => e.inputIds.length), opts.padding ?? false, checkMaxLength(who, opts.maxLength));
    const padded = this.pad(who, encs, len, opts);
    const out: BertBatchEncoding<number[][] | Tensor> = {
      inputIds: padded.map((e) => e.inputIds), tokenTypeIds: padded.map((e) => e.tokenTypeIds), attentionMask: padded.map((e) => e.attentionMask),
    };
    if (opts.returnOffsetsMapping) out.offsetMapping = padded.map((e) => e.offsetMapping!);
    if (opts.returnTensors === undefined) return out;
    if (opts.returnTensors !== 'ng') throw new Error(`nodegrad: ${who}: returnTensors must be 'ng' (got ${JSON.stringify(opts.returnTensors)})`);
    return { ...out, inputIds: rowsToTensor(who, out.inputIds as number[][]), tokenTypeIds: rowsToTensor(who, out.tokenTypeIds as number[][]), attentionMask: rowsToTensor(who, out.attentionMask as number[][]) };
  }

  private encodeUnpadded(who: string, text: string, pair: string | null, opts: BertEncodeOptions): BertEncoding {
    if (typeof text !== 'string') throw new Error(`nodegrad: ${who}: text must be a string (got ${typeof text})`);
    if (pair !== null && typeof pair !== 'string') throw new Error(`nodegrad: ${who}: textPair must be a string (got ${typeof pair})`);
    const A = this.run(text, who.split('.')[1]);
    const B = pair === null ? null : this.run(pair, who.split('.')[1]);
    const special = opts.addSpecialTokens ?? true;
    const numSpecial = special ? (B ? 3 : 2) : 0;
    const maxLength = checkMaxLength(who, opts.maxLength);
    let strategy = opts.truncation ?? (maxLength !== undefined ? 'longest_first' : false);
    if (strategy === true) strategy = 'longest_first';
    if (strategy !== false && strategy !== 'longest_first' && strategy !== 'only_first' && strategy !== 'only_second') {
      throw new Error(`nodegrad: ${who}: truncation must be true, false, 'longest_first', 'only_first' or 'only_second' (got ${JSON.stringify(strategy)})`);
    }
    const limit = maxLength ?? this.modelMaxLength;
    let [na, nb] = [A.tokens.length, B ? B.tokens.length : 0];
    if (strategy !== false && limit !== undefined) [na, nb] = truncate(who, na, B ? nb : null, numSpecial, limit, strategy);
    const ids = (t: string[], n: number): number[] => t.slice(0, n).map((x) => this.tokenToId(x) ?? this.unkTokenId);
    const idsA = ids(A.tokens, na), idsB = B ? ids(B.tokens, nb) : [];
    let cls: number[] = [], sep: number[] = [];
    if (special) {
      const c = this.tokenToId(this.clsToken), s = this.tokenToId(this.sepToken);
      if (c === undefined || s === undefined) throw new Error(`nodegrad: ${who}: the vocabulary has no ${c === undefined ? this.clsToken : this.sepToken} token (pass addSpecialTokens: false)`);
      cls = [c]; sep = [s];
    }
    const inputIds = [...cls, ...idsA, ...sep, ...(B ? [...idsB, ...sep] : [])];
    const lenA = cls.length + idsA.length + sep.length;
    const enc: BertEncoding = {
      inputIds,
      tokenTypeIds: inputIds.map((_, i) => (i < lenA ? 0 : 1)),
      attentionMask: new Array<number>(inputIds.length).fill(1),
    };
    if (opts.returnOffsetsMapping) {
      const z: [number, number][] = special ? [[0, 0]] : [];
      enc.offsetMapping = [...z, ...pairs(A.offs, 0, na), ...z, ...(B ? [...pairs(B.offs, 0, nb), ...z] : [])];
    }
    return enc;
  }

  private pad(who: string, encs: BertEncoding[], len: number, opts: BertEncodeOptions): BertEncoding[] {
    if (len < 0 || encs.every((e) => e.inputIds.length >= len)) return encs;
    const padId = this.tokenToId(this.padToken);
    if (padId === undefined) throw new Error(`nodegrad: ${who}: padding needs the pad token ${JSON.stringify(this.padToken)}, which is not in the vocabulary`);
    const left = opts.paddingSide === 'left';
    return encs.map((e) => {
      const out: BertEncoding = {
        inputIds: padRow(e.inputIds, len, padId, left), tokenTypeIds: padRow(e.tokenTypeIds, len, 0, left), attentionMask: padRow(e.attentionMask, len, 0, left),
      };
      if (e.offsetMapping) {
        const fill = Array.from({ length: Math.max(0, len - e.offsetMapping.length) }, (): [number, number] => [0, 0]);
        out.offsetMapping = left ? [...fill, ...e.offsetMapping] : [...e.offsetMapping, ...fill];
      }
      return out;
    });
  }

  /** Joins tokens with spaces, glues "##" pieces to the previous token, and tidies spaces before punctuation. */
  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean; cleanUpTokenizationSpaces?: boolean } = {}): string {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') throw new Error('nodegrad: BertTokenizer.decode: ids must be an array of token ids');
    opts = optionsOf('BertTokenizer.decode', opts);
    const toks: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const t = this.idToToken(ids[i], 'decode', i);
      if (!(opts.skipSpecialTokens && this.specialIds.has(ids[i]))) toks.push(t);
    }
    let s = toks.join(' ').split(' ' + this.continuingSubwordPrefix).join('').trim();
    if (opts.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces) {
      for (const [from, to] of CLEANUP) s = s.split(from).join(to);
    }
    return s;
  }

  /** The Hugging Face tokenizer.json form (BertNormalizer, BertPreTokenizer, WordPiece). */
  toJSON(): Record<string, unknown> {
    const cls = this.tokenToId(this.clsToken), sep = this.tokenToId(this.sepToken);
    const st = (id: string, type: number): unknown => ({ SpecialToken: { id, type_id: type } });
    const sq = (id: string, type: number): unknown => ({ Sequence: { id, type_id: type } });
    return {
      version: '1.0', truncation: null, padding: null,
      added_tokens: this.added.map((t) => ({ id: t.id, content: t.content, single_word: false, lstrip: false, rstrip: false, normalized: !t.special, special: t.special })),
      normalizer: { type: 'BertNormalizer', clean_text: this.cleanText, handle_chinese_chars: this.tokenizeChineseChars, strip_accents: this.stripAccents, lowercase: this.doLowerCase },
      pre_tokenizer: { type: 'BertPreTokenizer' },
      post_processor: cls === undefined || sep === undefined ? null : {
        type: 'TemplateProcessing',
        single: [st(this.clsToken, 0), sq('A', 0), st(this.sepToken, 0)],
        pair: [st(this.clsToken, 0), sq('A', 0), st(this.sepToken, 0), sq('B', 1), st(this.sepToken, 1)],
        special_tokens: { [this.clsToken]: { id: this.clsToken, ids: [cls], tokens: [this.clsToken] }, [this.sepToken]: { id: this.sepToken, ids: [sep], tokens: [this.sepToken] } },
      },
      decoder: { type: 'WordPiece', prefix: this.continuingSubwordPrefix, cleanup: this.cleanUpTokenizationSpaces },
      model: {
        type: 'WordPiece', unk_token: this.unkToken, continuing_subword_prefix: this.continuingSubwordPrefix,
        max_input_chars_per_word: this.maxInputCharsPerWord, vocab: Object.fromEntries(this.tokens.map((t, i) => [t, i])),
      },
    };
  }

  /** Rebuilds a tokenizer from a tokenizer.json object (model type WordPiece). */
  static fromJSON(obj: unknown, opts: Partial<BertTokenizerOptions> = {}, source = 'tokenizer.json'): BertTokenizer {
    const who = 'BertTokenizer';
    const o = obj as Record<string, Record<string, unknown> | null | undefined> | null;
    const model = o?.model;
    if (!model || typeof model !== 'object') throw new Error(`nodegrad: ${who}: ${source}: missing "model"`);
    if (model.type !== 'WordPiece') throw new Error(`nodegrad: ${who}: ${source}: model type ${JSON.stringify(model.type)} is not WordPiece`);
    const norm = o?.normalizer;
    if (norm && norm.type !== 'BertNormalizer') throw new Error(`nodegrad: ${who}: ${source}: only the BertNormalizer is supported (got ${JSON.stringify(norm.type)})`);
    const pre = o?.pre_tokenizer;
    if (!pre || pre.type !== 'BertPreTokenizer') throw new Error(`nodegrad: ${who}: ${source}: only the BertPreTokenizer is supported (got ${JSON.stringify(pre?.type ?? null)})`);
    const post = o?.post_processor;
    const names: Partial<BertTokenizerOptions> = {};
    if (post?.type === 'BertProcessing') {
      const [sep, cls] = [post.sep, post.cls] as [unknown, unknown];
      if (Array.isArray(sep) && typeof sep[0] === 'string') names.sepToken = sep[0];
      if (Array.isArray(cls) && typeof cls[0] === 'string') names.clsToken = cls[0];
    } else if (post?.type === 'TemplateProcessing' && Array.isArray(post.pair)) {
      const sp = (post.pair as { SpecialToken?: { id?: unknown } }[]).map((x) => x.SpecialToken?.id).filter((x): x is string => typeof x === 'string');
      if (sp.length >= 2) { names.clsToken = sp[0]; names.sepToken = sp[1]; }
    }
    const dec = o?.decoder;
    return new BertTokenizer({
      vocab: vocabList(who, source, model.vocab),
      doLowerCase: norm ? norm.lowercase !== false : false,
      stripAccents: norm ? (typeof norm.strip_accents === 'boolean' ? norm.strip_accents : null) : false,
      tokenizeChineseChars: norm ? norm.handle_chinese_chars !== false : false,
      cleanText: norm ? norm.clean_text !== false : false,
      unkToken: typeof model.unk_token === 'string' ? model.unk_token : undefined,
      continuingSubwordPrefix: typeof model.continuing_subword_prefix === 'string' ? model.continuing_subword_prefix : undefined,
      maxInputCharsPerWord: Number.isInteger(model.max_input_chars_per_word) ? model.max_input_chars_per_word as number : undefined,
      cleanUpTokenizationSpaces: dec?.type === 'WordPiece' && typeof dec.cleanup === 'boolean' ? dec.cleanup : undefined,
      addedTokens: parseAddedTokens(who, source, o?.added_tokens),
      ...names,
      ...opts,
    });
  }

  /** Loads tokenizer.json (its normalizer wins over the config), or vocab.txt plus tokenizer_config.json (do_lower_case, ...). */
  static async fromPretrained(dir: string, opts: Partial<BertTokenizerOptions> = {}): Promise<BertTokenizer> {
    const who = 'BertTokenizer.fromPretrained';
    await checkDir(who, dir);
    const cfg = await readTokenizerConfig(who, dir);
    const names: Partial<BertTokenizerOptions> = {};
    for (const [key, opt] of [['unk_token', 'unkToken'], ['sep_token', 'sepToken'], ['pad_token', 'padToken'], ['cls_token', 'clsToken'], ['mask_token', 'maskToken']] as const) {
      const v = tokenName(cfg[key]);
      if (v !== undefined) names[opt] = v;
    }
    if (Number.isInteger(cfg.model_max_length) && (cfg.model_max_length as number) < 1e12) names.modelMaxLength = cfg.model_max_length as number;
    if (typeof cfg.clean_up_tokenization_spaces === 'boolean') names.cleanUpTokenizationSpaces = cfg.clean_up_tokenization_spaces;
    const tj = path.join(dir, 'tokenizer.json');
    if (await fileExists(tj)) return BertTokenizer.fromJSON(await readJSONFile(who, tj), { ...names, ...opts }, tj);
    const vt = path.join(dir, 'vocab.txt');
    if (!(await fileExists(vt))) throw new Error(`nodegrad: ${who}: no WordPiece vocabulary in ${dir} (looked for tokenizer.json, vocab.txt)`);
    const lines = (await readFile(vt, 'utf8')).split('\n').map((l) => l.replace(/\r$/, ''));
    if (lines.length && lines[lines.length - 1] === '') lines.pop();
    if (lines.length === 0) throw new Error(`nodegrad: ${who}: ${vt} is empty`);
    const fromCfg: Partial<BertTokenizerOptions> = { ...names };
    if (typeof cfg.do_lower_case === 'boolean') fromCfg.doLowerCase = cfg.do_lower_case;
    if (typeof cfg.strip_accents === 'boolean' || cfg.strip_accents === null) fromCfg.stripAccents = cfg.strip_accents as boolean | null;
    if (typeof cfg.tokenize_chinese_chars === 'boolean') fromCfg.tokenizeChineseChars = cfg.tokenize_chinese_chars;
    if (Array.isArray(cfg.never_split)) fromCfg.neverSplit = cfg.never_split.filter((x): x is string => typeof x === 'string');
    const added = parseAddedTokens(who, 'tokenizer_config.json', cfg.added_tokens_decoder);
    const at = path.join(dir, 'added_tokens.json');
    if (await fileExists(at)) {
      const obj = await readJSONFile(who, at);
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`nodegrad: ${who}: ${at} must map token -> id`);
      for (const [content, id] of Object.entries(obj)) if (!added.some((t) => t.content === content)) added.push(...parseAddedTokens(who, at, [{ id, content }]));
    }
    try {
      return new BertTokenizer({ vocab: lines, addedTokens: added, ...fromCfg, ...opts });
    } catch (e) {
      throw new Error(`${(e as Error).message} (loading ${dir})`);
    }
  }

  /** Writes vocab.txt, tokenizer_config.json, special_tokens_map.json and tokenizer.json. */
  async savePretrained(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const special = { unk_token: this.unkToken, sep_token: this.sepToken, pad_token: this.padToken, cls_token: this.clsToken, mask_token: this.maskToken };
    const config = {
      tokenizer_class: 'BertTokenizer', do_lower_case: this.doLowerCase, strip_accents: this.stripAccents, tokenize_chinese_chars: this.tokenizeChineseChars,
      never_split: [...this.neverSplit], clean_up_tokenization_spaces: this.cleanUpTokenizationSpaces, ...special,
      ...(this.modelMaxLength !== undefined ? { model_max_length: this.modelMaxLength } : {}),
      added_tokens_decoder: Object.fromEntries(this.added.map((t) => [String(t.id), { content: t.content, special: t.special }])),
    };
    const json = (v: unknown): string => JSON.stringify(v, null, 2) + '\n';
    await writeFileAtomic(path.join(dir, 'vocab.txt'), this.tokens.map((t) => t + '\n').join(''));
    await writeFileAtomic(path.join(dir, 'tokenizer_config.json'), json(config));
    await writeFileAtomic(path.join(dir, 'special_tokens_map.json'), json(special));
    // A vocabulary that repeats a token cannot be written as tokenizer.json's token -> id object.
    if (!this.hasDuplicates) await writeFileAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(this.toJSON()));
  }
}

/** Spans [offs[2i], offs[2i+1]) for i in [from, to) as pairs. */
function pairs(offs: number[], from: number, to: number): [number, number][] {
  const out: [number, number][] = [];
  for (let i = from; i < to; i++) out.push([offs[2 * i], offs[2 * i + 1]]);
  return out;
}

/** HF's clean_up_tokenization: no space before punctuation and English contractions. */
const CLEANUP: [string, string][] = [[' .', '.'], [' ?', '?'], [' !', '!'], [' ,', ','], [" ' ", "'"], [" n't", "n't"], [" 'm", "'m"], [" 's", "'s"], [" 've", "'ve"], [" 're", "'re"]];

/** Composes each cluster (a starter and its combining characters) to NFC; a changed cluster's characters share its span. */
function nfc(st: Stream): Stream {
  const out = new Stream();
  const { ch } = st;
  for (let k = 0; k < ch.length;) {
    let j = k + 1;
    while (j < ch.length && continuesCluster(ch[j].codePointAt(0)!, ch[j])) j++;
    const cluster = j === k + 1 ? ch[k] : ch.slice(k, j).join('');
    const composed = cluster.normalize('NFC');
    if (composed === cluster) for (let i = k; i < j; i++) out.push(ch[i], st.s[i], st.e[i]);
    else out.pushAll(composed, st.s[k], st.e[j - 1]);
    k = j;
  }
  return out;
}

/** Lower-cases characters [p, q) as one word (so a final capital sigma becomes ς), keeping spans. */
function lower(st: Stream, p: number, q: number): Stream {
  const out = new Stream();
  const lw = st.ch.slice(p, q).join('').toLowerCase();
  const per = st.ch.slice(p, q).map((c) => c.toLowerCase());
  let total = 0;
  for (const x of per) total += x.length;
  let pos = 0;
  for (let k = p; k < q; k++) {
    const x = per[k - p];
    out.pushAll(total === lw.length ? lw.slice(pos, pos + x.length) : x, st.s[k], st.e[k]);
    pos += x.length;
  }
  return out;
}

/** NFD and drop nonspacing marks (Mn), per character, keeping spans. */
function stripAccents(st: Stream, a: number, b: number): Stream {
  const out = new Stream();
  for (let k = a; k < b; k++) {
    const c = st.ch[k];
    if (c.charCodeAt(0) < 0xc0) { out.push(c, st.s[k], st.e[k]); continue; }
    for (const d of c.normalize('NFD')) if (!RE_MN.test(d)) out.push(d, st.s[k], st.e[k]);
  }
  return out;
}

/** Tokens kept of A and B after truncating to `limit` ids including `numSpecial` special tokens. */
function truncate(who: string, a: number, b: number | null, numSpecial: number, limit: number, strategy: 'longest_first' | 'only_first' | 'only_second'): [number, number] {
  const remove = a + (b ?? 0) + numSpecial - limit;
  if (remove <= 0) return [a, b ?? 0];
  if (limit < numSpecial) throw new Error(`nodegrad: ${who}: maxLength ${limit} cannot hold the ${numSpecial} special tokens`);
  if (strategy === 'longest_first') {
    if (b === null) return [a - remove, 0];
    const first = Math.min(Math.abs(a - b), remove), second = remove - first, half = Math.floor(second / 2);
    return a > b ? [a - first - half, b - (second - half)] : [a - half, b - first - (second - half)];
  }
  if (strategy === 'only_first') {
    if (a <= remove) throw new Error(`nodegrad: ${who}: truncation 'only_first' must remove ${remove} tokens but the first sequence has ${a} (use 'longest_first')`);
    return [a - remove, b ?? 0];
  }
  if (b === null) throw new Error(`nodegrad: ${who}: truncation 'only_second' needs a text pair`);
  if (b <= remove) throw new Error(`nodegrad: ${who}: truncation 'only_second' must remove ${remove} tokens but the second sequence has ${b} (use 'longest_first')`);
  return [a, b - remove];
}
