// `nodegrad chat` and `nodegrad generate` for Hugging Face causal LMs (Llama, Mistral,
// Qwen2, Qwen3): the model from its directory, the tokenizer through AutoTokenizer, the
// conversation formatted by the tokenizer's chat template, replies streamed token by token
// until EOS. Each turn re-encodes the whole conversation (the template decides how turns
// are joined), so the model sees exactly what transformers' apply_chat_template gives it.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { Readable, Writable } from 'node:stream';
import type { GenerateOptions } from './generate.js';
import { setNumThreads } from './info.js';

export const CHAT_HELP = `usage: nodegrad chat --model DIR [options]

Chats with a Hugging Face Llama, Mistral, Qwen2 or Qwen3 directory (config.json, weights,
tokenizer.json with a chat template). Each line read is a user turn; the reply streams as
it is generated and ends at the model's EOS. /reset starts a new conversation; /exit or
end of input quits.

  --model DIR            the model directory (required)
  --system TEXT          a system message first in the conversation
  --max-new-tokens N     longest reply (default 256)
  --temperature X        0 = greedy (default: generation_config.json, else greedy)
  --top-k N --top-p X    sampling filters (default: generation_config.json)
  --seed N               sampling seed
  --threads N            CPU threads (default: all cores)
  -h, --help             this text`;

export interface ChatMessage { role: 'system' | 'user' | 'assistant'; content: string }

/** What the chat needs from a tokenizer (AutoTokenizer.fromPretrained's). */
interface ChatTokenizer {
  encode(text: string, opts?: object): number[];
  decode(ids: ArrayLike<number>, opts?: object): string;
  applyChatTemplate?(messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): string | number[] | { inputIds: number[] };
}

/** The model directory holds a Hugging Face causal LM of the Llama family (its config.json says so). */
export async function isLlamaFamilyDir(dir: string): Promise<boolean> {
  const { readFile } = await import('node:fs/promises');
  const path = await import('node:path');
  try {
    const raw = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')) as { model_type?: unknown };
    return ['llama', 'mistral', 'qwen2', 'qwen3'].includes(raw.model_type as string);
  } catch {
    return false;
  }
}

async function load(dir: string, cmd: string) {
  const [{ LlamaForCausalLM }, { AutoTokenizer }] = await Promise.all([import('./models/llama.js'), import('./data/auto_tokenizer.js')]);
  const model = await LlamaForCausalLM.fromPretrained(dir);
  let tok: ChatTokenizer;
  try {
    tok = await AutoTokenizer.fromPretrained(dir) as unknown as ChatTokenizer;
  } catch (e) {
    throw new Error(`nodegrad ${cmd}: --model ${dir}: cannot load its tokenizer (${(e as Error).message.replace(/^nodegrad: /, '')})`);
  }
  return { model, tok };
}

/** Text of a growing token list as it arrives, holding back an incomplete multi-byte character. */
class TextDeltas {
  private ids: number[] = [];
  private shown = '';
  constructor(private readonly tok: ChatTokenizer) {}
  push(t: number): string {
    this.ids.push(t);
    const full = this.tok.decode(this.ids, { skipSpecialTokens: true }).replace(/\uFFFD{1,3}$/, '');
    if (!full.startsWith(this.shown)) return '';
    const d = full.slice(this.shown.length);
    this.shown = full;
    return d;
  }
  get text(): string { return this.shown; }
}

function sampling(o: Record<string, string | boolean | undefined>, cmd: string): GenerateOptions {
  const num = (k: string, ok: (x: number) => boolean): number | undefined => {
    const v = o[k];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || !ok(n)) throw new Error(`nodegrad ${cmd}: --${k} has an invalid value '${String(v)}'`);
    return n;
  };
  const out: GenerateOptions = {};
  const t = num('temperature', (x) => x >= 0), k = num('top-k', (x) => Number.isInteger(x) && x >= 0);
  const p = num('top-p', (x) => x > 0 && x <= 1), s = num('seed', (x) => Number.isInteger(x) && x >= 0);
  const m = num('max-new-tokens', (x) => Number.isInteger(x) && x >= 0);
  if (t !== undefined) out.temperature = t;
  if (k !== undefined) out.topK = k;
  if (p !== undefined) out.topP = p;
  if (s !== undefined) out.seed = s;
  if (m !== undefined) out.maxNewTokens = m;
  return out;
}

