// Per-call overhead: what one crossing into the addon costs, and what the TypeScript op
// layer (validation, allocation, tape bookkeeping) adds on top, on 1-element tensors where
// the arithmetic is free. PyTorch's per-op overhead for the same 1-element work is the peer.
import { native } from '../lib/native.js';
import { tensor } from '../lib/ops/creation.js';
import { add, mul, relu, Bin } from '../lib/ops/elementwise.js';
import { sum } from '../lib/ops/reduce.js';
import { scope } from '../lib/memory.js';
import { argsHead, argsView } from '../lib/ops/native_args.js';
import { makeRow, timeIt, timeOptions, type BenchContext, type PeerCase, type Row } from './common.js';

interface Case { bench: string; fn: () => void; before?: () => void; peer?: PeerCase; note?: string }

/** The argument block of a 1-element contiguous add (lib/ops/native_args.ts ARGS). */
function binaryP1(): void {
  argsHead(Bin.add, [1], 0, 0);
  for (let k = 0; k < 3; k++) argsView(k, 0, [1]);
}

export function run(ctx: BenchContext): Row[] {
  const a = tensor([1.5]), b = tensor([2.5]);
  const ag = tensor([1.5]).requiresGrad_(), bg = tensor([2.5]).requiresGrad_();
  const out = new Float32Array(1), x = new Float32Array([1.5]), y = new Float32Array([2.5]);
  const shape = [1], st = [1];
  const cases: Case[] = [
    { bench: 'napi.noop', fn: () => native.noop(), note: 'empty addon function: the bare N-API crossing' },
    {
      bench: 'napi.binary.raw', fn: () => native.binary(Bin.add, shape, out, 0, st, x, 0, st, y, 0, st),
      note: 'native add on preallocated 1-element arrays: crossing plus argument checks',
    },
    {
      bench: 'napi.binary.packed', fn: () => native.binaryP(out, x, y), before: () => { binaryP1(); },
      note: 'the packed entry the ops call: shapes, strides and offsets in the argument block, buffers as arguments',
    },
    { bench: 'napi.add', fn: () => add(a, b).dispose(), peer: { op: 'add', shapes: [[1], [1]], dtype: 'float32' }, note: 'public add: validate, allocate, kernel, dispose' },
    {
      bench: 'napi.add.grad', fn: () => add(ag, bg).dispose(),
      peer: { op: 'add', shapes: [[1], [1]], dtype: 'float32', params: { requires_grad: true } },
      note: 'public add of tensors that require grad: the same plus recording the autograd node',
    },
    {
      bench: 'napi.chain', fn: () => scope(() => sum(relu(mul(add(a, b), b)))),
      peer: { op: 'chain', shapes: [[1], [1]], dtype: 'float32' }, note: 'sum(relu((a + b) * b)): four ops in a scope',
    },
  ];
  const opts = { ...timeOptions(ctx.quick), minSampleMs: ctx.quick ? 20 : 50 };
  const ours = cases.map((c) => { c.before?.(); return timeIt(c.fn, opts).ms; });
  const peerCases = cases.filter((c) => c.peer).map((c) => c.peer as PeerCase);
  const peerTimes = ctx.peer.time(peerCases, opts);
  let k = 0;
  return cases.map((c, i) => {
    const peerMs = c.peer ? peerTimes[k++] : null;
    const row = makeRow(ctx, { bench: c.bench, shape: '[1]', dtype: 'float32', ms: ours[i], peer: ctx.peer.name, peerMs, note: c.note });
    row.us = ours[i] * 1e3;
    return row;
  });
}
