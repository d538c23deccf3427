// Loads the models make_models.py saved, compares nodegrad's outputs with transformers'
// (max |difference| within 1e-4 in float32), checks that loading printed no warnings, and
// exports every model with savePretrained to OUT/export/<case> for check_export.py.
//
//   node --import ./scripts/ts-loader.mjs test/interop/check.ts OUT_DIR
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { BertForMaskedLM, BertForSequenceClassification, BertModel } from '../../lib/models/bert.js';
import { GPT } from '../../lib/models/gpt.js';

const TOLERANCE = 1e-4;

interface Output { shape: number[]; values: number[] }
interface Case {
  dir: string;
  class: 'GPT2LMHeadModel' | 'BertModel' | 'BertForSequenceClassification' | 'BertForMaskedLM';
  inputs: { input_ids: number[][]; attention_mask?: number[][]; token_type_ids?: number[][]; labels?: number[] | number[][] };
  outputs: Record<string, Output>;
}
interface Reference { torch: string; transformers: string; cases: Record<string, Case> }
type Model = GPT | BertModel | BertForSequenceClassification | BertForMaskedLM;

async function load(c: Case, dir: string): Promise<Model> {
  switch (c.class) {
    case 'GPT2LMHeadModel': return GPT.fromPretrained(dir);
    case 'BertModel': return BertModel.fromPretrained(dir);
    case 'BertForSequenceClassification': return BertForSequenceClassification.fromPretrained(dir);
    case 'BertForMaskedLM': return BertForMaskedLM.fromPretrained(dir);
  }
}

function run(model: Model, c: Case): Record<string, Tensor | null | undefined> {
  const int = (a: number[][] | number[] | undefined) => (a === undefined ? null : ng.tensor(a, { dtype: 'int32' }));
  const inputIds = int(c.inputs.input_ids)!;
  if (model instanceof GPT) return { logits: model.forward(inputIds).logits };
  const inputs = { inputIds, attentionMask: int(c.inputs.attention_mask), tokenTypeIds: int(c.inputs.token_type_ids) };
  if (model instanceof BertModel) {
    const o = model.forward(inputs);
    return { last_hidden_state: o.lastHiddenState, pooler_output: o.poolerOutput };
  }
  const o = model.forward({ ...inputs, labels: int(c.inputs.labels) });
  return { logits: o.logits, loss: o.loss };
}

function maxDiff(got: Tensor, want: Output): number {
  if (got.shape.join(',') !== want.shape.join(',') && !(got.numel === 1 && want.values.length === 1)) {
    throw new Error(`shape [${got.shape.join(',')}] differs from the reference's [${want.shape.join(',')}]`);
  }
  const g = got.dataSync() as Float32Array;
  let m = 0;
  want.values.forEach((v, i) => { m = Math.max(m, Math.abs(g[i] - v)); });
  return Number.isNaN(m) ? Infinity : m;
}

async function main(): Promise<void> {
  const out = process.argv[2];
  if (!out) throw new Error('usage: check.ts OUT_DIR (the directory make_models.py wrote)');
  const ref = JSON.parse(await readFile(path.join(out, 'reference.json'), 'utf8')) as Reference;
  console.log(`nodegrad vs transformers ${ref.transformers} (torch ${ref.torch}); tolerance ${TOLERANCE}`);
  let failures = 0;
  const originalWarn = console.warn;
  for (const [name, c] of Object.entries(ref.cases)) {
    const warnings: string[] = [];
    console.warn = (...args: unknown[]) => { warnings.push(args.map(String).join(' ')); };
    let model: Model;
    try {
      model = await load(c, path.join(out, c.dir));
    } catch (e) {
      console.log(`FAIL ${name}: loading failed: ${(e as Error).message}`);
      failures++;
      continue;
    } finally {
      console.warn = originalWarn;
    }
    for (const w of warnings) {
      console.log(`FAIL ${name}: loading warned: ${w}`);
      failures++;
    }
    const got = ng.noGrad(() => run(model, c));
    for (const [key, want] of Object.entries(c.outputs)) {
      const t = got[key];
      if (!t) {
        console.log(`FAIL ${name}.${key}: nodegrad gave no ${key}`);
        failures++;
        continue;
      }
      let d: number;
      try {
        d = maxDiff(t, want);
      } catch (e) {
        console.log(`FAIL ${name}.${key}: ${(e as Error).message}`);
        failures++;
        continue;
      }
      const ok = d <= TOLERANCE;
      if (!ok) failures++;
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}.${key} [${want.shape.join(',')}]: max |nodegrad - transformers| = ${d.toExponential(2)}`);
    }
    const exportDir = path.join(out, 'export', c.dir);
    await model.savePretrained(exportDir);
    console.log(`     ${name}: exported to ${exportDir}`);
    model.dispose();
  }
  console.log(failures ? `check.ts: ${failures} failure(s)` : 'check.ts: all outputs match');
  process.exitCode = failures ? 1 : 0;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
