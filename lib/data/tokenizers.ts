// Small tokenizers for training from scratch: characters (nanoGPT's shakespeare_char) and
// UTF-8 bytes (vocab 256 plus optional special tokens). Both serialize to JSON so a
// tokenizer can be saved next to the model that was trained with it.

export interface Tokenizer {
  readonly vocabSize: number;
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
  toJSON(): TokenizerJSON;
}
export type TokenizerJSON =
  | { type: 'char'; chars: string[]; unk?: string }
  | { type: 'byte'; specialTokens: string[] };

function checkIds(ids: ArrayLike<number>, vocab: number, who: string): void {
  if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
    throw new Error(`nodegrad: ${who}.decode: ids must be an array of token ids`);
  }
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new Error(`nodegrad: ${who}.decode: token id ${id} at position ${i} is out of range (vocab size ${vocab})`);
    }
  }
}

function checkText(text: unknown, who: string): asserts text is string {
  if (typeof text !== 'string') throw new Error(`nodegrad: ${who}.encode: text must be a string (got ${typeof text})`);
}

/**
 * One token per Unicode code point: the vocabulary is the sorted set of characters of a
 * training text. Unknown characters throw, or map to `unk` when one is configured.
 */
export class CharTokenizer implements Tokenizer {
  readonly chars: readonly string[];
  readonly unk: string | undefined;
  private readonly stoi: Map<string, number>;

  /** `chars`: the vocabulary in id order (distinct code points; `unk` may be any string). */
  constructor(chars: readonly string[], opts: { unk?: string } = {}) {
    if (!Array.isArray(chars)) throw new Error('nodegrad: CharTokenizer: chars must be an array of strings');
    const unk = opts.unk;
    if (unk !== undefined && (typeof unk !== 'string' || unk === '')) {
      throw new Error(`nodegrad: CharTokenizer: unk must be a non-empty string (got ${JSON.stringify(unk)})`);
    }
    const list = [...chars];
    if (unk !== undefined && !list.includes(unk)) list.push(unk);
    this.stoi = new Map();
    list.forEach((c, i) => {
      if (typeof c !== 'string' || (c !== unk && [...c].length !== 1)) {
        throw new Error(`nodegrad: CharTokenizer: vocabulary entry ${i} must be a single character (got ${JSON.stringify(c)})`);
      }
      if (this.stoi.has(c)) throw new Error(`nodegrad: CharTokenizer: duplicate vocabulary entry ${JSON.stringify(c)}`);
      this.stoi.set(c, i);
    });
    this.chars = list;
    this.unk = unk;
  }

  /** The sorted distinct characters (code points) of `text`. */
  static fromText(text: string, opts: { unk?: string } = {}): CharTokenizer {
    if (typeof text !== 'string') throw new Error('nodegrad: CharTokenizer.fromText: text must be a string');
    const set = [...new Set(text)].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    return new CharTokenizer(set, opts);
  }

  static fromJSON(obj: unknown): CharTokenizer {
    const o = obj as { type?: unknown; chars?: unknown; unk?: unknown } | null;
    if (!o || o.type !== 'char' || !Array.isArray(o.chars)) {
      throw new Error('nodegrad: CharTokenizer.fromJSON: expected { type: "char", chars: string[], unk? }');
    }
    return new CharTokenizer(o.chars as string[], o.unk === undefined ? {} : { unk: o.unk as string });
  }

  get vocabSize(): number { return this.chars.length; }

  encode(text: string): number[] {
    checkText(text, 'CharTokenizer');
    const out: number[] = [];
    const unkId = this.unk === undefined ? undefined : this.stoi.get(this.unk);
    let pos = 0;
    for (const c of text) {
      const id = this.stoi.get(c) ?? unkId;
      if (id === undefined) {
        throw new Error(`nodegrad: CharTokenizer.encode: character ${JSON.stringify(c)} (U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}) at offset ${pos} is not in the vocabulary (build the tokenizer with { unk } to map unknown characters)`);
      }
      out.push(id);
      pos += c.length;
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    checkIds(ids, this.chars.length, 'CharTokenizer');
    let s = '';
    for (let i = 0; i < ids.length; i++) s += this.chars[ids[i]];
    return s;
  }

  toJSON(): TokenizerJSON {
    return this.unk === undefined ? { type: 'char', chars: [...this.chars] } : { type: 'char', chars: [...this.chars], unk: this.unk };
  }
}

/**
 * UTF-8 bytes as tokens 0..255; special tokens (e.g. `<|endoftext|>`) get ids 256, 257, ...
 * Decoding never throws on split multi-byte sequences: an incomplete or invalid sequence
 * becomes U+FFFD, and createDecoder() joins sequences split across calls when streaming.
 */
export class ByteTokenizer implements Tokenizer {
  readonly specialTokens: readonly string[];
  private readonly special: Map<string, number>;

