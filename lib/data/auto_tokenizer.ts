// AutoTokenizer: picks the tokenizer class from the files in a directory, as Hugging Face's
// AutoTokenizer does: tokenizer.json by its model type (BPE: GPT2Tokenizer when the file is
// plain GPT-2 byte-level BPE without a chat template, else HFTokenizer, which runs any
// normalizer / pre-tokenizer / post-processor / decoder pipeline, as Llama, Mistral and Qwen
// use; WordPiece: BertTokenizer), else vocab.json + merges.txt (byte-level BPE), else
// vocab.txt (WordPiece).
import path from 'node:path';
import { GPT2Tokenizer, checkDir, fileExists, readJSONFile, readTokenizerConfig, type GPT2TokenizerOptions } from './bpe.js';
import { BertTokenizer, type BertTokenizerOptions } from './wordpiece.js';
import { HFTokenizer, type HFTokenizerOptions } from './hf_tokenizer.js';

export type PretrainedTokenizer = GPT2Tokenizer | BertTokenizer | HFTokenizer;

export class AutoTokenizer {
  private constructor() {}

  static async fromPretrained(dir: string, opts: Partial<GPT2TokenizerOptions> & Partial<BertTokenizerOptions> & HFTokenizerOptions = {}): Promise<PretrainedTokenizer> {
    const who = 'AutoTokenizer.fromPretrained';
    await checkDir(who, dir);
    const tj = path.join(dir, 'tokenizer.json');
    if (await fileExists(tj)) {
      const obj = await readJSONFile(who, tj);
      const type = (obj as { model?: { type?: unknown } } | null)?.model?.type;
      if (type === 'BPE') {
        const cfg = await readTokenizerConfig(who, dir);
        const templated = cfg.chat_template !== undefined || (await fileExists(path.join(dir, 'chat_template.jinja')));
        if (isPlainGPT2(obj) && !templated && opts.chatTemplate === undefined) return GPT2Tokenizer.fromPretrained(dir, gpt2Options(opts));
        return HFTokenizer.fromPretrained(dir, hfOptions(opts));
      }
      if (type === 'WordPiece') return BertTokenizer.fromPretrained(dir, bertOptions(opts));
      throw new Error(`nodegrad: ${who}: ${tj} has model type ${JSON.stringify(type ?? null)} (supported: "BPE", "WordPiece")`);
    }
    const [vj, mt, vt] = await Promise.all(['vocab.json', 'merges.txt', 'vocab.txt'].map((f) => fileExists(path.join(dir, f))));
    if (vj && mt) return GPT2Tokenizer.fromPretrained(dir, gpt2Options(opts));
    if (vt) return BertTokenizer.fromPretrained(dir, bertOptions(opts));
    const partial = vj ? '; vocab.json has no merges.txt beside it' : mt ? '; merges.txt has no vocab.json beside it' : '';
    throw new Error(`nodegrad: ${who}: no tokenizer files in ${dir} (looked for tokenizer.json, vocab.json + merges.txt, vocab.txt${partial})`);
  }
}

/** A tokenizer.json that GPT2Tokenizer runs exactly: byte-level BPE, GPT-2's regex, no normalizer, no added BOS/EOS. */
function isPlainGPT2(obj: unknown): boolean {
  const o = obj as { model?: Record<string, unknown>; normalizer?: unknown; pre_tokenizer?: Record<string, unknown> | null; post_processor?: { type?: unknown } | null; decoder?: { type?: unknown } | null };
  const m = o.model ?? {};
  if (m.continuing_subword_prefix || m.end_of_word_suffix || m.byte_fallback) return false;
  if (o.normalizer) return false;
  const pre = o.pre_tokenizer;
  if (!pre || pre.type !== 'ByteLevel' || pre.use_regex === false) return false;
  if (o.post_processor && o.post_processor.type !== 'ByteLevel') return false;
  return !o.decoder || o.decoder.type === 'ByteLevel';
}

const HF_KEYS = ['cacheSize', 'bosToken', 'eosToken', 'padToken', 'unkToken', 'chatTemplate'] as const;
const GPT2_KEYS = ['eosToken', 'bosToken', 'unkToken', 'padToken', 'addPrefixSpace', 'ignoreMerges', 'cacheSize', 'modelMaxLength', 'addedTokens'] as const;
const BERT_KEYS = ['doLowerCase', 'stripAccents', 'tokenizeChineseChars', 'cleanText', 'neverSplit', 'unkToken', 'sepToken', 'padToken', 'clsToken',
  'maskToken', 'addedTokens', 'maxInputCharsPerWord', 'continuingSubwordPrefix', 'cleanUpTokenizationSpaces', 'modelMaxLength'] as const;

function pick<T extends object>(opts: Record<string, unknown>, keys: readonly string[]): Partial<T> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (opts[k] !== undefined) out[k] = opts[k];
  return out as Partial<T>;
}
const gpt2Options = (o: object): Partial<GPT2TokenizerOptions> => pick<GPT2TokenizerOptions>(o as Record<string, unknown>, GPT2_KEYS);
const hfOptions = (o: object): HFTokenizerOptions => pick<HFTokenizerOptions>(o as Record<string, unknown>, HF_KEYS);
const bertOptions = (o: object): Partial<BertTokenizerOptions> => pick<BertTokenizerOptions>(o as Record<string, unknown>, BERT_KEYS);
