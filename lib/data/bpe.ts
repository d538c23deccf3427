// Byte-level BPE exactly as GPT-2 (and tiktoken's "gpt2" encoding): text is split by the
// GPT-2 pre-tokenisation regex, each piece's UTF-8 bytes become printable characters
// through the byte-to-unicode table, and adjacent symbols are merged by merge rank until
// no ranked pair is left. Loads Hugging Face files (vocab.json + merges.txt, or a
// tokenizer.json whose model is BPE) and writes them back.
//
// Merging uses a linked list of symbols and a min-heap keyed by (rank, position): each
// step takes every occurrence of the lowest-ranked pair, left to right, before any new
// pair formed by those merges is considered, which is the reference algorithm's order in
// O(n log n) instead of O(n^2) per piece. Results are kept in a cache keyed by the piece's
// text, bounded by evicting the least recently used entries, so common words skip the merge
// loop entirely.
import { access, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Tensor } from '../tensor.js';
import { tensor } from '../ops/creation.js';
import { writeFileAtomic } from '../io/atomic.js';
import { MergeHeap } from './merge_heap.js';

// ---------------------------------------------------------------------------------------
// Helpers shared by the tokenizers (bpe.ts, wordpiece.ts, auto_tokenizer.ts).

/** A token matched whole in the text before the model runs (HF "added tokens"). */
export interface AddedToken { id: number; content: string; special: boolean }
export type PaddingStrategy = boolean | 'longest' | 'max_length';

export async function fileExists(file: string): Promise<boolean> {
  try { await access(file); return true; } catch { return false; }
}

export async function checkDir(who: string, dir: unknown): Promise<string> {
  if (typeof dir !== 'string' || dir === '') throw new Error(`nodegrad: ${who}: dir must be a directory path (got ${typeof dir})`);
  if (!(await fileExists(dir))) throw new Error(`nodegrad: ${who}: directory ${dir} does not exist`);
  return dir;
}

export async function readJSONFile(who: string, file: string): Promise<unknown> {
  const text = await readFile(file, 'utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new Error(`nodegrad: ${who}: ${file} is not valid JSON (${(e as Error).message})`);
  }
}

/** tokenizer_config.json merged over special_tokens_map.json (either may be missing). */
export async function readTokenizerConfig(who: string, dir: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const name of ['special_tokens_map.json', 'tokenizer_config.json']) {
    const file = path.join(dir, name);
    if (!(await fileExists(file))) continue;
    const obj = await readJSONFile(who, file);
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`nodegrad: ${who}: ${file} must hold a JSON object`);
    Object.assign(out, obj);
  }
  return out;
}

/** A token name from a config value: "<s>" or { "content": "<s>", ... }. */
export function tokenName(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** Added tokens from a tokenizer.json `added_tokens` list or a config's `added_tokens_decoder`. */
export function parseAddedTokens(who: string, file: string, v: unknown): AddedToken[] {
  if (v === undefined || v === null) return [];
  const list: unknown[] = Array.isArray(v) ? v
    : typeof v === 'object' ? Object.entries(v as Record<string, unknown>).map(([id, t]) => ({ ...(t as object), id: Number(id) })) : [];
  if (!Array.isArray(v) && typeof v !== 'object') throw new Error(`nodegrad: ${who}: ${file}: added tokens must be a list or an object`);
  return list.map((t, i) => {
    const o = t as { id?: unknown; content?: unknown; special?: unknown } | null;
    if (!o || !Number.isInteger(o.id) || (o.id as number) < 0 || typeof o.content !== 'string' || o.content === '') {
      throw new Error(`nodegrad: ${who}: ${file}: added token ${i} must have a non-negative integer id and non-empty content (got ${JSON.stringify(t)})`);
    }
    return { id: o.id as number, content: o.content, special: o.special !== false };
  });
}

/** Checks that a token -> id table uses each of the ids 0..N-1 exactly once; returns id -> token. */
export function vocabList(who: string, source: string, vocab: unknown): string[] {
  const entries: [string, unknown][] = vocab instanceof Map ? [...(vocab as Map<string, unknown>)]
    : vocab && typeof vocab === 'object' && !Array.isArray(vocab) ? Object.entries(vocab as Record<string, unknown>) : [];
  if (entries.length === 0) throw new Error(`nodegrad: ${who}: ${source}: the vocabulary must be a non-empty token -> id object`);
  const out: string[] = new Array<string>(entries.length);
  for (const [tok, id] of entries) {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= entries.length) {
      throw new Error(`nodegrad: ${who}: ${source}: token ids must be the integers 0..${entries.length - 1} without gaps (token ${JSON.stringify(tok)} has id ${JSON.stringify(id)})`);
    }
    if (out[id as number] !== undefined) {
      throw new Error(`nodegrad: ${who}: ${source}: token ids must be distinct (id ${id as number} is used by ${JSON.stringify(out[id as number])} and ${JSON.stringify(tok)})`);
    }
    out[id as number] = tok;
  }
  return out;
}

