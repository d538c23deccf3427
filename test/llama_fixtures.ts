// Random-weight Hugging Face checkpoints of the Llama family (written here in HF's layout
// and names) and a slow reference forward over those HF tensors: float64, per head and
// per position in plain loops, rotary written out as its formula. Shared by the Llama
// tests (llama.test.ts, llama_cli.test.ts).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as ng from '../lib/index.js';
import type { Tensor } from '../lib/index.js';
import { lcg } from './helpers.js';

export type Raw = Record<string, unknown>;
/** HF tensor name -> shape and float64 values (exactly what the checkpoint stores). */
export type Weights = Map<string, { shape: number[]; data: Float64Array }>;

/** HF parameter names and shapes of a *ForCausalLM with this config.json (biases and norms by model type). */
export function hfShapes(cfg: Raw): [string, number[]][] {
  const H = cfg.hidden_size as number, heads = cfg.num_attention_heads as number;
  const kv = (cfg.num_key_value_heads as number | undefined) ?? heads, D = (cfg.head_dim as number | undefined) ?? H / heads;
  const I = cfg.intermediate_size as number, V = cfg.vocab_size as number, type = cfg.model_type as string;
  const qkvBias = type === 'qwen2' || ((type === 'llama' || type === 'qwen3') && cfg.attention_bias === true);
  const oBias = (type === 'llama' || type === 'qwen3') && cfg.attention_bias === true;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [V, H]]];
  for (let l = 0; l < (cfg.num_hidden_layers as number); l++) {
    const p = `model.layers.${l}`;
    out.push([`${p}.self_attn.q_proj.weight`, [heads * D, H]], [`${p}.self_attn.k_proj.weight`, [kv * D, H]], [`${p}.self_attn.v_proj.weight`, [kv * D, H]]);
    if (qkvBias) out.push([`${p}.self_attn.q_proj.bias`, [heads * D]], [`${p}.self_attn.k_proj.bias`, [kv * D]], [`${p}.self_attn.v_proj.bias`, [kv * D]]);
    out.push([`${p}.self_attn.o_proj.weight`, [H, heads * D]]);
    if (oBias) out.push([`${p}.self_attn.o_proj.bias`, [H]]);
    if (type === 'qwen3') out.push([`${p}.self_attn.q_norm.weight`, [D]], [`${p}.self_attn.k_norm.weight`, [D]]);
    out.push([`${p}.mlp.gate_proj.weight`, [I, H]], [`${p}.mlp.up_proj.weight`, [I, H]], [`${p}.mlp.down_proj.weight`, [H, I]]);
    if (type === 'llama' && cfg.mlp_bias === true) out.push([`${p}.mlp.gate_proj.bias`, [I]], [`${p}.mlp.up_proj.bias`, [I]], [`${p}.mlp.down_proj.bias`, [H]]);
    out.push([`${p}.input_layernorm.weight`, [H]], [`${p}.post_attention_layernorm.weight`, [H]]);
  }
  out.push(['model.norm.weight', [H]]);
  if (cfg.tie_word_embeddings !== true) out.push(['lm_head.weight', [V, H]]);
  return out;
}

/** Random HF tensors: norms near 1, the rest N-ish(0, 0.35), rounded to float32 (or bfloat16). */
export function randomWeights(shapes: [string, number[]][], seed: number, dtype: 'float32' | 'bfloat16' = 'float32'): Weights {
  const r = lcg(seed);
  const w: Weights = new Map();
  for (const [k, s] of shapes) {
    const n = s.reduce((a, b) => a * b, 1);
    const norm = /norm\.weight$/.test(k);
    const f = Float32Array.from({ length: n }, () => (norm ? 1 + 0.2 * r() : 0.6 * r()));
    let data = Float64Array.from(f);
    if (dtype === 'bfloat16') {
      const t = ng.tensor(f, { shape: s });
      const b = t.to('bfloat16'), back = b.to('float32');
      data = Float64Array.from(back.dataSync() as Float32Array);
      for (const x of [t, b, back]) x.dispose();
    }
    w.set(k, { shape: s, data });
  }
  return w;
}

