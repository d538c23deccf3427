// Batched strided GEMM, C = alpha * A @ B + beta * C, in the BLIS / GotoBLAS style.
//
// Loop nest for one matrix (MR x NR micro-tile, KC / MC / NC cache blocks):
//   jc over N by NC        B panel KC x NC packed once into NR-column slivers (L3),
//     pc over K by KC        shared by all threads (each packs a share, then a barrier)
//       ic over M by MC        A block MC x KC packed into MR-row slivers (per-thread, L2)
//         jr over NC by NR       one B sliver KC x NR stays in L1
//           ir over MC by MR       micro-kernel: MR x NR accumulators in registers
// Packing reads A and B through their (row, column) strides, so transposed operands
// cost nothing extra and the micro-kernel always sees unit-stride, aligned data.
// The first KC block applies beta, later ones accumulate (beta = 1); edge tiles are
// computed into a local tile and merged.
//
// Blocking (KC, MC, NC), per micro-kernel, chosen at run time by CPU feature:
//   AVX-512 f32 14x32: KC 256, MC 896, NC 4096     AVX2 f32 6x16: KC 512*, MC 192, NC 4096
//   AVX-512 f64 14x16: KC 256, MC 448, NC 2048     AVX2 f64 6x8:  KC 512*, MC 96,  NC 2048
//   (* 256 where the L1d is under 48 KiB)
//   portable 4x8 (either dtype): KC 256, MC 128, NC 2048
// Block sizes are evened out so that no block is a sliver (K = 300 gives 2 x 150).
//
// Threads: many independent matrices (a batch) are spread over the pool, one per thread
// at a time. Otherwise all threads work on each matrix: the B panel is packed jointly
// into one of two shared buffers (double buffering leaves one barrier per KC step), and
// the C blocks of each KC step are claimed by whichever thread asks next; a block's KC
// steps run in order (BlockOrder), so every partial sum is added in the same order
// whoever computes it. Problems below ~32K multiply-adds skip packing.
#include "cpu/gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cpu/scratch.h"
#include "threadpool.h"