/** An options argument: undefined and null mean none; anything but an object is an error. */
export function optionsOf<T extends object>(who: string, opts: T | null | undefined): T {
  if (opts === undefined || opts === null) return {} as T;
  if (typeof opts !== 'object') throw new Error(`nodegrad: ${who}: options must be an object (got ${typeof opts})`);
  return opts;
}

export function escapeRegExp(s: string): string { return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'); }

/** Pads (or checks) rows of a batch to one length; returns the padded length. */
export function batchLength(who: string, lengths: number[], padding: PaddingStrategy, maxLength: number | undefined): number {
  if (padding === 'max_length') {
    if (maxLength === undefined) throw new Error(`nodegrad: ${who}: padding 'max_length' needs maxLength`);
    return Math.max(maxLength, ...lengths);
  }
  return padding === true || padding === 'longest' ? Math.max(0, ...lengths) : -1;
}

export function padRow(row: number[], len: number, value: number, left: boolean): number[] {
  if (len < 0 || row.length >= len) return row;
  const pad = new Array<number>(len - row.length).fill(value);
  return left ? pad.concat(row) : row.concat(pad);
}

/** number[][] -> int32 Tensor [B, L]; rows must be of equal length. */
export function rowsToTensor(who: string, rows: number[][]): Tensor {
  const L = rows.length ? rows[0].length : 0;
  const flat = new Int32Array(rows.length * L);
  rows.forEach((r, i) => {
    if (r.length !== L) throw new Error(`nodegrad: ${who}: returnTensors needs rows of one length (row 0 has ${L} tokens, row ${i} has ${r.length}); pass padding: 'longest' or 'max_length'`);
    flat.set(r, i * L);
  });
  return tensor(flat, { shape: [rows.length, L], dtype: 'int32' });
}

export function checkMaxLength(who: string, v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v) || (v as number) < 0) throw new Error(`nodegrad: ${who}: maxLength must be a non-negative integer (got ${String(v)})`);
  return v as number;
}

// ---------------------------------------------------------------------------------------
// GPT-2 byte-level BPE.

/** GPT-2's pre-tokenisation pattern (contractions, letters, numbers, other, whitespace). */
const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** bytes_to_unicode(): printable bytes map to themselves, the rest to U+0100 upwards. */
export const BYTE_TO_CHAR: readonly string[] = new Array<string>(256);
/** The inverse of BYTE_TO_CHAR by char code (-1 where a code is no byte's character). */
export const CHAR_TO_BYTE: Readonly<Int16Array> = new Int16Array(0x144).fill(-1);
{
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const c = printable ? b : 256 + n++;
    (BYTE_TO_CHAR as string[])[b] = String.fromCharCode(c);
    (CHAR_TO_BYTE as Int16Array)[c] = b;
  }
}

/** The byte-level form of a string: its UTF-8 bytes as GPT-2's printable characters. */
export function bytesToUnicode(text: string): string {
  let s = '';
  for (const b of Buffer.from(text, 'utf8')) s += BYTE_TO_CHAR[b];
  return s;
}