  constructor(opts: { specialTokens?: string[] } = {}) {
    const sp = opts.specialTokens ?? [];
    if (!Array.isArray(sp)) throw new Error('nodegrad: ByteTokenizer: specialTokens must be an array of strings');
    this.special = new Map();
    sp.forEach((t, i) => {
      if (typeof t !== 'string' || t === '') throw new Error(`nodegrad: ByteTokenizer: special token ${i} must be a non-empty string`);
      if (this.special.has(t)) throw new Error(`nodegrad: ByteTokenizer: duplicate special token ${JSON.stringify(t)}`);
      this.special.set(t, 256 + i);
    });
    this.specialTokens = [...sp];
  }

  static fromJSON(obj: unknown): ByteTokenizer {
    const o = obj as { type?: unknown; specialTokens?: unknown } | null;
    if (!o || o.type !== 'byte' || (o.specialTokens !== undefined && !Array.isArray(o.specialTokens))) {
      throw new Error('nodegrad: ByteTokenizer.fromJSON: expected { type: "byte", specialTokens: string[] }');
    }
    return new ByteTokenizer({ specialTokens: (o.specialTokens as string[] | undefined) ?? [] });
  }

  get vocabSize(): number { return 256 + this.specialTokens.length; }

  /** Id of a special token (throws if it is not configured). */
  tokenId(token: string): number {
    const id = this.special.get(token);
    if (id === undefined) throw new Error(`nodegrad: ByteTokenizer: no special token ${JSON.stringify(token)} (configured: ${this.specialTokens.join(', ') || 'none'})`);
    return id;
  }

  /**
   * UTF-8 bytes of `text`. Special-token strings in the text are plain bytes unless
   * `allowSpecial` is set (so user text cannot inject control tokens by accident).
   */
  encode(text: string, opts: { allowSpecial?: boolean } = {}): number[] {
    checkText(text, 'ByteTokenizer');
    if (opts !== undefined && opts !== null && typeof opts !== 'object') {
      throw new Error(`nodegrad: ByteTokenizer.encode: options must be an object (got ${typeof opts})`);
    }
    opts ??= {};
    if (!opts.allowSpecial || this.special.size === 0) return Array.from(Buffer.from(text, 'utf8'));
    const escaped = [...this.special.keys()].sort((a, b) => b.length - a.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    const out: number[] = [];
    for (const part of text.split(new RegExp(`(${escaped.join('|')})`))) {
      const id = this.special.get(part);
      if (id !== undefined) out.push(id);
      else for (const b of Buffer.from(part, 'utf8')) out.push(b);
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    const d = this.createDecoder();
    return d.push(ids) + d.flush();
  }

  /** A streaming decoder: push() returns the text completed so far, keeping a split UTF-8 sequence for the next call. */
  createDecoder(): { push(ids: ArrayLike<number>): string; flush(): string } {
    const td = new TextDecoder('utf-8', { fatal: false });
    return {
      push: (ids) => {
        checkIds(ids, this.vocabSize, 'ByteTokenizer');
        let s = '';
        let bytes: number[] = [];
        for (let i = 0; i < ids.length; i++) {
          const id = ids[i];
          if (id < 256) { bytes.push(id); continue; }
          s += td.decode(new Uint8Array(bytes)) + this.specialTokens[id - 256];  // flushes a split sequence as U+FFFD
          bytes = [];
        }
        return s + td.decode(new Uint8Array(bytes), { stream: true });
      },
      flush: () => td.decode(),
    };
  }

  toJSON(): TokenizerJSON {
    return { type: 'byte', specialTokens: [...this.specialTokens] };
  }
}

/** Rebuilds a tokenizer saved with toJSON() (object or JSON string). */
export function tokenizerFromJSON(obj: unknown): CharTokenizer | ByteTokenizer {
  let o = obj;
  if (typeof obj === 'string') {
    try {
      o = JSON.parse(obj) as unknown;
    } catch (e) {
      throw new Error(`nodegrad: tokenizerFromJSON: invalid JSON (${(e as Error).message})`);
    }
  }
  const type = (o as { type?: unknown } | null)?.type;
  if (type === 'char') return CharTokenizer.fromJSON(o);
  if (type === 'byte') return ByteTokenizer.fromJSON(o);
  throw new Error(`nodegrad: tokenizerFromJSON: unknown tokenizer type ${JSON.stringify(type)} (expected "char" or "byte")`);
}
