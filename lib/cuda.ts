// nodegrad.cuda: the CUDA device runtime as users see it (torch.cuda's names in camelCase).
// Every kernel of a device runs on that device's one stream, asynchronously; values are
// read with `await t.data()` (or the blocking `dataSync()`), and `synchronize()` waits
// for everything queued, reporting errors found on the device (an out-of-range index).
import { native, type CudaMemoryStats } from './native.js';
import { cudaDeviceCount, parseDevice, cudaIndex, type Device } from './storage.js';

export type { CudaMemoryStats };

/** True when this build has CUDA kernels and a usable device is present. */
export function isAvailable(): boolean {
  return cudaDeviceCount() > 0;
}

export function deviceCount(): number {
  return cudaDeviceCount();
}

function index(device: number | Device | undefined, op: string): number {
  if (device === undefined) device = 0;
  if (typeof device === 'number') {
    if (!Number.isInteger(device) || device < 0) throw new Error(`nodegrad: cuda.${op}: device must be a non-negative integer (got ${device})`);
    device = `cuda:${device}`;
  }
  const d = parseDevice(device, `cuda.${op}`);
  if (d === 'cpu') throw new Error(`nodegrad: cuda.${op}: expected a CUDA device (got 'cpu')`);
  return cudaIndex(d);
}

function props(device: number | Device | undefined, op: string) {
  const i = index(device, op);
  const d = native.cudaInfo().devices.find((x) => x.index === i);
  if (!d) throw new Error(`nodegrad: cuda.${op}: no properties for cuda:${i}`);
  return d;
}

export function getDeviceName(device?: number | Device): string {
  return props(device, 'getDeviceName').name;
}
/** [major, minor], e.g. [9, 0] on an H100. */
export function getDeviceCapability(device?: number | Device): [number, number] {
  const [a, b] = props(device, 'getDeviceCapability').computeCapability.split('.').map(Number);
  return [a, b];
}
export function getDeviceProperties(device?: number | Device) {
  return props(device, 'getDeviceProperties');
}

/** Waits until every kernel and copy queued on the device has finished; throws the first device-side error. */
export function synchronize(device?: number | Device): void {
  native.cudaSynchronize(index(device, 'synchronize'));
}

/** Bytes in use by tensors (allocated), held by the caching allocator (reserved), and their peaks. */
export function memoryStats(device?: number | Device): CudaMemoryStats {
  return native.cudaMemoryStats(index(device, 'memoryStats'));
}
export function memoryAllocated(device?: number | Device): number {
  return memoryStats(device).allocated;
}
export function memoryReserved(device?: number | Device): number {
  return memoryStats(device).reserved;
}
export function maxMemoryAllocated(device?: number | Device): number {
  return memoryStats(device).peakAllocated;
}
export function resetPeakMemoryStats(device?: number | Device): void {
  native.cudaResetPeakStats(index(device, 'resetPeakMemoryStats'));
}
/** Returns every cached, unused block to the driver (tensors in use are not affected). */
export function emptyCache(device?: number | Device): void {
  native.cudaEmptyCache(index(device, 'emptyCache'));
}
/**
 * Caps what the allocator may reserve on the device (0 removes the cap); allocations past
 * it behave as out-of-memory (cached blocks are released and the allocation retried once).
 */
export function setMemoryLimit(bytes: number, device?: number | Device): void {
  if (!Number.isInteger(bytes) || bytes < 0) throw new Error(`nodegrad: cuda.setMemoryLimit: bytes must be a non-negative integer (got ${bytes})`);
  native.cudaSetMemoryLimit(index(device, 'setMemoryLimit'), bytes);
}

/** Which GEMM serves matmul on the device: "cublasLt (<path>)" or "own (<why cuBLASLt is absent>)". */
export function gemmBackend(device?: number | Device): string {
  const i = index(device, 'gemmBackend');
  return native.cudaGemmBackend ? native.cudaGemmBackend(i) : 'none';
}
