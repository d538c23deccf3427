// A small fixed thread pool. The calling thread always takes part, so a pool of N
// threads has N-1 workers. parallel_for splits [0, n) into contiguous chunks; work
// below `grain` items per thread runs inline to avoid waking workers for tiny ops.
#pragma once
#include <cstdint>
#include <functional>

namespace ng {

// One pause of a spin-wait loop (lets the sibling hyperthread run; no-op elsewhere).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

int num_threads();
void set_num_threads(int n);
// fn(begin, end) is called on disjoint ranges covering [0, n).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);
// fn(tid, nthreads) on every thread of the pool (for kernels that partition themselves).
void parallel_run(int nthreads, const std::function<void(int, int)>& fn);

}  // namespace ng
