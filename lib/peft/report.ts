// What a fine-tune costs: parameters, trainable parameters, optimizer-state bytes and peak
// memory, for a full fine-tune and for LoRA of the same model, so the two can be compared
// from the numbers a run prints at its start and in its summary.
import { itemSize } from '../dtype.js';
import { memory } from '../memory.js';
import { deviceStats } from '../storage.js';
import { Tensor } from '../tensor.js';
import type { Module } from '../nn/module.js';
import { formatBytes } from '../models/sizes.js';
import { PeftModel } from './peft_model.js';

export interface Footprint {
  params: number;
  trainable: number;
  /** 100 · trainable / params */
  trainablePct: number;
  /** AdamW's two float32 moments per trainable parameter. */
  optimizerStateBytes: number;
  /** What a full fine-tune of the same model would train and hold. */
  full: { trainable: number; optimizerStateBytes: number };
}

const ADAMW_BYTES_PER_PARAMETER = 8;

/** Parameter counts (PEFT's way for a PeftModel) and the AdamW state they imply, LoRA beside full fine-tune. */
export function trainingFootprint(model: Module): Footprint {
  let params: number, trainable: number;
  if (model instanceof PeftModel) [trainable, params] = model.getNbTrainableParameters();
  else {
    params = model.numParameters();
    trainable = model.numParameters(true);
  }
  const base = model instanceof PeftModel ? params - model.adapterTensors().reduce((n, t) => n + t.numel, 0) : params;
  return {
    params, trainable, trainablePct: params ? (100 * trainable) / params : 0,
    optimizerStateBytes: trainable * ADAMW_BYTES_PER_PARAMETER,
    full: { trainable: base, optimizerStateBytes: base * ADAMW_BYTES_PER_PARAMETER },
  };
}

/** Bytes of the tensors an optimizer holds as state (moments and the like), measured. */
export function optimizerStateBytes(opt: { stateDict(): unknown }): number {
  const sd = opt.stateDict() as { state?: Record<string, Record<string, unknown>> };
  let n = 0;
  for (const entry of Object.values(sd.state ?? {})) {
    for (const v of Object.values(entry)) if (v instanceof Tensor) n += v.numel * itemSize[v.dtype];
  }
  return n;
}

/**
 * Starts a new peak for memory().devices[*].peakBytes (the counters of tensors nodegrad
 * allocated, host and device), so a run's peak can be read at its end.
 */
export function resetPeakMemory(): void {
  for (const s of deviceStats().values()) s.peakBytes = s.bytes;
}

/** Peak bytes of live tensors since resetPeakMemory(), over every device. */
export function peakMemoryBytes(): number {
  return Object.values(memory().devices).reduce((n, d) => n + d.peakBytes, 0);
}

const count = (n: number): string => n.toLocaleString('en-US');

/** The lines a fine-tune prints at its start. */
export function formatFootprint(f: Footprint, what = 'LoRA'): string[] {
  const lora = f.trainable !== f.full.trainable || what !== 'full fine-tune';
  const lines = [`parameters ${count(f.params)}, trainable ${count(f.trainable)} (${f.trainablePct.toFixed(4)}%) [${what}]`];
  lines.push(lora
    ? `optimizer state (AdamW): ${formatBytes(f.optimizerStateBytes)} with ${what} vs ${formatBytes(f.full.optimizerStateBytes)} for a full fine-tune (${count(f.full.trainable)} trainable)`
    : `optimizer state (AdamW): ${formatBytes(f.optimizerStateBytes)} for ${count(f.trainable)} trainable parameters`);
  return lines;
}

/** The summary line: measured optimizer state and peak memory of the run. */
export function formatRunMemory(opt: { stateDict(): unknown }): string {
  return `optimizer state ${formatBytes(optimizerStateBytes(opt))} (measured), peak tensor memory ${formatBytes(peakMemoryBytes())}`;
}