namespace ng {
namespace {

using detail::GemmKernel;

// ---------------------------------------------------------------- portable kernel

template <class T, int MR, int NR, int ROWS>
void ukr_portable(int64_t k, const T* __restrict ap, const T* __restrict bp, int64_t ldb, T* __restrict c,
                  int64_t ldc, T alpha, T beta, int cols) {
  T acc[ROWS][NR] = {};
  for (int64_t p = 0; p < k; ++p, ap += MR, bp += ldb)
    for (int i = 0; i < ROWS; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += ap[i] * bp[j];
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < cols; ++j)
      c[i * ldc + j] = beta == 0 ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[i * ldc + j];
}

template <class T, size_t... R>
GemmKernel<T> portable_kernels(std::index_sequence<R...>) {
  constexpr int MR = sizeof...(R), NR = 8;
  GemmKernel<T> g;
  ((g.ukr[R + 1] = ukr_portable<T, MR, NR, R + 1>), ...);
  g.mr = MR, g.nr = NR, g.kc = 256, g.mc = 128, g.nc = 2048, g.name = "portable 4x8";
  return g;
}

struct KernelTable {
  GemmKernel<float> f32 = portable_kernels<float>(std::make_index_sequence<4>());
  GemmKernel<double> f64 = portable_kernels<double>(std::make_index_sequence<4>());
};

const KernelTable& kernels() {
  static const KernelTable t = [] {
    KernelTable k;
    const CpuFeatures& f = cpu_features();
    const char* force = std::getenv("NODEGRAD_GEMM_KERNEL");  // "avx2" / "portable": for tests
    std::string want = force ? force : "";
    if (f.avx512f && want.empty()) {
      detail::gemm_kernels_avx512(&k.f32, &k.f64);
      if (f.avx2 && f.fma) detail::gemm_skinny_avx2(&k.f32);
    }
    else if (f.avx2 && f.fma && want != "portable") detail::gemm_kernels_avx2(&k.f32, &k.f64);
    return k;
  }();
  return t;
}
template <class T> const GemmKernel<T>& kernel_for();
template <> const GemmKernel<float>& kernel_for<float>() { return kernels().f32; }
template <> const GemmKernel<double>& kernel_for<double>() { return kernels().f64; }

// ---------------------------------------------------------------- scratch and sync

// Packing buffers, one per thread and role, so repeated calls allocate nothing.
thread_local Scratch tl_apack("matmul"), tl_bpack("matmul"), tl_shared[2] = {Scratch("matmul"), Scratch("matmul")};


// Work of one KC step, shared by the threads of one matrix: B-panel chunks to pack and
// C blocks to compute, each claimed by whichever thread asks next (`next`) and counted
// when finished (`done`). A thread that starts late (a sleeping worker takes tens of
// microseconds to wake here) finds less or nothing left instead of holding others up.
struct WorkCounter {
  std::atomic<int64_t> next{0}, done{0};
};
struct StepWork {
  WorkCounter pack, comp;
};
// Order of the KC steps on one C block. Blocks are claimed dynamically, so block b of
// step s may go to another thread than block b of step s-1; step s accumulates onto
// what step s-1 wrote (beta = 1), so it must not start before that write is finished.
// One flag per (step, block), set with release when the block's step is done; the next
// step's owner acquires it. This fixes the order of every partial sum, so the result is
// bitwise the same whichever thread computes which block.
struct BlockOrder {
  std::unique_ptr<std::atomic<uint8_t>[]> done;  // [step * stride + block]
  int64_t stride = 0;
  std::atomic<uint8_t>& at(int64_t step, int64_t block) const { return done[step * stride + block]; }
};

// Spins (then yields, so an oversubscribed machine still progresses) until c >= n.
template <class C>
inline void wait_until(const std::atomic<C>& c, C n) {
  for (int spins = 0; c.load(std::memory_order_acquire) < n; ++spins) {
    if (spins < 4000) cpu_relax();
    else std::this_thread::yield();
  }
}

// fn(begin, end) over chunks of [0, n), claimed by nt threads as they come.
template <class F>
void dynamic_for(int nt, int64_t n, int64_t chunk, const F& fn) {
  std::atomic<int64_t> next{0};
  parallel_run(nt, [&](int, int) {
    for (int64_t b; (b = next.fetch_add(chunk, std::memory_order_relaxed)) < n;) fn(b, std::min(n, b + chunk));
  });
}

// ---------------------------------------------------------------- problem and packing

template <class T>
struct Problem {
  int64_t M, N, K;
  const T* a;
  int64_t rsa, csa;
  const T* b;
  int64_t rsb, csb;
  T* c;
  int64_t rsc, csc;
  T alpha, beta;
};

// C^T = B^T A^T: a column-major C becomes a row-major one, which the kernels prefer.
template <class T>
Problem<T> transposed(const Problem<T>& p) {
  return Problem<T>{p.N, p.M, p.K, p.b, p.csb, p.rsb, p.a, p.csa, p.rsa, p.c, p.csc, p.rsc, p.alpha, p.beta};
}

// Packing walks the source along its unit-stride direction with many rows in flight at
// once (a cache line of each per step, the next lines prefetched): reading one short
// strided row at a time leaves each load waiting on memory.
constexpr int64_t kLine = 16;  // elements per step along a source row (>= one cache line)

// m rows x kc columns of A (at a) into MR-row slivers, k-major, zero-padded rows.
template <class T, int MR>
void pack_a(const T* a, int64_t rsa, int64_t csa, int64_t m, int64_t kc, T* dst) {
  if (rsa == 1 && csa != 1) {  // column-major A: each column is a contiguous run of m
    for (int64_t p = 0; p < kc; ++p) {
      const T* col = a + p * csa;
      T* d = dst + p * MR;
      int64_t i0 = 0;
      for (; i0 + MR <= m; i0 += MR, d += MR * kc)
        for (int r = 0; r < MR; ++r) d[r] = col[i0 + r];
      if (i0 < m)
        for (int r = 0; r < MR; ++r) d[r] = i0 + r < m ? col[i0 + r] : T(0);
    }
    return;
  }
  for (int64_t i0 = 0; i0 < m; i0 += MR, dst += MR * kc) {
    const T* src = a + i0 * rsa;
    const int rows = static_cast<int>(std::min<int64_t>(MR, m - i0));
    if (csa == 1) {  // row-major A: MR rows advance together, a line at a time
      for (int64_t p0 = 0; p0 < kc; p0 += kLine) {
        const int64_t np = std::min(kLine, kc - p0);
        for (int r = 0; r < rows; ++r) {
          const T* s = src + r * rsa + p0;
          __builtin_prefetch(s + 4 * kLine);
          for (int64_t q = 0; q < np; ++q) dst[(p0 + q) * MR + r] = s[q];
        }
        for (int r = rows; r < MR; ++r)
          for (int64_t q = 0; q < np; ++q) dst[(p0 + q) * MR + r] = T(0);
      }
    } else {
      for (int64_t p = 0; p < kc; ++p)
        for (int r = 0; r < MR; ++r) dst[p * MR + r] = r < rows ? src[r * rsa + p * csa] : T(0);
    }
  }
}

// kc rows of B (at b) into the NR-column slivers s0 .. s1 of a panel n columns wide
// (sliver s at dst + s * NR * kc), zero-padded past column n.
template <class T, int NR>
void pack_b(const T* b, int64_t rsb, int64_t csb, int64_t kc, int64_t n, int64_t s0, int64_t s1, T* dst) {
  const int64_t full = std::min(s1, n / NR);  // slivers without padding
  if (csb == 1) {  // row-major B: each row is a contiguous run across all slivers
    for (int64_t p = 0; p < kc; ++p) {
      const T* row = b + p * rsb;
      __builtin_prefetch(row + 4 * rsb + s0 * NR);
      for (int64_t s = s0; s < full; ++s)
        for (int j = 0; j < NR; ++j) dst[(s * kc + p) * NR + j] = row[s * NR + j];
    }
  } else if (rsb == 1) {  // column-major B: NR columns advance together, a line at a time
    for (int64_t s = s0; s < full; ++s) {
      T* d = dst + s * NR * kc;
      for (int64_t p0 = 0; p0 < kc; p0 += kLine) {
        const int64_t np = std::min(kLine, kc - p0);
        for (int j = 0; j < NR; ++j) {
          const T* c = b + (s * NR + j) * csb + p0;
          __builtin_prefetch(c + 4 * kLine);
          for (int64_t q = 0; q < np; ++q) d[(p0 + q) * NR + j] = c[q];
        }
      }
    }
  } else {
    for (int64_t s = s0; s < full; ++s)
      for (int64_t p = 0; p < kc; ++p)
        for (int j = 0; j < NR; ++j) dst[(s * kc + p) * NR + j] = b[p * rsb + (s * NR + j) * csb];
  }
  for (int64_t s = std::max(s0, full); s < s1; ++s)  // the ragged last sliver
    for (int64_t p = 0; p < kc; ++p)
      for (int j = 0; j < NR; ++j) {
        const int64_t col = s * NR + j;
        dst[(s * kc + p) * NR + j] = col < n ? b[p * rsb + col * csb] : T(0);
      }
}

template <class T>
void pack_a_any(const GemmKernel<T>& kr, const T* a, int64_t rsa, int64_t csa, int64_t m, int64_t kc, T* dst) {
  const int mr = kr.mr;
  if (kr.pack_a_cols && rsa == 1 && csa != 1) {
    const int64_t full = m / mr * mr;
    for (int64_t i0 = 0; i0 < full; i0 += mr) kr.pack_a_cols(a + i0, csa, kc, m - i0, dst + i0 * kc);
    if (full == m) return;
    a += full, m -= full, dst += full * kc;
  }
  if (kr.pack_a_rows && csa == 1 && rsa != 1) {
    const int64_t full = m / mr * mr;
    for (int64_t i0 = 0; i0 < full; i0 += mr) kr.pack_a_rows(a + i0 * rsa, rsa, kc, dst + i0 * kc);
    if (full == m) return;
    a += full * rsa, m -= full, dst += full * kc;
  }
  switch (mr) {
    case 14: return pack_a<T, 14>(a, rsa, csa, m, kc, dst);
    case 6: return pack_a<T, 6>(a, rsa, csa, m, kc, dst);
    case 4: return pack_a<T, 4>(a, rsa, csa, m, kc, dst);
  }
  throw Error("matmul: no packing routine for MR=" + std::to_string(mr));
}

template <class T>
void pack_b_any(const GemmKernel<T>& kr, const T* b, int64_t rsb, int64_t csb, int64_t kc, int64_t n, int64_t s0,
                int64_t s1, T* dst) {
  const int nr = kr.nr;
  if (kr.pack_b_cols && rsb == 1 && csb != 1) {
    const int64_t full = std::min(s1, n / nr);
    for (; s0 < full; ++s0) kr.pack_b_cols(b + s0 * nr * csb, csb, kc, dst + s0 * nr * kc);
    if (s0 >= s1) return;
  }
  switch (nr) {
    case 32: return pack_b<T, 32>(b, rsb, csb, kc, n, s0, s1, dst);
    case 16: return pack_b<T, 16>(b, rsb, csb, kc, n, s0, s1, dst);
    case 8: return pack_b<T, 8>(b, rsb, csb, kc, n, s0, s1, dst);
  }
  throw Error("matmul: no packing routine for NR=" + std::to_string(nr));
}

// C[m x n] = alpha * tile + beta * C (C not read when beta == 0).
template <class T>
void merge_tile(T* c, int64_t rsc, int64_t csc, int64_t m, int64_t n, const T* tile, int64_t ldt, T alpha,
                T beta) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      T& d = c[i * rsc + j * csc];
      d = beta == 0 ? alpha * tile[i * ldt + j] : alpha * tile[i * ldt + j] + beta * d;
    }
}

