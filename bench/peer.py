#!/usr/bin/python3
"""PyTorch peer for the nodegrad benchmarks.

Reads one JSON request on stdin:
  {"threads": 2, "warmup": 3, "samples": 9, "minSampleMs": 20,
   "cases": [{"op": "add", "shapes": [[1048576], [1048576]], "dtype": "float32", "params": {}}]}
and prints one JSON line:
  {"info": {"torch": "1.13.0", "blas": "OpenBLAS 0.3.21 (pthread)", "threads": 2, ...},
   "results": [{"ms": 0.51}, {"error": "..."}]}
Each case is timed like bench/common.ts's timeIt: warm-up calls, then the median of
`samples` samples, each a batch of back-to-back calls lasting about minSampleMs.
An empty case list only reports the configuration.
"""
import json
import re
import sys
import time


def blas_libraries():
    """The BLAS libraries actually mapped into this process (Debian picks one by alternatives)."""
    try:
        with open('/proc/self/maps') as f:
            libs = {m.group(0) for m in re.finditer(r'/\S*(?:blas|mkl)\S*\.so[\w.]*', f.read())}
    except OSError:
        return 'unknown'
    names = set()
    for lib in libs:
        m = re.search(r'libopenblas\w*-r(\d+\.\d+\.\d+)', lib)
        if m:
            flavour = 'pthread' if 'pthread' in lib else 'openmp' if 'openmp' in lib else 'serial' if 'serial' in lib else ''
            names.add(f'OpenBLAS {m.group(1)}' + (f' ({flavour})' if flavour else ''))
        elif 'mkl' in lib:
            names.add('MKL')
        elif 'openblas' not in lib and 'libblas' in lib:
            names.add('reference BLAS' if '/blas/' in lib else lib)
    if not names and any('openblas' in lib for lib in libs):
        names.add('OpenBLAS')
    return ', '.join(sorted(names)) or 'none loaded'


def make_case(torch, case):
    """Returns a zero-argument callable running the op once, inputs prepared."""
    F = torch.nn.functional
    op, shapes, params = case['op'], case.get('shapes', []), case.get('params') or {}
    dtype = getattr(torch, case.get('dtype', 'float32'))
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(*s, generator=g, dtype=dtype) for s in shapes]
    if params.get('requires_grad'):  # the op records its autograd node
        xs = [x.requires_grad_() for x in xs]
    out = torch.empty(*shapes[0], dtype=dtype) if params.get('out') and shapes else None  # kernel only, no allocation
    if op == 'add':
        a, b = xs
        return (lambda: torch.add(a, b, out=out)) if out is not None else (lambda: torch.add(a, b))
    if op == 'mul':
        a, b = xs
        return (lambda: torch.mul(a, b, out=out)) if out is not None else (lambda: torch.mul(a, b))
    if op == 'gelu':
        (x,) = xs
        approximate = params.get('approximate', 'none')
        if out is not None:
            return lambda: torch._C._nn.gelu(x, approximate=approximate, out=out)
        return lambda: F.gelu(x, approximate=approximate)
    if op == 'relu':
        (x,) = xs
        return lambda: torch.relu(x)
    if op == 'copy':
        (x,) = xs
        return lambda: x.clone()
    if op == 'chain':  # ((a + b) * b).relu().sum(): four small ops, one result
        a, b = xs
        return lambda: torch.relu((a + b) * b).sum()
    if op == 'softmax':
        (x,) = xs
        dim = params.get('dim', -1)
        return lambda: torch.softmax(x, dim)
    if op == 'log_softmax':
        (x,) = xs
        dim = params.get('dim', -1)
        return lambda: torch.log_softmax(x, dim)
    if op == 'layernorm':
        (x,) = xs
        c = x.shape[-1]
        w = torch.randn(c, generator=g, dtype=dtype)
        b = torch.randn(c, generator=g, dtype=dtype)
        eps = params.get('eps', 1e-5)
        return lambda: F.layer_norm(x, (c,), w, b, eps)
    if op == 'rmsnorm':  # HF's LlamaRMSNorm (float32 here: no casts)
        (x,) = xs
        w = torch.randn(x.shape[-1], generator=g, dtype=dtype)
        eps = params.get('eps', 1e-6)
        return lambda: w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    if op == 'matmul':  # shapes as stored; transposeA/B take the transposed view (.mT)
        a, b = xs
        if params.get('transposeA'):
            a = a.transpose(-1, -2)
        if params.get('transposeB'):
            b = b.transpose(-1, -2)
        if params.get('out'):  # kernel only, into a preallocated output
            o = torch.empty(*a.shape[:-1], b.shape[-1], dtype=dtype)
            return lambda: torch.matmul(a, b, out=o)
        return lambda: torch.matmul(a, b)
    if op == 'linear':  # x [.., in], weight [out, in], bias [out]
        x, w = xs[0], xs[1]
        b = xs[2] if len(xs) > 2 else None
        return lambda: F.linear(x, w, b)
    if op == 'cross_entropy':  # logits [N, V]; targets drawn in range
        (x,) = xs
        t = torch.randint(0, x.shape[-1], (x.shape[0],), generator=g)
        return lambda: F.cross_entropy(x, t)
    raise ValueError(f'unknown op {op!r}')


def time_steps(step, warmup, steps):
    """Runs step() warmup times untimed, then steps times; the per-step milliseconds in order
    (bench/common.ts's timeSteps)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def time_it(fn, warmup, samples, min_sample_ms):
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    once = (time.perf_counter() - t0) * 1e3
    inner = 1
    while once * inner < min_sample_ms and inner < 1 << 22:
        inner *= 2
    if inner > 1:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        once = (time.perf_counter() - t0) * 1e3 / inner
        inner = max(1, -(-min_sample_ms // max(once, 1e-6)))
        inner = int(inner)
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) * 1e3 / inner)
    times.sort()
    return times[len(times) // 2]


def main():
    req = json.loads(sys.stdin.read() or '{}')
    try:
        import torch
    except Exception as e:  # no torch: the benchmarks fall back to their naive references
        print(json.dumps({'error': f'torch unavailable: {e}'}))
        return
    threads = int(req.get('threads') or torch.get_num_threads())
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    torch.zeros(4, 4) @ torch.zeros(4, 4)  # load the BLAS before inspecting the mappings
    info = {
        'torch': torch.__version__.split('+')[0],
        'blas': blas_libraries(),
        'threads': torch.get_num_threads(),
        'python': sys.version.split()[0],
        'cpuCapability': next((l.split(':', 1)[1].strip() for l in torch.__config__.show().splitlines() if 'CPU capability' in l), None),
    }
    results = []
    for case in req.get('cases', []):
        try:
            fn = make_case(torch, case)
            ms = time_it(fn, int(req.get('warmup', 3)), int(req.get('samples', 9)), float(req.get('minSampleMs', 20)))
            results.append({'ms': ms})
        except Exception as e:
            results.append({'error': f'{type(e).__name__}: {e}'})
    print(json.dumps({'info': info, 'results': results}))


if __name__ == '__main__':
    main()