/** Writes config.json (+ generation_config.json) and the weights: one file, or shards with an index. */
export async function writeCheckpoint(dir: string, cfg: Raw, w: Weights, opts: { dtype?: 'float32' | 'bfloat16'; shards?: number; generation?: Raw } = {}): Promise<void> {
  const tensors = new Map<string, Tensor>();
  for (const [k, { shape, data }] of w) {
    const t = ng.tensor(Float32Array.from(data), { shape });
    tensors.set(k, opts.dtype === 'bfloat16' ? t.to('bfloat16') : t);
  }
  const files: Record<string, Buffer | string> = { 'config.json': JSON.stringify(cfg, null, 2) };
  if (opts.generation) files['generation_config.json'] = JSON.stringify(opts.generation);
  const n = opts.shards ?? 1;
  if (n > 1) {
    const keys = [...tensors.keys()], per = Math.ceil(keys.length / n);
    const weightMap: Record<string, string> = {};
    for (let i = 0; i < n; i++) {
      const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
      const ks = keys.slice(i * per, (i + 1) * per);
      files[name] = ng.io.serializeSafetensors(new Map(ks.map((k) => [k, tensors.get(k)!])), { format: 'pt' });
      for (const k of ks) weightMap[k] = name;
    }
    files['model.safetensors.index.json'] = JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap });
  } else files['model.safetensors'] = ng.io.serializeSafetensors(tensors, { format: 'pt' });
  await ng.io.writeDirAtomic(dir, files);
  for (const t of tensors.values()) t.dispose();
}

/** Every tensor of a saved directory (single file or shards) with its dtype and raw bytes. */
export async function readTensorsRaw(dir: string): Promise<Map<string, { dtype: string; shape: number[]; bytes: Buffer }>> {
  let files = ['model.safetensors'];
  try {
    const idx = JSON.parse(await readFile(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    files = [...new Set(Object.values(idx.weight_map))];
  } catch { /* one file */ }
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>();
  for (const f of files) {
    const buf = await readFile(path.join(dir, f));
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    for (const [k, e] of Object.entries(header)) {
      if (k === '__metadata__') continue;
      out.set(k, { dtype: e.dtype, shape: e.shape, bytes: buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]) });
    }
  }
  return out;
}

// ---- reference forward ---------------------------------------------------------------------

export interface RefOptions {
  /** Inverse frequencies for a forward over `seqLen` positions (the test's own formula). */
  invFreq: (seqLen: number) => Float64Array;
  /** Per layer: the sliding window (keys a query sees, itself included) or null. */
  windows: (number | null)[];
}

const rms = (x: Float64Array, w: Float64Array, eps: number): Float64Array => {
  let s = 0;
  for (const v of x) s += v * v;
  const r = 1 / Math.sqrt(s / x.length + eps);
  return x.map((v, i) => v * r * w[i]);
};

/** y = W x + b for W [out, in] stored row-major. */
function lin(w: Weights, name: string, x: Float64Array): Float64Array {
  const W = w.get(`${name}.weight`)!, b = w.get(`${name}.bias`);
  const [o, i] = W.shape;
  const y = new Float64Array(o);
  for (let r = 0; r < o; r++) {
    let s = b ? b.data[r] : 0;
    for (let c = 0; c < i; c++) s += W.data[r * i + c] * x[c];
    y[r] = s;
  }
  return y;
}

/** Rotates one head vector at position p: out_i = x_i cos - x_{i+D/2} sin, out_{i+D/2} = x_{i+D/2} cos + x_i sin. */
function rotate(x: Float64Array, p: number, inv: Float64Array): Float64Array {
  const half = x.length / 2, out = new Float64Array(x.length);
  for (let i = 0; i < half; i++) {
    const a = p * inv[i], c = Math.cos(a), s = Math.sin(a);
    out[i] = x[i] * c - x[i + half] * s;
    out[i + half] = x[i + half] * c + x[i] * s;
  }
  return out;
}

