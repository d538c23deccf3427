// HFTokenizer: a Hugging Face `tokenizer.json` with a BPE model (Llama 2/3, Mistral,
// Qwen2/3, GPT-2-style byte-level and SentencePiece-style byte-fallback vocabularies),
// run as the Rust `tokenizers` crate runs it:
//   added tokens are cut out of the raw text (leftmost-longest), each remaining segment is
//   normalized, tokens marked `normalized` are cut out of the normalized text, the
//   pre-tokenizer splits what is left into words, the BPE model turns words into ids, and
//   the post-processor adds BOS/EOS (or CLS/SEP) when special tokens are asked for.
// Decoding maps ids to tokens and runs the decoder chain; tokenizer_config.json supplies the
// named special tokens, clean_up_tokenization_spaces and the chat template.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Tensor } from '../tensor.js';
import { batchLength, checkDir, checkMaxLength, fileExists, padRow, readJSONFile, readTokenizerConfig, rowsToTensor, tokenName, escapeRegExp, type PaddingStrategy } from './bpe.js';
import { BPEModel } from './hf_bpe.js';
import { buildNormalizer, buildPreTokenizer, type Normalizer, type PreTokenizer } from './hf_pipeline.js';
import { buildDecoder, buildPostProcessor, cleanUpTokenization, type Decoder, type PostProcessor } from './hf_decoders.js';
import { compileChatTemplate, parseChatTemplates, renderChatTemplate, type ChatMessage, type ChatTemplateOptions } from './chat_template.js';
import type { Template } from '@huggingface/jinja';

/** An added token with the matching flags of tokenizer.json. */
export interface HFAddedToken {
  id: number;
  content: string;
  special: boolean;
  singleWord: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
}

export interface HFTokenizerOptions {
  /** Capacity of the word -> ids cache (default 10000; 0 disables it). */
  cacheSize?: number;
  bosToken?: string | null; eosToken?: string | null; padToken?: string | null; unkToken?: string | null;
  /** A chat template to use instead of the configured one. */
  chatTemplate?: string;
}

export interface HFEncodeOptions {
  /** Runs the post-processor (BOS/EOS, CLS/SEP); default true, as in transformers. */
  addSpecialTokens?: boolean;
  /** A second sequence, for pair templates. */
  textPair?: string;
  /** Encodes special-token text as ordinary text instead of as the special token (transformers' split_special_tokens). */
  splitSpecialTokens?: boolean;
}

export interface HFDecodeOptions {
  skipSpecialTokens?: boolean;
  /** Default: tokenizer_config.json's clean_up_tokenization_spaces (false when absent). */
  cleanUpTokenizationSpaces?: boolean;
}

export interface HFBatchOptions extends HFEncodeOptions {
  padding?: PaddingStrategy;
  truncation?: boolean;
  maxLength?: number;
  paddingSide?: 'right' | 'left';
  returnTensors?: 'ng';
}

type Json = Record<string, unknown>;

/** The regex crate's \w, which the crate's single_word check uses. */
const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;
const WHITE = /\p{White_Space}/u;

interface Matcher { re: RegExp; byContent: Map<string, HFAddedToken> }

export class HFTokenizer {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken: string | null;
  readonly modelMaxLength: number | undefined;
  readonly paddingSide: 'right' | 'left';
  readonly cleanUpTokenizationSpaces: boolean;
  /** Named chat templates ("default" for a single one). */
  readonly chatTemplates: ReadonlyMap<string, string>;
  private readonly model: BPEModel;
  private readonly normalizer: Normalizer | null;
  private readonly preTokenizer: PreTokenizer | null;
  private readonly postProcessor: PostProcessor | null;
  private readonly decoder: Decoder | null;
  private readonly added: HFAddedToken[];
  private readonly addedById = new Map<number, HFAddedToken>();
  private readonly addedByContent = new Map<string, HFAddedToken>();
  private readonly rawMatcher: Matcher | null;
  private readonly normMatcher: Matcher | null;
  private readonly specialTokensMap: Record<string, unknown>;
  private readonly compiled = new Map<string, Template>();

