// The CPU GEMM micro-kernel families this machine can run, and the environment that makes
// a child process pick one (NODEGRAD_GEMM_KERNEL is read once, at the first matmul).
import * as ng from '../../lib/index.js';

export function gemmKernels(): string[] {
  const { features } = ng.info().cpu;
  const out = ['portable'];
  if (features.includes('avx2') && features.includes('fma')) out.push('avx2');
  if (features.includes('avx512f')) out.push('avx512');
  return out;
}

/** process.env for a child that runs `kernel` (avx512 is the default where present). */
export function kernelEnv(kernel: string): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (kernel === 'avx512') delete env.NODEGRAD_GEMM_KERNEL;
  else env.NODEGRAD_GEMM_KERNEL = kernel;
  return env;
}
