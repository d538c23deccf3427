// Hugging Face checkpoint directories, the machinery every model family shares:
// config.json read with errors naming the file and field, and dispatched by its
// model_type to the family that reads it (registerHFFamily: gpt_hf.ts, bert_hf.ts,
// llama_hf.ts each own their config mapping and weight-name rules); model.safetensors
// (or the shards listed in model.safetensors.index.json) matched to a model's parameters
// and written back, sharded above a size as transformers' max_shard_size.
//
// A family's plan has one rule per parameter of ours: the HF tensor names it comes from
// and how ('copy'; 'transpose' for GPT-2's Conv1D weights stored [in, out]; 'cat' for
// BERT's separate query/key/value, stacked along the output dim into our fused QKV).
// Names are matched after normalising the checkpoint's own: the base-model prefix
// ('transformer.' / 'bert.' / 'model.') is dropped when present and old
// 'LayerNorm.gamma/beta' names become 'weight/bias'. Shapes are checked from the headers
// before any tensor is read; tensors are then read one at a time, so a checkpoint is never
// held in memory twice. Export applies the rules backwards and writes HF's names, leaving
// out tied tensors as transformers' save_pretrained does.
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { noGrad } from '../autograd.js';
import { zeros } from '../ops/creation.js';
import { cast } from '../ops/elementwise.js';
import { contiguous } from '../ops/shape.js';
import { fmt } from '../ops/check.js';
import type { Tensor } from '../tensor.js';
import type { Module } from '../nn/module.js';
import { writeDirAtomic, type FileContents } from '../io/atomic.js';
import { openSafetensors, safetensorsWriter, type SafetensorsReader } from '../io/safetensors.js';

export type SaveDType = 'float32' | 'float16' | 'bfloat16';
export interface SavePretrainedOptions {
  /** dtype of the written tensors (default float32; LlamaForCausalLM: its parameters' dtype). */
  dtype?: SaveDType;
  /**
   * Extra files for the directory, e.g. tokenizer files. Files already in the directory
   * other than config.json and weight files are kept.
   */
  extraFiles?: Record<string, FileContents>;
  /**
   * Largest weight file: above it the weights go to model-0000i-of-0000n.safetensors shards
   * listed in model.safetensors.index.json. Bytes, or '5GB' / '500MB' / '2GiB' (default '5GB',
   * transformers' max_shard_size).
   */
  maxShardSize?: number | string;
}
export type Raw = Record<string, unknown>;

/**
 * config.json's model_type -> the config its family reads. Each family adds its entries
 * (declaration merging: `declare module './hf.js' { interface HFConfigTypes { gpt2: GPT2Config } }`).
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface HFConfigTypes {}
export type HFConfig = {
  [K in keyof HFConfigTypes]: { modelType: K; config: HFConfigTypes[K]; architectures: string[]; raw: Raw }
}[keyof HFConfigTypes];

/** What a size check of a checkpoint may add: the operation named in errors, copies held at once (server workers). */
export interface PretrainedCheckOptions { op?: string; copies?: number }

/** One model family's part of the HF machinery. */
export interface HFFamily {
  /** config.json model_type values it reads. */
  modelTypes: readonly string[];
  /** When config.json has no model_type: prefixes of its `architectures` entries and the model_type each means. */
  architectures?: Readonly<Record<string, string>>;
  /** Our config from config.json's fields (checked with f's errors). */
  readConfig(f: Fields, modelType: string): unknown;
  /** Our classes (as inspectPretrained names them) whose directories this family checks. */
  classes?: readonly string[];
  /** Checks a directory as fromPretrained would before it allocates; reads no weights. */
  inspect?(dir: string, cls: string, check: PretrainedCheckOptions): Promise<void>;
}

const FAMILIES: HFFamily[] = [];

/** Adds a model family to the dispatch of loadHFConfig and inspectPretrained (each family's module does so when loaded). */
export function registerHFFamily(family: HFFamily): void {
  for (const t of family.modelTypes) {
    const other = FAMILIES.find((f) => f !== family && f.modelTypes.includes(t));
    if (other) throw new Error(`nodegrad: registerHFFamily: model_type ${JSON.stringify(t)} is already read by another family`);
  }
  if (!FAMILIES.includes(family)) FAMILIES.push(family);
}