// Splits n items into blocks of at most `block`, of near-equal size rounded up to `unit`.
inline int64_t even_block(int64_t n, int64_t block, int64_t unit) {
  if (n <= block) return n;
  int64_t nb = (n + block - 1) / block;
  int64_t b = (n + nb - 1) / nb;
  return std::min(block, (b + unit - 1) / unit * unit);
}

// ---------------------------------------------------------------- small problems

// Unpacked loops for products where packing costs more than it saves: tiny ones, and
// skinny ones (a few rows or columns, memory-bound). Computes C[i0:i1, j0:j1].
//  - dot form when A rows and B columns are both contiguous (x @ W^T with few rows of x):
//    each C element is one dot product, summed in kLanes independent partial sums so
//    the compiler can vectorise it without reassociating a single running sum;
//  - axpy form otherwise: C rows, in column chunks that stay in L1, accumulate
//    alpha * A[i, p] * B[p, :], so each chunk of a B row is read once for all rows.
constexpr int64_t kDirectMacs = 32768;  // below this many multiply-adds the product runs unpacked
constexpr int kLanes = 16;

template <class T>
inline bool dot_form(const Problem<T>& P) {
  return P.rsb == 1 && P.csa == 1 && P.csb != 1;
}
// The ISA's unpacked kernels for a few rows (short: row-major B; dot: contiguous B
// columns) or a few columns (narrow) of C, where the kernel table has them.
template <class T>
inline bool short_fits(const GemmKernel<T>& kr, const Problem<T>& P, int64_t m) {
  return kr.gemm_short && m <= 4 && P.csb == 1 && P.csc == 1;
}
template <class T>
inline bool dot_fits(const GemmKernel<T>& kr, const Problem<T>& P, int64_t m) {
  return kr.gemm_dot && m <= 4 && dot_form(P);
}
template <class T>
inline bool narrow_fits(const GemmKernel<T>& kr, int64_t n) {
  return kr.gemm_narrow && n <= 8;
}