export interface GPT2TokenizerOptions {
  /** token (byte-level form) -> id, ids 0..N-1. */
  encoder: Record<string, number> | Map<string, number>;
  /** Merges in rank order: "a b" strings or [a, b] pairs. */
  merges: ReadonlyArray<string | readonly [string, string]>;
  /** Tokens matched whole in the text; special ones only when allowed at encode time. */
  addedTokens?: AddedToken[];
  eosToken?: string | null; bosToken?: string | null; unkToken?: string | null; padToken?: string | null;
  /** Prepends a space to text that does not start with one (RoBERTa-style). */
  addPrefixSpace?: boolean;
  /** A piece that is itself a vocabulary token is emitted whole, without merging. */
  ignoreMerges?: boolean;
  /** Capacity of the piece -> ids cache (default 10000; 0 disables it). */
  cacheSize?: number;
  modelMaxLength?: number;
}

export interface GPT2EncodeOptions { allowedSpecial?: 'all' | readonly string[] }
export interface GPT2BatchOptions extends GPT2EncodeOptions {
  padding?: PaddingStrategy;
  truncation?: boolean;
  maxLength?: number;
  paddingSide?: 'right' | 'left';
  returnTensors?: 'ng';
}

export class GPT2Tokenizer {
  readonly eosToken: string | null;
  readonly bosToken: string | null;
  readonly unkToken: string | null;
  readonly padToken: string | null;
  readonly addPrefixSpace: boolean;
  readonly ignoreMerges: boolean;
  readonly modelMaxLength: number | undefined;
  private readonly encoder: Map<string, number>;
  private readonly tokens: string[];                       // id -> byte-level token
  private readonly mergeList: [string, string][];
  private readonly pairRank = new Map<number, number>();  // idA * N + idB -> rank
  private readonly mergeTo: Int32Array;                   // rank -> merged id
  private readonly byteIds = new Int32Array(256);
  private readonly added: AddedToken[];
  private readonly addedByContent = new Map<string, AddedToken>();
  private readonly addedById = new Map<number, AddedToken>();
  private readonly addedRe: RegExp | null;
  private readonly cache = new Map<string, { ids: number[]; used: number }>();
  private tick = 0;
  private readonly cacheSize: number;

