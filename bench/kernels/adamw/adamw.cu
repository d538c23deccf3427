// AdamW kernel lab (llm.c dev/cuda style): one step over the GPT-2 parameter list
// (default 124M: 12 layers, d 768; args: nLayer d), each variant checked against a CPU
// reference at every block size, then timed with the L2 flushed, in GB/s of the
// 28 bytes per parameter that must move (read p, g, m, v; write p, m, v).
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -I bench/kernels/layernorm bench/kernels/adamw/adamw.cu -o /tmp/adamw && /tmp/adamw [nLayer d]
//
// Variants:
//   1  one launch per tensor, scalar (what an unfused optimizer does: ~150 launches)
//   2  ONE launch: (tensor, chunk) table in device memory, one block per 32768-element
//      chunk, scalar loads
//   3  as 2 with float4 loads/stores where the tensor is 16-byte aligned
//      (PROMOTED: cuda/adamw.cu adamw_kernel, which also writes the optional bf16 copy
//      and reads the device clip factor)
#include "lab_common.cuh"

#include <cstdint>

constexpr long long kChunk = 32768;

struct Hyper {
  float decay, b1, b2, omb1, omb2, step_size, bc2_sqrt, eps;
};
struct Desc {
  float *p, *g, *m, *v;
  long long numel;
};

__device__ __forceinline__ void elem(float& p, float g, float& m, float& v, const Hyper& h) {
  const float mi = h.b1 * m + h.omb1 * g;
  const float vi = h.b2 * v + h.omb2 * g * g;
  m = mi;
  v = vi;
  p = p * h.decay - h.step_size * mi / (sqrtf(vi) / h.bc2_sqrt + h.eps);
}

__global__ void adamw_one(float* p, const float* g, float* m, float* v, long long n, Hyper h) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float pi = p[i], mi = m[i], vi = v[i];
    elem(pi, g[i], mi, vi, h);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

template <bool VEC4>
__global__ void adamw_multi(const Desc* descs, const int2* chunks, Hyper h) {
  const int2 e = chunks[blockIdx.x];
  const Desc d = descs[e.x];
  const long long start = e.y * kChunk, end = start + kChunk < d.numel ? start + kChunk : d.numel;
  long long tail = start;
  if (VEC4 && ((uintptr_t)d.p | (uintptr_t)d.g | (uintptr_t)d.m | (uintptr_t)d.v) % 16 == 0) {
    const long long vend = start + ((end - start) & ~3LL);
    for (long long i = start + 4LL * threadIdx.x; i < vend; i += 4LL * blockDim.x) {
      float4 p = *(float4*)(d.p + i), m = *(float4*)(d.m + i), v = *(float4*)(d.v + i);
      const float4 g = *(const float4*)(d.g + i);
      elem(p.x, g.x, m.x, v.x, h);
      elem(p.y, g.y, m.y, v.y, h);
      elem(p.z, g.z, m.z, v.z, h);
      elem(p.w, g.w, m.w, v.w, h);
      *(float4*)(d.p + i) = p;
      *(float4*)(d.m + i) = m;
      *(float4*)(d.v + i) = v;
    }
    tail = vend;
  }
  for (long long i = tail + threadIdx.x; i < end; i += blockDim.x) {
    float p = d.p[i], m = d.m[i], v = d.v[i];
    elem(p, d.g[i], m, v, h);
    d.p[i] = p;
    d.m[i] = m;
    d.v[i] = v;
  }
}

