// AutoTokenizer: picks the tokenizer class from the files in a directory, as Hugging Face's
// AutoTokenizer does for GPT-2- and BERT-style checkpoints: tokenizer.json by its model
// type (BPE or WordPiece), else vocab.json + merges.txt (byte-level BPE), else vocab.txt
// (WordPiece).
import path from 'node:path';
import { GPT2Tokenizer, checkDir, fileExists, readJSONFile, type GPT2TokenizerOptions } from './bpe.js';
import { BertTokenizer, type BertTokenizerOptions } from './wordpiece.js';

export type PretrainedTokenizer = GPT2Tokenizer | BertTokenizer;

export class AutoTokenizer {
  private constructor() {}

  static async fromPretrained(dir: string, opts: Partial<GPT2TokenizerOptions> & Partial<BertTokenizerOptions> = {}): Promise<PretrainedTokenizer> {
    const who = 'AutoTokenizer.fromPretrained';
    await checkDir(who, dir);
    const tj = path.join(dir, 'tokenizer.json');
    if (await fileExists(tj)) {
      const obj = await readJSONFile(who, tj);
      const type = (obj as { model?: { type?: unknown } } | null)?.model?.type;
      if (type === 'BPE') return GPT2Tokenizer.fromPretrained(dir, gpt2Options(opts));
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

const GPT2_KEYS = ['eosToken', 'bosToken', 'unkToken', 'padToken', 'addPrefixSpace', 'ignoreMerges', 'cacheSize', 'modelMaxLength', 'addedTokens'] as const;
const BERT_KEYS = ['doLowerCase', 'stripAccents', 'tokenizeChineseChars', 'cleanText', 'neverSplit', 'unkToken', 'sepToken', 'padToken', 'clsToken',
  'maskToken', 'addedTokens', 'maxInputCharsPerWord', 'continuingSubwordPrefix', 'cleanUpTokenizationSpaces', 'modelMaxLength'] as const;

function pick<T extends object>(opts: Record<string, unknown>, keys: readonly string[]): Partial<T> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (opts[k] !== undefined) out[k] = opts[k];
  return out as Partial<T>;
}
const gpt2Options = (o: object): Partial<GPT2TokenizerOptions> => pick<GPT2TokenizerOptions>(o as Record<string, unknown>, GPT2_KEYS);
const bertOptions = (o: object): Partial<BertTokenizerOptions> => pick<BertTokenizerOptions>(o as Record<string, unknown>, BERT_KEYS);