  constructor(opts: GPT2TokenizerOptions) {
    const who = 'GPT2Tokenizer';
    if (!opts || typeof opts !== 'object') throw new Error(`nodegrad: ${who}: expected { encoder, merges }`);
    this.tokens = vocabList(who, 'encoder', opts.encoder);
    this.encoder = new Map(this.tokens.map((t, i) => [t, i]));
    const N = this.tokens.length;
    if (!Array.isArray(opts.merges)) throw new Error(`nodegrad: ${who}: merges must be an array of "a b" strings or [a, b] pairs`);
    this.mergeList = [];
    this.mergeTo = new Int32Array(opts.merges.length);
    opts.merges.forEach((m, r) => {
      const pair = typeof m === 'string' ? m.split(' ') : Array.isArray(m) ? [...m] : [];
      if (pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string' || !pair[0] || !pair[1]) {
        throw new Error(`nodegrad: ${who}: merge ${r} must be two symbols separated by one space (got ${JSON.stringify(m)})`);
      }
      const [a, b] = pair as [string, string];
      const ia = this.encoder.get(a), ib = this.encoder.get(b), im = this.encoder.get(a + b);
      const missing = ia === undefined ? a : ib === undefined ? b : im === undefined ? a + b : null;
      if (missing !== null) throw new Error(`nodegrad: ${who}: merge ${r} (${JSON.stringify(a + ' ' + b)}) uses ${JSON.stringify(missing)}, which is not in the vocabulary`);
      this.pairRank.set(ia! * N + ib!, r);
      this.mergeTo[r] = im!;
      this.mergeList.push([a, b]);
    });
    for (let b = 0; b < 256; b++) this.byteIds[b] = this.encoder.get(BYTE_TO_CHAR[b]) ?? -1;

    const endoftext = this.encoder.has('<|endoftext|>') ? '<|endoftext|>' : null;
    const name = (v: string | null | undefined, dflt: string | null): string | null => (v === undefined ? dflt : v);
    this.eosToken = name(opts.eosToken, endoftext);
    this.bosToken = name(opts.bosToken, endoftext);
    this.unkToken = name(opts.unkToken, endoftext);
    this.padToken = name(opts.padToken, null);
    this.addPrefixSpace = opts.addPrefixSpace ?? false;
    this.ignoreMerges = opts.ignoreMerges ?? false;
    this.modelMaxLength = opts.modelMaxLength;
    const cs = opts.cacheSize ?? 10000;
    if (!Number.isInteger(cs) || cs < 0) throw new Error(`nodegrad: ${who}: cacheSize must be a non-negative integer (got ${String(cs)})`);
    this.cacheSize = cs;

    // Added tokens: those given, plus the named special tokens found in the vocabulary.
    const added = [...(opts.addedTokens ?? [])];
    for (const t of [this.eosToken, this.bosToken, this.unkToken, this.padToken]) {
      if (t !== null && this.encoder.has(t) && !added.some((a) => a.content === t)) added.push({ id: this.encoder.get(t)!, content: t, special: true });
    }
    for (const t of added) {
      if (!t || typeof t.content !== 'string' || t.content === '' || !Number.isInteger(t.id) || t.id < 0) {
        throw new Error(`nodegrad: ${who}: added tokens need a non-empty content and a non-negative integer id (got ${JSON.stringify(t)})`);
      }
      const inVocab = this.encoder.get(t.content);
      if ((inVocab !== undefined && inVocab !== t.id) || (t.id < N && this.tokens[t.id] !== t.content)) {
        throw new Error(`nodegrad: ${who}: added token ${JSON.stringify(t.content)} with id ${t.id} conflicts with the vocabulary (${inVocab !== undefined ? `it has id ${inVocab}` : `id ${t.id} is ${JSON.stringify(this.tokens[t.id])}`})`);
      }
      const prev = this.addedById.get(t.id);
      if (prev && prev.content !== t.content) throw new Error(`nodegrad: ${who}: added tokens ${JSON.stringify(prev.content)} and ${JSON.stringify(t.content)} share id ${t.id}`);
      const tok = { id: t.id, content: t.content, special: t.special !== false };
      this.addedById.set(tok.id, tok);
      this.addedByContent.set(tok.content, tok);
    }
    this.added = [...this.addedById.values()].sort((a, b) => a.id - b.id);
    const byLength = this.added.map((t) => t.content).sort((a, b) => b.length - a.length);
    this.addedRe = byLength.length ? new RegExp(byLength.map(escapeRegExp).join('|'), 'g') : null;
  }

  /** Number of ids: the vocabulary plus added tokens beyond it. */
  get vocabSize(): number {
    let n = this.tokens.length;
    for (const t of this.added) n = Math.max(n, t.id + 1);
    return n;
  }
  get addedTokens(): readonly AddedToken[] { return this.added; }
  get eosTokenId(): number | null { return this.idOf(this.eosToken); }
  get bosTokenId(): number | null { return this.idOf(this.bosToken); }
  get padTokenId(): number | null { return this.idOf(this.padToken); }
  get unkTokenId(): number | null { return this.idOf(this.unkToken); }
  private idOf(t: string | null): number | null {
    return t === null ? null : this.addedByContent.get(t)?.id ?? this.encoder.get(t) ?? null;
  }

  /** Id of a token (byte-level form or added token), or undefined. */
  tokenToId(token: string): number | undefined { return this.addedByContent.get(token)?.id ?? this.encoder.get(token); }
  /** Token of an id (byte-level form for vocabulary tokens), or undefined. */
  idToToken(id: number): string | undefined { return this.addedById.get(id)?.content ?? this.tokens[id]; }