template <class T>
void gemm_direct(const GemmKernel<T>& kr, const Problem<T>& P, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  if (i0 >= i1 || j0 >= j1) return;
  const T* a = P.a + i0 * P.rsa;
  T* c = P.c + i0 * P.rsc + j0 * P.csc;
  if (dot_fits(kr, P, i1 - i0))
    return kr.gemm_dot(i1 - i0, j1 - j0, P.K, a, P.rsa, P.b + j0 * P.csb, P.csb, c, P.rsc, P.csc, P.alpha, P.beta);
  if (narrow_fits(kr, j1 - j0))
    return kr.gemm_narrow(i1 - i0, static_cast<int>(j1 - j0), P.K, a, P.rsa, P.csa, P.b + j0 * P.csb, P.rsb, P.csb, c,
                          P.rsc, P.csc, P.alpha, P.beta);
  if (short_fits(kr, P, i1 - i0))
    return kr.gemm_short(i1 - i0, j1 - j0, P.K, a, P.rsa, P.csa, P.b + j0, P.rsb, c, P.rsc, P.alpha, P.beta);
  if (dot_form(P)) {
    for (int64_t i = i0; i < i1; ++i) {
      const T* ar = P.a + i * P.rsa;
      for (int64_t j = j0; j < j1; ++j) {
        const T* bc = P.b + j * P.csb;
        T part[kLanes] = {};
        int64_t p = 0;
        for (; p + kLanes <= P.K; p += kLanes)
          for (int q = 0; q < kLanes; ++q) part[q] += ar[p + q] * bc[p + q];
        T sum = 0;
        for (; p < P.K; ++p) sum += ar[p] * bc[p];
        for (int q = 0; q < kLanes; ++q) sum += part[q];
        T& d = P.c[i * P.rsc + j * P.csc];
        d = P.beta == 0 ? P.alpha * sum : P.alpha * sum + P.beta * d;
      }
    }
    return;
  }
  constexpr int64_t JC = 512;
  const bool unit = P.csb == 1 && P.csc == 1;
  for (int64_t jb = j0; jb < j1; jb += JC) {
    const int64_t je = std::min(j1, jb + JC);
    for (int64_t i = i0; i < i1; ++i) {
      T* cr = P.c + i * P.rsc;
      for (int64_t j = jb; j < je; ++j) cr[j * P.csc] = P.beta == 0 ? T(0) : P.beta * cr[j * P.csc];
    }
    for (int64_t p = 0; p < P.K; ++p) {
      const T* br = P.b + p * P.rsb;
      for (int64_t i = i0; i < i1; ++i) {
        const T av = P.alpha * P.a[i * P.rsa + p * P.csa];
        T* cr = P.c + i * P.rsc;
        if (unit)
          for (int64_t j = jb; j < je; ++j) cr[j] += av * br[j];
        else
          for (int64_t j = jb; j < je; ++j) cr[j * P.csc] += av * br[j * P.csb];
      }
    }
  }
}

