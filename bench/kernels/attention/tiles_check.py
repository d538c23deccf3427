# Runs without a GPU: python3 bench/kernels/attention/tiles_check.py (numpy).
# Tile-level port of the flash kernels' control flow (loop bounds, causal skipping, edge
# fast paths, masks, fully masked rows, dropout bits, exp2 domain) against a dense reference.
import numpy as np
rng = np.random.default_rng(1)
LOG2E = 1.4426950408889634

def ref(q, k, v, g, scale, causal, bias, keep):  # bias [Tq,Tk] (-inf allowed), keep [Tq,Tk] bool or None, kinv
    Tq, Tk = q.shape[0], k.shape[0]
    s = q @ k.T * scale + bias
    if causal:
        s = np.where(np.arange(Tk)[None, :] > np.arange(Tq)[:, None], -np.inf, s)
    m = s.max(axis=1, initial=-np.inf)
    live = m > -np.inf
    p = np.where(live[:, None], np.exp(s - np.where(live, m, 0)[:, None]), 0)
    l = p.sum(1)
    p = np.where(live[:, None], p / np.where(live, l, 1)[:, None], 0)
    lse = np.where(live, m + np.log(np.where(live, l, 1)), -np.inf)
    pk = p * keep[0] * keep[1] if keep is not None else p
    o = pk @ v
    Di = (g * o).sum(1)
    dpk = g @ v.T
    dp = dpk * keep[0] * keep[1] if keep is not None else dpk
    ds = p * (dp - Di[:, None])
    return o, lse, ds @ k * scale, ds.T @ q * scale, pk.T @ g

def fwd(q, k, v, scale, causal, bias, keep, has_mask):
    Tq, Tk, D = q.shape[0], k.shape[0], q.shape[1]
    BR = BC = 64
    o = np.zeros((Tq, D)); lse = np.zeros(Tq)
    nqt = (Tq + BR - 1) // BR
    for qt in range(nqt):
        q0 = qt * BR
        qend = min(q0 + BR, Tq)
        kend = min(Tk, qend) if causal else Tk
        n_kv = (kend + BC - 1) // BC
        rows = np.arange(q0, q0 + BR)
        Qt = np.zeros((BR, D)); Qt[:qend - q0] = q[q0:qend]
        m = np.full(BR, -np.inf); l = np.zeros(BR); acc = np.zeros((BR, D))
        sc = scale * LOG2E
        for it in range(n_kv):
            kv0 = it * BC
            cols = np.arange(kv0, kv0 + BC)
            Kt = np.zeros((BC, D)); Vt = np.zeros((BC, D))
            n = min(Tk, kv0 + BC) - kv0
            Kt[:n] = k[kv0:kv0 + n]; Vt[:n] = v[kv0:kv0 + n]
            s = Qt @ Kt.T
            edge = has_mask or kv0 + BC > Tk or (causal and kv0 + BC - 1 > q0)
            if edge:
                x = s * sc
                ok = (rows[:, None] < Tq) & (cols[None, :] < Tk) & ~(causal & (cols[None, :] > rows[:, None]))
                if has_mask:
                    bb = np.zeros((BR, BC))
                    r_ok = np.minimum(rows, Tq - 1); c_ok = np.minimum(cols, Tk - 1)
                    bb = bias[r_ok][:, c_ok]
                    x = x + bb * LOG2E
                s = np.where(ok, x, -np.inf)
            else:
                s = s * sc
            mx = s.max(1)
            mnew = np.maximum(m, mx)
            ms = np.where(mnew == -np.inf, 0, mnew)
            with np.errstate(invalid='ignore'):
                alpha = np.exp2(m - ms)
            pp = np.exp2(s - ms[:, None])
            l = l * alpha + pp.sum(1); m = mnew
            acc *= alpha[:, None]
            if keep is not None:
                kr = keep[0][np.minimum(rows, Tq - 1)][:, np.minimum(cols, Tk - 1)]
                pp = np.where(kr, pp * keep[1], 0)
            acc += pp @ Vt
        inv = np.where(l > 0, 1 / np.where(l > 0, l, 1), 0)
        nr = qend - q0
        o[q0:qend] = (acc * inv[:, None])[:nr]
        lse[q0:qend] = np.where(l > 0, (m + np.log2(np.where(l > 0, l, 1))) / LOG2E, -np.inf)[:nr]
    return o, lse

