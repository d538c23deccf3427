// dtypes and their storage. Codes match native/common.h (DType).
export type DType = 'float32' | 'float64' | 'int32' | 'bool' | 'bfloat16' | 'float16';
export type TypedArray = Float32Array | Float64Array | Int32Array | Uint8Array | Uint16Array;

export const DTYPES: readonly DType[] = ['float32', 'float64', 'int32', 'bool', 'bfloat16', 'float16'];

export const dtypeCode: Record<DType, number> = {
  float32: 0, float64: 1, int32: 2, bool: 3, bfloat16: 4, float16: 5,
};

export const itemSize: Record<DType, number> = {
  float32: 4, float64: 8, int32: 4, bool: 1, bfloat16: 2, float16: 2,
};

export function isFloating(d: DType): boolean {
  return d === 'float32' || d === 'float64' || d === 'bfloat16' || d === 'float16';
}

export function checkDType(d: unknown, op: string): DType {
  if (typeof d !== 'string' || !(DTYPES as readonly string[]).includes(d)) {
    throw new Error(`nodegrad: ${op}: unknown dtype ${JSON.stringify(d)} (expected one of ${DTYPES.join(', ')})`);
  }
  return d as DType;
}

/** Allocates zeroed CPU storage for n elements of dtype d. */
export function allocTyped(d: DType, n: number): TypedArray {
  switch (d) {
    case 'float32': return new Float32Array(n);
    case 'float64': return new Float64Array(n);
    case 'int32': return new Int32Array(n);
    case 'bool': return new Uint8Array(n);
    case 'bfloat16':
    case 'float16': return new Uint16Array(n);
  }
}

export function typedDType(a: TypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Uint8Array) return 'bool';
  return 'bfloat16';
}

const rank: Record<DType, number> = { bool: 0, int32: 1, bfloat16: 2, float16: 2, float32: 3, float64: 4 };

/** Result dtype of a binary op between two tensors (PyTorch's promotion among our dtypes). */
export function promoteTypes(a: DType, b: DType): DType {
  if (a === b) return a;
  if ((a === 'bfloat16' && b === 'float16') || (a === 'float16' && b === 'bfloat16')) return 'float32';
  return rank[a] >= rank[b] ? a : b;
}