template <class T>
bool use_direct(const GemmKernel<T>& kr, const Problem<T>& P) {
  return P.M * P.N * P.K <= kDirectMacs || P.N <= 4 || (P.M <= 4 && dot_form(P)) || short_fits(kr, P, P.M) ||
         narrow_fits(kr, P.N);
}

// ---------------------------------------------------------------- packed path

constexpr int64_t kParallelMacs = int64_t(8) << 20;

// Block sizes for one matrix, the same for every thread.
struct Plan {
  int64_t kc, nc;  // evened-out KC and NC
  int64_t rb;      // MR-row slivers per C block (at most MC rows)
  int nt;          // threads sharing each matrix
};

template <class T>
Plan make_plan(const GemmKernel<T>& kr, const Problem<T>& P, int nt) {
  Plan pl;
  pl.kc = even_block(P.K, kr.kc, 8);
  pl.nc = even_block(P.N, kr.nc, kr.nr);
  pl.nt = nt;
  // Alone: MC-row blocks. Shared: ~8 blocks per thread, so that the dynamic sharing
  // evens out (down to single MR-row slivers for small M).
  const int64_t sa = (P.M + kr.mr - 1) / kr.mr, mc_sl = std::max<int64_t>(1, kr.mc / kr.mr);
  pl.rb = nt == 1 ? mc_sl : std::max<int64_t>(1, std::min(mc_sl, (sa + 8 * nt - 1) / (8 * nt)));
  return pl;
}