def prob(x, sc, L, i, j, Tq, Tk, causal, bias, has_mask):
    ok = (i < Tq) & (j < Tk) & (L != -np.inf) & ~(causal & (j > i))
    x = x * sc
    if has_mask:
        x = x + bias[np.minimum(i, Tq - 1), np.minimum(j, Tk - 1)] * LOG2E
    with np.errstate(invalid='ignore', over='ignore'):
        return np.where(ok, np.exp2(x - np.where(ok, L, 0)), 0)

def bwd(q, k, v, g, o, lse, scale, causal, bias, keep, has_mask):
    Tq, Tk, D = q.shape[0], k.shape[0], q.shape[1]
    Di = (g * o).sum(1)
    sc = scale * LOG2E
    dq = np.zeros_like(q); dk = np.zeros_like(k); dv = np.zeros_like(v)
    L2 = np.where(lse == -np.inf, -np.inf, lse * LOG2E)
    def keepm(i, j):
        if keep is None: return None
        return keep[0][np.minimum(i, Tq - 1)][:, np.minimum(j, Tk - 1)] if i.ndim == 1 else None
    # dK/dV kernel: 64 keys per CTA, 32 queries per step
    KEYS, QS = 64, 32
    for kt in range((Tk + KEYS - 1) // KEYS):
        kv0 = kt * KEYS
        js = np.arange(kv0, kv0 + KEYS)
        Kt = np.zeros((KEYS, D)); Vt = np.zeros((KEYS, D)); n = min(Tk, kv0 + KEYS) - kv0
        Kt[:n] = k[kv0:kv0 + n]; Vt[:n] = v[kv0:kv0 + n]
        i_first = (kv0 // QS) * QS if causal else 0
        n_q = (Tq - i_first + QS - 1) // QS if i_first < Tq else 0
        dka = np.zeros((KEYS, D)); dva = np.zeros((KEYS, D))
        for it in range(n_q):
            i0 = i_first + it * QS
            is_ = np.arange(i0, i0 + QS)
            Qt = np.zeros((QS, D)); Gt = np.zeros((QS, D)); nq = min(Tq, i0 + QS) - i0
            Qt[:nq] = q[i0:i0 + nq]; Gt[:nq] = g[i0:i0 + nq]
            Lt = np.full(QS, -np.inf); Lt[:nq] = L2[i0:i0 + nq]
            Dt = np.zeros(QS); Dt[:nq] = Di[i0:i0 + nq]
            st = Kt @ Qt.T; dpt = Vt @ Gt.T
            edge = has_mask or kv0 + KEYS > Tk or i0 + QS > Tq or (causal and kv0 + KEYS - 1 > i0)
            I = np.broadcast_to(is_[None, :], st.shape); J = np.broadcast_to(js[:, None], st.shape)
            if edge:
                pr = prob(st, sc, Lt[None, :], I, J, Tq, Tk, causal, bias, has_mask)
            else:
                pr = np.exp2(st * sc - Lt[None, :])
            pd, dp = pr, dpt
            if keep is not None:
                kb = keep[0][np.minimum(I, Tq - 1), np.minimum(J, Tk - 1)]
                pd = np.where(kb, pr * keep[1], 0); dp = np.where(kb, dpt * keep[1], 0)
            dst = pr * (dp - Dt[None, :])
            dva += pd @ Gt; dka += dst @ Qt
        dk[kv0:kv0 + n] = (dka * scale)[:n]; dv[kv0:kv0 + n] = dva[:n]
    # dQ kernel: 64 rows per CTA, 32 keys per step
    ROWS, KS = 64, 32
    for qt in range((Tq + ROWS - 1) // ROWS):
        q0 = qt * ROWS
        qend = min(q0 + ROWS, Tq); kend = min(Tk, qend) if causal else Tk
        n_kv = (kend + KS - 1) // KS
        rs = np.arange(q0, q0 + ROWS)
        Qt = np.zeros((ROWS, D)); Gt = np.zeros((ROWS, D)); nr = qend - q0
        Qt[:nr] = q[q0:qend]; Gt[:nr] = g[q0:qend]
        Lr = np.full(ROWS, -np.inf); Lr[:nr] = L2[q0:qend]
        Dr = np.zeros(ROWS); Dr[:nr] = Di[q0:qend]
        dqa = np.zeros((ROWS, D))
        for it in range(n_kv):
            kv0 = it * KS
            js = np.arange(kv0, kv0 + KS)
            Kt = np.zeros((KS, D)); Vt = np.zeros((KS, D)); n = min(Tk, kv0 + KS) - kv0
            Kt[:n] = k[kv0:kv0 + n]; Vt[:n] = v[kv0:kv0 + n]
            s = Qt @ Kt.T; dp = Gt @ Vt.T
            edge = has_mask or kv0 + KS > Tk or q0 + ROWS > Tq or (causal and kv0 + KS - 1 > q0)
            I = np.broadcast_to(rs[:, None], s.shape); J = np.broadcast_to(js[None, :], s.shape)
            pr = prob(s, sc, Lr[:, None], I, J, Tq, Tk, causal, bias, has_mask) if edge else np.exp2(s * sc - Lr[:, None])
            if keep is not None:
                kb = keep[0][np.minimum(I, Tq - 1), np.minimum(J, Tk - 1)]
                dp = np.where(kb, dp * keep[1], 0)
            dqa += (pr * (dp - Dr[:, None])) @ Kt
        dq[q0:qend] = (dqa * scale)[:nr]
    return dq, dk, dv

def run(Tq, Tk, D, causal, mask, drop):
    q, k, v, g = (rng.standard_normal((T, D)) for T in (Tq, Tk, Tk, Tq))
    scale = 1 / np.sqrt(D)
    bias = np.zeros((Tq, Tk)); has_mask = False
    if mask == 'bool':
        bias = np.where(rng.random((Tq, Tk)) < 0.3, -np.inf, 0); bias[::5] = -np.inf; has_mask = True
    elif mask == 'float':
        bias = rng.standard_normal((Tq, Tk)); has_mask = True
    keep = (rng.random((Tq, Tk)) > 0.25, 1 / 0.75) if drop else None
    o_r, lse_r, dq_r, dk_r, dv_r = ref(q, k, v, g, scale, causal, bias, keep)
    o, lse = fwd(q, k, v, scale, causal, bias, keep, has_mask)
    assert np.allclose(o, o_r, atol=1e-9), ("o", Tq, Tk, D, causal, mask, drop)
    assert np.allclose(lse, lse_r), ("lse", Tq, Tk, causal, mask)
    assert not np.isnan(o).any()
    dq, dk, dv = bwd(q, k, v, g, o, lse, scale, causal, bias, keep, has_mask)
    for a, b, nm in ((dq, dq_r, 'dq'), (dk, dk_r, 'dk'), (dv, dv_r, 'dv')):
        assert not np.isnan(a).any(), nm
        assert np.allclose(a, b, atol=1e-9), (nm, Tq, Tk, D, causal, mask, drop, np.abs(a - b).max())

n = 0
for Tq, Tk in ((1, 1), (7, 7), (65, 65), (200, 200), (65, 200), (200, 7), (130, 129), (64, 64), (128, 256)):
    for causal in (False, True):
        for mask in (None, 'bool', 'float'):
            for drop in (False, True):
                run(Tq, Tk, 32, causal, mask, drop); n += 1
print("tile-level port agrees with the dense reference in", n, "cases")
