// Supervised fine-tuning of a causal LM on chats with LoRA: each conversation goes through
// the tokenizer's chat template and only the assistant turns are scored (TRL's
// assistant-only loss). The assistant spans are found by rendering the conversation turn
// by turn: the text the template adds for an assistant message (after the generation
// prompt for it) is trained, everything else (system, user, the template's own headers)
// gets label -100.
import type { ChatMessage } from '../data/chat_template.js';
import { Rng, type RngState } from '../data/dataset.js';
import { forEachJsonLine, readTextFile } from '../data/jsonl.js';
import { tensor } from '../ops/creation.js';
import type { Module } from '../nn/module.js';
import { AdamW, paramGroupsForDecay } from '../optim/index.js';
import { Trainer, type Batch, type BatchSource } from '../train/trainer.js';
import type { LoraConfig } from './config.js';
import { getPeftModel, type PeftModel } from './peft_model.js';
import { formatFootprint, formatRunMemory, resetPeakMemory, trainingFootprint } from './report.js';

/** What SFT needs from a tokenizer (HFTokenizer from AutoTokenizer.fromPretrained has it). */
export interface ChatTokenizer {
  applyChatTemplate(messages: readonly ChatMessage[], opts: { tokenize: false; addGenerationPrompt?: boolean }): string;
  encode(text: string): number[];
  readonly eosTokenId?: number | null;
}

export interface SftExample { inputIds: number[]; /** HF's labels (unshifted): the token itself where it is trained, -100 elsewhere. */ labels: number[] }

/** One conversation as token ids and labels that score its assistant turns only. */
export function chatTrainingExample(tok: ChatTokenizer, messages: readonly ChatMessage[], where = 'conversation'): SftExample {
  const render = (n: number, gen: boolean): string => tok.applyChatTemplate(messages.slice(0, n), { tokenize: false, addGenerationPrompt: gen });
  const inputIds: number[] = [], labels: number[] = [];
  const push = (text: string, train: boolean): void => {
    if (!text) return;
    const ids = tok.encode(text);
    inputIds.push(...ids);
    labels.push(...(train ? ids : ids.map(() => -100)));
  };
  let done = '';
  const step = (text: string, what: string): string => {
    if (!text.startsWith(done)) {
      throw new Error(`nodegrad: sft: ${where}: the chat template does not render ${what} as a continuation of the turns before it; cannot tell the assistant's tokens apart`);
    }
    return text.slice(done.length);
  };
  let any = false;
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    any = true;
    const prompt = render(i, true);
    push(step(prompt, `the prompt before message ${i}`), false);
    done = prompt;
    const full = render(i + 1, false);
    push(step(full, `assistant message ${i}`), true);
    done = full;
  });
  if (!any) throw new Error(`nodegrad: sft: ${where} has no assistant message to learn from`);
  push(step(render(messages.length, false), 'the conversation'), false);
  return { inputIds, labels };
}

/** Reads chat.jsonl: one {"messages": [{"role", "content"}, ...]} object per line. */
export async function readChats(file: string): Promise<ChatMessage[][]> {
  const raw = await readTextFile('sft', file);
  const out: ChatMessage[][] = [];
  forEachJsonLine('sft', file, raw, (rec, line) => {
    const msgs = (rec as { messages?: unknown })?.messages;
    if (!Array.isArray(msgs) || !msgs.every((m) => m && typeof m === 'object' && typeof m.role === 'string' && typeof m.content === 'string')) {
      throw new Error(`nodegrad: sft: ${file} line ${line}: expected {"messages": [{"role": ..., "content": ...}, ...]}`);
    }
    out.push(msgs as ChatMessage[]);
  });
  if (out.length === 0) throw new Error(`nodegrad: sft: ${file} holds no conversations`);
  return out;
}

/**
 * Examples as [B, T] batches for the Trainer: x the ids (right-padded), y the next-token
 * targets (labels shifted by one; -100 on padding and non-assistant tokens). Longer
 * examples are cut to T.
 */