// Column groups per row block for a panel of sb_all slivers: the C blocks are row blocks
// of pl.rb slivers across the panel, split into column groups only when there are too
// few row blocks to share out (each group repacks its A).
inline int64_t column_groups(const Plan& pl, int64_t nrb, int64_t sb_all) {
  return pl.nt == 1 || nrb >= 2 * pl.nt ? 1 : std::min(sb_all, (8 * pl.nt + nrb - 1) / nrb);
}

// Number of KC steps (jc, pc pairs) of one matrix.
inline int64_t count_steps(const Plan& pl, const int64_t N, const int64_t K) {
  return ((N + pl.nc - 1) / pl.nc) * ((K + pl.kc - 1) / pl.kc);
}

// Size (elements) of one B panel buffer.
template <class T>
size_t bpanel_size(const GemmKernel<T>& kr, const Plan& pl) {
  return static_cast<size_t>(pl.kc) * ((pl.nc + kr.nr - 1) / kr.nr) * kr.nr;
}

// One matrix, by one of pl.nt threads. bpanel: two B panel buffers used alternately;
// work: one StepWork per KC step (null when alone); `step` numbers KC steps across the
// matrices of one call, so all threads agree on buffers and counters.
template <class T>
void gemm_packed(const GemmKernel<T>& kr, const Plan& pl, const Problem<T>& P, T* const bpanel[2], StepWork* work,
                 const BlockOrder* order, int64_t& step, int64_t prev_items[2]) {
  const int MR = kr.mr, NR = kr.nr;
  const int64_t sa_all = (P.M + MR - 1) / MR, nrb = (sa_all + pl.rb - 1) / pl.rb;
  T* abuf = tl_apack.get<T>(static_cast<size_t>(pl.rb) * MR * pl.kc);
  alignas(64) T tile[16 * 32];
  constexpr int64_t kPackChunk = 4;  // B slivers per packing work item
  auto claim = [](WorkCounter* c, int64_t& local) {
    return c ? c->next.fetch_add(1, std::memory_order_relaxed) : local++;
  };

  for (int64_t jc = 0; jc < P.N; jc += pl.nc) {
    const int64_t nc = std::min(pl.nc, P.N - jc), sb_all = (nc + NR - 1) / NR;
    const int64_t ncg = column_groups(pl, nrb, sb_all);
    const int64_t cg = (sb_all + ncg - 1) / ncg, nitems = nrb * ncg;
    // With few rows of A each B sliver is used once or twice: full slivers of a
    // row-major B are then read in place and only the ragged last one is packed.
    const int64_t sb_full = nc / NR;
    const bool in_place = P.csb == 1 && sa_all <= 2;
    const int64_t npack = in_place ? (sb_full < sb_all) : (sb_all + kPackChunk - 1) / kPackChunk;
    for (int64_t pc = 0; pc < P.K; pc += pl.kc) {
      const int64_t kc = std::min(pl.kc, P.K - pc), s = step++;
      StepWork* w = work ? work + s : nullptr;
      T* bp = bpanel[s & 1];
      // This buffer last held step s-2's panel: every block of that step must be done.
      if (w && s >= 2) wait_until(work[s - 2].comp.done, prev_items[s & 1]);
      prev_items[s & 1] = nitems;
      int64_t local = 0;
      for (int64_t c; (c = claim(w ? &w->pack : nullptr, local)) < npack;) {
        const int64_t s0 = in_place ? sb_full : c * kPackChunk, s1 = std::min(sb_all, s0 + kPackChunk);
        pack_b_any(kr, P.b + pc * P.rsb + jc * P.csb, P.rsb, P.csb, kc, nc, s0, s1, bp);
        if (w) w->pack.done.fetch_add(1, std::memory_order_release);
      }
      if (w) wait_until(w->pack.done, npack);
      const T beta = pc == 0 ? P.beta : T(1);
      local = 0;
      int64_t packed_r = -1;  // row block now in abuf (for this step)
      for (int64_t it; (it = claim(w ? &w->comp : nullptr, local)) < nitems;) {
        // Step s-1 of this block (same panel, pc > 0) may still be running elsewhere.
        if (w && pc > 0) wait_until(order->at(s - 1, it), uint8_t(1));
        const int64_t r = it / ncg, g = it % ncg;
        const int64_t ia = r * pl.rb, na = std::min(pl.rb, sa_all - ia), i0 = ia * MR;
        if (packed_r != r) {
          pack_a_any(kr, P.a + i0 * P.rsa + pc * P.csa, P.rsa, P.csa, std::min(na * MR, P.M - i0), kc, abuf);
          packed_r = r;
        }
        for (int64_t sb = g * cg, se = std::min(sb_all, sb + cg); sb < se; ++sb) {
          const int64_t j0 = jc + sb * NR, ncols = std::min<int64_t>(NR, jc + nc - j0);
          const bool direct = in_place && sb < sb_full;
          const T* bsl = direct ? P.b + pc * P.rsb + j0 : bp + sb * NR * kc;
          const int64_t ldb = direct ? P.rsb : NR;
          for (int64_t q = 0; q < na; ++q) {
            const int64_t r0 = i0 + q * MR, nrows = std::min<int64_t>(MR, P.M - r0);
            const T* asl = abuf + q * MR * kc;
            T* cp = P.c + r0 * P.rsc + j0 * P.csc;
            if (P.csc == 1) {
              kr.ukr[nrows](kc, asl, bsl, ldb, cp, P.rsc, P.alpha, beta, static_cast<int>(ncols));
            } else {
              kr.ukr[nrows](kc, asl, bsl, ldb, tile, NR, T(1), T(0), NR);
              merge_tile(cp, P.rsc, P.csc, nrows, ncols, tile, NR, P.alpha, beta);
            }
          }
        }
        if (w) {
          order->at(s, it).store(1, std::memory_order_release);
          w->comp.done.fetch_add(1, std::memory_order_release);
        }
      }
    }
  }
}