  constructor(tokenizerJson: unknown, config: Record<string, unknown> = {}, opts: HFTokenizerOptions = {}) {
    const who = 'HFTokenizer';
    const j = tokenizerJson as Json | null;
    if (!j || typeof j !== 'object' || !j.model || typeof j.model !== 'object') throw new Error(`nodegrad: ${who}: expected a tokenizer.json object with a "model"`);
    const modelType = (j.model as Json).type;
    if (modelType !== 'BPE') throw new Error(`nodegrad: ${who}: tokenizer.json model type ${JSON.stringify(modelType ?? null)} is not supported (supported: "BPE")`);
    this.model = new BPEModel(j.model as Json, { cacheSize: opts.cacheSize });
    this.normalizer = buildNormalizer(j.normalizer);
    this.preTokenizer = buildPreTokenizer(j.pre_tokenizer);
    this.postProcessor = buildPostProcessor(j.post_processor);
    this.decoder = buildDecoder(j.decoder);

    const list = j.added_tokens ?? [];
    if (!Array.isArray(list)) throw new Error(`nodegrad: ${who}: tokenizer.json added_tokens must be a list`);
    for (const [i, t] of (list as Json[]).entries()) {
      if (!t || typeof t.content !== 'string' || t.content === '' || !Number.isInteger(t.id) || (t.id as number) < 0) {
        throw new Error(`nodegrad: ${who}: tokenizer.json added token ${i} needs a non-empty content and a non-negative integer id (got ${JSON.stringify(t)})`);
      }
      const tok: HFAddedToken = {
        id: this.model.vocab.get(t.content) ?? (t.id as number), content: t.content, special: t.special === true,
        singleWord: t.single_word === true, lstrip: t.lstrip === true, rstrip: t.rstrip === true, normalized: t.normalized === undefined ? t.special !== true : t.normalized === true,
      };
      this.addedById.set(tok.id, tok);
      this.addedByContent.set(tok.content, tok);
    }
    this.added = [...this.addedById.values()].sort((a, b) => a.id - b.id);
    this.rawMatcher = this.matcher(this.added.filter((t) => !t.normalized), (s) => s);
    this.normMatcher = this.matcher(this.added.filter((t) => t.normalized), this.normalizer ?? ((s) => s));

    const name = (key: string, given: string | null | undefined): string | null => (given !== undefined ? given : tokenName(config[key]) ?? null);
    this.bosToken = name('bos_token', opts.bosToken);
    this.eosToken = name('eos_token', opts.eosToken);
    this.padToken = name('pad_token', opts.padToken);
    this.unkToken = name('unk_token', opts.unkToken);
    const mml = config.model_max_length;
    this.modelMaxLength = typeof mml === 'number' && Number.isInteger(mml) && mml < 1e12 ? mml : undefined;
    this.paddingSide = config.padding_side === 'left' ? 'left' : 'right';
    this.cleanUpTokenizationSpaces = config.clean_up_tokenization_spaces === true;
    const templates = parseChatTemplates(who, config.chat_template);
    if (opts.chatTemplate !== undefined) templates.set('default', opts.chatTemplate);
    this.chatTemplates = templates;
    // What transformers passes to a chat template as **special_tokens_map.
    const sp: Record<string, unknown> = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token']) {
      const v = key === 'bos_token' ? this.bosToken : key === 'eos_token' ? this.eosToken : key === 'pad_token' ? this.padToken : key === 'unk_token' ? this.unkToken : tokenName(config[key]);
      if (v !== null && v !== undefined) sp[key] = v;
    }
    if (Array.isArray(config.additional_special_tokens)) sp.additional_special_tokens = config.additional_special_tokens.map((t) => tokenName(t) ?? t);
    this.specialTokensMap = sp;
  }

  private matcher(tokens: HFAddedToken[], norm: Normalizer): Matcher | null {
    if (tokens.length === 0) return null;
    const byContent = new Map<string, HFAddedToken>();
    for (const t of tokens) {
      const key = t.normalized ? norm(t.content) : t.content;
      if (key !== '' && !byContent.has(key)) byContent.set(key, t);
    }
    // Longest first: at one position the alternation then takes the longest token (leftmost-longest).
    const keys = [...byContent.keys()].sort((a, b) => b.length - a.length);
    return { re: new RegExp(keys.map(escapeRegExp).join('|'), 'gu'), byContent };
  }

  /** Reads tokenizer.json plus tokenizer_config.json / special_tokens_map.json / chat_template.jinja from a directory. */
  static async fromPretrained(dir: string, opts: HFTokenizerOptions = {}): Promise<HFTokenizer> {
    const who = 'HFTokenizer.fromPretrained';
    await checkDir(who, dir);
    const tj = path.join(dir, 'tokenizer.json');
    if (!(await fileExists(tj))) throw new Error(`nodegrad: ${who}: no tokenizer.json in ${dir}`);
    const json = await readJSONFile(who, tj);
    const config = await readTokenizerConfig(who, dir);
    if (config.chat_template === undefined) {
      const jinja = path.join(dir, 'chat_template.jinja'), cj = path.join(dir, 'chat_template.json');
      if (await fileExists(jinja)) config.chat_template = await readFile(jinja, 'utf8');
      else if (await fileExists(cj)) config.chat_template = ((await readJSONFile(who, cj)) as { chat_template?: unknown } | null)?.chat_template;
    }
    try {
      return new HFTokenizer(json, config, opts);
    } catch (e) {
      throw new Error(`${(e as Error).message} (loading ${dir})`);
    }
  }

  /** Number of ids: the model's vocabulary plus added tokens beyond it. */
  get vocabSize(): number {
    let n = this.model.tokens.length;
    for (const t of this.added) n = Math.max(n, t.id + 1);
    return n;
  }
  get addedTokens(): readonly HFAddedToken[] { return this.added; }
  get bosTokenId(): number | null { return this.idOf(this.bosToken); }
  get eosTokenId(): number | null { return this.idOf(this.eosToken); }
  get padTokenId(): number | null { return this.idOf(this.padToken); }
  get unkTokenId(): number | null { return this.idOf(this.unkToken); }
  private idOf(t: string | null): number | null { return t === null ? null : this.tokenToId(t) ?? null; }

  /** Id of a token (vocabulary form, e.g. "Ġhello" or "▁hello", or an added token), or undefined. */
  tokenToId(token: string): number | undefined { return this.addedByContent.get(token)?.id ?? this.model.vocab.get(token); }
  /** Token of an id, or undefined. */
  idToToken(id: number): string | undefined { return this.addedById.get(id)?.content ?? this.model.tokens[id]; }

  /** Token ids of `text` (and `textPair`), with BOS/EOS per the post-processor unless addSpecialTokens is false. */
  encode(text: string, opts: HFEncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new Error(`nodegrad: HFTokenizer.encode: text must be a string (got ${typeof text})`);
    const a: number[] = [];
    this.encodeText(text, a, opts.splitSpecialTokens === true);
    let b: number[] | null = null;
    if (opts.textPair !== undefined) {
      if (typeof opts.textPair !== 'string') throw new Error(`nodegrad: HFTokenizer.encode: textPair must be a string (got ${typeof opts.textPair})`);
      b = [];
      this.encodeText(opts.textPair, b, opts.splitSpecialTokens === true);
    }
    if (opts.addSpecialTokens !== false && this.postProcessor) return this.postProcessor(a, b);
    return b === null ? a : a.concat(b);
  }

  /** The tokens of `text` (vocabulary forms). */
  tokenize(text: string, opts: HFEncodeOptions = {}): string[] {
    return this.encode(text, { addSpecialTokens: false, ...opts }).map((id) => this.idToToken(id)!);
  }

  private encodeText(text: string, out: number[], splitSpecial: boolean): void {
    this.splitAdded(text, this.rawMatcher, splitSpecial, out, (seg, first) => {
      const s = this.normalizer ? this.normalizer(seg) : seg;
      this.splitAdded(s, this.normMatcher, splitSpecial, out, (piece, f) => this.encodePiece(piece, first && f, out));
    });
  }

  private encodePiece(piece: string, first: boolean, out: number[]): void {
    if (piece.length === 0) return;
    const model = this.model;
    if (this.preTokenizer === null) { model.tokenize(piece, out); return; }
    this.preTokenizer(piece, first, (word) => model.tokenize(word, out));
  }

  /** Cuts added tokens out of s (the crate's find_matches: single_word, lstrip, rstrip); plain segments go to onText. */
  private splitAdded(s: string, m: Matcher | null, splitSpecial: boolean, out: number[], onText: (seg: string, first: boolean) => void): void {
    if (m === null || s.length === 0) { if (s.length) onText(s, true); return; }
    const re = m.re;
    re.lastIndex = 0;
    let last = 0;
    for (let hit = re.exec(s); hit !== null; hit = re.exec(s)) {
      const tok = m.byContent.get(hit[0])!;
      let start = hit.index, stop = start + hit[0].length;
      if (splitSpecial && tok.special) continue;
      if (tok.singleWord) {
        const before = start === 0 || !WORD_CHAR.test(String.fromCodePoint(s.codePointAt(prevCodePoint(s, start))!));
        const after = stop === s.length || !WORD_CHAR.test(String.fromCodePoint(s.codePointAt(stop)!));
        if (!before || !after) continue;
      }
      if (tok.lstrip) { let k = start; while (k > last && WHITE.test(s[k - 1])) k--; start = k; }
      if (tok.rstrip) while (stop < s.length && WHITE.test(s[stop])) stop++;
      if (start > last) onText(s.slice(last, start), last === 0);
      out.push(tok.id);
      last = stop;
      re.lastIndex = Math.max(re.lastIndex, stop);
    }
    if (last < s.length) onText(last === 0 ? s : s.slice(last), last === 0);
  }

  /** Text of token ids: tokens through the decoder chain, then transformers' cleanup when configured. */
  decode(ids: ArrayLike<number>, opts: HFDecodeOptions = {}): string {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') throw new Error('nodegrad: HFTokenizer.decode: ids must be an array of token ids');
    const tokens: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const added = this.addedById.get(id);
      if (added !== undefined) {
        if (!(added.special && opts.skipSpecialTokens)) tokens.push(added.content);
        continue;
      }
      const tok = Number.isInteger(id) ? this.model.tokens[id] : undefined;
      if (tok === undefined) throw new Error(`nodegrad: HFTokenizer.decode: token id ${id} at position ${i} is out of range (vocab size ${this.vocabSize})`);
      tokens.push(tok);
    }
    const text = this.decoder ? this.decoder(tokens).join('') : tokens.join(' ');
    return (opts.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces) ? cleanUpTokenization(text) : text;
  }

  /** Encodes several texts; truncates (keeping the special tokens) and pads on request. */
  encodeBatch(texts: readonly string[], opts: HFBatchOptions & { returnTensors: 'ng' }): { inputIds: Tensor; attentionMask: Tensor };
  encodeBatch(texts: readonly string[], opts?: HFBatchOptions): { inputIds: number[][]; attentionMask: number[][] };
  encodeBatch(texts: readonly string[], opts: HFBatchOptions = {}): { inputIds: number[][] | Tensor; attentionMask: number[][] | Tensor } {
    const who = 'HFTokenizer.encodeBatch';
    if (!Array.isArray(texts)) throw new Error(`nodegrad: ${who}: texts must be an array of strings`);
    const maxLength = checkMaxLength(who, opts.maxLength);
    const limit = (opts.truncation ?? maxLength !== undefined) ? maxLength ?? this.modelMaxLength : undefined;
    const special = opts.addSpecialTokens !== false && this.postProcessor !== null;
    const extra = special ? this.postProcessor!([], null).length : 0;
    let rows = texts.map((t) => {
      const ids = this.encode(t, { ...opts, addSpecialTokens: false, textPair: undefined });
      const body = limit !== undefined && ids.length + extra > limit ? ids.slice(0, Math.max(0, limit - extra)) : ids;
      return special ? this.postProcessor!(body, null) : body;
    });
    if (limit !== undefined) rows = rows.map((r) => (r.length > limit ? r.slice(0, limit) : r));
    const len = batchLength(who, rows.map((r) => r.length), opts.padding ?? false, maxLength);
    const left = (opts.paddingSide ?? this.paddingSide) === 'left';
    let padId = this.padTokenId ?? this.eosTokenId;
    if (len >= 0 && rows.some((r) => r.length < len) && padId === null) throw new Error(`nodegrad: ${who}: padding needs a pad token (configure padToken or eosToken)`);
    padId ??= 0;
    const attentionMask = rows.map((r) => padRow(new Array<number>(r.length).fill(1), len, 0, left));
    const inputIds = rows.map((r) => padRow(r, len, padId, left));
    if (opts.returnTensors === 'ng') return { inputIds: rowsToTensor(who, inputIds), attentionMask: rowsToTensor(who, attentionMask) };
    if (opts.returnTensors !== undefined) throw new Error(`nodegrad: ${who}: returnTensors must be 'ng' (got ${JSON.stringify(opts.returnTensors)})`);
    return { inputIds, attentionMask };
  }

  /**
   * Renders a conversation with the tokenizer's chat template (as transformers'
   * apply_chat_template): token ids by default (encoded without adding special tokens, the
   * template writes them), or the text with { tokenize: false }.
   */
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions & { tokenize: false }): string;
  applyChatTemplate(messages: readonly ChatMessage[], opts?: ChatTemplateOptions): number[];
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): string | number[] {
    const who = 'HFTokenizer.applyChatTemplate';
    const source = this.templateSource(who, opts);
    let tpl = this.compiled.get(source);
    if (tpl === undefined) { tpl = compileChatTemplate(who, source); this.compiled.set(source, tpl); }
    const text = renderChatTemplate(who, tpl, messages, { ...opts, specialTokens: this.specialTokensMap });
    return opts.tokenize === false ? text : this.encode(text, { addSpecialTokens: false });
  }

  private templateSource(who: string, opts: ChatTemplateOptions): string {
    const t = this.chatTemplates;
    if (opts.chatTemplate !== undefined) {
      if (typeof opts.chatTemplate !== 'string') throw new Error(`nodegrad: ${who}: chatTemplate must be a template name or a Jinja string`);
      return t.get(opts.chatTemplate) ?? opts.chatTemplate;
    }
    if (opts.tools && t.has('tool_use')) return t.get('tool_use')!;
    const d = t.get('default');
    if (d === undefined) {
      throw new Error(`nodegrad: ${who}: this tokenizer has no chat template${t.size ? ` named "default" (it has: ${[...t.keys()].join(', ')})` : ' (tokenizer_config.json has no chat_template and there is no chat_template.jinja)'}; pass { chatTemplate }`);
    }
    return d;
  }
}

function prevCodePoint(s: string, i: number): number {
  const c = s.charCodeAt(i - 1);
  return c >= 0xdc00 && c <= 0xdfff && i >= 2 ? i - 2 : i - 1;
}
