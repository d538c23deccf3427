// A Llama-family directory (Qwen2-style config, byte-level BPE tokenizer.json with a ChatML
// chat template, random weights) through `nodegrad generate`, `nodegrad chat` (child
// processes and in-process) and `nodegrad serve`: outputs equal what the model generates
// in this process, replies stop at EOS, turns accumulate in the conversation.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { LlamaForCausalLM } from '../../lib/models/llama.js';
import { AutoTokenizer } from '../../lib/data/auto_tokenizer.js';
import { HFTokenizer } from '../../lib/data/hf_tokenizer.js';
import { chatCommand } from '../../lib/chat.js';
import { InferenceServer } from '../../lib/serve/index.js';
import { CHAT_VOCAB, chatTokenizerFiles, hfShapes, randomWeights, writeCheckpoint, type Raw } from '../llama_fixtures.js';

const cfg: Raw = {
  model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], vocab_size: CHAT_VOCAB, hidden_size: 32, intermediate_size: 48,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256, rms_norm_eps: 1e-6,
  rope_theta: 10000, tie_word_embeddings: true, hidden_act: 'silu', use_sliding_window: false, bos_token_id: null, eos_token_id: 2,
};
// <|im_end|> (2) ends a turn, <|endoftext|> (0) ends a text
const generation = { eos_token_id: [2, 0], do_sample: false };

let root = '';
let dir = '';      // random weights: varied tokens
let eosDir = '';   // final norm zeroed: every logit is 0, greedy picks id 0 (an EOS) at once

function runCli(args: string[], input = ''): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', './scripts/ts-loader.mjs', 'test/cli_runner.ts', ...args],
    { cwd: process.cwd(), input, encoding: 'utf8', timeout: 120_000, env: { ...process.env, NODEGRAD_THREADS: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'nodegrad-llama-cli-'));
  dir = path.join(root, 'qwen');
  eosDir = path.join(root, 'eos');
  const w = randomWeights(hfShapes(cfg), 17);
  await writeCheckpoint(dir, cfg, w, { generation });
  w.get('model.norm.weight')!.data.fill(0);
  await writeCheckpoint(eosDir, cfg, w, { generation });
  for (const d of [dir, eosDir]) await ng.io.writeDirAtomic(d, chatTokenizerFiles());
});
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

/** What the model itself continues `ids` with, greedily, stopping at its EOS ids. */
async function continuation(d: string, ids: number[], maxNewTokens: number): Promise<number[]> {
  const model = await LlamaForCausalLM.fromPretrained(d);
  return model.generate([ids], { maxNewTokens, temperature: 0 })[0].slice(ids.length);
}

