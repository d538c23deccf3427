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
