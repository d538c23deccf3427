// Autograd never computes a wrong gradient silently: an in-place change of a tensor that
// a backward formula reads (the tensor, a view of its storage, or its base) makes that
// backward throw, naming the op and the in-place op (version counters on the Storage, as
// PyTorch's); a loss returned from scope() keeps the graph it needs; a backward that
// reaches a disposed tensor throws instead of treating it as a leaf.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { expectClose } from '../helpers.js';

const { nn, optim } = ng;
class Holder extends nn.Module {
  forward(x: Tensor): Tensor { return x; }
}
const live = (): number => ng.memory().numTensors;
const bytes = (): number => ng.memory().numBytes;

describe('in-place changes of tensors saved for backward', () => {
  it('y.add_ after z = y * y makes backward throw instead of giving 24 (4 is right)', () => {
    const x = ng.tensor([2], { requiresGrad: true });
    const y = x.mul(1);
    const z = y.mul(y);
    y.add_(10);
    expect(() => z.sum().backward()).toThrow(
      'nodegrad: backward: a tensor needed for the gradient of mul was modified in place by add_ (version 0 when saved, now 1)');
    expect(x.grad).toBeNull();
  });

  it('x.mul_ after matmul(x, w) makes backward throw instead of giving w.grad of 5s', () => {
    const x = ng.ones([2, 3]);
    const w = ng.ones([3, 4], { requiresGrad: true });
    const out = ng.matmul(x, w);
    x.mul_(5);
    expect(() => out.sum().backward()).toThrow(
      /nodegrad: backward: a tensor needed for the gradient of matmul was modified in place by mul_ \(version 0 when saved, now 1\).*input 0 of matmul, shape \[2,3\]/);
    expect(w.grad).toBeNull();
  });

  // every way the public API writes into an existing tensor
  const cases: [string, (t: Tensor) => void][] = [
    ['add_', (t) => t.add_(1)],
    ['add_', (t) => t.add_(ng.ones([3]), 2)],
    ['sub_', (t) => t.sub_(1)],
    ['mul_', (t) => t.mul_(ng.full([3], 2))],
    ['div_', (t) => t.div_(2)],
    ['fill_', (t) => t.fill_(7)],
    ['zero_', (t) => t.zero_()],
    ['copy_', (t) => t.copy_(ng.ones([3]))],
    ['clamp_', (t) => t.clamp_(0, 0.5)],
    ['loadStateDict', (t) => {
      const m = new Holder();
      m.registerBuffer('b', t);
      m.loadStateDict({ b: ng.ones([3]) });
    }],
  ];
  it.each(cases)('%s on a saved tensor makes backward throw naming mul and the in-place op', (op, apply) => {
    const x = ng.randn([3], { requiresGrad: true });
    const c = ng.tensor([0.1, 0.2, 0.3]);
    const z = x.mul(c);
    apply(c);
    const want = op === 'loadStateDict' ? 'copy_' : op;
    expect(() => z.sum().backward()).toThrow(`a tensor needed for the gradient of mul was modified in place by ${want} (version 0 when saved, now 1)`);
  });

  const steps: [string, (p: Tensor) => void][] = [
    ['SGD.step', (p) => new optim.SGD([p], { lr: 0.1 }).step()],
    ['SGD.step', (p) => new optim.SGD([p], { lr: 0.1, momentum: 0.9 }).step()],
    ['AdamW.step', (p) => new optim.AdamW([p], { lr: 0.1 }).step()],
  ];
  it.each(steps)('%s on a parameter saved by a graph makes its backward throw (as PyTorch)', (name, step) => {
    const p = ng.randn([3], { requiresGrad: true });
    const x = ng.randn([3], { requiresGrad: true });
    // a first graph gives p a gradient
    p.mul(2).sum().backward();
    const z = x.mul(p);
    step(p);
    expect(p._version).toBe(1);
    expect(() => z.sum().backward()).toThrow(`a tensor needed for the gradient of mul was modified in place by ${name} (version 0 when saved, now 1)`);
  });

  it('gradient clipping writes into the gradients it clips', () => {
    const p = ng.tensor([3, 4], { requiresGrad: true });
    p.mul(1).sum().backward();
    const x = ng.randn([2], { requiresGrad: true });
    const z = x.mul(p.grad!);
    optim.clipGradNorm([p], 0.1);
    expect(() => z.sum().backward()).toThrow(/gradient of mul was modified in place by clipGradNorm/);
  });

  it('outputs saved by their own op (exp, tanh, sigmoid, sqrt, softmax...) are checked too', () => {
    const ops: [string, (x: Tensor) => Tensor][] = [
      ['exp', (x) => x.exp()], ['tanh', (x) => x.tanh()], ['sigmoid', (x) => x.sigmoid()], ['sqrt', (x) => x.sqrt()],
      ['reciprocal', (x) => x.reciprocal()], ['softmax', (x) => x.softmax(0)], ['logSoftmax', (x) => x.logSoftmax(0)],
    ];
    for (const [name, f] of ops) {
      const x = ng.tensor([0.5, 1, 2], { requiresGrad: true });
      const y = f(x);
      noGradAdd(y);
      expect(() => y.sum().backward(), name).toThrow(
        new RegExp(`gradient of ${name} was modified in place by add_ \\(version 0 when saved, now 1\\).*its output`));
    }
  });

  it('an in-place change of a view invalidates tensors saved from its base', () => {
    const x = ng.randn([4], { requiresGrad: true });
    const c = ng.randn([4]);
    const z = x.mul(c);
    c.narrow(0, 1, 2).mul_(3);
    expect(c._version).toBe(1);
    expect(() => z.sum().backward()).toThrow(/gradient of mul was modified in place by mul_/);
  });

  it('an in-place change of the base invalidates tensors saved from a view (and detach() shares the counter)', () => {
    const x = ng.randn([2], { requiresGrad: true });
    const base = ng.randn([2, 2]);
    const z = x.mul(base.select(0, 1));
    base.add_(1);
    expect(() => z.sum().backward()).toThrow(/gradient of mul was modified in place by add_/);

    const x2 = ng.randn([2, 2], { requiresGrad: true });
    const y = x2.exp();
    y.detach().fill_(0);
    expect(() => y.sum().backward()).toThrow(/gradient of exp was modified in place by fill_/);
  });

  it('counts several changes and names the last', () => {
    const x = ng.randn([3], { requiresGrad: true });
    const c = ng.randn([3]);
    const z = x.mul(c);
    c.add_(1).mul_(2).zero_();
    expect(() => z.sum().backward()).toThrow('modified in place by zero_ (version 0 when saved, now 3)');
  });

  it('in-place changes of tensors no backward reads stay allowed', () => {
    const x = ng.tensor([1, 2, 3], { requiresGrad: true });
    // add saves nothing: changing its operand afterwards does not change its gradient
    const c = ng.ones([3]);
    const a = x.add(c);
    c.mul_(5);
    // y is an input of add and sum only: changing it in place is allowed
    const y = x.mul(2);
    const b = y.add(1).sum();
    y.add_(10);
    a.sum().add(b).backward();
    expect(x.grad!.tolist()).toEqual([3, 3, 3]);
    // mul saves the other operand only: x is not read by x * 3's backward
    const u = ng.tensor([1, 2], { requiresGrad: true });
    const v = u.mul(1);
    const w = v.mul(3);
    v.add_(1);
    w.sum().backward();
    expect(u.grad!.tolist()).toEqual([3, 3]);
    // a tensor changed after the backward that read it
    const p = ng.tensor([2, 2], { requiresGrad: true });
    const q = ng.tensor([1, 1]);
    p.mul(q).sum().backward();
    q.add_(1);
    p.mul(q).sum().backward();
    expect(p.grad!.tolist()).toEqual([3, 3]);
    // a training loop: forward, backward, then the step
    const lin = new nn.Linear(3, 2);
    const opt = new optim.SGD(lin.parameters(), { lr: 0.1 });
    const inp = ng.randn([4, 3]);
    for (let i = 0; i < 3; i++) {
      lin.forward(inp).relu().sum().backward();
      opt.step();
      opt.zeroGrad();
    }
  });

  it('retainGraph then an optimizer step then a second backward throws (as PyTorch)', () => {
    const l1 = new nn.Linear(3, 3), l2 = new nn.Linear(3, 1);
    const opt = new optim.SGD([...l1.parameters(), ...l2.parameters()], { lr: 0.1 });
    const loss = l2.forward(l1.forward(ng.randn([2, 3])).tanh()).sum();
    loss.backward(undefined, { retainGraph: true });
    opt.step();
    expect(() => loss.backward()).toThrow(/gradient of linear was modified in place by SGD\.step/);
  });

  it('_version counts the in-place ops on a storage (every view sees it); other ops leave it', () => {
    const t = ng.zeros([4, 4]);
    expect(t._version).toBe(0);
    t.add(1).dispose();
    t.clone().add_(1).dispose();
    expect(t._version).toBe(0);
    t.add_(1);
    t.select(0, 2).zero_();
    expect(t.reshape([16])._version).toBe(2);
    expect(t.T._version).toBe(2);
  });
});

