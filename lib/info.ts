// nodegrad.info(): what this installation can do, and setNumThreads().
import { createRequire } from 'node:module';
import { native, type CudaInfo } from './native.js';

export interface Info {
  version: string;
  node: string;
  platform: string;
  /** kernel: the GEMM kernel family in use; gemmKernel: its name with the tile (MR x NR). */
  cpu: { features: string[]; kernel: 'avx512' | 'avx2' | 'portable'; gemmKernel: string; threads: number };
  cuda: CudaInfo & { available: boolean; gemm?: string };
}

function version(): string {
  const require = createRequire(import.meta.url);
  try {
    return (require('../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function gemmFamily(name: string): 'avx512' | 'avx2' | 'portable' {
  return name.startsWith('avx512') ? 'avx512' : name.startsWith('avx2') ? 'avx2' : 'portable';
}

export function info(): Info {
  const c = native.cpuInfo();
  const features = [c.avx2 && 'avx2', c.fma && 'fma', c.avx512f && 'avx512f'].filter(Boolean) as string[];
  const cu = native.cudaInfo();
  return {
    version: version(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: { features, kernel: gemmFamily(c.gemmKernel), gemmKernel: c.gemmKernel, threads: c.threads },
    cuda: cudaSection(cu),
  };
}

function cudaSection(cu: CudaInfo): Info['cuda'] {
  const available = cu.compiled && cu.deviceCount > 0 && typeof native.cudaAlloc === 'function';
  if (!available || !native.cudaGemmBackend) return { ...cu, available };
  let gemm: string;
  try {
    gemm = native.cudaGemmBackend(0);
  } catch (e) {
    gemm = `unknown (${(e as Error).message})`;
  }
  return { ...cu, available, gemm };
}

/** Threads used by CPU kernels (the calling thread included). Default: all cores. */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new Error(`nodegrad: setNumThreads: n must be a positive integer (got ${n})`);
  native.setNumThreads(n);
}
export function getNumThreads(): number {
  return native.numThreads();
}
