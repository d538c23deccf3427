// The CPU's arithmetic peak, measured for the benchmarks' "% of peak" column: the core
// clock from a chain of dependent integer adds (one per cycle on every x86 core since the
// Pentium Pro), and the FMA throughput per cycle from independent FMA chains (enough of
// them to cover the latency of every port). peak = cores x (FMA per cycle x lanes x 2)
// x clock. Each figure is the best of a few short timed runs, so a preempted run does not
// lower it.
#include "cpu/peak.h"

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "common.h"

namespace ng {
namespace {

double seconds_of(void (*fn)(int64_t), int64_t n) {
  double best = 1e30;
  for (int rep = 0; rep < 40; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    fn(n);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

#if defined(__x86_64__)
// n iterations of 8 dependent adds: 8n cycles.
void add_chain(int64_t n) {
  int64_t x = 0;
  for (int64_t i = 0; i < n; ++i)
    __asm__ volatile(
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
        : "+r"(x));
}

// n iterations of 12 independent 256-bit FMAs.
__attribute__((target("avx2,fma"))) void fma_ymm(int64_t n) {
  __asm__ volatile("vxorps %%ymm0, %%ymm0, %%ymm0" ::: "xmm0");
  for (int64_t i = 0; i < n; ++i)
    __asm__ volatile(
        "vfmadd231ps %%ymm0, %%ymm0, %%ymm4\n\tvfmadd231ps %%ymm0, %%ymm0, %%ymm5\n\t"
        "vfmadd231ps %%ymm0, %%ymm0, %%ymm6\n\tvfmadd231ps %%ymm0, %%ymm0, %%ymm7\n\t"
        "vfmadd231ps %%ymm0, %%ymm0, %%ymm8\n\tvfmadd231ps %%ymm0, %%ymm0, %%ymm9\n\t"
        "vfmadd231ps %%ymm0, %%ymm0, %%ymm10\n\tvfmadd231ps %%ymm0, %%ymm0, %%ymm11\n\t"
        "vfmadd231ps %%ymm0, %%ymm0, %%ymm12\n\tvfmadd231ps %%ymm0, %%ymm0, %%ymm13\n\t"
        "vfmadd231ps %%ymm0, %%ymm0, %%ymm14\n\tvfmadd231ps %%ymm0, %%ymm0, %%ymm15" ::
            : "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

// n iterations of 12 independent 512-bit FMAs.
__attribute__((target("avx512f"))) void fma_zmm(int64_t n) {
  __asm__ volatile("vpxord %%zmm0, %%zmm0, %%zmm0" ::: "xmm0");
  for (int64_t i = 0; i < n; ++i)
    __asm__ volatile(
        "vfmadd231ps %%zmm0, %%zmm0, %%zmm16\n\tvfmadd231ps %%zmm0, %%zmm0, %%zmm17\n\t"
        "vfmadd231ps %%zmm0, %%zmm0, %%zmm18\n\tvfmadd231ps %%zmm0, %%zmm0, %%zmm19\n\t"
        "vfmadd231ps %%zmm0, %%zmm0, %%zmm20\n\tvfmadd231ps %%zmm0, %%zmm0, %%zmm21\n\t"
        "vfmadd231ps %%zmm0, %%zmm0, %%zmm22\n\tvfmadd231ps %%zmm0, %%zmm0, %%zmm23\n\t"
        "vfmadd231ps %%zmm0, %%zmm0, %%zmm24\n\tvfmadd231ps %%zmm0, %%zmm0, %%zmm25\n\t"
        "vfmadd231ps %%zmm0, %%zmm0, %%zmm26\n\tvfmadd231ps %%zmm0, %%zmm0, %%zmm27" ::
            : "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26",
              "xmm27");
}
#endif

}  // namespace

CpuPeak measure_cpu_peak() {
  CpuPeak p;
#if defined(__x86_64__)
  const int64_t n = 200'000;  // ~0.5 ms per run at 3 GHz: short runs, so the best is rarely preempted
  p.ghz = 8.0 * n / seconds_of(add_chain, n) / 1e9;
  const CpuFeatures& f = cpu_features();
  if (f.avx2 && f.fma) p.fma_ymm_per_cycle = 12.0 * n / (seconds_of(fma_ymm, n) * p.ghz * 1e9);
  if (f.avx512f) p.fma_zmm_per_cycle = 12.0 * n / (seconds_of(fma_zmm, n) * p.ghz * 1e9);
#endif
  return p;
}

}  // namespace ng