function noGradAdd(t: Tensor): void {
  ng.noGrad(() => t.add_(1));
}

describe('scope() and the autograd graph', () => {
  const model = (): { l1: ng.nn.Linear; ln: ng.nn.LayerNorm; l2: ng.nn.Linear; params: Tensor[] } => {
    ng.manualSeed(3);
    const l1 = new nn.Linear(4, 8), ln = new nn.LayerNorm(8), l2 = new nn.Linear(8, 5);
    return { l1, ln, l2, params: [...l1.parameters(), ...ln.parameters(), ...l2.parameters()] };
  };
  const forward = (m: ReturnType<typeof model>, x: Tensor, t: Tensor): Tensor =>
    ng.nn.functional.crossEntropy(m.l2.forward(m.ln.forward(m.l1.forward(x).gelu()).softmax(-1).exp()), t);

  it('a loss returned from scope() backpropagates to the parameters, equal to the unscoped result', () => {
    const lin = new nn.Linear(3, 2);
    const x = ng.randn([4, 3]);
    const loss = ng.scope(() => lin.forward(x).sum());
    loss.backward();
    expect(lin.weight.grad).not.toBeNull();
    const gw = lin.weight.grad!.clone(), gb = lin.bias!.grad!.clone();
    lin.zeroGrad();
    lin.forward(x).sum().backward();
    expectClose(gw, lin.weight.grad!, { atol: 0, rtol: 0 });
    expectClose(gb, lin.bias!.grad!, { atol: 0, rtol: 0 });
  });

  it('a deeper model (layerNorm, gelu, softmax, exp, crossEntropy) gives the same gradients through scope()', () => {
    const x = ng.randn([6, 4]);
    const t = ng.tensor([0, 1, 2, 3, 4, 0], { dtype: 'int32' });
    const a = model();
    forward(a, x, t).backward();
    const b = model();
    const loss = ng.scope(() => forward(b, x, t));
    loss.backward();
    a.params.forEach((p, i) => expectClose(b.params[i].grad!, p.grad!, { atol: 0, rtol: 0 }));
  });

  it('nested scopes and keep() keep the graph too', () => {
    const x = ng.randn([6, 4]);
    const t = ng.tensor([0, 1, 2, 3, 4, 0], { dtype: 'int32' });
    const a = model();
    forward(a, x, t).mul(2).backward();
    const b = model();
    let kept: Tensor | undefined;
    const loss = ng.scope(() => {
      const inner = ng.scope(() => forward(b, x, t));
      ng.scope(() => { kept = ng.keep(inner.mul(2)); });
      return null;
    });
    expect(loss).toBeNull();
    kept!.backward();
    a.params.forEach((p, i) => expectClose(b.params[i].grad!, p.grad!, { atol: 0, rtol: 0 }));
  });

  it('what the returned loss holds is freed by its backward, or when it is disposed', () => {
    const x = ng.randn([6, 4]);
    const t = ng.tensor([0, 1, 2, 3, 4, 0], { dtype: 'int32' });
    const m = model();
    forward(m, x, t).backward();   // every parameter has a .grad now
    const n0 = live(), b0 = bytes();
    const loss = ng.scope(() => forward(m, x, t));
    expect(live()).toBeGreaterThan(n0 + 1);  // the saved activations
    loss.backward();
    expect(live()).toBe(n0 + 1);
    expect(bytes()).toBe(b0 + 4);
    loss.dispose();
    const loss2 = ng.scope(() => forward(m, x, t));
    loss2.dispose();
    expect(live()).toBe(n0);
    expect(bytes()).toBe(b0);
    // a scope that ends with backward done holds nothing
    ng.scope(() => { forward(m, x, t).backward(); });
    expect(live()).toBe(n0);
    expect(bytes()).toBe(b0);
  });

  it('tensors returned together share their graph; retainGraph and scopeAsync work too', async () => {
    const x = ng.randn([6, 4]);
    const t = ng.tensor([0, 1, 2, 3, 4, 0], { dtype: 'int32' });
    const m = model();
    forward(m, x, t).backward();
    const ref = m.params.map((p) => p.grad!.clone());
    m.params.forEach((p) => p.zeroGrad());
    const n0 = live();
    const { loss, logits } = ng.scope(() => {
      const logits = m.l2.forward(m.ln.forward(m.l1.forward(x).gelu()).softmax(-1).exp());
      return { logits, loss: ng.nn.functional.crossEntropy(logits, t) };
    });
    expect(ng.scope(() => logits.argmax(-1).tolist())).toHaveLength(6);
    loss.backward(undefined, { retainGraph: true });
    loss.backward();
    ng.scope(() => m.params.forEach((p, i) => expectClose(p.grad!, ref[i].mul(2), { rtol: 1e-6 })));
    ng.dispose([loss, logits]);
    m.params.forEach((p) => p.zeroGrad());
    expect(live()).toBe(n0);
    m.params.forEach((p) => p.zeroGrad());
    const l2 = await ng.scopeAsync(async () => forward(m, x, t));
    l2.mul(1).backward();
    m.params.forEach((p, i) => expectClose(p.grad!, ref[i], { rtol: 1e-6 }));
    l2.dispose();
  });

  it('an intermediate the graph only passes through is freed at the end of the scope', () => {
    const x = ng.randn([1000], { requiresGrad: true });
    let h: Tensor | undefined;
    const b0 = bytes();
    // add saves nothing: h's values are not needed by the backward
    const loss = ng.scope(() => { h = x.mul(x); return h.add(1).sum(); });
    expect(h!.isDisposed).toBe(true);
    expect(bytes() - b0).toBeLessThan(4000);
    loss.backward();
    expectClose(x.grad!, x.detach().mul(2));
  });

  it('disposing an intermediate never cuts the graph: backward goes through it, or throws if it needs its values', () => {
    // mul by a number saves nothing: h's values are not needed, the gradient is right
    const x = ng.randn([3], { requiresGrad: true });
    const h = x.mul(2);
    const z = h.sum();
    h.dispose();
    z.backward();
    expect(x.grad!.tolist()).toEqual([2, 2, 2]);
    // exp's backward reads its output: disposed, it is an error naming exp
    const e = x.exp();
    const s = e.sum();
    e.dispose();
    expect(() => s.backward()).toThrow(/nodegrad: backward: a tensor needed for the gradient of exp was disposed before backward: its output, shape \[3\]/);
    // a disposed leaf cannot take its gradient
    const p = ng.randn([3], { requiresGrad: true });
    const q = p.mul(2).sum();
    p.dispose();
    expect(() => q.backward()).toThrow(/nodegrad: backward: a tensor that requires grad was disposed before backward.*input 0 of mul, shape \[3\]/);
  });

  it('backward that needs a disposed saved tensor throws naming the op', () => {
    const x = ng.randn([3], { requiresGrad: true });
    const c = ng.randn([3]);
    const z = x.mul(c).sum();
    c.dispose();
    expect(() => z.backward()).toThrow(/nodegrad: backward: a tensor needed for the gradient of mul was disposed before backward.*input 1 of mul, shape \[3\]/);
  });
});

