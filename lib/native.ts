// Loads the addon (prebuilt binary or local build, through node-gyp-build) and declares
// its typed interface. Op families add their kernels' declarations to NativeAddon by
// declaration merging next to the TypeScript that calls them.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { TypedArray } from './dtype.js';

export type Strides = number[];

export interface CpuInfo {
  avx2: boolean; fma: boolean; avx512f: boolean; threads: number;
  /** The float32 GEMM micro-kernel in use, e.g. "avx2 6x16" (NODEGRAD_GEMM_KERNEL can force one). */
  gemmKernel: string;
}
export interface CudaDeviceInfo { index: number; name: string; computeCapability: string; totalMemory: number; multiprocessors: number }
export interface CudaInfo {
  compiled: boolean; archs: string; runtimeVersion: number; driverVersion: number;
  deviceCount: number; unavailableReason?: string; devices: CudaDeviceInfo[];
}

/** A CUDA device block as the addon hands it out (a tagged napi External). */
export type DeviceHandle = { readonly __nodegradDeviceBuffer: unique symbol };

export interface CudaMemoryStats {
  allocated: number; reserved: number; peakAllocated: number; peakReserved: number;
  numAllocs: number; numFrees: number; numCudaMallocs: number; numOoms: number; numCacheFlushes: number;
}

export interface NativeAddon {
  // CUDA runtime (present only in builds with CUDA; see native/bind/cuda.cc)
  cudaAlloc(device: number, dtype: number, length: number, zeroed: boolean): DeviceHandle;
  cudaFree(h: DeviceHandle): void;
  cudaView(h: DeviceHandle, offset: number, length: number): DeviceHandle;
  cudaUpload(h: DeviceHandle, offset: number, src: TypedArray): void;
  cudaDownload(h: DeviceHandle, offset: number, dst: TypedArray): void;
  cudaDownloadAsync(h: DeviceHandle, offset: number, dst: TypedArray): Promise<TypedArray>;
  cudaCopy(dst: DeviceHandle, dstOff: number, src: DeviceHandle, srcOff: number, n: number): void;
  cudaSynchronize(device: number): void;
  cudaMemoryStats(device: number): CudaMemoryStats;
  cudaEmptyCache(device: number): void;
  cudaResetPeakStats(device: number): void;
  cudaSetMemoryLimit(device: number, bytes: number): void;

  cpuInfo(): CpuInfo;
  /** Measures the core clock and FMA instructions per cycle on the calling thread (~0.1 s). */
  cpuPeak(): { ghz: number; fmaYmmPerCycle: number; fmaZmmPerCycle: number };
  setNumThreads(n: number): void;
  numThreads(): number;
  noop(): void;
  cudaInfo(): CudaInfo;
  // elementwise: a view argument is (buffer, element offset, strides)
  binary(op: number, shape: number[], out: TypedArray, oOff: number, oSt: Strides,
    a: TypedArray, aOff: number, aSt: Strides, b: TypedArray, bOff: number, bSt: Strides): void;
  binaryScalar(op: number, shape: number[], out: TypedArray, oOff: number, oSt: Strides,
    a: TypedArray, aOff: number, aSt: Strides, scalar: number, reverse: boolean): void;
  unary(op: number, shape: number[], out: TypedArray, oOff: number, oSt: Strides,
    x: TypedArray, xOff: number, xSt: Strides, alpha: number, beta: number): void;
  unaryBackward(op: number, shape: number[], gx: TypedArray, gxOff: number, gxSt: Strides,
    x: TypedArray, xOff: number, xSt: Strides, gy: TypedArray, gyOff: number, gySt: Strides, alpha: number): void;
  where(shape: number[], out: TypedArray, oOff: number, oSt: Strides, cond: TypedArray, cOff: number, cSt: Strides,
    a: TypedArray, aOff: number, aSt: Strides, b: TypedArray, bOff: number, bSt: Strides): void;
  copy(shape: number[], dst: TypedArray, dOff: number, dSt: Strides, src: TypedArray, sOff: number, sSt: Strides): void;
  fill(shape: number[], out: TypedArray, oOff: number, oSt: Strides, value: number): void;
  randomFill(kind: number, out: TypedArray, n: number, seed: number, offset: number, a: number, b: number): void;
  // Gloo process groups (present only in builds with Gloo; see native/distributed/group.cc)
  distInit?(o: { rank: number; worldSize: number; masterAddr: string; masterPort: number; timeoutMs: number; backend?: 'gloo' | 'nccl'; device?: number }): [DistGroupHandle, Promise<void>];
  /** Whether backend 'nccl' can run: libnccl found at run time (CUDA builds only; see cuda/nccl.cu). */
  distNcclInfo?(): { available: boolean; version: string; path: string; why: string };
  distAllReduce?(g: DistGroupHandle, buf: TypedArray, off: number, n: number, op: number): Promise<void>;
  distBroadcast?(g: DistGroupHandle, buf: TypedArray, off: number, n: number, src: number): Promise<void>;
  distAllGather?(g: DistGroupHandle, inp: TypedArray, inOff: number, n: number, out: TypedArray, outOff: number): Promise<void>;
  distReduceScatter?(g: DistGroupHandle, inp: TypedArray, inOff: number, n: number, out: TypedArray, outOff: number, op: number): Promise<void>;
  distBarrier?(g: DistGroupHandle): Promise<void>;
  distDestroy?(g: DistGroupHandle): Promise<void>;
}
export type DistGroupHandle = { readonly __nodegradDistGroup: unique symbol };

function packageRoot(): string {
  // dist/native.js or lib/native.ts: the package root is one level up
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
}

function load(): NativeAddon {
  const require = createRequire(import.meta.url);
  const root = packageRoot();
  try {
    // NODEGRAD_ADDON points at a specific .node file (e.g. a second build tree)
    if (process.env.NODEGRAD_ADDON) return require(path.resolve(process.env.NODEGRAD_ADDON)) as NativeAddon;
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => NativeAddon;
    return nodeGypBuild(root);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(
      `nodegrad: the native addon could not be loaded from ${root} (${msg}). ` +
        'Run `npm rebuild nodegrad` (needs cmake and a C++17 compiler) or install on a platform with a prebuilt binary.',
    );
  }
}

export const native: NativeAddon = load();