// One matrix on the calling thread alone.
template <class T>
void gemm_one(const GemmKernel<T>& kr, const Problem<T>& P) {
  if (P.M == 0 || P.N == 0) return;
  if (use_direct(kr, P)) return gemm_direct(kr, P, 0, P.M, 0, P.N);
  const Plan pl = make_plan(kr, P, 1);
  T* bp = tl_bpack.get<T>(bpanel_size(kr, pl));
  T* const panels[2] = {bp, bp};
  int64_t step = 0, prev[2] = {0, 0};
  gemm_packed(kr, pl, P, panels, nullptr, nullptr, step, prev);
}

// ---------------------------------------------------------------- batch driver

template <class T>
void gemm_typed(const View& A, const View& B, const View& C, double alpha, double beta) {
  const int nb = C.ndim - 2;
  const int64_t M = C.shape[nb], N = C.shape[nb + 1], K = A.shape[nb + 1];
  int64_t batch = 1;
  for (int d = 0; d < nb; ++d) batch *= C.shape[d];
  if (batch == 0 || M == 0 || N == 0) return;

  Problem<T> base{M, N, K, A.ptr<T>(), A.strides[nb], A.strides[nb + 1], B.ptr<T>(), B.strides[nb],
                  B.strides[nb + 1], C.ptr<T>(), C.strides[nb], C.strides[nb + 1], static_cast<T>(alpha),
                  static_cast<T>(beta)};
  // Unit column stride in C makes whole tiles writable in place.
  if (base.csc != 1 && base.rsc == 1) base = transposed(base);
  auto problem_at = [&](int64_t idx) {
    Problem<T> p = base;
    for (int d = nb - 1; d >= 0; --d) {
      int64_t i = idx % C.shape[d];
      idx /= C.shape[d];
      p.a += i * A.strides[d];
      p.b += i * B.strides[d];
      p.c += i * C.strides[d];
    }
    return p;
  };

  const GemmKernel<T>& kr = kernel_for<T>();
  const int64_t macs = M * N * K;  // per matrix
  // Waking the pool costs tens of microseconds (more on a busy machine), so each thread
  // must get a few million multiply-adds before threads pay off.
  const int64_t total = macs * batch;
  const int nt = total < kParallelMacs ? 1 : static_cast<int>(std::min<int64_t>(num_threads(), total / (kParallelMacs / 2)));
  if (nt <= 1) {
    for (int64_t i = 0; i < batch; ++i) gemm_one(kr, problem_at(i));
    return;
  }
  // Whole matrices per thread when there are enough of them to balance, or when they
  // are too small to share.
  if (batch >= nt && (batch % nt == 0 || batch >= 4 * nt || macs < kParallelMacs)) {
    dynamic_for(nt, batch, 1, [&](int64_t b0, int64_t) { gemm_one(kr, problem_at(b0)); });
    return;
  }
  if (use_direct(kr, base)) {  // skinny matrices: split the long side of each
    const bool by_rows = M >= N;
    const int64_t n = by_rows ? M : N;
    // A few rows of C stream B once: long column runs keep the row reads sequential.
    const int64_t chunk = !by_rows && short_fits(kr, base, M) ? std::max<int64_t>(256, (n / (2 * nt) + 7) / 8 * 8)
                                                               : std::max<int64_t>(16, n / (8 * nt));
    for (int64_t i = 0; i < batch; ++i) {
      const Problem<T> p = problem_at(i);
      dynamic_for(nt, n, chunk, [&](int64_t s, int64_t e) {
        if (by_rows) gemm_direct(kr, p, s, e, 0, N);
        else gemm_direct(kr, p, 0, M, s, e);
      });
    }
    return;
  }
  // All threads on each matrix in turn.
  const Plan pl = make_plan(kr, base, nt);
  const size_t psz = bpanel_size(kr, pl);
  T* const panels[2] = {tl_shared[0].get<T>(psz), tl_shared[1].get<T>(psz)};
  const int64_t nsteps = count_steps(pl, base.N, base.K) * batch;
  std::unique_ptr<StepWork[]> work(new StepWork[static_cast<size_t>(nsteps)]);
  // Blocks per step: the widest panel (the first) has the most column groups.
  const int64_t nrb = ((base.M + kr.mr - 1) / kr.mr + pl.rb - 1) / pl.rb;
  BlockOrder order;
  order.stride = nrb * column_groups(pl, nrb, (std::min(pl.nc, base.N) + kr.nr - 1) / kr.nr);
  order.done.reset(new std::atomic<uint8_t>[static_cast<size_t>(nsteps * order.stride)]());
  parallel_run(nt, [&](int, int) {
    int64_t step = 0, prev[2] = {0, 0};
    for (int64_t i = 0; i < batch; ++i) gemm_packed(kr, pl, problem_at(i), panels, work.get(), &order, step, prev);
  });
}

}  // namespace

