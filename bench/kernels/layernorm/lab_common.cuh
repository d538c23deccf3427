// Shared by the standalone kernel labs (bench/kernels/*/): error checks, random fill,
// comparison against a CPU reference with tolerance + |ref|*rtol, and timing with the
// L2 flushed before every repetition (CUDA events, median of reps). llm.c dev/cuda style.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define CK(x)                                                                                  \
  do {                                                                                         \
    cudaError_t e_ = (x);                                                                      \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

inline std::vector<float> randn(size_t n, unsigned seed, float scale = 1.f, float shift = 0.f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen) * scale + shift;
  return v;
}

template <class T>
T* to_device(const std::vector<float>& h) {
  std::vector<T> t(h.size());
  for (size_t i = 0; i < h.size(); ++i) t[i] = static_cast<T>(h[i]);
  T* d = nullptr;
  CK(cudaMalloc(&d, std::max<size_t>(1, t.size()) * sizeof(T)));
  CK(cudaMemcpy(d, t.data(), t.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <class T>
std::vector<float> to_host(const T* d, size_t n) {
  std::vector<T> t(n);
  CK(cudaMemcpy(t.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  std::vector<float> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<float>(t[i]);
  return h;
}

// Returns true when every |got - ref| <= atol + rtol*|ref|; prints the worst element.
inline bool check(const char* what, const std::vector<float>& got, const std::vector<float>& ref, float atol,
                  float rtol) {
  size_t worst = 0;
  double worst_err = -1;
  for (size_t i = 0; i < ref.size(); ++i) {
    double err = std::fabs(double(got[i]) - ref[i]) - (atol + rtol * std::fabs(ref[i]));
    if (!(err <= worst_err)) {
      worst_err = err;
      worst = i;
    }
  }
  bool ok = ref.empty() || worst_err <= 0;
  if (!ok)
    std::printf("  MISMATCH %s at %zu: got %.7g, expected %.7g\n", what, worst, got[worst], ref[worst]);
  return ok;
}

// Median ms per call of fn (launches on stream 0) over reps of iters calls, L2 flushed first.
template <class F>
float time_ms(F fn, int iters = 20, int reps = 9) {
  static float* flush = nullptr;
  const size_t flush_bytes = 256u << 20;
  if (flush == nullptr) CK(cudaMalloc(&flush, flush_bytes));
  for (int i = 0; i < 3; ++i) fn();
  CK(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> ts;
  for (int r = 0; r < reps; ++r) {
    CK(cudaMemset(flush, r, flush_bytes));
    CK(cudaEventRecord(a));
    for (int i = 0; i < iters; ++i) fn();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    ts.push_back(ms / iters);
  }
  CK(cudaGetLastError());
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}
