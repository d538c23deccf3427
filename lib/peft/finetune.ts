// LoRA fine-tuning of a BERT sequence classifier: the base frozen, LoRA on the targeted
// projections and the classifier head trained in full (PEFT's SEQ_CLS), AdamW over the
// trainable tensors only. Evaluates every epoch as finetuneClassifier does and writes the
// best adapter (PEFT layout) to <outDir>/adapter, the last to <outDir>/adapter-last.
import path from 'node:path';
import type { BertTokenizer } from '../data/wordpiece.js';
import type { BertForSequenceClassification } from '../models/bert.js';
import { AdamW, paramGroupsForDecay } from '../optim/index.js';
import { ClassificationData, epochReport, evaluateClassifier, warmupLinearDecay, type ClassifierEval, type TextExample } from '../train/finetune.js';
import { Trainer } from '../train/trainer.js';
import type { LoraConfig } from './config.js';
import { getPeftModel, type PeftModel } from './peft_model.js';
import { formatFootprint, formatRunMemory, resetPeakMemory, trainingFootprint } from './report.js';

export interface LoraFinetuneOptions {
  train: TextExample[];
  val: TextExample[];
  model: BertForSequenceClassification;
  tokenizer: BertTokenizer;
  lora?: LoraConfig;
  epochs?: number;
  batchSize?: number;
  maxLength?: number;
  lr?: number;
  weightDecay?: number;
  seed?: number;
  outDir?: string;
  log?: (line: string) => void;
  progress?: 'auto' | 'bar' | 'lines' | 'none';
}

export interface LoraFinetuneResult {
  best: ClassifierEval; final: ClassifierEval; steps: number; seconds: number; labels: string[];
  peft: PeftModel<BertForSequenceClassification>;
  /** Directory of the best adapter (when outDir was given). */
  adapterDir: string | null;
}

export async function finetuneClassifierLora(o: LoraFinetuneOptions): Promise<LoraFinetuneResult> {
  const log = o.log ?? ((s: string) => console.log(s));
  const seed = o.seed ?? 0, maxLength = o.maxLength ?? 128, batchSize = o.batchSize ?? 32, epochs = o.epochs ?? 2;
  const names = [...new Set([...o.train, ...o.val].map((e) => e.label))].sort();
  const label2id = Object.fromEntries(names.map((n, i) => [n, i]));
  const model = o.model;
  if (model.numLabels !== names.length) throw new Error(`nodegrad: finetune: the model has ${model.numLabels} labels but the data has ${names.length} (${names.join(', ')})`);
  if (maxLength > model.config.maxPositionEmbeddings) {
    throw new Error(`nodegrad: finetune: --max-length ${maxLength} exceeds the model's maxPositionEmbeddings ${model.config.maxPositionEmbeddings}`);
  }
  resetPeakMemory();
  const peft = getPeftModel(model, { taskType: 'SEQ_CLS', ...o.lora });
  const c = peft.peftConfig[peft.activeAdapter!];
  const what = `LoRA r=${c.r} alpha=${c.loraAlpha} on ${Array.isArray(c.targetModules) ? c.targetModules.join(',') : c.targetModules}` +
    `${c.modulesToSave ? ` + ${c.modulesToSave.join(',')} in full` : ''}`;
  for (const l of formatFootprint(trainingFootprint(peft), what)) log(`nodegrad: ${l}`);
  const train = new ClassificationData(o.train, o.tokenizer, label2id, maxLength, seed);
  const val = new ClassificationData(o.val, o.tokenizer, label2id, maxLength, seed + 1);
  const stepsPerEpoch = Math.ceil(train.length / batchSize);
  const maxSteps = stepsPerEpoch * epochs;
  const lr = o.lr ?? 5e-4, wd = o.weightDecay ?? 0.01;
  // the optimizer holds the trainable tensors only: no state for the frozen base
  const opt = new AdamW(paramGroupsForDecay(peft.namedTrainableParameters(), wd), { lr, weightDecay: wd });
  let best: ClassifierEval | null = null;
  const adapterDir = o.outDir ? path.join(o.outDir, 'adapter') : null;
  const t0 = performance.now();
  model.train();
  const trainer = new Trainer({
    model: peft, optimizer: opt, train, batchSize, blockSize: maxLength, maxSteps, clipGradNorm: 1.0,
    lr: warmupLinearDecay(lr, maxSteps),
    lossFn: (_m, b) => model.forward({ inputIds: b.x, attentionMask: b.attentionMask, labels: b.y }).loss!,
    logInterval: 20, progress: o.progress ?? 'auto',
    onStep: async (m) => {
      if (m.step % stepsPerEpoch !== 0 && m.step !== maxSteps) return;
      const ev = evaluateClassifier(model, val, names);
      log(epochReport(m.step, stepsPerEpoch, ev));
      if (!best || ev.macroF1 > best.macroF1) {
        best = ev;
        if (adapterDir) await peft.saveAdapter(adapterDir);
      }
    },
  });
  const res = await trainer.fit();
  const final = evaluateClassifier(model, val, names);
  if (o.outDir) {
    await peft.saveAdapter(path.join(o.outDir, 'adapter-last'));
    if (!best) await peft.saveAdapter(adapterDir!);
  }
  log(`nodegrad: ${formatRunMemory(opt)}`);
  return { best: best ?? final, final, steps: res.steps, seconds: (performance.now() - t0) / 1000, labels: names, peft, adapterDir };
}
