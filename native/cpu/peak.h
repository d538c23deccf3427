// Measured core clock and FMA throughput (see peak.cc), for benchmark reports.
#pragma once

namespace ng {

struct CpuPeak {
  double ghz = 0;                // core clock while busy
  double fma_ymm_per_cycle = 0;  // 256-bit FMA instructions per cycle (0: no AVX2/FMA)
  double fma_zmm_per_cycle = 0;  // 512-bit FMA instructions per cycle (0: no AVX-512)
};

// Runs ~0.2 s of timed loops on the calling thread.
CpuPeak measure_cpu_peak();

}  // namespace ng
