# Runs without a GPU: python3 bench/kernels/attention/fragments_check.py (numpy).
# Desk-check of the flash kernels' fragment index math against the PTX semantics of
# ldmatrix(.trans) and mma.m16n8k16 (row.col), per warp, in numpy.
import numpy as np
rng = np.random.default_rng(0)

def ldsm(mem, addrs, trans=False):
    # mem: flat array; addrs[lane] -> row start of matrix lane//8, row lane%8
    rows = [[addrs[m*8 + r] for r in range(8)] for m in range(4)]
    out = np.zeros((32, 4, 2))
    for L in range(32):
        g, t = L // 4, L % 4
        for m in range(4):
            for i in range(2):
                if not trans:
                    out[L, m, i] = mem[rows[m][g] + 2*t + i]
                else:
                    out[L, m, i] = mem[rows[m][2*t + i] + g]
    return out  # [lane, reg, half]

def mma(c, a, b0, b1):
    # c [32,4], a [32,4,2], b0/b1 [32,2]
    A = np.zeros((16, 16)); B = np.zeros((16, 8))
    for L in range(32):
        g, t = L // 4, L % 4
        A[g, 2*t:2*t+2] = a[L, 0]; A[g+8, 2*t:2*t+2] = a[L, 1]
        A[g, 2*t+8:2*t+10] = a[L, 2]; A[g+8, 2*t+8:2*t+10] = a[L, 3]
        B[2*t:2*t+2, g] = b0[L]; B[2*t+8:2*t+10, g] = b1[L]
    C = A @ B
    for L in range(32):
        g, t = L // 4, L % 4
        c[L, 0:2] += C[g, 2*t:2*t+2]; c[L, 2:4] += C[g+8, 2*t:2*t+2]

def c_to_a(s, kk):  # s [32, NT, 4] -> a [32, 4, 2] for k-step kk
    a = np.zeros((32, 4, 2))
    a[:, 0] = s[:, 2*kk, 0:2]; a[:, 1] = s[:, 2*kk, 2:4]
    a[:, 2] = s[:, 2*kk+1, 0:2]; a[:, 3] = s[:, 2*kk+1, 2:4]
    return a

def frag_to_mat(f, rows, cols):  # f [32, NT, 4] -> [16, NT*8]
    M = np.zeros((16, f.shape[1]*8))
    for L in range(32):
        g, t = L // 4, L % 4
        for n in range(f.shape[1]):
            M[g, n*8+2*t:n*8+2*t+2] = f[L, n, 0:2]; M[g+8, n*8+2*t:n*8+2*t+2] = f[L, n, 2:4]
    return M