int main(int argc, char** argv) {
  const int nl = argc > 1 ? std::atoi(argv[1]) : 12, dm = argc > 2 ? std::atoi(argv[2]) : 768;
  std::vector<long long> sizes = {50257LL * dm, 1024LL * dm};
  for (int l = 0; l < nl; ++l) {
    const long long d = dm;
    for (long long s : {d, d, d * 3 * d, 3 * d, d * d, d, d, d, d * 4 * d, 4 * d, 4 * d * d, d}) sizes.push_back(s);
  }
  sizes.push_back(dm);
  sizes.push_back(dm);
  long long total = 0;
  std::vector<long long> offs;
  for (long long s : sizes) {
    offs.push_back(total);
    total += (s + 3) / 4 * 4;  // each tensor 16-byte aligned inside one allocation
  }
  std::printf("%zu tensors, %.1fM parameters\n", sizes.size(), total / 1e6);
  std::vector<float> p = randn(total, 1, 0.02f), g = randn(total, 2, 1e-3f), m = randn(total, 3, 1e-3f), v(total);
  for (long long i = 0; i < total; ++i) v[i] = std::fabs(m[i]) * 1e-3f;
  // hyper-parameters of step 3, as the host computes them
  const double lr = 1e-4, wd = 0.1, b1 = 0.9, b2 = 0.95, eps = 1e-8, t = 3;
  const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
  const Hyper h{float(1 - lr * wd), float(b1), float(b2), 1.f - float(b1), 1.f - float(b2), float(lr / bc1),
                float(std::sqrt(bc2)), float(eps)};
  std::vector<float> rp = p, rm = m, rv = v;
  for (long long i = 0; i < total; ++i) {
    const float mi = h.b1 * rm[i] + h.omb1 * g[i], vi = h.b2 * rv[i] + h.omb2 * g[i] * g[i];
    rm[i] = mi;
    rv[i] = vi;
    rp[i] = rp[i] * h.decay - h.step_size * mi / (std::sqrt(vi) / h.bc2_sqrt + h.eps);
  }
  float *dp = to_device<float>(p), *dg = to_device<float>(g), *dmm = to_device<float>(m), *dv = to_device<float>(v);
  std::vector<Desc> descs;
  std::vector<int2> chunks;
  for (size_t i = 0; i < sizes.size(); ++i) {
    descs.push_back(Desc{dp + offs[i], dg + offs[i], dmm + offs[i], dv + offs[i], sizes[i]});
    for (long long c = 0; c < (sizes[i] + kChunk - 1) / kChunk; ++c) chunks.push_back(make_int2((int)i, (int)c));
  }
  Desc* ddesc;
  int2* dchunks;
  CK(cudaMalloc(&ddesc, descs.size() * sizeof(Desc)));
  CK(cudaMalloc(&dchunks, chunks.size() * sizeof(int2)));
  CK(cudaMemcpy(ddesc, descs.data(), descs.size() * sizeof(Desc), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dchunks, chunks.data(), chunks.size() * sizeof(int2), cudaMemcpyHostToDevice));
  const double bytes = 28.0 * total;
  for (int variant = 1; variant <= 3; ++variant) {
    for (int bs : {128, 256, 512, 1024}) {
      auto launch = [&] {
        if (variant == 1) {
          for (size_t i = 0; i < sizes.size(); ++i) {
            const long long blocks = std::min<long long>((sizes[i] + bs - 1) / bs, 65535LL * 8);
            adamw_one<<<(unsigned)blocks, bs>>>(descs[i].p, descs[i].g, descs[i].m, descs[i].v, sizes[i], h);
          }
        } else if (variant == 2) {
          adamw_multi<false><<<(unsigned)chunks.size(), bs>>>(ddesc, dchunks, h);
        } else {
          adamw_multi<true><<<(unsigned)chunks.size(), bs>>>(ddesc, dchunks, h);
        }
      };
      CK(cudaMemcpy(dp, p.data(), total * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dmm, m.data(), total * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dv, v.data(), total * 4, cudaMemcpyHostToDevice));
      launch();
      CK(cudaGetLastError());
      const bool ok = check("p", to_host(dp, total), rp, 1e-7f, 1e-5f) && check("m", to_host(dmm, total), rm, 1e-9f, 1e-5f) &&
                      check("v", to_host(dv, total), rv, 1e-12f, 1e-5f);
      const float ms = time_ms(launch, 10, 7);
      std::printf("  variant %d  block %4d  %s  %8.4f ms  %7.1f GB/s\n", variant, bs, ok ? "ok  " : "FAIL", ms, bytes / ms / 1e6);
    }
  }
  for (void* q : {(void*)dp, (void*)dg, (void*)dmm, (void*)dv, (void*)ddesc, (void*)dchunks}) CK(cudaFree(q));
  return 0;
}
