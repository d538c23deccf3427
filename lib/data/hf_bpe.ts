// The BPE model of a Hugging Face tokenizer.json, as the Rust `tokenizers` crate runs it:
// a pre-tokenized word becomes one symbol per character (a GPT-2 byte character for
// byte-level vocabularies, a code point for SentencePiece ones, where a character missing
// from the vocabulary becomes its <0xXX> byte tokens with byte_fallback, or the unk token,
// fused with its neighbours under fuse_unk), then adjacent symbols are merged lowest rank
// first until no ranked pair is left. With ignore_merges a word that is itself a token is
// emitted whole.
//
// Merging keeps a linked list of symbols and a binary min-heap of candidate pairs keyed by
// (rank, position): O(n log n) per word. Pair ranks live in an open-addressing hash table
// over (left id, right id), which is several times faster than a Map with float keys.
// Words are cached (id sequences keyed by the word) up to a bounded number of entries.

import { MergeHeap } from './merge_heap.js';

type Json = Record<string, unknown>;
const WHO = 'tokenizer.json: model';

function bad(what: string, got: unknown): never {
  throw new Error(`nodegrad: ${WHO}: ${what} (got ${JSON.stringify(got)?.slice(0, 200)})`);
}

/** (a, b) -> rank, open addressing with linear probing; keys are ids, so -1 marks a free slot. */
class PairTable {
  private readonly mask: number;
  private readonly keysA: Int32Array;
  private readonly keysB: Int32Array;
  private readonly vals: Int32Array;

  constructor(capacity: number) {
    let size = 16;
    while (size < capacity * 2) size *= 2;
    this.mask = size - 1;
    this.keysA = new Int32Array(size).fill(-1);
    this.keysB = new Int32Array(size);
    this.vals = new Int32Array(size);
  }

  private slot(a: number, b: number): number {
    return (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77)) >>> 0 & this.mask;
  }

  /** Keeps the first (lowest) rank when a pair is given twice. */
  set(a: number, b: number, v: number): void {
    for (let i = this.slot(a, b); ; i = (i + 1) & this.mask) {
      if (this.keysA[i] === -1) { this.keysA[i] = a; this.keysB[i] = b; this.vals[i] = v; return; }
      if (this.keysA[i] === a && this.keysB[i] === b) return;
    }
  }

  get(a: number, b: number): number {
    for (let i = this.slot(a, b); ; i = (i + 1) & this.mask) {
      const k = this.keysA[i];
      if (k === -1) return -1;
      if (k === a && this.keysB[i] === b) return this.vals[i];
    }
  }
}

export class BPEModel {
  readonly vocab: Map<string, number>;
  readonly tokens: (string | undefined)[];
  readonly unkId: number | null;
  private readonly pairs: PairTable;
  private readonly mergeTo: Int32Array;   // rank -> merged id
  private readonly byteFallback: boolean;
  private readonly fuseUnk: boolean;
  private readonly ignoreMerges: boolean;
  private readonly prefix: string;
  private readonly suffix: string;
  private readonly byteIds: Int32Array;   // byte -> id of <0xXX>, for byte_fallback
  private readonly cache = new Map<string, number[]>();
  private readonly cacheSize: number;

