// Splits a JSON-like state (optimizer/scheduler state dicts) into plain JSON and the
// tensors inside it, so a checkpoint stores tensors in safetensors and the rest as JSON.
import { Tensor } from '../tensor.js';

export function splitTensors(value: unknown, prefix: string, tensors: Map<string, Tensor>): unknown {
  if (value instanceof Tensor) {
    const key = `${prefix}`;
    tensors.set(key, value);
    return { __tensor__: key };
  }
  if (Array.isArray(value)) return value.map((v, i) => splitTensors(v, `${prefix}.${i}`, tensors));
  if (value instanceof Map) {
    return { __map__: [...value.entries()].map(([k, v], i) => [k, splitTensors(v, `${prefix}.m${i}`, tensors)]) };
  }
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = splitTensors(v, `${prefix}.${k}`, tensors);
    return out;
  }
  return value;
}

export function joinTensors(value: unknown, tensors: Map<string, Tensor>): unknown {
  if (Array.isArray(value)) return value.map((v) => joinTensors(v, tensors));
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.__tensor__ === 'string') {
      const t = tensors.get(o.__tensor__);
      if (!t) throw new Error(`nodegrad: checkpoint: tensor '${o.__tensor__}' is missing from the saved state`);
      return t;
    }
    if (Array.isArray(o.__map__)) {
      return new Map((o.__map__ as [unknown, unknown][]).map(([k, v]) => [k, joinTensors(v, tensors)]));
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o)) out[k] = joinTensors(v, tensors);
    return out;
  }
  return value;
}
