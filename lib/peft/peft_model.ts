// PeftModel: a base model with LoRA adapters injected (PEFT's get_peft_model /
// PeftModel.from_pretrained). The base stays the same object: its targeted Linears are
// replaced by LoraLinears holding the same weight tensors under the same names, so the
// base's forward, generate, save and savePretrained keep working while it is adapted.
// Every base parameter is frozen (requiresGrad false: the autograd records no gradient for
// it and no dW matmul runs); the active adapter's A/B (and modulesToSave copies, and
// biases when bias is 'all' / 'lora_only') are the only trainable tensors.
//
// Saved adapters use PEFT's layout: adapter_config.json + adapter_model.safetensors with
// keys "base_model.model.<HF module path>.lora_A.weight" (no adapter name), modulesToSave
// as "base_model.model.<HF module path>.weight", LoRA-layer biases as
// "<path>.base_layer.bias".
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { noGrad } from '../autograd.js';
import type { DType } from '../dtype.js';
import { cast } from '../ops/elementwise.js';
import { fmt } from '../ops/check.js';
import { Tensor } from '../tensor.js';
import type { Device } from '../storage.js';
import { resolveCheckpointDir, writeDirAtomic } from '../io/atomic.js';
import { loadSafetensors, safetensorsWriter } from '../io/safetensors.js';
import { Linear } from '../nn/layers.js';
import { Module, isParameter, parameter } from '../nn/module.js';
import { BertForSequenceClassification } from '../models/bert.js';
import { GPT } from '../models/gpt.js';
import {
  loraConfigFromJSON, loraConfigToJSON, loraScaling, resolveLoraConfig, type LoraConfig, type ResolvedLoraConfig, type TaskType,
} from './config.js';
import { LoraLinear, type LoraPart } from './lora.js';
import { isHFNamedCausalLM, matchesTarget, modelLayout, type HFModule, type ModelLayout } from './targets.js';

export const ADAPTER_CONFIG_NAME = 'adapter_config.json';
export const ADAPTER_WEIGHTS_NAME = 'adapter_model.safetensors';
const PREFIX = 'base_model.model.';

interface SavedModule { hf: string; tensors: Record<string, Tensor> }
interface AdapterInfo {
  config: ResolvedLoraConfig;
  trainable: boolean;
  /** modulesToSave copies, by our module path. */
  saved: Map<string, SavedModule>;
  /** our module paths of the LoraLinears this adapter has parts in */
  layers: string[];
}

export interface LoadAdapterOptions {
  /** Train the loaded adapter (default false: inference mode, as PEFT's is_trainable=False). */
  isTrainable?: boolean;
}

const NAME = /^[A-Za-z0-9_-]+$/;

function getModule(root: Module, p: string): Module {
  let m: Module = root;
  for (const k of p.split('.')) {
    const c = (m as unknown as Record<string, unknown>)[k];
    if (!(c instanceof Module)) throw new Error(`nodegrad: peft: internal: no module at ${p}`);
    m = c;
  }
  return m;
}
function setModule(root: Module, p: string, m: Module): void {
  const i = p.lastIndexOf('.');
  const parent = i < 0 ? root : getModule(root, p.slice(0, i));
  (parent as unknown as Record<string, unknown>)[p.slice(i + 1)] = m;
}
/** A module's own parameter properties (weight, bias, ...). */
function ownParams(m: Module): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(m)) if (isParameter(v)) out[k] = v;
  return out;
}
const numberText = (n: number): string => n.toLocaleString('en-US');

export class PeftModel<M extends Module = Module> extends Module {
  readonly baseModel: M;
  readonly layout: ModelLayout;
  private readonly info = new Map<string, AdapterInfo>();
  private readonly layers = new Map<string, LoraLinear>();
  /** Base parameters and their requiresGrad before freezing (restored by mergeAndUnload / unload). */
  private readonly baseFlags = new Map<Tensor, boolean>();
  /** Original tensors of modulesToSave modules, by our module path. */
  private readonly originals = new Map<string, Record<string, Tensor>>();
  private active: string | null = null;
  private enabled = true;