describe('nodegrad generate / chat on a Llama-family directory', () => {
  test('the fixture tokenizer round-trips text and applies the chat template', async () => {
    const tok = await AutoTokenizer.fromPretrained(dir) as HFTokenizer;
    expect(tok.decode(tok.encode('hello world'))).toBe('hello world');
    const ids = tok.applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true });
    expect(tok.decode(ids)).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
  });

  test('generate streams the prompt and the greedy continuation, stopping at EOS', async () => {
    const tok = await AutoTokenizer.fromPretrained(dir) as HFTokenizer;
    const r = runCli(['generate', '--model', dir, '--prompt', 'hello', '--max-new-tokens', '6', '--temperature', '0']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const cont = await continuation(dir, tok.encode('hello'), 6);
    const shown = cont.filter((t) => t !== 0 && t !== 2);
    expect(r.stdout).toBe(`hello${tok.decode(shown, { skipSpecialTokens: true })}\n`);
    const e = runCli(['generate', '--model', eosDir, '--prompt', 'hello', '--max-new-tokens', '50']);
    expect(e.status).toBe(0);
    expect(e.stdout).toBe('hello\n'); // the first token is an EOS
  });

  test('chat: each line a turn through the chat template, replies streamed and ended at EOS (child process)', async () => {
    const r = runCli(['chat', '--model', dir, '--max-new-tokens', '5', '--temperature', '0', '--system', 'be brief'], 'hello\nand again\n');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines.length).toBe(3); // two replies, each ended by a newline
    const tok = await AutoTokenizer.fromPretrained(dir) as HFTokenizer;
    const first = tok.applyChatTemplate([{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello' }], { addGenerationPrompt: true });
    const reply = (await continuation(dir, first, 5)).filter((t) => t !== 0 && t !== 2);
    expect(lines[0]).toBe(tok.decode(reply, { skipSpecialTokens: true }));
    const e = runCli(['chat', '--model', eosDir, '--max-new-tokens', '200'], 'hi\nhi again\n/exit\nnever read\n');
    expect(e.status).toBe(0);
    expect(e.stdout).toBe('\n\n');
  });

  test('chat keeps the conversation: the second turn sees the first question and reply', async () => {
    const seen: unknown[] = [];
    const original = HFTokenizer.prototype.applyChatTemplate;
    HFTokenizer.prototype.applyChatTemplate = function (this: HFTokenizer, messages: never, opts: never) {
      seen.push(structuredClone(messages));
      return original.call(this, messages, opts);
    } as typeof original;
    try {
      const input = new PassThrough(), output = new PassThrough();
      let out = '';
      output.on('data', (b: Buffer) => { out += b.toString(); });
      const done = chatCommand(['--model', dir, '--max-new-tokens', '4', '--temperature', '0'], { input, output });
      input.end('first question\n/reset\nafter reset\nsecond\n');
      expect(await done).toBe(0);
      const replies = out.split('\n');
      expect(replies[1]).toBe('(new conversation)');
      expect(seen).toEqual([
        [{ role: 'user', content: 'first question' }],
        [{ role: 'user', content: 'after reset' }],
        [{ role: 'user', content: 'after reset' }, { role: 'assistant', content: replies[2] }, { role: 'user', content: 'second' }],
      ]);
    } finally {
      HFTokenizer.prototype.applyChatTemplate = original;
    }
  });
});

describe('nodegrad serve on a Llama-family directory', () => {
  let server: InferenceServer;
  let url: string;
  const post = (body: unknown): Promise<Response> => fetch(`${url}/v1/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  beforeAll(async () => {
    server = new InferenceServer({ modelDir: dir, port: 0, maxBatch: 8, batchWindowMs: 40, threads: 1 });
    ({ url } = await server.start());
  });
  afterAll(async () => { await server?.close(); });

  test('/v1/generate gives the tokens the model generates alone, batched or not, with left-padded prompts', async () => {
    const health = (await (await fetch(`${url}/health`)).json()) as { model: Raw };
    expect(health.model).toMatchObject({ kind: 'llama', task: 'generate', blockSize: 256, vocabSize: CHAT_VOCAB, stopTokens: [2, 0] });
    const tok = await AutoTokenizer.fromPretrained(dir) as HFTokenizer;
    const prompts = ['hello', 'a much longer prompt than that', 'hi', 'x y z'];
    const answers = await Promise.all(prompts.map(async (p) => (await post({ prompt: p, maxNewTokens: 8, temperature: 0 })).json() as Promise<Raw>));
    for (const [i, p] of prompts.entries()) {
      const want = await continuation(dir, tok.encode(p), 8);
      const stopped = want.length < 8 || [0, 2].includes(want[want.length - 1]);
      expect(answers[i], p).toMatchObject({ tokens: want, finishReason: stopped ? 'stop' : 'length' });
    }
    const m = (await (await fetch(`${url}/metrics`)).json()) as { batches: { maxSize: number } };
    expect(m.batches.maxSize).toBeGreaterThanOrEqual(2); // the rows shared forward passes
  });
});

describe('nodegrad serve: a generation that reaches EOS', () => {
  test('stops with finishReason "stop", the EOS token not in the text', async () => {
    const server = new InferenceServer({ modelDir: eosDir, port: 0, threads: 1 });
    const { url } = await server.start();
    try {
      const body = await (await fetch(`${url}/v1/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'hello', maxNewTokens: 20, temperature: 0 }) })).json();
      expect(body).toMatchObject({ tokens: [0], text: '', finishReason: 'stop', usage: { completionTokens: 1 } });
    } finally {
      await server.close();
    }
  });
});