  constructor(model: Json, opts: { cacheSize?: number } = {}) {
    if (model.type !== 'BPE') bad('type must be "BPE"', model.type);
    if (model.dropout !== null && model.dropout !== undefined && model.dropout !== 0) bad('BPE dropout is not supported at inference', model.dropout);
    const v = model.vocab;
    if (!v || typeof v !== 'object' || Array.isArray(v)) bad('vocab must be a token -> id object', typeof v);
    this.vocab = new Map();
    this.tokens = [];
    for (const [tok, id] of Object.entries(v as Record<string, unknown>)) {
      if (!Number.isInteger(id) || (id as number) < 0) bad(`vocab id of ${JSON.stringify(tok)} must be a non-negative integer`, id);
      this.vocab.set(tok, id as number);
      this.tokens[id as number] = tok;
    }
    if (!Array.isArray(model.merges)) bad('merges must be a list of "a b" strings or [a, b] pairs', typeof model.merges);
    const merges = model.merges as unknown[];
    this.pairs = new PairTable(merges.length);
    this.mergeTo = new Int32Array(merges.length);
    for (let r = 0; r < merges.length; r++) {
      const m = merges[r];
      let a: unknown, b: unknown;
      if (typeof m === 'string') {
        const sp = m.indexOf(' ');
        if (sp <= 0 || sp !== m.lastIndexOf(' ') || sp === m.length - 1) bad(`merge ${r} must be two symbols separated by one space`, m);
        a = m.slice(0, sp); b = m.slice(sp + 1);
      } else if (Array.isArray(m) && m.length === 2) [a, b] = m;
      if (typeof a !== 'string' || typeof b !== 'string') bad(`merge ${r} must be "a b" or [a, b]`, m);
      const ia = this.vocab.get(a), ib = this.vocab.get(b), im = this.vocab.get(a + b);
      const missing = ia === undefined ? a : ib === undefined ? b : im === undefined ? a + b : null;
      if (missing !== null) bad(`merge ${r} (${JSON.stringify([a, b])}) uses ${JSON.stringify(missing)}, which is not in the vocabulary`, m);
      this.pairs.set(ia!, ib!, r);
      this.mergeTo[r] = im!;
    }
    const unk = model.unk_token;
    if (unk !== null && unk !== undefined) {
      if (typeof unk !== 'string') bad('unk_token must be a string or null', unk);
      const id = this.vocab.get(unk);
      if (id === undefined) bad(`unk_token ${JSON.stringify(unk)} is not in the vocabulary`, unk);
      this.unkId = id;
    } else this.unkId = null;
    this.byteFallback = model.byte_fallback === true;
    this.fuseUnk = model.fuse_unk === true;
    this.ignoreMerges = model.ignore_merges === true;
    this.prefix = typeof model.continuing_subword_prefix === 'string' ? model.continuing_subword_prefix : '';
    this.suffix = typeof model.end_of_word_suffix === 'string' ? model.end_of_word_suffix : '';
    this.byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) this.byteIds[b] = this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`) ?? -1;
    const cs = opts.cacheSize ?? 10000;
    if (!Number.isInteger(cs) || cs < 0) throw new Error(`nodegrad: HFTokenizer: cacheSize must be a non-negative integer (got ${String(cs)})`);
    this.cacheSize = cs;
  }

  /** Appends the ids of one pre-tokenized word to out. */
  tokenize(word: string, out: number[]): void {
    if (word.length === 0) return;
    const hit = this.cache.get(word);
    if (hit !== undefined) { for (let i = 0; i < hit.length; i++) out.push(hit[i]); return; }
    if (this.ignoreMerges) {
      const id = this.vocab.get(word);
      if (id !== undefined) { out.push(id); return; }
    }
    const ids = this.merge(word);
    if (this.cacheSize > 0 && word.length <= 256) {
      if (this.cache.size >= this.cacheSize) this.cache.clear();
      this.cache.set(word, ids);
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }

  /** The initial symbols of a word: ids, with unknown characters as byte tokens or (fused) unk. */
  private symbols(word: string): number[] {
    const sym: number[] = [];
    let pendingUnk = false;
    const n = word.length;
    for (let i = 0; i < n;) {
      const c = word.charCodeAt(i);
      const len = c >= 0xd800 && c <= 0xdbff && i + 1 < n ? 2 : 1;
      let s = len === 1 ? word[i] : word.slice(i, i + 2);
      if (i > 0 && this.prefix) s = this.prefix + s;
      if (i + len === n && this.suffix) s = s + this.suffix;
      i += len;
      const id = this.vocab.get(s);
      if (id !== undefined) {
        if (pendingUnk) { sym.push(this.unkId!); pendingUnk = false; }
        sym.push(id);
        continue;
      }
      if (this.byteFallback) {
        const bytes = Buffer.from(s, 'utf8');
        let all = true;
        for (const b of bytes) if (this.byteIds[b] < 0) { all = false; break; }
        if (all) { for (const b of bytes) sym.push(this.byteIds[b]); continue; }
      }
      if (this.unkId !== null) {
        if (pendingUnk && !this.fuseUnk) sym.push(this.unkId);
        pendingUnk = true;
      }
      // No unk token: the crate drops the character.
    }
    if (pendingUnk) sym.push(this.unkId!);
    return sym;
  }

  private merge(word: string): number[] {
    const init = this.symbols(word);
    const n = init.length;
    if (n < 2) return init;
    const sym = Int32Array.from(init);
    const next = new Int32Array(n), prev = new Int32Array(n), dead = new Uint8Array(n);
    for (let i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }
    const pairs = this.pairs;
    const rankAt = (p: number): number => { const q = next[p]; return q < 0 ? -1 : pairs.get(sym[p], sym[q]); };
    const heap = new MergeHeap();   // rank * n + position: lowest rank first, then leftmost
    for (let i = 0; i + 1 < n; i++) { const r = rankAt(i); if (r >= 0) heap.push(r * n + i); }
    while (heap.size) {
      const key = heap.pop();
      const rank = Math.floor(key / n), pos = key - rank * n;
      if (dead[pos] || rankAt(pos) !== rank) continue;   // stale: a neighbour changed since it was queued
      const q = next[pos];
      sym[pos] = this.mergeTo[rank];
      dead[q] = 1;
      next[pos] = next[q];
      if (next[q] >= 0) prev[next[q]] = pos;
      if (prev[pos] >= 0) { const r = rankAt(prev[pos]); if (r >= 0) heap.push(r * n + prev[pos]); }
      const r = rankAt(pos);
      if (r >= 0) heap.push(r * n + pos);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
    return out;
  }
}