/** logits [T][V] of one sequence, every step written out. */
export function referenceLogits(cfg: Raw, w: Weights, ids: number[], ref: RefOptions): Float64Array[] {
  const H = cfg.hidden_size as number, heads = cfg.num_attention_heads as number;
  const kvh = (cfg.num_key_value_heads as number | undefined) ?? heads, D = (cfg.head_dim as number | undefined) ?? H / heads;
  const eps = (cfg.rms_norm_eps as number | undefined) ?? 1e-6, T = ids.length, L = cfg.num_hidden_layers as number;
  const inv = ref.invFreq(T);
  const emb = w.get('model.embed_tokens.weight')!;
  let x: Float64Array[] = ids.map((id) => emb.data.slice(id * H, (id + 1) * H));
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    const qs: Float64Array[][] = [], ks: Float64Array[][] = [], vs: Float64Array[][] = [];
    for (let t = 0; t < T; t++) {
      const xn = rms(x[t], w.get(`${p}.input_layernorm.weight`)!.data, eps);
      const q = lin(w, `${p}.self_attn.q_proj`, xn), k = lin(w, `${p}.self_attn.k_proj`, xn), v = lin(w, `${p}.self_attn.v_proj`, xn);
      const qn = w.get(`${p}.self_attn.q_norm.weight`), kn = w.get(`${p}.self_attn.k_norm.weight`);
      qs.push(Array.from({ length: heads }, (_, h) => {
        const head = q.slice(h * D, (h + 1) * D);
        return rotate(qn ? rms(head, qn.data, eps) : head, t, inv);
      }));
      ks.push(Array.from({ length: kvh }, (_, g) => {
        const head = k.slice(g * D, (g + 1) * D);
        return rotate(kn ? rms(head, kn.data, eps) : head, t, inv);
      }));
      vs.push(Array.from({ length: kvh }, (_, g) => v.slice(g * D, (g + 1) * D)));
    }
    const W = ref.windows[l];
    const next: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const merged = new Float64Array(heads * D);
      for (let h = 0; h < heads; h++) {
        const g = Math.floor(h / (heads / kvh));
        const keys: number[] = [];
        for (let j = 0; j <= t; j++) if (W === null || j > t - W) keys.push(j);
        const scores = keys.map((j) => {
          let s = 0;
          for (let d = 0; d < D; d++) s += qs[t][h][d] * ks[j][g][d];
          return s / Math.sqrt(D);
        });
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        keys.forEach((j, n) => { for (let d = 0; d < D; d++) merged[h * D + d] += (e[n] / z) * vs[j][g][d]; });
      }
      const o = lin(w, `${p}.self_attn.o_proj`, merged);
      const h1 = x[t].map((v, i) => v + o[i]);
      const hn = rms(h1, w.get(`${p}.post_attention_layernorm.weight`)!.data, eps);
      const gate = lin(w, `${p}.mlp.gate_proj`, hn), up = lin(w, `${p}.mlp.up_proj`, hn);
      const act = gate.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[i]);
      const down = lin(w, `${p}.mlp.down_proj`, act);
      next.push(h1.map((v, i) => v + down[i]));
    }
    x = next;
  }
  const head = w.get('lm_head.weight') ? 'lm_head' : null;
  return x.map((xt) => {
    const f = rms(xt, w.get('model.norm.weight')!.data, eps);
    if (head) return lin(w, head, f);
    const V = emb.shape[0], out = new Float64Array(V);
    for (let r = 0; r < V; r++) {
      let s = 0;
      for (let c = 0; c < H; c++) s += emb.data[r * H + c] * f[c];
      out[r] = s;
    }
    return out;
  });
}

/** HF's causal-LM loss: position t scored against ids[t + 1], mean over the scored positions. */
export function referenceLoss(logits: Float64Array[][], ids: number[][]): number {
  let total = 0, n = 0;
  logits.forEach((seq, b) => {
    for (let t = 0; t + 1 < seq.length; t++) {
      const l = seq[t], m = Math.max(...l);
      const lse = m + Math.log(l.reduce((a, v) => a + Math.exp(v - m), 0));
      total += lse - l[ids[b][t + 1]];
      n++;
    }
  });
  return total / n;
}

/** The test's own rotary inverse frequencies: 1 / theta^(2i/d). */
export function defaultInv(theta: number, d: number): Float64Array {
  return Float64Array.from({ length: d / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / d));
}

// ---- a small byte-level BPE tokenizer with a ChatML template ---------------------------------

/** GPT-2's byte -> unicode map. */
function byteChars(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  const out = new Array<string>(256);
  bs.forEach((b, i) => { out[b] = String.fromCodePoint(cs[i]); });
  return out;
}

export const CHAT_SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];

/**
 * tokenizer.json (byte-level BPE: ids 0..2 the special tokens, then the 256 bytes, then a
 * few merges) and tokenizer_config.json with a ChatML chat template, Qwen2-style.
 */
export function chatTokenizerFiles(): Record<string, string> {
  const vocab: Record<string, number> = {};
  CHAT_SPECIALS.forEach((t, i) => { vocab[t] = i; });
  const chars = byteChars();
  chars.forEach((c, i) => { vocab[c] = 3 + i; });
  const merges = [['h', 'e'], ['l', 'l'], ['he', 'll'], ['hell', 'o']];
  let next = 3 + 256;
  for (const [a, b] of merges) vocab[a + b] = next++;
  const tokenizer = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: CHAT_SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`) },
  };
  const template = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const config = { eos_token: '<|im_end|>', pad_token: '<|endoftext|>', bos_token: null, chat_template: template, model_max_length: 64, tokenizer_class: 'Qwen2Tokenizer' };
  return { 'tokenizer.json': JSON.stringify(tokenizer), 'tokenizer_config.json': JSON.stringify(config) };
}

/** Vocabulary size of chatTokenizerFiles (3 specials + 256 bytes + 4 merges). */
export const CHAT_VOCAB = 3 + 256 + 4;