/** The prompt ids of a conversation, through the tokenizer's chat template. */
function chatIds(tok: ChatTokenizer, messages: ChatMessage[]): number[] {
  if (typeof tok.applyChatTemplate !== 'function') throw new Error('nodegrad chat: this tokenizer has no applyChatTemplate (a chat template)');
  const r = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
  // the template writes the special tokens itself, so its text is encoded without adding more
  if (typeof r === 'string') return tok.encode(r, { addSpecialTokens: false });
  return Array.isArray(r) ? r : r.inputIds;
}

/** Streams one reply; returns its text. */
async function reply(model: import('./models/llama.js').LlamaForCausalLM, tok: ChatTokenizer, ids: number[],
  opts: GenerateOptions, out: Writable): Promise<string> {
  const stops = new Set(opts.stopTokens ?? []);
  const text = new TextDeltas(tok);
  for await (const [t] of model.generateStream([ids], opts)) {
    if (stops.has(t)) break;
    const d = text.push(t);
    if (d) out.write(d);
  }
  out.write('\n');
  return text.text;
}

export interface ChatIO { input?: Readable; output?: Writable }

/** `nodegrad chat`: a multi-turn conversation on stdin/stdout; returns the exit code. */
export async function chatCommand(argv: string[], io: ChatIO = {}): Promise<number> {
  let o: Record<string, string | boolean | undefined>;
  try {
    const s = { type: 'string' } as const;
    o = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: { model: s, system: s, 'max-new-tokens': s, temperature: s, 'top-k': s, 'top-p': s, seed: s, threads: s, help: { type: 'boolean', short: 'h' } },
    }).values;
  } catch (e) {
    throw new Error(`nodegrad chat: ${(e as Error).message.replace(/\. To specify.*$/s, '')} (see \`nodegrad chat --help\`)`);
  }
  const output = io.output ?? process.stdout, input = io.input ?? process.stdin;
  if (o.help) { output.write(`${CHAT_HELP}\n`); return 0; }
  if (!o.model) throw new Error('nodegrad chat: --model DIR is required (see `nodegrad chat --help`)');
  if (o.threads !== undefined) setNumThreads(Number(o.threads));
  const { model, tok } = await load(o.model as string, 'chat');
  const opts: GenerateOptions = { ...model.generationDefaults(), maxNewTokens: 256, ...sampling(o, 'chat') };
  // a turn also ends at the tokenizer's EOS (the template's end-of-turn token, e.g. <|im_end|>)
  const eos = (tok as { eosTokenId?: number | null }).eosTokenId;
  if (typeof eos === 'number') opts.stopTokens = [...new Set([...(opts.stopTokens ?? []), eos])];
  const first: ChatMessage[] = o.system ? [{ role: 'system', content: o.system as string }] : [];
  let messages = [...first];
  const tty = (input as { isTTY?: boolean }).isTTY === true;
  const rl = createInterface({ input, terminal: false });
  if (tty) output.write('> ');
  let turn = 0;
  for await (const line of rl) {
    const text = line.trim();
    if (text === '/exit' || text === '/quit') break;
    if (text === '/reset') {
      messages = [...first];
      output.write('(new conversation)\n');
    } else if (text) {
      messages.push({ role: 'user', content: text });
      const ids = chatIds(tok, messages);
      const content = await reply(model, tok, ids, { ...opts, seed: opts.seed === undefined ? undefined : opts.seed + turn++ }, output);
      messages.push({ role: 'assistant', content });
    }
    if (tty) output.write('> ');
  }
  rl.close();
  return 0;
}

/** `nodegrad generate` on a Hugging Face causal LM directory: the prompt continued until EOS or maxNewTokens. */
export async function generatePretrained(dir: string, prompt: string, flags: Record<string, string | boolean | undefined>,
  out: Writable = process.stdout): Promise<number> {
  const { model, tok } = await load(dir, 'generate');
  const opts: GenerateOptions = { ...model.generationDefaults(), maxNewTokens: 64, ...sampling(flags, 'generate') };
  const ids = tok.encode(prompt);
  if (ids.length === 0) throw new Error('nodegrad generate: the prompt encodes to no tokens (give --prompt TEXT)');
  out.write(prompt);
  await reply(model, tok, ids, opts, out);
  return 0;
}