  constructor(model: M) {
    super();
    this.baseModel = model;
    this.layout = modelLayout(model);
    for (const p of model.parameters()) {
      this.baseFlags.set(p, p.requiresGrad);
      p.requiresGrad = false;
    }
  }

  get activeAdapter(): string | null { return this.active; }
  get peftConfig(): Record<string, ResolvedLoraConfig> {
    return Object.fromEntries([...this.info].map(([k, v]) => [k, v.config]));
  }
  adapterNames(): string[] { return [...this.info.keys()]; }

  forward(...args: unknown[]): unknown {
    return (this.baseModel as unknown as { forward(...a: unknown[]): unknown }).forward(...args);
  }
  getBaseModel(): M { return this.baseModel; }

  private defaults(): { taskType: TaskType | null } {
    const m = this.baseModel as unknown;
    return { taskType: m instanceof GPT || isHFNamedCausalLM(this.baseModel) ? 'CAUSAL_LM' : m instanceof BertForSequenceClassification ? 'SEQ_CLS' : null };
  }

  /** Adds a new adapter (PEFT's add_adapter); the active adapter does not change unless it is the first. */
  addAdapter(name: string, config: LoraConfig = {}, opts: LoadAdapterOptions & { trainable?: boolean } = {}): this {
    if (typeof name !== 'string' || !NAME.test(name)) throw new Error(`nodegrad: addAdapter: adapter name must be letters, digits, _ or - (got ${JSON.stringify(name)})`);
    if (this.info.has(name)) throw new Error(`nodegrad: addAdapter: adapter '${name}' already exists (adapters: ${this.adapterNames().join(', ')})`);
    const c = resolveLoraConfig(config, this.layout.modelType, this.defaults());
    const targets = this.layout.modules.filter((m) => matchesTarget(c.targetModules ?? [], m.hf) && !(c.excludeModules && matchesTarget(c.excludeModules, m.hf)));
    if (targets.length === 0) {
      throw new Error(`nodegrad: getPeftModel: target modules ${JSON.stringify(c.targetModules)} not found in the base model ` +
        `(its modules: ${[...new Set(this.layout.modules.filter((m) => m.kind === 'linear').map((m) => m.hf.replace(/.*\./, '')))].join(', ')})`);
    }
    const notLinear = targets.find((m) => m.kind !== 'linear');
    if (notLinear) throw new Error(`nodegrad: getPeftModel: target module ${notLinear.hf} is ${notLinear.kind === 'embedding' ? 'an Embedding' : 'a LayerNorm'}; LoRA is supported on Linear layers only`);
    // PEFT sets fan_in_fan_out for GPT-2's Conv1D (and clears it for nn.Linear)
    c.fanInFanOut = targets.some((m) => m.conv1d);
    const saveNames = c.modulesToSave ?? [];
    const saveMods = this.layout.modules.filter((m) => saveNames.some((t) => m.hf === t || m.hf.endsWith(`.${t}`)));
    for (const m of saveMods) {
      if (m.rows) throw new Error(`nodegrad: getPeftModel: modulesToSave ${m.hf} is part of a fused layer (${m.ours}); save the whole layer instead`);
      if (targets.some((t) => t.ours === m.ours)) throw new Error(`nodegrad: getPeftModel: ${m.hf} is both a LoRA target and in modulesToSave`);
    }
    const byLayer = new Map<string, LoraPart[]>();
    for (const t of targets) {
      const base = getModule(this.baseModel, t.ours) as Linear | LoraLinear;
      const rows = t.rows ?? { start: 0, length: base.outFeatures };
      byLayer.set(t.ours, [...(byLayer.get(t.ours) ?? []), { hf: t.hf, start: rows.start, length: rows.length }]);
    }
    if (c.bias === 'lora_only') {
      for (const [ours, parts] of byLayer) {
        const l = getModule(this.baseModel, ours) as Linear;
        if (l.bias && parts.reduce((n, p) => n + p.length, 0) !== l.outFeatures) {
          throw new Error(`nodegrad: getPeftModel: bias 'lora_only' needs every part of the fused layer ${ours} targeted (targeted: ${parts.map((p) => p.hf).join(', ')}); use bias 'none' or 'all', or target the other parts too`);
        }
      }
    }
    for (const [ours, parts] of byLayer) {
      let l = this.layers.get(ours);
      if (!l) {
        l = new LoraLinear(getModule(this.baseModel, ours) as Linear);
        l.train(this.baseModel.training);
        setModule(this.baseModel, ours, l);
        this.layers.set(ours, l);
      }
      l.addAdapter(name, parts, { r: c.r, scaling: loraScaling(c), loraDropout: c.loraDropout, initLoraWeights: c.initLoraWeights });
    }
    const saved = new Map<string, SavedModule>();
    for (const m of saveMods) {
      const mod = getModule(this.baseModel, m.ours);
      if (!this.originals.has(m.ours)) this.originals.set(m.ours, ownParams(mod));
      const orig = this.originals.get(m.ours)!;
      const copies: Record<string, Tensor> = {};
      noGrad(() => { for (const [k, t] of Object.entries(orig)) copies[k] = parameter(t.clone()); });
      saved.set(m.ours, { hf: m.hf, tensors: copies });
    }
    const trainable = opts.trainable ?? opts.isTrainable ?? true;
    this.info.set(name, { config: { ...c, inferenceMode: !trainable }, trainable, saved, layers: [...byLayer.keys()] });
    if (this.active === null) this.setAdapter(name);
    else this.applyFlags();
    return this;
  }

