// Model configs are checked before anything is allocated: from code, from a config.json
// (ours or Hugging Face's), against the weights' safetensors header, and from CLI flags.
// A config too large for the machine fails at once with the bytes it needs, not after a
// minute of allocation with a crash.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import * as bertModule from '../../lib/models/bert.js';
import * as gptModule from '../../lib/models/gpt.js';
import { BertForMaskedLM, BertForSequenceClassification, BertModel, type BertConfig } from '../../lib/models/bert.js';
import { GPT, type GPTConfig } from '../../lib/models/gpt.js';
import { CharTokenizer } from '../../lib/data/tokenizers.js';
import { TokenDataset } from '../../lib/data/dataset.js';
import { Trainer } from '../../lib/train/trainer.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let root = '';
let n = 0;
const newDir = (): string => path.join(root, `m${n++}`);
beforeAll(async () => { root = await mkdtemp(path.join(tmpdir(), 'nodegrad-config-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

const tinyGPT: GPTConfig = { vocabSize: 13, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 8, dropout: 0, bias: true };
const tinyBert: BertConfig = {
  vocabSize: 17, hiddenSize: 8, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 12, maxPositionEmbeddings: 10,
};

async function editJSON(file: string, edit: (j: Record<string, unknown>) => unknown): Promise<void> {
  const j = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  await writeFile(file, JSON.stringify(edit(j)));
}

/** A directory written by GPT.save (with a tokenizer.json, as `nodegrad train` writes), config.json edited. */
async function gptDir(edit: (j: Record<string, unknown>) => unknown = (j) => j): Promise<string> {
  const d = newDir();
  const tok = CharTokenizer.fromText('abcdefghijkl\n');
  const model = new GPT({ ...tinyGPT, vocabSize: tok.vocabSize });
  await model.save(d, { 'tokenizer.json': JSON.stringify(tok.toJSON()) });
  await editJSON(path.join(d, 'config.json'), edit);
  return d;
}

/** A Hugging Face GPT-2 directory (savePretrained), config.json edited. */
async function gpt2Dir(edit: (j: Record<string, unknown>) => unknown): Promise<string> {
  const d = newDir();
  await new GPT(tinyGPT).savePretrained(d);
  await editJSON(path.join(d, 'config.json'), edit);
  return d;
}

/** A Hugging Face BERT classifier directory, config.json edited. */
async function bertDir(edit: (j: Record<string, unknown>) => unknown): Promise<string> {
  const d = newDir();
  await new BertForSequenceClassification(tinyBert).savePretrained(d);
  await editJSON(path.join(d, 'config.json'), edit);
  return d;
}

/** Runs f, expecting it to reject with re quickly and without a large allocation. */
async function rejectsQuickly(f: () => Promise<unknown>, re: RegExp): Promise<void> {
  const rss = process.memoryUsage().rss, tensors = ng.memory().numTensors;
  const t0 = performance.now();
  await expect(f()).rejects.toThrow(re);
  expect(performance.now() - t0, 'ms to fail').toBeLessThan(500);
  expect(process.memoryUsage().rss - rss, 'rss growth (bytes)').toBeLessThan(200e6);
  expect(ng.memory().numTensors, 'tensors allocated').toBe(tensors);
}

describe('parameter counts from the config', () => {
  test('gptParameterCount and gptParameterShapes equal the built GPT for several configs', () => {
    const configs: GPTConfig[] = [
      tinyGPT, { ...tinyGPT, bias: false }, { vocabSize: 50, blockSize: 16, nLayer: 3, nHead: 4, nEmbd: 16 },
      { vocabSize: 7, blockSize: 3, nLayer: 1, nHead: 1, nEmbd: 4, bias: false }, GPT.preset('nano'),
    ];
    for (const c of configs) {
      const m = new GPT(c);
      expect(gptModule.gptParameterCount(c)).toBe(m.numParams());
      const sd = m.stateDict();
      const shapes = gptModule.gptParameterShapes(c);
      expect(shapes.map(([k, s]) => [k, s])).toEqual(Object.entries(sd).map(([k, t]) => [k, [...t.shape]]));
    }
    // the closed form needs no model: GPT-2 small is 124,439,808 parameters (tied head)
    expect(gptModule.gptParameterCount(GPT.preset('gpt2'))).toBe(124_439_808);
  });

  test('bertParameterCount and bertParameterShapes equal every built BERT class', () => {
    const cases: [BertConfig, bertModule.BertShapeOptions, () => ng.nn.Module][] = [
      [tinyBert, {}, () => new BertModel(tinyBert)],
      [tinyBert, { pooler: false }, () => new BertModel(tinyBert, { addPoolingLayer: false })],
      [{ ...tinyBert, numLabels: 5 }, { arch: 'BertForSequenceClassification' }, () => new BertForSequenceClassification({ ...tinyBert, numLabels: 5 })],
      [tinyBert, { arch: 'BertForMaskedLM' }, () => new BertForMaskedLM(tinyBert)],
      [{ ...tinyBert, tieWordEmbeddings: false }, { arch: 'BertForMaskedLM' }, () => new BertForMaskedLM({ ...tinyBert, tieWordEmbeddings: false })],
      [{ ...tinyBert, typeVocabSize: 3, intermediateSize: 20 }, {}, () => new BertModel({ ...tinyBert, typeVocabSize: 3, intermediateSize: 20 })],
    ];
    for (const [c, o, build] of cases) {
      const m = build();
      expect(bertModule.bertParameterCount(c, o)).toBe(m.numParameters());
      const sorted = (xs: [string, number[]][]) => [...xs].sort((a, b) => a[0].localeCompare(b[0]));
      expect(sorted(bertModule.bertParameterShapes(c, o))).toEqual(sorted(Object.entries(m.stateDict()).map(([k, t]) => [k, [...t.shape]])));
    }
    // bert-base-uncased's BertModel: 109,482,240 parameters
    expect(bertModule.bertParameterCount({})).toBe(109_482_240);
  });
});

describe('configs too large for the machine', () => {
  test('new GPT / new BertModel with 1e9 layers fail at once, saying how much memory they need', () => {
    const t0 = performance.now();
    expect(() => new GPT({ ...GPT.preset('gpt2'), nLayer: 1e9 }))
      .toThrow(/^nodegrad: GPT: config \(nLayer 1000000000, .*\) needs \d+(\.\d)? PB for 7\.1e15 parameters \(float32\); this machine has \d+(\.\d)? [GT]B/);
    expect(() => new BertModel({ numHiddenLayers: 1e9 })).toThrow(/^nodegrad: BertModel: config \(numHiddenLayers 1000000000, .*\) needs .* PB for 7\.1e15 parameters/);
    expect(() => new BertForSequenceClassification({ numLabels: 1e9 })).toThrow(/numLabels 1000000000\) needs 3\.1 TB/);
    expect(() => new GPT({ ...tinyGPT, vocabSize: 2e9 })).toThrow(/needs .* for 1\.6e10 parameters/);
    expect(performance.now() - t0).toBeLessThan(200);
  });

  test('GPT.load of a config.json with nLayer 1e9 fails quickly, naming the file', async () => {
    const d = await gptDir((j) => ({ ...j, nLayer: 1e9 }));
    await rejectsQuickly(() => GPT.load(d), new RegExp(`^nodegrad: GPT\\.load: .*config\\.json \\(nLayer 1000000000, .*\\) needs .* for .* parameters \\(float32\\); this machine has`));
  });

  test('GPT.fromPretrained of a config.json with n_layer 1e9 fails quickly, in the file\'s own field names', async () => {
    const d = await gpt2Dir((j) => ({ ...j, n_layer: 1e9 }));
    await rejectsQuickly(() => GPT.fromPretrained(d), /^nodegrad: GPT\.fromPretrained: .*config\.json \(n_layer 1000000000, n_head 2, n_embd 8, vocab_size 13, n_positions 8\) needs .* TB for .* parameters/);
    const v = await gpt2Dir((j) => ({ ...j, vocab_size: 1e12 }));
    await rejectsQuickly(() => GPT.fromPretrained(v), /vocab_size 1000000000000.*needs .* TB/);
  });

  test('BERT fromPretrained with 1e9 layers or a 1e9-label option fails quickly', async () => {
    const d = await bertDir((j) => ({ ...j, num_hidden_layers: 1e9 }));
    await rejectsQuickly(() => BertForSequenceClassification.fromPretrained(d), /^nodegrad: BertForSequenceClassification\.fromPretrained: .*config\.json \(num_hidden_layers 1000000000, .*needs/);
    const ok = await bertDir((j) => j);
    await rejectsQuickly(() => BertForSequenceClassification.fromPretrained(ok, { numLabels: 1e9 }), /numLabels 1000000000\) needs .* for .* parameters/);
    await rejectsQuickly(() => BertModel.fromPretrained(ok, { numLabels: 1e9 }), /option numLabels 1000000000: the label names alone need/);
  });
});

describe('config.json contents', () => {
  test('null, wrong types, negative, non-integer, missing and indivisible fields name the file and the field', async () => {
    const cases: [(j: Record<string, unknown>) => unknown, RegExp][] = [
      [() => null, /^nodegrad: GPT\.load: .*config\.json must be a JSON object \(got null\)/],
      [() => [1, 2], /config\.json must be a JSON object/],
      [(j) => ({ ...j, nLayer: '2' }), /^nodegrad: GPT\.load: field "nLayer" of .*config\.json must be a positive integer \(got "2"\)/],
      [(j) => ({ ...j, nEmbd: -8 }), /field "nEmbd" of .*config\.json must be a positive integer \(got -8\)/],
      [(j) => ({ ...j, blockSize: 2.5 }), /field "blockSize" of .*config\.json must be a positive integer \(got 2\.5\)/],
      [(j) => ({ ...j, vocabSize: null }), /field "vocabSize" of .*config\.json is missing \(expected a positive integer\)/],
      [({ nHead: _, ...j }) => j, /field "nHead" of .*config\.json is missing/],
      [(j) => ({ ...j, nHead: 3 }), /nEmbd 8 must be divisible by nHead 3 \(in .*config\.json\)/],
      [(j) => ({ ...j, dropout: '0.1' }), /field "dropout" of .*config\.json must be a number in \[0, 1\) \(got "0\.1"\)/],
      [(j) => ({ ...j, bias: 'yes' }), /field "bias" of .*config\.json must be true or false/],
    ];
    for (const [edit, re] of cases) {
      const d = await gptDir(edit);
      await rejectsQuickly(() => GPT.load(d), re);
    }
  });

  test('Hugging Face config.json: the same, in HF field names', async () => {
    const gpt: [(j: Record<string, unknown>) => unknown, RegExp][] = [
      [() => null, /^nodegrad: loadHFConfig: .*config\.json is not a JSON object/],
      [(j) => ({ ...j, n_layer: -1 }), /field "n_layer" of .*config\.json must be a positive integer \(got -1\)/],
      [(j) => ({ ...j, n_head: '2' }), /field "n_head" of .*config\.json must be an integer \(got "2"\)/],
      [(j) => ({ ...j, n_embd: 7.5 }), /field "n_embd" of .*config\.json must be an integer \(got 7\.5\)/],
      [(j) => ({ ...j, n_positions: null }), /field "n_positions" of .*config\.json must be an integer \(got null\)/],
      [(j) => ({ ...j, n_head: 3 }), /n_embd 8 must be divisible by n_head 3 \(in .*config\.json\)/],
    ];
    for (const [edit, re] of gpt) {
      const d = await gpt2Dir(edit);
      await rejectsQuickly(() => GPT.fromPretrained(d), re);
    }
    const bert: [(j: Record<string, unknown>) => unknown, RegExp][] = [
      [(j) => ({ ...j, hidden_size: -8 }), /field "hidden_size" of .*config\.json must be a positive integer \(got -8\)/],
      [(j) => ({ ...j, num_labels: 0, id2label: undefined, label2id: undefined }), /field "num_labels" of .*config\.json must be a positive integer \(got 0\)/],
      [(j) => ({ ...j, intermediate_size: 'big' }), /field "intermediate_size" of .*config\.json must be an integer/],
    ];
    for (const [edit, re] of bert) {
      const d = await bertDir(edit);
      await rejectsQuickly(() => BertForSequenceClassification.fromPretrained(d), re);
    }
  });
});

describe('config against the weights header', () => {
  test('GPT.load: a config that disagrees with model.safetensors fails before the model is built', async () => {
    const [more, fewer, wider] = [await gptDir((j) => ({ ...j, nLayer: 3 })), await gptDir((j) => ({ ...j, nLayer: 1 })), await gptDir((j) => ({ ...j, nEmbd: 16 }))];
    await rejectsQuickly(() => GPT.load(more),
      /^nodegrad: GPT\.load: .*model\.safetensors has no tensor "h\.2\.ln1\.weight" \(expected shape \[8\] for the config in .*config\.json\)/);
    await rejectsQuickly(() => GPT.load(fewer), /model\.safetensors has tensors the config in .*config\.json has no place for: h\.1\./);
    await rejectsQuickly(() => GPT.load(wider),
      /tensor "wte\.weight" in .*model\.safetensors has shape \[\d+,8\] but the config in .*config\.json needs \[\d+,16\]/);
  });

  test('fromPretrained: a Hugging Face config that disagrees with the header fails before the model is built', async () => {
    const [wider, deeper, bert] = [await gpt2Dir((j) => ({ ...j, n_embd: 16 })), await gpt2Dir((j) => ({ ...j, n_layer: 3 })), await bertDir((j) => ({ ...j, intermediate_size: 24 }))];
    await rejectsQuickly(() => GPT.fromPretrained(wider),
      /^nodegrad: GPT\.fromPretrained: tensor "transformer\.wte\.weight" in .*model\.safetensors has shape \[13,8\] but the config needs \[13,16\]/);
    await rejectsQuickly(() => GPT.fromPretrained(deeper), /has no tensor "transformer\.h\.2\.ln_1\.weight"/);
    await rejectsQuickly(() => BertForSequenceClassification.fromPretrained(bert),
      /tensor "bert\.encoder\.layer\.0\.intermediate\.dense\.weight" in .*model\.safetensors has shape \[12,8\] but the config needs \[24,8\]/);
  });
});

describe('training steps too large for the machine', () => {
  test('the Trainer refuses a batch whose activations cannot fit before the first step', () => {
    const model = new GPT(tinyGPT);
    const opt = new ng.optim.AdamW(model.parameters(), { lr: 1e-3 });
    const data = new TokenDataset(Int32Array.from({ length: 100 }, (_, i) => i % 13));
    const t0 = performance.now();
    expect(() => new Trainer({ model, optimizer: opt, train: data, batchSize: 1e9, blockSize: 8, maxSteps: 1, progress: 'none' }))
      .toThrow(/^nodegrad: Trainer: a training step of batchSize 1000000000 x blockSize 8 needs at least .* TB more than the model \(.* of activations/);
    expect(() => new Trainer({ model, optimizer: opt, train: data, batchSize: 4, blockSize: 8, maxSteps: 1, progress: 'none' })).not.toThrow();
    expect(performance.now() - t0).toBeLessThan(200);
    expect(gptModule.gptActivationBytes(tinyGPT, 4, 8)).toBeGreaterThan(0);
    expect(model.activationBytes(4, 8)).toBe(gptModule.gptActivationBytes(tinyGPT, 4, 8));
  });
});

// ---- the command line ---------------------------------------------------------------------

const RUN_CLI = `import('./lib/cli.ts').then((m) => m.main(process.argv.slice(1))).then((c) => { process.exitCode = c; }, (e) => { console.error(e.message); process.exitCode = 1; })`;

/** Runs `nodegrad <args>` from the sources in a child process. */
function cli(args: string[], timeout = 20_000) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--import', './scripts/ts-loader.mjs', '--input-type=module', '-e', RUN_CLI, '--', ...args],
    { cwd: repo, env: process.env, encoding: 'utf8', timeout });
  return { ...r, ms: performance.now() - t0 };
}

function expectCleanFailure(r: ReturnType<typeof cli>, re: RegExp): void {
  expect(r.signal, `killed by a signal; stderr: ${r.stderr}`).toBeNull();
  expect(r.status, r.stderr).toBe(1);
  expect(r.stderr).toMatch(re);
  expect(r.stderr).not.toMatch(/RangeError|at .*\.ts:\d+/);
  expect(r.ms).toBeLessThan(10_000);
}

describe('nodegrad CLI', () => {
  test('train --n-layer 1000000000 exits at once with the memory it needs, naming the flag', () => {
    const r = cli(['train', '--n-layer', '1000000000', '--out', newDir()]);
    expectCleanFailure(r, /^nodegrad: train: the model \(--n-layer 1000000000, --n-head 4, --n-embd 64, vocab \d+, --block-size 32\) needs .* TB for .* parameters \(float32\); this machine has/);
  }, 30_000);

  test('train --batch 1000000000 exits at once with the activation memory it needs, naming the flag', () => {
    const r = cli(['train', '--batch', '1000000000', '--out', newDir()]);
    expectCleanFailure(r, /^nodegrad: train: .*: a training step of --batch 1000000000 x --block-size 32 needs .* TB \(.* of activations/);
    expectCleanFailure(cli(['train', '--n-head', '0', '--out', newDir()]), /--n-head must be an integer >= 1 \(got '0'\)/);
    expectCleanFailure(cli(['train', '--n-head', '3', '--out', newDir()]), /^nodegrad: train: --n-embd 64 must be divisible by --n-head 3/);
  }, 30_000);

  test('generate and serve with a model directory whose config is too large or broken exit cleanly', async () => {
    const huge = await gptDir((j) => ({ ...j, nLayer: 1e9 }));
    expectCleanFailure(cli(['generate', '--model', huge, '--max-new-tokens', '2']), /^nodegrad: GPT\.load: .*config\.json \(nLayer 1000000000, .*\) needs/);
    expectCleanFailure(cli(['serve', '--model', huge, '--port', '0']), /^nodegrad: serve: .*config\.json \(nLayer 1000000000, .*\) needs/);
    const broken = await gptDir((j) => ({ ...j, nHead: 'two' }));
    expectCleanFailure(cli(['generate', '--model', broken]), /field "nHead" of .*config\.json must be a positive integer \(got "two"\)/);
    const hf = await gpt2Dir((j) => ({ ...j, n_layer: 1e9 }));
    await writeFile(path.join(hf, 'vocab.json'), '{}');
    expectCleanFailure(cli(['serve', '--model', hf, '--port', '0']), /^nodegrad: serve: .*config\.json \(n_layer 1000000000, .*\) needs/);
    const nul = await gptDir(() => null);
    expectCleanFailure(cli(['serve', '--model', nul, '--port', '0']), /config\.json is not a JSON object \(got null\)/);
  }, 60_000);
});