lanes = np.arange(32)
def check_fwd(D, BR=64, BC=64, warp=1):
    LDS = D + 8
    Q = rng.standard_normal((BR, D)); K = rng.standard_normal((BC, D)); V = rng.standard_normal((BC, D))
    def smem(X):
        m = np.zeros(X.shape[0]*LDS); 
        for r in range(X.shape[0]): m[r*LDS:r*LDS+D] = X[r]
        return m
    sQ, sK, sV = smem(Q), smem(K), smem(V)
    KD, NT = D // 16, BC // 8
    qf = [ldsm(sQ, [(warp*16 + (L & 7) + ((L >> 3) & 1)*8)*LDS + kk*16 + (L >> 4)*8 for L in lanes]) for kk in range(KD)]
    s = np.zeros((32, NT, 4))
    for kk in range(KD):
        for n2 in range(NT // 2):
            b = ldsm(sK, [(n2*16 + (L & 7) + (L >> 4)*8)*LDS + kk*16 + ((L >> 3) & 1)*8 for L in lanes])
            mma(s[:, 2*n2], qf[kk], b[:, 0], b[:, 1]); mma(s[:, 2*n2+1], qf[kk], b[:, 2], b[:, 3])
    S = frag_to_mat(s, 16, BC)
    assert np.allclose(S, Q[warp*16:warp*16+16] @ K.T), "S"
    P = rng.standard_normal((32, NT, 4)); Pm = frag_to_mat(P, 16, BC)
    o = np.zeros((32, D // 8, 4))
    for kk in range(BC // 16):
        a = c_to_a(P, kk)
        for d2 in range(D // 16):
            b = ldsm(sV, [(kk*16 + (L & 7) + ((L >> 3) & 1)*8)*LDS + d2*16 + (L >> 4)*8 for L in lanes], trans=True)
            mma(o[:, 2*d2], a, b[:, 0], b[:, 1]); mma(o[:, 2*d2+1], a, b[:, 2], b[:, 3])
    assert np.allclose(frag_to_mat(o, 16, D), Pm @ V), "PV"
    print("fwd ok D", D)

def check_dkdv(D, KEYS=64, QS=32, warp=2):
    LDS = D + 8
    K = rng.standard_normal((KEYS, D)); V = rng.standard_normal((KEYS, D))
    Q = rng.standard_normal((QS, D)); G = rng.standard_normal((QS, D))
    def smem(X):
        m = np.zeros(X.shape[0]*LDS)
        for r in range(X.shape[0]): m[r*LDS:r*LDS+D] = X[r]
        return m
    sK, sV, sQ, sG = smem(K), smem(V), smem(Q), smem(G)
    KD, NT = D // 16, QS // 8
    st = np.zeros((32, NT, 4)); dpt = np.zeros((32, NT, 4))
    for kk in range(KD):
        arow = [(warp*16 + (L & 7) + ((L >> 3) & 1)*8)*LDS + kk*16 + (L >> 4)*8 for L in lanes]
        ak, av = ldsm(sK, arow), ldsm(sV, arow)
        for n2 in range(NT // 2):
            brow = [(n2*16 + (L & 7) + (L >> 4)*8)*LDS + kk*16 + ((L >> 3) & 1)*8 for L in lanes]
            b = ldsm(sQ, brow); mma(st[:, 2*n2], ak, b[:, 0], b[:, 1]); mma(st[:, 2*n2+1], ak, b[:, 2], b[:, 3])
            b = ldsm(sG, brow); mma(dpt[:, 2*n2], av, b[:, 0], b[:, 1]); mma(dpt[:, 2*n2+1], av, b[:, 2], b[:, 3])
    Kw, Vw = K[warp*16:warp*16+16], V[warp*16:warp*16+16]
    assert np.allclose(frag_to_mat(st, 16, QS), Kw @ Q.T), "ST"
    assert np.allclose(frag_to_mat(dpt, 16, QS), Vw @ G.T), "dPT"
    P = rng.standard_normal((32, NT, 4)); dS = rng.standard_normal((32, NT, 4))
    dv = np.zeros((32, D // 8, 4)); dk = np.zeros((32, D // 8, 4))
    for kk in range(QS // 16):
        ap, as_ = c_to_a(P, kk), c_to_a(dS, kk)
        for d2 in range(D // 16):
            brow = [(kk*16 + (L & 7) + ((L >> 3) & 1)*8)*LDS + d2*16 + (L >> 4)*8 for L in lanes]
            b = ldsm(sG, brow, True); mma(dv[:, 2*d2], ap, b[:, 0], b[:, 1]); mma(dv[:, 2*d2+1], ap, b[:, 2], b[:, 3])
            b = ldsm(sQ, brow, True); mma(dk[:, 2*d2], as_, b[:, 0], b[:, 1]); mma(dk[:, 2*d2+1], as_, b[:, 2], b[:, 3])
    assert np.allclose(frag_to_mat(dv, 16, D), frag_to_mat(P, 16, QS) @ G), "dV"
    assert np.allclose(frag_to_mat(dk, 16, D), frag_to_mat(dS, 16, QS) @ Q), "dK"
    print("dkdv ok D", D)

def check_dq(D, ROWS=64, KS=32, warp=3):
    LDS = D + 8
    Q = rng.standard_normal((ROWS, D)); G = rng.standard_normal((ROWS, D))
    K = rng.standard_normal((KS, D)); V = rng.standard_normal((KS, D))
    def smem(X):
        m = np.zeros(X.shape[0]*LDS)
        for r in range(X.shape[0]): m[r*LDS:r*LDS+D] = X[r]
        return m
    sQ, sG, sK, sV = smem(Q), smem(G), smem(K), smem(V)
    KD, NT = D // 16, KS // 8
    s = np.zeros((32, NT, 4)); dp = np.zeros((32, NT, 4))
    for kk in range(KD):
        arow = [(warp*16 + (L & 7) + ((L >> 3) & 1)*8)*LDS + kk*16 + (L >> 4)*8 for L in lanes]
        aq, ag = ldsm(sQ, arow), ldsm(sG, arow)
        for n2 in range(NT // 2):
            brow = [(n2*16 + (L & 7) + (L >> 4)*8)*LDS + kk*16 + ((L >> 3) & 1)*8 for L in lanes]
            b = ldsm(sK, brow); mma(s[:, 2*n2], aq, b[:, 0], b[:, 1]); mma(s[:, 2*n2+1], aq, b[:, 2], b[:, 3])
            b = ldsm(sV, brow); mma(dp[:, 2*n2], ag, b[:, 0], b[:, 1]); mma(dp[:, 2*n2+1], ag, b[:, 2], b[:, 3])
    Qw, Gw = Q[warp*16:warp*16+16], G[warp*16:warp*16+16]
    assert np.allclose(frag_to_mat(s, 16, KS), Qw @ K.T), "S"
    assert np.allclose(frag_to_mat(dp, 16, KS), Gw @ V.T), "dP"
    dS = rng.standard_normal((32, NT, 4)); dq = np.zeros((32, D // 8, 4))
    for kk in range(KS // 16):
        a = c_to_a(dS, kk)
        for d2 in range(D // 16):
            b = ldsm(sK, [(kk*16 + (L & 7) + ((L >> 3) & 1)*8)*LDS + d2*16 + (L >> 4)*8 for L in lanes], True)
            mma(dq[:, 2*d2], a, b[:, 0], b[:, 1]); mma(dq[:, 2*d2+1], a, b[:, 2], b[:, 3])
    assert np.allclose(frag_to_mat(dq, 16, D), frag_to_mat(dS, 16, KS) @ K), "dQ"
    print("dq ok D", D)

for D in (32, 64, 96, 128):
    check_fwd(D); check_dkdv(D); check_dq(D)