  /**
   * Token ids of `text`. Added tokens that are not special are always matched whole;
   * special ones (`<|endoftext|>`) only when listed in `allowedSpecial` (or 'all'), and
   * otherwise encode as ordinary text, so user text cannot inject control tokens.
   */
  encode(text: string, opts: GPT2EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new Error(`nodegrad: GPT2Tokenizer.encode: text must be a string (got ${typeof text})`);
    opts = optionsOf('GPT2Tokenizer.encode', opts);
    const allowed = opts.allowedSpecial;
    if (allowed !== undefined && allowed !== 'all' && !Array.isArray(allowed)) {
      throw new Error(`nodegrad: GPT2Tokenizer.encode: allowedSpecial must be 'all' or an array of token strings`);
    }
    if (this.addPrefixSpace && text.length > 0 && text[0] !== ' ') text = ' ' + text;
    const out: number[] = [];
    const re = this.addedRe;
    if (re === null) { this.encodeOrdinary(text, out); return out; }
    const allowedSet = allowed === 'all' || allowed === undefined ? null : new Set(allowed);
    let last = 0;
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const tok = this.addedByContent.get(m[0])!;
      if (tok.special && (allowed === undefined || (allowedSet !== null && !allowedSet.has(tok.content)))) {
        re.lastIndex = m.index + 1;   // an allowed token may start inside this one
        continue;
      }
      if (m.index > last) this.encodeOrdinary(text.slice(last, m.index), out);
      out.push(tok.id);
      last = m.index + m[0].length;
    }
    if (last < text.length) this.encodeOrdinary(last === 0 ? text : text.slice(last), out);
    return out;
  }

  /** Byte-level token strings of `text` (HF's tokenize()). */
  tokenize(text: string, opts: GPT2EncodeOptions = {}): string[] {
    return this.encode(text, opts).map((id) => this.idToToken(id)!);
  }

  private encodeOrdinary(text: string, out: number[]): void {
    const re = GPT2_PATTERN;
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const piece = m[0];
      const hit = this.cache.get(piece);
      if (hit !== undefined) {
        hit.used = ++this.tick;
        for (let i = 0; i < hit.ids.length; i++) out.push(hit.ids[i]);
        continue;
      }
      const ids = this.bpe(piece);
      if (this.cacheSize > 0 && piece.length <= 256) {
        if (this.cache.size >= this.cacheSize) this.evict();
        this.cache.set(piece, { ids, used: ++this.tick });
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
  }

  /** Drops the least recently used quarter of the cache (batched, so a hit costs one write). */
  private evict(): void {
    const used = Float64Array.from(this.cache.values(), (e) => e.used).sort();
    const cut = used[Math.min(used.length - 1, Math.floor(used.length / 4))];
    for (const [k, e] of this.cache) if (e.used <= cut) this.cache.delete(k);
  }

  /** BPE of one pre-tokenised piece. */
  private bpe(piece: string): number[] {
    const bytes = Buffer.from(piece, 'utf8');
    const n = bytes.length;
    const sym = new Int32Array(n);
    for (let i = 0; i < n; i++) sym[i] = this.byteIds[bytes[i]];
    if (this.ignoreMerges && n > 1) {
      let s = '';
      for (let i = 0; i < n; i++) s += BYTE_TO_CHAR[bytes[i]];
      const id = this.encoder.get(s);
      if (id !== undefined) return [id];
    }
    const next = new Int32Array(n), prev = new Int32Array(n), dead = new Uint8Array(n);
    for (let i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }
    const N = this.tokens.length;
    const rankAt = (p: number): number => {
      const q = next[p];
      if (q < 0 || sym[p] < 0 || sym[q] < 0) return -1;
      return this.pairRank.get(sym[p] * N + sym[q]) ?? -1;
    };
    const heap = new MergeHeap();
    for (let i = 0; i + 1 < n; i++) { const r = rankAt(i); if (r >= 0) heap.push(r * n + i); }
    const merged: number[] = [];
    while (heap.size) {
      const rank = Math.floor(heap.peek() / n);
      merged.length = 0;
      while (heap.size && Math.floor(heap.peek() / n) === rank) {
        const pos = heap.pop() - rank * n;
        if (dead[pos] || rankAt(pos) !== rank) continue;   // stale entry
        const q = next[pos];
        sym[pos] = this.mergeTo[rank];
        dead[q] = 1;
        next[pos] = next[q];
        if (next[q] >= 0) prev[next[q]] = pos;
        merged.push(pos);
      }
      // Pairs formed by this rank's merges compete only after all its occurrences are merged.
      for (const p of merged) {
        if (prev[p] >= 0) { const r = rankAt(prev[p]); if (r >= 0) heap.push(r * n + prev[p]); }
        const r = rankAt(p);
        if (r >= 0) heap.push(r * n + p);
      }
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) {
      if (sym[i] >= 0) { out.push(sym[i]); continue; }
      const unk = this.unkTokenId;
      if (unk === null) throw new Error(`nodegrad: GPT2Tokenizer.encode: byte 0x${bytes[i].toString(16)} of ${JSON.stringify(piece)} has no token in the vocabulary and no unk token is configured`);
      out.push(unk);
    }
    return out;
  }

  /** Text of token ids; byte sequences that are not valid UTF-8 become U+FFFD. */
  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') throw new Error('nodegrad: GPT2Tokenizer.decode: ids must be an array of token ids');
    let bytes = new Uint8Array(Math.max(16, ids.length * 4));
    let nb = 0;
    let s = '';
    const vocab = this.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const added = this.addedById.get(id);
      if (added !== undefined) {
        if (nb) { s += Buffer.from(bytes.buffer, 0, nb).toString('utf8'); nb = 0; }
        if (!(added.special && opts.skipSpecialTokens)) s += added.content;
        continue;
      }
      const tok = Number.isInteger(id) ? this.tokens[id] : undefined;
      if (tok === undefined) throw new Error(`nodegrad: GPT2Tokenizer.decode: token id ${id} at position ${i} is out of range (vocab size ${vocab})`);
      if (nb + tok.length * 3 > bytes.length) { const g = new Uint8Array(2 * bytes.length + tok.length * 3); g.set(bytes.subarray(0, nb)); bytes = g; }
      const start = nb;
      for (let j = 0; j < tok.length; j++) {
        const c = tok.charCodeAt(j);
        const b = c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
        if (b < 0) {   // a token outside the byte alphabet stands for its own UTF-8
          nb = start + Buffer.from(bytes.buffer).write(tok, start, 'utf8');
          break;
        }
        bytes[nb++] = b;
      }
    }
    if (nb) s += Buffer.from(bytes.buffer, 0, nb).toString('utf8');
    return s;
  }

  /** Encodes several texts; pads (with the pad token, else the eos token) and truncates on request. */
  encodeBatch(texts: readonly string[], opts: GPT2BatchOptions & { returnTensors: 'ng' }): { inputIds: Tensor; attentionMask: Tensor };
  encodeBatch(texts: readonly string[], opts?: GPT2BatchOptions): { inputIds: number[][]; attentionMask: number[][] };
  encodeBatch(texts: readonly string[], opts: GPT2BatchOptions = {}): { inputIds: number[][] | Tensor; attentionMask: number[][] | Tensor } {
    const who = 'GPT2Tokenizer.encodeBatch';
    if (!Array.isArray(texts)) throw new Error(`nodegrad: ${who}: texts must be an array of strings`);
    opts = optionsOf(who, opts);
    const maxLength = checkMaxLength(who, opts.maxLength);
    const truncate = opts.truncation ?? maxLength !== undefined;
    const limit = maxLength ?? this.modelMaxLength;
    let rows = texts.map((t) => this.encode(t, { allowedSpecial: opts.allowedSpecial }));
    if (truncate && limit !== undefined) rows = rows.map((r) => (r.length > limit ? r.slice(0, limit) : r));
    const len = batchLength(who, rows.map((r) => r.length), opts.padding ?? false, maxLength);
    const left = opts.paddingSide === 'left';
    let padId = this.padTokenId ?? this.eosTokenId;
    if (len >= 0 && rows.some((r) => r.length < len) && padId === null) {
      throw new Error(`nodegrad: ${who}: padding needs a pad token (configure padToken or eosToken)`);
    }
    padId ??= 0;
    const attentionMask = rows.map((r) => padRow(new Array<number>(r.length).fill(1), len, 0, left));
    const inputIds = rows.map((r) => padRow(r, len, padId, left));
    if (opts.returnTensors === 'ng') return { inputIds: rowsToTensor(who, inputIds), attentionMask: rowsToTensor(who, attentionMask) };
    if (opts.returnTensors !== undefined) throw new Error(`nodegrad: ${who}: returnTensors must be 'ng' (got ${JSON.stringify(opts.returnTensors)})`);
    return { inputIds, attentionMask };
  }

  /** The Hugging Face tokenizer.json form (model BPE, ByteLevel pre-tokenizer and decoder). */
  toJSON(): Record<string, unknown> {
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: this.added.map((t) => ({ id: t.id, content: t.content, single_word: false, lstrip: false, rstrip: false, normalized: !t.special, special: t.special })),
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: this.addPrefixSpace, trim_offsets: true, use_regex: true },
      post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
        fuse_unk: false, byte_fallback: false, ignore_merges: this.ignoreMerges,
        vocab: Object.fromEntries(this.tokens.map((t, i) => [t, i])),
        merges: this.mergeList.map(([a, b]) => `${a} ${b}`),
      },
    };
  }

  /** Rebuilds a tokenizer from a tokenizer.json object (model type BPE, byte-level). */
  static fromJSON(obj: unknown, opts: Partial<GPT2TokenizerOptions> = {}, source = 'tokenizer.json'): GPT2Tokenizer {
    const who = 'GPT2Tokenizer';
    const o = obj as { model?: Record<string, unknown>; added_tokens?: unknown; pre_tokenizer?: Record<string, unknown> | null } | null;
    const model = o?.model;
    if (!model || typeof model !== 'object') throw new Error(`nodegrad: ${who}: ${source}: missing "model"`);
    if (model.type !== 'BPE') throw new Error(`nodegrad: ${who}: ${source}: model type ${JSON.stringify(model.type)} is not BPE`);
    if (model.continuing_subword_prefix || model.end_of_word_suffix || model.byte_fallback) {
      throw new Error(`nodegrad: ${who}: ${source}: only byte-level BPE without subword prefixes, suffixes or byte fallback is supported`);
    }
    const norm = (o as { normalizer?: { type?: unknown } | null } | null)?.normalizer;
    if (norm) throw new Error(`nodegrad: ${who}: ${source}: normalizers are not supported for byte-level BPE (got ${JSON.stringify(norm.type ?? null)})`);
    const pre = o?.pre_tokenizer;
    const steps = pre ? (pre.type === 'Sequence' && Array.isArray(pre.pretokenizers) ? pre.pretokenizers as Record<string, unknown>[] : [pre]) : [];
    const byteLevel = steps.find((s) => s?.type === 'ByteLevel');
    if (!byteLevel || steps.length !== 1 || byteLevel.use_regex === false) {
      throw new Error(`nodegrad: ${who}: ${source}: only the GPT-2 ByteLevel pre-tokenizer is supported (got ${JSON.stringify(pre?.type ?? null)})`);
    }
    if (!Array.isArray(model.merges)) throw new Error(`nodegrad: ${who}: ${source}: model.merges must be a list`);
    return new GPT2Tokenizer({
      encoder: Object.fromEntries(vocabList(who, source, model.vocab).map((t, i) => [t, i])),
      merges: model.merges as string[],
      addedTokens: parseAddedTokens(who, source, o?.added_tokens),
      addPrefixSpace: byteLevel.add_prefix_space === true,
      ignoreMerges: model.ignore_merges === true,
      ...opts,
    });
  }

  /** Loads tokenizer.json, or vocab.json + merges.txt, plus tokenizer_config.json / special_tokens_map.json. */
  static async fromPretrained(dir: string, opts: Partial<GPT2TokenizerOptions> = {}): Promise<GPT2Tokenizer> {
    const who = 'GPT2Tokenizer.fromPretrained';
    await checkDir(who, dir);
    const cfg = await readTokenizerConfig(who, dir);
    const fromCfg: Partial<GPT2TokenizerOptions> = {};
    for (const [key, opt] of [['eos_token', 'eosToken'], ['bos_token', 'bosToken'], ['unk_token', 'unkToken'], ['pad_token', 'padToken']] as const) {
      if (key in cfg) fromCfg[opt] = tokenName(cfg[key]) ?? null;
    }
    if (typeof cfg.add_prefix_space === 'boolean') fromCfg.addPrefixSpace = cfg.add_prefix_space;
    if (Number.isInteger(cfg.model_max_length) && (cfg.model_max_length as number) < 1e12) fromCfg.modelMaxLength = cfg.model_max_length as number;
    const tj = path.join(dir, 'tokenizer.json');
    if (await fileExists(tj)) return GPT2Tokenizer.fromJSON(await readJSONFile(who, tj), { ...fromCfg, ...opts }, tj);
    const vj = path.join(dir, 'vocab.json'), mt = path.join(dir, 'merges.txt');
    const [hasV, hasM] = [await fileExists(vj), await fileExists(mt)];
    if (!hasV || !hasM) {
      throw new Error(`nodegrad: ${who}: no byte-level BPE files in ${dir} (looked for tokenizer.json, or vocab.json + merges.txt${hasV || hasM ? `; found only ${hasV ? 'vocab.json' : 'merges.txt'}` : ''})`);
    }
    const encoder = await readJSONFile(who, vj);
    vocabList(who, vj, encoder);   // clear errors before the constructor's
    const merges: string[] = [];
    (await readFile(mt, 'utf8')).split('\n').forEach((raw, i) => {
      const line = raw.replace(/\r$/, '');
      if ((i === 0 && line.startsWith('#version')) || line.trim() === '') return;
      if (line.split(' ').length !== 2 || line.startsWith(' ') || line.endsWith(' ')) {
        throw new Error(`nodegrad: ${who}: ${mt} line ${i + 1}: expected two symbols separated by one space (got ${JSON.stringify(line)})`);
      }
      merges.push(line);
    });
    const added = parseAddedTokens(who, 'tokenizer_config.json', cfg.added_tokens_decoder);
    const at = path.join(dir, 'added_tokens.json');
    if (await fileExists(at)) {
      const obj = await readJSONFile(who, at);
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`nodegrad: ${who}: ${at} must map token -> id`);
      for (const [content, id] of Object.entries(obj)) if (!added.some((t) => t.content === content)) added.push(...parseAddedTokens(who, at, [{ id, content }]));
    }
    try {
      return new GPT2Tokenizer({ encoder: encoder as Record<string, number>, merges, addedTokens: added, ...fromCfg, ...opts });
    } catch (e) {
      throw new Error(`${(e as Error).message} (loading ${dir})`);
    }
  }

  /** Writes vocab.json, merges.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json. */
  async savePretrained(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const special: Record<string, string> = {};
    if (this.bosToken !== null) special.bos_token = this.bosToken;
    if (this.eosToken !== null) special.eos_token = this.eosToken;
    if (this.unkToken !== null) special.unk_token = this.unkToken;
    if (this.padToken !== null) special.pad_token = this.padToken;
    const config = {
      tokenizer_class: 'GPT2Tokenizer', add_prefix_space: this.addPrefixSpace, ...special,
      ...(this.modelMaxLength !== undefined ? { model_max_length: this.modelMaxLength } : {}),
      added_tokens_decoder: Object.fromEntries(this.added.map((t) => [String(t.id), { content: t.content, special: t.special }])),
    };
    const json = (v: unknown): string => JSON.stringify(v, null, 2) + '\n';
    await writeFileAtomic(path.join(dir, 'vocab.json'), JSON.stringify(Object.fromEntries(this.tokens.map((t, i) => [t, i]))));
    await writeFileAtomic(path.join(dir, 'merges.txt'), '#version: 0.2\n' + this.mergeList.map(([a, b]) => `${a} ${b}\n`).join(''));
    await writeFileAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(this.toJSON()));
    await writeFileAtomic(path.join(dir, 'tokenizer_config.json'), json(config));
    await writeFileAtomic(path.join(dir, 'special_tokens_map.json'), json(special));
  }
}
