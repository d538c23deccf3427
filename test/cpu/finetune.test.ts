import { describe, expect, test } from 'vitest';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as ng from '../../lib/index.js';
import {
  buildWordPieceVocab, finetuneClassifier, parseCsv, readLabelledExamples, splitExamples, type TextExample,
} from '../../lib/train/finetune.js';
import { BertForSequenceClassification } from '../../lib/models/bert.js';
import { BertTokenizer } from '../../lib/data/wordpiece.js';

async function tmp(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'ng-ft-'));
}

describe('fine-tuning data', () => {
  test('parseCsv handles quotes, commas, doubled quotes and newlines in fields', () => {
    expect(parseCsv('text,label\n"a, b",1\n"say ""hi""\nthere",0\r\nplain,1\n')).toEqual([
      ['text', 'label'], ['a, b', '1'], ['say "hi"\nthere', '0'], ['plain', '1'],
    ]);
  });

  test('reads JSONL and CSV with chosen fields, and names the bad line or column', async () => {
    const d = await tmp();
    await writeFile(path.join(d, 'a.jsonl'), '{"t":"hello","y":"pos"}\n\n{"t":"bye","y":0}\n');
    expect(await readLabelledExamples(path.join(d, 'a.jsonl'), { textField: 't', labelField: 'y' })).toEqual([
      { text: 'hello', label: 'pos' }, { text: 'bye', label: '0' },
    ]);
    await writeFile(path.join(d, 'b.jsonl'), '{"t":"x","y":1}\n{oops\n');
    await expect(readLabelledExamples(path.join(d, 'b.jsonl'), { textField: 't', labelField: 'y' })).rejects.toThrow(/b.jsonl line 2: invalid JSON/);
    await writeFile(path.join(d, 'c.csv'), 'body,cls\nx,1\n');
    await expect(readLabelledExamples(path.join(d, 'c.csv'))).rejects.toThrow(/no column 'text' \(columns: body, cls\)/);
    await expect(readLabelledExamples(path.join(d, 'missing.csv'))).rejects.toThrow(/cannot read .*missing.csv \(ENOENT\)/);
  });

  test('the vocabulary covers every character, so no text maps to [UNK]', () => {
    const texts = ['Héllo wörld, hello again!', 'numbers 123 and symbols #$%'];
    const vocab = buildWordPieceVocab(texts, { size: 200 });
    expect(vocab.slice(0, 5)).toEqual(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
    expect(new Set(vocab).size).toBe(vocab.length);
    const tok = new BertTokenizer({ vocab });
    for (const t of texts) expect(tok.tokenize(t)).not.toContain('[UNK]');
    expect(tok.tokenize('hello')).toEqual(['hello']);
  });

  test('splitExamples is a deterministic partition', () => {
    const xs = Array.from({ length: 50 }, (_, i) => i);
    const a = splitExamples(xs, 0.2, 3), b = splitExamples(xs, 0.2, 3);
    expect(a).toEqual(b);
    expect(a.val.length).toBe(10);
    expect([...a.train, ...a.val].sort((p, q) => p - q)).toEqual(xs);
  });
});

describe('finetuneClassifier', () => {
  test('learns a separable task from scratch and keeps a reloadable best checkpoint', async () => {
    ng.manualSeed(0);
    const words = ['red', 'green', 'blue', 'cat', 'dog', 'tree', 'sun', 'rain'];
    const make = (i: number): TextExample => {
      const pos = i % 2 === 0;
      const filler = Array.from({ length: 5 }, (_, k) => words[(i * 7 + k * 3) % words.length]).join(' ');
      return { text: `${filler} ${pos ? 'excellent' : 'terrible'} ${filler}`, label: pos ? 'pos' : 'neg' };
    };
    const all = Array.from({ length: 160 }, (_, i) => make(i));
    const { train, val } = splitExamples(all, 0.25, 1);
    const out = await tmp();
    const res = await finetuneClassifier({
      train, val, epochs: 10, batchSize: 16, maxLength: 24, lr: 5e-3, outDir: out, progress: 'none', log: () => {},
      scratchConfig: { hiddenSize: 32, numHiddenLayers: 1, numAttentionHeads: 2, intermediateSize: 64 },
    });
    expect(res.labels).toEqual(['neg', 'pos']);
    expect(res.best.accuracy).toBeGreaterThanOrEqual(0.95);
    expect(res.best.report).toMatch(/macro avg/);
    const back = await BertForSequenceClassification.fromPretrained(path.join(out, 'best'));
    const tok = await BertTokenizer.fromPretrained(path.join(out, 'best'));
    const enc = tok.encodeBatch([make(1000).text, make(1001).text], { padding: 'longest', returnTensors: 'ng' });
    const logits = back.forward({ inputIds: enc.inputIds, attentionMask: enc.attentionMask }).logits;
    expect(Array.from(logits.argmax(-1).dataSync() as Int32Array)).toEqual([1, 0]);
  });
});
