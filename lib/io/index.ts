// Reading and writing model files: safetensors and crash-safe checkpoint writes.
export {
  saveSafetensors, serializeSafetensors, loadSafetensors, parseSafetensors, openSafetensors, safetensorsWriter,
  SafetensorsReader, MAX_HEADER_BYTES, f32ToBf16, f32ToF16,
} from './safetensors.js';
export type { SafetensorsDType, SafetensorsEntry, LoadOptions, TensorDict } from './safetensors.js';
export { writeFileAtomic, writeDirAtomic, resolveCheckpointDir } from './atomic.js';
export type { WriteFn, FileContents, WriteDirOptions, ResolveOptions } from './atomic.js';