  /** Makes `name` the active adapter (its parameters trainable unless loaded for inference); the others are frozen and unused. */
  setAdapter(name: string): this {
    if (!this.info.has(name)) throw new Error(`nodegrad: setAdapter: no adapter '${name}' (adapters: ${this.adapterNames().join(', ')})`);
    this.active = name;
    for (const l of this.layers.values()) l.activeAdapter = l.adapter(name) ? name : null;
    this.placeSaved();
    this.applyFlags();
    return this;
  }

  /** Puts the active adapter's modulesToSave tensors (or the originals when disabled / not saved) into the modules. */
  private placeSaved(): void {
    const a = this.enabled && this.active !== null ? this.info.get(this.active)! : null;
    for (const [ours, orig] of this.originals) {
      const mod = getModule(this.baseModel, ours) as unknown as Record<string, Tensor>;
      const t = a?.saved.get(ours)?.tensors ?? orig;
      for (const [k, v] of Object.entries(t)) mod[k] = v;
    }
  }

  private applyFlags(): void {
    for (const p of this.baseFlags.keys()) p.requiresGrad = false;
    for (const [name, a] of this.info) {
      const on = name === this.active && a.trainable;
      for (const l of this.layers.values()) for (const p of l.adapter(name)?.parameters() ?? []) p.requiresGrad = on;
      for (const s of a.saved.values()) for (const t of Object.values(s.tensors)) t.requiresGrad = on;
    }
    const a = this.active !== null ? this.info.get(this.active)! : null;
    if (a && a.trainable) for (const b of this.trainableBiases(this.active!)) b.requiresGrad = true;
  }

  /** Base biases that train with an adapter (bias 'all': every Linear/LayerNorm bias; 'lora_only': its LoRA layers'). */
  private trainableBiases(name: string): Tensor[] {
    const a = this.info.get(name)!;
    if (a.config.bias === 'none') return [];
    const paths = a.config.bias === 'all' ? [...new Set(this.layout.modules.filter((m) => m.kind !== 'embedding').map((m) => m.ours))] : a.layers;
    const out: Tensor[] = [];
    for (const p of paths) {
      if (a.saved.has(p)) continue;
      const b = (getModule(this.baseModel, p) as unknown as { bias?: Tensor | null }).bias;
      if (b) out.push(b);
    }
    return out;
  }

