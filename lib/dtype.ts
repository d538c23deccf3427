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

// IEEE float16 <-> float32 on the CPU. The native layer sees every Uint16Array as bfloat16,
// so float16 conversions are done here (they only happen at load/convert time).
let f16Table: Float32Array | null = null;
/** float16 bit patterns -> float32 values. */
export function f16ToF32(src: ArrayLike<number>): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
      f16Table[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
    }
  }
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16Table[src[i]];
  return out;
}

/** float32 values -> float16 bit patterns, round to nearest even (overflow -> inf, NaN stays NaN). */
export function f32ToF16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let i = 0; i < src.length; i++) {
    f[0] = src[i];
    const x = u[0], sign = (x >>> 16) & 0x8000, e = (x >>> 23) & 255, m = x & 0x7fffff;
    let h: number;
    if (e === 255) h = sign | 0x7c00 | (m ? 0x200 : 0);
    else {
      const ue = e - 127 + 15;
      if (ue >= 31) h = sign | 0x7c00;
      else if (ue <= 0) {
        if (ue < -10) h = sign;
        else {
          // subnormal: shift the implicit-1 mantissa, round to nearest even
          const mm = m | 0x800000, shift = 14 - ue;
          let v = mm >>> shift;
          const rem = mm & ((1 << shift) - 1), half = 1 << (shift - 1);
          if (rem > half || (rem === half && (v & 1))) v++;
          h = sign | v;
        }
      } else {
        let v = (ue << 10) | (m >>> 13);
        const rem = m & 0x1fff;
        if (rem > 0x1000 || (rem === 0x1000 && (v & 1))) v++; // may carry into the exponent (-> inf): correct
        h = sign | v;
      }
    }
    out[i] = h;
  }
  return out;
}