/** The registered families, loading the built-in ones first (they register themselves on import). */
async function families(): Promise<HFFamily[]> {
  await import('./index.js');
  return FAMILIES;
}

// ---- config.json ------------------------------------------------------------------------

/** config.json's fields read with errors that name the file and the field. */
export class Fields {
  constructor(readonly raw: Raw, readonly file: string) {}
  err(key: string, what: string): Error {
    return new Error(`nodegrad: loadHFConfig: field "${key}" of ${this.file} ${what} (got ${JSON.stringify(this.raw[key])})`);
  }
  num(key: string, def: number): number {
    const v = this.raw[key] ?? def;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw this.err(key, 'must be a number');
    return v;
  }
  /** A size or id: a safe integer >= min (null is not a size). */
  int(key: string, def: number, min = 1): number {
    const v = this.raw[key] === undefined ? def : this.raw[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw this.err(key, 'must be an integer');
    if (v < min) throw this.err(key, `must be ${min === 1 ? 'a positive integer' : `an integer >= ${min}`}`);
    return v;
  }
  str(key: string, def: string): string {
    const v = this.raw[key] ?? def;
    if (typeof v !== 'string') throw this.err(key, 'must be a string');
    return v;
  }
  unsupported(key: string, ok: (v: unknown) => boolean, what: string): void {
    if (this.raw[key] !== undefined && this.raw[key] !== null && !ok(this.raw[key])) throw this.err(key, `is not supported: ${what}`);
  }
}

/** config.json of a directory as an object (errors name the file). */
export async function readConfigJSON(dir: string, op = 'loadHFConfig'): Promise<{ file: string; raw: Raw }> {
  const file = path.join(dir, 'config.json');
  return { file, raw: await readJSONObject(file, op) };
}

/** A JSON file holding one object (config.json, generation_config.json); errors name the file. */
export async function readJSONObject(file: string, op: string): Promise<Raw> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new Error(`nodegrad: ${op}: cannot read ${file}: ${(e as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`nodegrad: ${op}: ${file} is not a JSON object`);
  return raw as Raw;
}

/**
 * Reads config.json of a Hugging Face model directory into our camelCase config, by the
 * family that reads its model_type (GPT-2, BERT, Llama/Mistral/Qwen2/Qwen3).
 */
export async function loadHFConfig(dir: string): Promise<HFConfig> {
  const { file, raw } = await readConfigJSON(dir);
  const f = new Fields(raw, file);
  const architectures = Array.isArray(f.raw.architectures) ? f.raw.architectures.map(String) : [];
  const all = await families();
  let type = f.raw.model_type;
  if (type === undefined) {
    // older configs name only the class: GPT2LMHeadModel, BertForMaskedLM, ...
    const byPrefix = all.flatMap((fam) => Object.entries(fam.architectures ?? {})).sort((a, b) => b[0].length - a[0].length);
    type = byPrefix.find(([p]) => architectures.some((a) => a.startsWith(p)))?.[1];
  }
  const family = all.find((fam) => fam.modelTypes.includes(type as string));
  if (!family) {
    const supported = all.flatMap((fam) => fam.modelTypes).join(', ');
    throw new Error(`nodegrad: loadHFConfig: model_type ${JSON.stringify(type)} in ${file} is not supported (supported: ${supported})`);
  }
  return { modelType: type, config: family.readConfig(f, type as string), architectures, raw: f.raw } as HFConfig;
}

/**
 * Checks a Hugging Face directory as `cls`.fromPretrained would before it allocates:
 * config.json (types, ranges), the model's size against the memory available (times
 * `copies`) and the weights' headers against the config. Reads no weights.
 */
export async function inspectPretrained(dir: string, cls: string, check: PretrainedCheckOptions = {}): Promise<void> {
  const family = (await families()).find((f) => f.classes?.includes(cls) && f.inspect);
  if (!family?.inspect) throw new Error(`nodegrad: inspectPretrained: no model family loads ${JSON.stringify(cls)}`);
  await family.inspect(dir, cls, check);
}

// ---- weight-name rules ------------------------------------------------------------------

export interface Rule {
  ours: string;
  hf: string[];
  kind: 'copy' | 'transpose' | 'cat';
  /** HF name carries the base-model prefix ('transformer.', 'bert.', 'model.') in the exported model. */
  base: boolean;
  /** A head: when absent from a checkpoint it keeps its fresh initialisation (with a warning). */
  optional?: boolean;
  /** Older name accepted on import when hf[0] is absent. */
  alt?: string;
}
export interface Plan { what: string; basePrefix: string; exportPrefix: string; rules: Rule[]; ignore: RegExp[] }

export const rule = (ours: string, hf: string | string[], kind: Rule['kind'] = 'copy', extra: Partial<Rule> = {}): Rule =>
  ({ ours, hf: Array.isArray(hf) ? hf : [hf], kind, base: true, ...extra });
export const wb = (ours: string, hf: string, kind: 'copy' | 'transpose' = 'copy', extra: Partial<Rule> = {}): Rule[] =>
  [rule(`${ours}.weight`, `${hf}.weight`, kind, extra), rule(`${ours}.bias`, `${hf}.bias`, 'copy', extra)];

/** HF shape of each tensor a rule reads, from our parameter's shape. */
function hfShapes(r: Rule, shape: readonly number[]): number[][] {
  if (r.kind === 'transpose') return [[...shape].reverse()];
  if (r.kind === 'copy') return [[...shape]];
  const n = r.hf.length;
  return r.hf.map(() => [shape[0] / n, ...shape.slice(1)]);
}

// ---- import -----------------------------------------------------------------------------

interface Source { key: string; file: string; reader: SafetensorsReader }

/** Every tensor of model.safetensors or of the shards listed in model.safetensors.index.json. */
async function openWeights(dir: string, what: string): Promise<{ sources: Source[]; close: () => Promise<void> }> {
  const exists = (f: string) => access(path.join(dir, f)).then(() => true, () => false);
  const readers = new Map<string, SafetensorsReader>();
  const close = async () => { for (const r of readers.values()) await r.close(); };
  const open = async (f: string) => {
    let r = readers.get(f);
    if (!r) readers.set(f, r = await openSafetensors(path.join(dir, f)));
    return r;
  };
  try {
    if (await exists('model.safetensors')) {
      const r = await open('model.safetensors');
      return { sources: r.keys().map((key) => ({ key, file: 'model.safetensors', reader: r })), close };
    }
    const indexFile = path.join(dir, 'model.safetensors.index.json');
    if (await exists('model.safetensors.index.json')) {
      let map: unknown;
      try {
        map = (JSON.parse(await readFile(indexFile, 'utf8')) as { weight_map?: unknown }).weight_map;
      } catch (e) {
        throw new Error(`nodegrad: ${what}: cannot read ${indexFile}: ${(e as Error).message}`);
      }
      if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new Error(`nodegrad: ${what}: ${indexFile} has no "weight_map" object`);
      const sources: Source[] = [];
      for (const [key, file] of Object.entries(map as Record<string, unknown>)) {
        if (typeof file !== 'string' || file !== path.basename(file) || file === '..' || file === '.') {
          throw new Error(`nodegrad: ${what}: ${indexFile} maps "${key}" to ${JSON.stringify(file)}, not a file name in the same directory`);
        }
        const reader = await open(file);
        if (!reader.has(key)) throw new Error(`nodegrad: ${what}: ${indexFile} says "${key}" is in ${file}, but that shard has no such tensor`);
        sources.push({ key, file, reader });
      }
      return { sources, close };
    }
    const pt = (await exists('pytorch_model.bin')) ? ' (pytorch_model.bin is not read: save the model with safe_serialization=True)' : '';
    throw new Error(`nodegrad: ${what}: ${dir} has neither model.safetensors nor model.safetensors.index.json${pt}`);
  } catch (e) {
    await close();
    throw e;
  }
}

/** The checkpoint's tensors matched to the rules of a plan; the readers stay open until close(). */
export interface Matched {
  jobs: { r: Rule; srcs: Source[] }[];
  missingHeads: string[];
  unexpected: string[];
  close: () => Promise<void>;
}

/**
 * Matches a Hugging Face checkpoint's tensors to plan's rules, checking names and shapes
 * (from the safetensors headers) against the shapes the config implies, before any model
 * exists: a config that disagrees with the weights fails without allocating.
 */
export async function matchWeights(dir: string, plan: Plan, shapesOf: Map<string, number[]>): Promise<Matched> {
  const what = `${plan.what}.fromPretrained`;
  const { sources, close } = await openWeights(dir, what);
  const missingHeads: string[] = [];
  try {
    const byName = new Map<string, Source>();
    const prefixed = sources.some((s) => s.key.startsWith(plan.basePrefix));
    for (const s of sources) {
      const n = (s.key.startsWith(plan.basePrefix) ? s.key.slice(plan.basePrefix.length) : s.key)
        .replace(/LayerNorm\.gamma$/, 'LayerNorm.weight').replace(/LayerNorm\.beta$/, 'LayerNorm.bias');
      const dup = byName.get(n);
      if (dup) throw new Error(`nodegrad: ${what}: tensors "${dup.key}" and "${s.key}" in ${dir} both name "${n}"`);
      byName.set(n, s);
    }
    const shown = (r: Rule, n: string) => (r.base && prefixed ? plan.basePrefix + n : n);
    const jobs: Matched['jobs'] = [];
    const used = new Set<string>();
    for (const r of plan.rules) {
      const shape = shapesOf.get(r.ours);
      if (!shape) throw new Error(`nodegrad: ${what}: internal: no parameter ${r.ours} for the config`);
      const shapes = hfShapes(r, shape);
      const names = !r.hf.every((n) => byName.has(n)) && r.alt && byName.has(r.alt) ? [r.alt] : r.hf;
      const absent = names.findIndex((n) => !byName.has(n));
      if (absent >= 0) {
        if (r.optional) {
          missingHeads.push(...names.map((n) => (r.base ? plan.exportPrefix : '') + n));
          continue;
        }
        throw new Error(`nodegrad: ${what}: the checkpoint in ${dir} has no tensor "${shown(r, names[absent])}" (expected shape ${fmt(shapes[absent])})`);
      }
      const srcs = names.map((n, i) => {
        const s = byName.get(n)!;
        const got = s.reader.info(s.key).shape;
        if (fmt(got) !== fmt(shapes[i])) {
          throw new Error(`nodegrad: ${what}: tensor "${s.key}" in ${path.join(dir, s.file)} has shape ${fmt(got)} but the config needs ${fmt(shapes[i])}`);
        }
        used.add(n);
        return s;
      });
      jobs.push({ r, srcs });
    }
    const unexpected = [...byName.entries()].filter(([n]) => !used.has(n) && !plan.ignore.some((re) => re.test(n))).map(([, s]) => s.key);
    return { jobs, missingHeads, unexpected, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Copies matched tensors into model's parameters one at a time, then closes the readers. */
async function copyWeights(model: Module, m: Matched, plan: Plan, dir: string): Promise<void> {
  const what = `${plan.what}.fromPretrained`;
  try {
    const sd = model.stateDict();
    for (const { r, srcs } of m.jobs) {
      const param = sd[r.ours];
      const ts: Tensor[] = [];
      try {
        for (const s of srcs) ts.push(await s.reader.get(s.key));
        noGrad(() => {
          if (r.kind === 'copy') param.copy_(ts[0]);
          else if (r.kind === 'transpose') param.copy_(ts[0].transpose(0, 1));
          else ts.forEach((t, i) => param.narrow(0, i * t.shape[0], t.shape[0]).copy_(t));
        });
      } finally {
        for (const t of ts) t.dispose();
      }
    }
  } finally {
    await m.close();
  }
  if (m.missingHeads.length) {
    console.warn(`nodegrad: ${what}: newly initialised (not in the checkpoint at ${dir}): ${m.missingHeads.join(', ')}; train the model before relying on its outputs`);
  }
  if (m.unexpected.length) console.warn(`nodegrad: ${what}: tensors of the checkpoint at ${dir} that were not used: ${m.unexpected.join(', ')}`);
}

/** Builds a model once its checkpoint matched, copying the weights in; the readers are closed either way. */
export async function buildAndCopy<M extends Module>(build: () => M, m: Matched, plan: Plan, dir: string): Promise<M> {
  let model: M;
  try {
    model = build();
  } catch (e) {
    await m.close();
    throw e;
  }
  await copyWeights(model, m, plan, dir);
  return model;
}

// ---- export -----------------------------------------------------------------------------

/** Weight files of an earlier save, which a new save replaces rather than keeps. */
const WEIGHT_FILE = /^(model.*\.safetensors|model\.safetensors\.index\.json|pytorch_model.*\.bin|pytorch_model\.bin\.index\.json)$/;

export async function saveWeights(model: Module, dir: string, plan: Plan, config: Raw, opts: SavePretrainedOptions,
  defaultDtype: SaveDType = 'float32'): Promise<void> {
  const dtype = opts.dtype ?? defaultDtype;
  if (!['float32', 'float16', 'bfloat16'].includes(dtype)) {
    throw new Error(`nodegrad: ${plan.what}.savePretrained: dtype must be float32, float16 or bfloat16 (got ${JSON.stringify(dtype)})`);
  }
  const sd = model.stateDict();
  const out = new Map<string, Tensor>();
  const temps: Tensor[] = [];
  const own = (t: Tensor): Tensor => {
    const c = contiguous(t);
    if (c !== t) temps.push(c);
    const d = cast(c, dtype);
    if (d !== c) temps.push(d);
    return d;
  };
  try {
    noGrad(() => {
      for (const r of plan.rules) {
        const names = r.hf.map((n) => (r.base ? plan.exportPrefix : '') + n);
        let p = sd[r.ours];
        if (!p) {
          // a bias-free model exports zero biases, which compute the same
          p = zeros([sd[r.ours.replace(/bias$/, 'weight')].shape[0]]);
          temps.push(p);
        }
        if (r.kind === 'copy') out.set(names[0], own(p));
        else if (r.kind === 'transpose') out.set(names[0], own(p.transpose(0, 1)));
        else {
          const k = p.shape[0] / names.length;
          names.forEach((n, i) => out.set(n, own(p.narrow(0, i * k, k))));
        }
      }
    });
    // float32 is transformers' default; a half-precision export says what it holds
    if (dtype !== 'float32') config = { ...config, torch_dtype: dtype };
    // Only the files of this save change; the directory's other files (tokenizer files and
    // the like) stay, and weight files of an earlier save go in the same commit.
    await writeDirAtomic(dir, {
      ...opts.extraFiles,
      'config.json': `${JSON.stringify(config, null, 2)}\n`,
      ...weightFiles(out, parseShardSize(opts.maxShardSize ?? '5GB', plan.what)),
    }, { remove: (n) => WEIGHT_FILE.test(n) });
  } finally {
    for (const t of temps) t.dispose();
  }
}

/** Bytes from a max_shard_size: a number, or '5GB' (10^9), '2GiB' (2^30), '500MB', '64KB'. */
export function parseShardSize(size: number | string, what: string): number {
  if (typeof size === 'number') {
    if (Number.isSafeInteger(size) && size > 0) return size;
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$/i.exec(size);
    if (m) {
      const unit = m[2].toUpperCase();
      const mult: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };
      const n = Math.floor(Number(m[1]) * mult[unit]);
      if (n > 0) return n;
    }
  }
  throw new Error(`nodegrad: ${what}.savePretrained: maxShardSize must be a positive number of bytes or a size like '5GB' or '500MB' (got ${JSON.stringify(size)})`);
}

/**
 * model.safetensors, or (above maxBytes) shards filled in order, a new one started when the
 * next tensor would overflow the current (a tensor larger than maxBytes gets its own), and
 * model.safetensors.index.json mapping each tensor to its shard.
 */
function weightFiles(tensors: Map<string, Tensor>, maxBytes: number): Record<string, FileContents> {
  const bytesOf = (t: Tensor): number => t.numel * (t.dtype === 'float32' || t.dtype === 'int32' ? 4 : t.dtype === 'float64' ? 8 : t.dtype === 'bool' ? 1 : 2);
  let total = 0;
  const shards: Map<string, Tensor>[] = [new Map()];
  let size = 0;
  for (const [k, t] of tensors) {
    const b = bytesOf(t);
    total += b;
    if (size > 0 && size + b > maxBytes) {
      shards.push(new Map());
      size = 0;
    }
    shards[shards.length - 1].set(k, t);
    size += b;
  }
  if (shards.length === 1) return { 'model.safetensors': safetensorsWriter(tensors, { format: 'pt' }) };
  const n = shards.length, pad = (i: number): string => String(i).padStart(5, '0');
  const files: Record<string, FileContents> = {};
  const weightMap: Record<string, string> = {};
  shards.forEach((m, i) => {
    const name = `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
    files[name] = safetensorsWriter(m, { format: 'pt' });
    for (const k of m.keys()) weightMap[k] = name;
  });
  files['model.safetensors.index.json'] = `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`;
  return files;
}