  /** Runs fn with every adapter off (the base model alone), as PEFT's `with model.disable_adapter():`. */
  disableAdapter<T>(fn: () => T): T {
    const was = this.enabled;
    this.disableAdapters();
    let async = false;
    try {
      const r = fn();
      if (r instanceof Promise) {
        async = true;
        return r.finally(() => { if (was) this.enableAdapters(); }) as T;
      }
      return r;
    } finally {
      if (!async && was) this.enableAdapters();
    }
  }
  disableAdapters(): this { return this.setEnabled(false); }
  enableAdapters(): this { return this.setEnabled(true); }
  private setEnabled(on: boolean): this {
    this.enabled = on;
    for (const l of this.layers.values()) l.adaptersEnabled = on;
    this.placeSaved();
    return this;
  }

  /** Trainable tensors only (what the optimizer should hold). */
  trainableParameters(): Tensor[] { return this.parameters().filter((p) => p.requiresGrad); }
  namedTrainableParameters(): [string, Tensor][] { return this.namedParameters().filter(([, p]) => p.requiresGrad); }

  /** [trainable, all] parameter counts as PEFT's get_nb_trainable_parameters (modulesToSave originals and copies both count). */
  getNbTrainableParameters(): [number, number] {
    const all = new Set<Tensor>(this.parameters());
    for (const o of this.originals.values()) for (const t of Object.values(o)) all.add(t);
    for (const a of this.info.values()) for (const s of a.saved.values()) for (const t of Object.values(s.tensors)) all.add(t);
    let n = 0, trainable = 0;
    for (const t of all) {
      n += t.numel;
      if (t.requiresGrad) trainable += t.numel;
    }
    return [trainable, n];
  }
  /** "trainable params: N || all params: M || trainable%: P", printed and returned. */
  printTrainableParameters(log: (s: string) => void = console.log): string {
    const [t, n] = this.getNbTrainableParameters();
    const line = `trainable params: ${numberText(t)} || all params: ${numberText(n)} || trainable%: ${(100 * t / n).toFixed(4)}`;
    log(line);
    return line;
  }

  /**
   * The adapter's tensors under PEFT's saved names (views of the live tensors: slices of
   * fused biases are views, so loading can copy into them).
   */
  adapterStateDict(name = this.requireActive('adapterStateDict')): Map<string, Tensor> {
    const a = this.info.get(name);
    if (!a) throw new Error(`nodegrad: adapterStateDict: no adapter '${name}'`);
    const out = new Map<string, Tensor>();
    const lora = new Set<string>();
    for (const ours of a.layers) {
      const ad = this.layers.get(ours)!.adapter(name)!;
      ad.parts.forEach((p, i) => {
        out.set(`${PREFIX}${p.hf}.lora_A.weight`, ad.pair(i).loraA);
        out.set(`${PREFIX}${p.hf}.lora_B.weight`, ad.pair(i).loraB);
        lora.add(p.hf);
      });
    }
    if (a.config.bias !== 'none') {
      for (const m of this.layout.modules) {
        if (m.kind === 'embedding' || a.saved.has(m.ours) || (a.config.bias === 'lora_only' && !lora.has(m.hf))) continue;
        const b = (getModule(this.baseModel, m.ours) as unknown as { bias?: Tensor | null }).bias;
        if (!b) continue;
        out.set(`${PREFIX}${m.hf}${lora.has(m.hf) ? '.base_layer' : ''}.bias`, m.rows ? b.narrow(0, m.rows.start, m.rows.length) : b);
      }
    }
    for (const s of a.saved.values()) for (const [k, t] of Object.entries(s.tensors)) out.set(`${PREFIX}${s.hf}.${k}`, t);
    return out;
  }

  private requireActive(op: string): string {
    if (this.active === null) throw new Error(`nodegrad: ${op}: the model has no adapter`);
    return this.active;
  }