describe('in-place ops on the autograd tape', () => {
  const f64 = (xs: number[] | number[][], requiresGrad = true): Tensor => ng.tensor(xs, { dtype: 'float64', requiresGrad });

  it('y = x*2; y.mul_(3) gives x.grad 6, and c.add_(x) gives x its gradient', () => {
    const x = ng.tensor([1, 2], { requiresGrad: true });
    const y = x.mul(2);
    y.mul_(3);
    expect(y.gradFn!.name).toBe('mul_');
    y.sum().backward();
    expect(x.grad!.tolist()).toEqual([6, 6]);

    const w = ng.tensor([1, 2, 3], { requiresGrad: true });
    const c = ng.zeros([3]);
    c.add_(w, 2);
    expect(c.requiresGrad).toBe(true);
    expect(c.isLeaf).toBe(false);
    c.mul(ng.tensor([1, 10, 100])).sum().backward();
    expect(w.grad!.tolist()).toEqual([2, 20, 200]);
  });

  // every in-place op, applied to a non-leaf, against finite differences in float64
  const cases: [string, (x: Tensor, s: Tensor) => Tensor][] = [
    ['add_ number', (x) => x.mul(1).add_(3)],
    ['add_ tensor, alpha, broadcast', (x, s) => x.mul(1).add_(s, 2.5)],
    ['sub_ tensor, alpha, broadcast', (x, s) => x.mul(2).sub_(s, 0.5)],
    ['sub_ number', (x) => x.square().sub_(1)],
    ['mul_ number', (x) => x.mul(1).mul_(-1.5)],
    ['mul_ tensor, broadcast', (x, s) => x.mul(1).mul_(s)],
    ['mul_ itself', (x) => { const y = x.mul(1); return y.mul_(y); }],
    ['div_ number', (x) => x.mul(1).div_(4)],
    ['div_ tensor, broadcast', (x, s) => x.mul(1).div_(s.add(3))],
    ['div_ itself', (x) => { const y = x.add(5); return y.div_(y).mul(x); }],
    ['fill_', (x) => x.mul(1).fill_(2).mul(x)],
    ['zero_', (x) => x.mul(3).zero_().add(x.square())],
    ['copy_ broadcast', (x, s) => x.mul(2).copy_(s.mul(3)).mul(x)],
    ['clamp_', (x) => x.mul(1).clamp_(-0.5, 0.5)],
    ['clamp_ min only', (x) => x.mul(1).clamp_(0.1)],
    ['a chain', (x, s) => x.mul(1).mul_(s).add_(x).div_(2).sub_(s.exp()).clamp_(null, 1)],
    ['the old value used before', (x, s) => { const y = x.mul(2); const z = y.add(s); y.mul_(3); return z.add(y); }],
  ];
  it.each(cases)('%s: the gradient through the in-place op matches finite differences', (_name, f) => {
    // no element within eps of a clamp bound
    const x = f64([[0.3, -1.2, 0.9], [-0.2, 0.7, 1.4]]);
    const s = f64([0.8, -1.3, 0.6]);
    const r = ng.gradcheck(f, [x, s]);
    expect(r.ok).toBe(true);
  });

  it('copy_ across dtypes sends the gradient back in the source dtype', () => {
    const s = f64([1, 2, 3]);
    const y = ng.zeros([3]);
    y.copy_(s);
    y.mul(ng.tensor([1, 2, 3])).sum().backward();
    expect(s.grad!.dtype).toBe('float64');
    expect(s.grad!.tolist()).toEqual([1, 2, 3]);
  });

  it('a node that used the tensor before the in-place op still sends its gradient to the old value', () => {
    const x = ng.tensor([1, 2], { requiresGrad: true });
    const y = x.mul(2);
    const z = y.add(1);
    y.mul_(3);
    // z's gradient reaches x through y's old value (2), y's through mul_ (6)
    z.sum().add(y.sum()).backward();
    expect(x.grad!.tolist()).toEqual([8, 8]);
  });

  it('an in-place op on a leaf that requires grad throws; under noGrad it is allowed', () => {
    const x = ng.tensor([1, 2], { requiresGrad: true });
    const ops: [string, (t: Tensor) => void][] = [
      ['add_', (t) => t.add_(1)], ['sub_', (t) => t.sub_(1)], ['mul_', (t) => t.mul_(2)], ['div_', (t) => t.div_(2)],
      ['fill_', (t) => t.fill_(0)], ['zero_', (t) => t.zero_()], ['copy_', (t) => t.copy_(ng.ones([2]))],
      ['clamp_', (t) => t.clamp_(0, 1)],
    ];
    for (const [op, apply] of ops) {
      expect(() => apply(x), op).toThrow(`nodegrad: ${op}: a leaf tensor that requires grad is used in an in-place operation; ` +
        'use an out-of-place op, or wrap the update in noGrad()');
    }
    expect(x.tolist()).toEqual([1, 2]);
    expect(x._version).toBe(0);
    ng.noGrad(() => x.mul_(3).add_(ng.ones([2])).clamp_(0, 5));
    expect(x.tolist()).toEqual([4, 5]);
    expect(x.isLeaf).toBe(true);
    expect(x.gradFn).toBeNull();
    x.mul(2).sum().backward();
    expect(x.grad!.tolist()).toEqual([2, 2]);
  });

  it('an in-place op on a view of a tensor in a graph throws before it writes (no wrong gradient)', () => {
    const x = ng.tensor([1, 2, 3, 4], { requiresGrad: true });
    const y = x.mul(2);
    const v = y.narrow(0, 1, 2);
    expect(() => v.mul_(3)).toThrow(
      'nodegrad: mul_: in-place operation on a view of a tensor that requires grad is not supported; clone() the view first');
    expect(() => y.reshape([2, 2]).zero_()).toThrow(/zero_: in-place operation on a view of a tensor that requires grad/);
    expect(() => x.T.add_(1)).toThrow(/add_: in-place operation on a view of a tensor that requires grad/);
    // the base of a view on the tape: the view's gradient would miss the change
    expect(() => y.add_(1)).toThrow(/add_: in-place operation on a tensor whose views were recorded for backward/);
    expect(y.tolist()).toEqual([2, 4, 6, 8]);
    // a view of a tensor that does not require grad, with an operand that does
    const w = ng.tensor([1, 1], { requiresGrad: true });
    const c = ng.zeros([4]);
    expect(() => c.narrow(0, 0, 2).add_(w)).toThrow(/add_: in-place operation with an operand that requires grad on a view/);
    expect(c.tolist()).toEqual([0, 0, 0, 0]);
    // the clone() the message suggests works
    const u = v.clone().mul_(3);
    u.sum().backward();
    expect(x.grad!.tolist()).toEqual([0, 6, 6, 0]);
    // views without autograd stay free to change
    const d = ng.zeros([2, 2]);
    d.select(0, 1).add_(1);
    ng.noGrad(() => y.narrow(0, 0, 1).fill_(0));
    expect(d.tolist()).toEqual([[0, 0], [1, 1]]);
  });

  it('retainGrad sees the gradient of the current value; a saved old value is still checked', () => {
    const x = ng.tensor([1, 2], { requiresGrad: true });
    const y = x.mul(2);
    y.mul_(3).retainGrad();
    y.mul(5).sum().backward();
    expect(y.grad!.tolist()).toEqual([5, 5]);
    expect(x.grad!.tolist()).toEqual([30, 30]);
    // exp saves its output; changing it in place makes backward throw (as PyTorch)
    const e = ng.tensor([0.5], { requiresGrad: true }).exp();
    e.mul_(2);
    expect(() => e.sum().backward()).toThrow(/gradient of exp was modified in place by mul_/);
  });

  it('an in-place op inside scope(): the returned result keeps what its backward reads', () => {
    const x = ng.tensor([1, 2], { requiresGrad: true });
    const s = ng.tensor([3, 4], { requiresGrad: true });
    const before = live();
    const out = ng.scope(() => {
      const y = x.mul(2);
      y.mul_(s.add(1));
      return y.sum();
    });
    out.backward();
    expect(x.grad!.tolist()).toEqual([8, 10]);
    expect(s.grad!.tolist()).toEqual([2, 4]);
    out.dispose();
    expect(live()).toBeLessThanOrEqual(before + 2);
  });
});