export class SftData implements BatchSource {
  private rng: Rng;
  constructor(readonly examples: readonly SftExample[], readonly padId: number, seed = 0) {
    if (examples.length === 0) throw new Error('nodegrad: sft: no examples');
    this.rng = new Rng(seed);
  }
  get length(): number { return this.examples.length; }
  /** Tokens scored in all examples (assistant tokens after the first position). */
  get trainedTokens(): number { return this.examples.reduce((n, e) => n + e.labels.slice(1).filter((l) => l !== -100).length, 0); }
  rows(idx: number[], T: number): Batch {
    const x = new Int32Array(idx.length * T).fill(this.padId), y = new Int32Array(idx.length * T).fill(-100);
    idx.forEach((r, b) => {
      const e = this.examples[r];
      const n = Math.min(T, e.inputIds.length);
      for (let t = 0; t < n; t++) {
        x[b * T + t] = e.inputIds[t];
        if (t + 1 < e.labels.length) y[b * T + t] = e.labels[t + 1];
      }
    });
    return { x: tensor(x, { shape: [idx.length, T] }), y: tensor(y, { shape: [idx.length, T] }) };
  }
  getBatch(batchSize: number, blockSize: number): Batch {
    return this.rows(Array.from({ length: batchSize }, () => this.rng.nextInt(this.length)), blockSize);
  }
  getState(): RngState { return this.rng.getState(); }
  setState(s: unknown): void { this.rng.setState(s as RngState); }
}

export interface SftLoraOptions {
  model: Module;
  tokenizer: ChatTokenizer;
  chats: ChatMessage[][];
  lora?: LoraConfig;
  steps?: number;
  batchSize?: number;
  maxLength?: number;
  lr?: number;
  seed?: number;
  outDir?: string;
  padId?: number;
  log?: (line: string) => void;
  progress?: 'auto' | 'bar' | 'lines' | 'none';
}

/** LoRA SFT of a causal LM (GPT, LlamaForCausalLM) on chats; writes the adapter to outDir. */
export async function sftLora(o: SftLoraOptions): Promise<{ peft: PeftModel; steps: number; lastLoss: number; firstLoss: number; seconds: number }> {
  const log = o.log ?? ((s: string) => console.log(s));
  const maxLength = o.maxLength ?? 512, batchSize = o.batchSize ?? 4, steps = o.steps ?? 100, lr = o.lr ?? 2e-4;
  const examples = o.chats.map((m, i) => chatTrainingExample(o.tokenizer, m, `conversation ${i + 1}`));
  const padId = o.padId ?? o.tokenizer.eosTokenId ?? 0;
  const data = new SftData(examples, padId, o.seed ?? 0);
  resetPeakMemory();
  const peft = getPeftModel(o.model, { taskType: 'CAUSAL_LM', ...o.lora });
  const c = peft.peftConfig[peft.activeAdapter!];
  const what = `LoRA r=${c.r} alpha=${c.loraAlpha} on ${Array.isArray(c.targetModules) ? c.targetModules.join(',') : c.targetModules}`;
  for (const l of formatFootprint(trainingFootprint(peft), what)) log(`nodegrad: ${l}`);
  log(`nodegrad: ${examples.length} conversations, ${data.trainedTokens} assistant tokens scored (the rest of each chat is masked)`);
  const opt = new AdamW(paramGroupsForDecay(peft.namedTrainableParameters(), 0), { lr, weightDecay: 0 });
  peft.train();
  const t0 = performance.now();
  const warmup = Math.max(1, Math.floor(steps / 10));
  const trainer = new Trainer({
    model: peft, optimizer: opt, train: data, batchSize, blockSize: maxLength, maxSteps: steps, clipGradNorm: 1.0,
    lr: (s) => (s < warmup ? (lr * (s + 1)) / warmup : lr), logInterval: 10, progress: o.progress ?? 'auto',
  });
  const res = await trainer.fit();
  if (o.outDir) await peft.saveAdapter(o.outDir);
  log(`nodegrad: ${formatRunMemory(opt)}`);
  return { peft, steps: res.steps, lastLoss: res.lastLoss, firstLoss: res.losses[0] ?? NaN, seconds: (performance.now() - t0) / 1000 };
}