  /** Writes one adapter (default: the active one) to dir as PEFT does: adapter_config.json + adapter_model.safetensors. */
  async saveAdapter(dir: string, name = this.requireActive('saveAdapter')): Promise<void> {
    const a = this.info.get(name);
    if (!a) throw new Error(`nodegrad: saveAdapter: no adapter '${name}' (adapters: ${this.adapterNames().join(', ')})`);
    const temps: Tensor[] = [];
    const sd = new Map<string, Tensor>();
    noGrad(() => {
      for (const [k, t] of this.adapterStateDict(name)) {
        let c = t.contiguous();
        if (c !== t) temps.push(c);
        if (c.device !== 'cpu') { c = c.to('cpu'); temps.push(c); }
        sd.set(k, c);
      }
    });
    try {
      await writeDirAtomic(dir, {
        [ADAPTER_CONFIG_NAME]: `${JSON.stringify(loraConfigToJSON(a.config), null, 2)}\n`,
        [ADAPTER_WEIGHTS_NAME]: safetensorsWriter(sd, { format: 'pt' }),
      });
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  /** PEFT's save_pretrained: the 'default' adapter in dir, every other adapter in dir/<name>. */
  async savePretrained(dir: string, opts: { selectedAdapters?: string[] } = {}): Promise<void> {
    for (const name of opts.selectedAdapters ?? this.adapterNames()) {
      await this.saveAdapter(name === 'default' ? dir : path.join(dir, name), name);
    }
  }

  /** Loads an adapter directory written by saveAdapter/savePretrained or by PEFT under `name` (PEFT's load_adapter). */
  async loadAdapter(dir: string, name: string, opts: LoadAdapterOptions = {}): Promise<this> {
    const d = await resolveCheckpointDir(dir, { missingOk: true });
    const file = path.join(d, ADAPTER_CONFIG_NAME);
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(file, 'utf8'));
    } catch (e) {
      throw new Error(`nodegrad: PeftModel.fromPretrained: cannot read ${file}: ${(e as Error).message}`);
    }
    const cfg = loraConfigFromJSON(raw, file);
    this.addAdapter(name, { ...cfg, initLoraWeights: true }, { trainable: opts.isTrainable ?? false });
    try {
      await this.loadAdapterWeights(name, path.join(d, ADAPTER_WEIGHTS_NAME));
    } catch (e) {
      this.deleteAdapter(name);
      throw e;
    }
    this.info.get(name)!.config.initLoraWeights = cfg.initLoraWeights ?? true;
    return this;
  }