const char* gemm_kernel_name() { return kernels().f32.name; }

void gemm(const View& a, const View& b, const View& c, double alpha, double beta) {
  if (a.dtype != b.dtype || a.dtype != c.dtype || (a.dtype != DType::F32 && a.dtype != DType::F64))
    throw Error(std::string("matmul: operands must all be float32 or all float64 (got ") + dtype_name(a.dtype) +
                ", " + dtype_name(b.dtype) + " and " + dtype_name(c.dtype) + ")");
  NG_CHECK(c.ndim >= 2 && a.ndim == c.ndim && b.ndim == c.ndim, "matmul: views must share their batch rank");
  const int nb = c.ndim - 2;
  for (int d = 0; d < nb; ++d)
    NG_CHECK(a.shape[d] == c.shape[d] && b.shape[d] == c.shape[d], "matmul: batch shapes differ");
  NG_CHECK(a.shape[nb] == c.shape[nb] && b.shape[nb + 1] == c.shape[nb + 1] && a.shape[nb + 1] == b.shape[nb],
           "matmul: matrix shapes do not chain (A [M,K] @ B [K,N] -> C [M,N])");
  if (a.dtype == DType::F32) gemm_typed<float>(a, b, c, alpha, beta);
  else gemm_typed<double>(a, b, c, alpha, beta);
}

}  // namespace ng