  private async loadAdapterWeights(name: string, file: string): Promise<void> {
    const want = this.adapterStateDict(name);
    const { tensors } = await loadSafetensors(file);
    try {
      // an adapter trained on the bare base model (GPT2Model, BertModel) has no 'transformer.' / 'bert.' in its keys
      const basePrefix = this.layout.modelType === 'gpt2' ? 'transformer.' : this.baseModel instanceof BertForSequenceClassification ? 'bert.' : '';
      const got = new Map<string, Tensor>();
      for (const [k, t] of tensors) {
        const alt = basePrefix && k.startsWith(PREFIX) && !want.has(k) ? PREFIX + basePrefix + k.slice(PREFIX.length) : k;
        got.set(want.has(alt) ? alt : k, t);
      }
      const missing = [...want.keys()].filter((k) => !got.has(k));
      const unexpected = [...got.keys()].filter((k) => !want.has(k));
      if (missing.length || unexpected.length) {
        const list = (xs: string[]): string => xs.slice(0, 4).join(', ') + (xs.length > 4 ? `, ... (${xs.length} in all)` : '');
        throw new Error(`nodegrad: PeftModel.fromPretrained: ${file} does not match the adapter its config describes:` +
          `${missing.length ? ` missing ${list(missing)};` : ''}${unexpected.length ? ` unexpected ${list(unexpected)}` : ''}`);
      }
      for (const [k, t] of want) {
        const s = got.get(k)!;
        if (fmt(s.shape) !== fmt(t.shape)) throw new Error(`nodegrad: PeftModel.fromPretrained: tensor "${k}" in ${file} has shape ${fmt(s.shape)}, the model needs ${fmt(t.shape)}`);
      }
      noGrad(() => { for (const [k, t] of want) t.copy_(got.get(k)!); });
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  }

  /** Removes an adapter and frees its tensors. */
  deleteAdapter(name: string): this {
    const a = this.info.get(name);
    if (!a) throw new Error(`nodegrad: deleteAdapter: no adapter '${name}'`);
    for (const l of this.layers.values()) l.deleteAdapter(name);
    this.info.delete(name);
    if (this.active === name) {
      this.active = null;
      const next = this.adapterNames()[0];
      if (next !== undefined) this.setAdapter(next);
      else this.placeSaved();
    }
    for (const s of a.saved.values()) for (const t of Object.values(s.tensors)) t.dispose();
    return this;
  }

  /**
   * Merges the active adapter into the base weights (W += s·B·A on its rows), puts the
   * plain Linears back, keeps the active modulesToSave tensors, frees every adapter and
   * returns the base model with its parameters' requiresGrad as before getPeftModel.
   */
  mergeAndUnload(): M { return this.unloadAll(true); }
  /** The base model back without merging (the adapters are dropped). */
  unload(): M { return this.unloadAll(false); }

  private unloadAll(merge: boolean): M {
    const name = this.enabled ? this.active : null;
    noGrad(() => {
      for (const [ours, l] of this.layers) {
        if (merge && name !== null && l.adapter(name)) {
          const d = l.deltaWeight(name);
          const w = l.weight;
          const merged = w.dtype === 'float32' ? d.add(w) : cast(cast(w, 'float32').add(d), w.dtype);
          w.copy_(merged);
          merged.dispose();
          d.dispose();
        }
        const base = l.baseLayer;
        base.weight = l.weight;
        base.bias = l.bias;
        base.train(l.training);
        setModule(this.baseModel, ours, base);
      }
    });
    const keepSaved = merge && name !== null ? this.info.get(name)!.saved : new Map<string, SavedModule>();
    for (const [ours, orig] of this.originals) {
      const mod = getModule(this.baseModel, ours) as unknown as Record<string, Tensor>;
      const t = keepSaved.get(ours)?.tensors ?? orig;
      for (const [k, v] of Object.entries(t)) {
        mod[k] = v;
        v.requiresGrad = orig[k] ? this.baseFlags.get(orig[k]) ?? true : true;
      }
    }
    for (const [n, a] of this.info) {
      for (const l of this.layers.values()) l.deleteAdapter(n);
      for (const [ours, s] of a.saved) if (keepSaved.get(ours) !== s) for (const t of Object.values(s.tensors)) t.dispose();
    }
    for (const [p, f] of this.baseFlags) p.requiresGrad = f;
    this.info.clear();
    this.layers.clear();
    this.active = null;
    return this.baseModel;
  }

  /**
   * Casts the frozen base parameters to a half dtype (bfloat16/float16) and leaves the
   * trainable tensors (adapters, modulesToSave, trained biases) in float32: base memory
   * halves while the adapters train in full precision. Meant for CUDA, under autocast;
   * the CPU computes half matmuls through float32 (slower than a float32 base).
   */
  castBase(dtype: DType): this {
    const skip = new Set<Tensor>(this.adapterTensors());
    for (const p of this.trainableParameters()) skip.add(p);
    const converted = new Map<Tensor, Tensor>();
    for (const m of this.baseModel.modules()) {
      const rec = m as unknown as Record<string, Tensor>;
      for (const [k, v] of Object.entries(m)) {
        if (!isParameter(v) || skip.has(v) || !this.baseFlags.has(v) || v.dtype === dtype) continue;
        let nt = converted.get(v);
        if (!nt) {
          nt = parameter(noGrad(() => cast(v, dtype)));
          nt.requiresGrad = false;
          this.baseFlags.set(nt, this.baseFlags.get(v)!);
          this.baseFlags.delete(v);
          converted.set(v, nt);
        }
        rec[k] = nt;
      }
    }
    for (const o of this.originals.values()) for (const [k, v] of Object.entries(o)) { const nt = converted.get(v); if (nt) o[k] = nt; }
    for (const old of converted.keys()) old.dispose();
    return this;
  }

  /** Every adapter's tensors (A/B of all adapters, modulesToSave copies): what the base model alone does not have. */
  adapterTensors(): Tensor[] {
    const out: Tensor[] = [];
    for (const l of this.layers.values()) for (const n of l.adapters()) out.push(...l.adapter(n)!.parameters());
    for (const a of this.info.values()) for (const s of a.saved.values()) out.push(...Object.values(s.tensors));
    return out;
  }

  /** The record whose tensors sit in a modulesToSave module now (the active copy, or the originals). */
  private placedRecord(ours: string): Record<string, Tensor> {
    const a = this.enabled && this.active !== null ? this.info.get(this.active)!.saved.get(ours) : undefined;
    return a ? a.tensors : this.originals.get(ours)!;
  }

  override to(target: Device | DType | { device?: Device; dtype?: DType }): this {
    const spec = typeof target === 'object' ? target : target === 'cpu' || target.startsWith('cuda') ? { device: target as Device } : { dtype: target as DType };
    const flagsByName = new Map<string, boolean>();
    for (const [n, p] of this.baseModel.namedParameters()) { const f = this.baseFlags.get(p); if (f !== undefined) flagsByName.set(n, f); }
    const placed = [...this.originals.keys()].map((ours) => [ours, this.placedRecord(ours)] as const);
    super.to(target);
    // the tensors placed in modules were converted in the tree: read them back into their records
    for (const [ours, rec] of placed) Object.assign(rec, ownParams(getModule(this.baseModel, ours)));
    const inTree = new Set(this.parameters());
    const oldFlags = new Map(this.baseFlags);
    this.baseFlags.clear();
    for (const [n, p] of this.baseModel.namedParameters()) { const f = flagsByName.get(n); if (f !== undefined) this.baseFlags.set(p, f); }
    // tensors out of the tree (inactive modulesToSave copies, originals) follow
    const move = (t: Tensor): Tensor => {
      if (inTree.has(t)) return t;
      const nt = noGrad(() => {
        let x = t;
        if (spec.device) x = x.to(spec.device);
        if (spec.dtype) x = cast(x, spec.dtype);
        return x;
      });
      if (nt === t) return t;
      t.dispose();
      return parameter(nt);
    };
    for (const o of this.originals.values()) {
      for (const [k, v] of Object.entries(o)) {
        const nt = move(v);
        o[k] = nt;
        const f = oldFlags.get(v);
        if (f !== undefined && !this.baseFlags.has(nt)) this.baseFlags.set(nt, f);
      }
    }
    for (const a of this.info.values()) for (const s of a.saved.values()) for (const [k, v] of Object.entries(s.tensors)) s.tensors[k] = move(v);
    this.applyFlags();
    return this;
  }

  /** PEFT's PeftModel.from_pretrained(base, dir): the adapter in dir applied to base (frozen unless isTrainable). */
  static async fromPretrained<T extends Module>(base: T, dir: string, opts: LoadAdapterOptions & { adapterName?: string } = {}): Promise<PeftModel<T>> {
    const pm = new PeftModel(base);
    try {
      await pm.loadAdapter(dir, opts.adapterName ?? 'default', opts);
    } catch (e) {
      for (const [p, f] of pm.baseFlags) p.requiresGrad = f;
      throw e;
    }
    return pm;
  }
}

/** PEFT's get_peft_model: freezes model and injects a new LoRA adapter (trainable, active). */
export function getPeftModel<T extends Module>(model: T, config: LoraConfig = {}, adapterName = 'default'): PeftModel<T> {
  if (model instanceof PeftModel) throw new Error('nodegrad: getPeftModel: the model is already a PeftModel; use addAdapter');
  const pm = new PeftModel(model);
  try {
    pm.addAdapter(adapterName, config);
  } catch (e) {
    pm.unload();
    throw e;
  }
  return pm;
}

export type { HFModule };
