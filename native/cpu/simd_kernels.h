// Vector helpers for the kernel bodies that a family file compiles twice by including
// itself (cpu/layernorm.cc, cpu/rmsnorm.cc, cpu/softmax.cc): once in namespace generic with
// kVecBytes = 16, once in namespace avx2 with kVecBytes = 32 under target("avx2,fma").
// Included inside each of those namespaces, so deliberately no include guard; the
// includer has <cstring> and <cstdint> and #undefs NG_INLINE at its end.
#ifndef NG_INLINE
#define NG_INLINE inline __attribute__((always_inline))
#endif

// Vectors of kVecBytes (GCC/Clang vector extensions): one register in either build.
template <class T> struct VecOf { typedef T type __attribute__((vector_size(kVecBytes))); };
template <class T> using vec = typename VecOf<T>::type;
template <class T> constexpr int64_t kN = kVecBytes / sizeof(T);

template <class T> NG_INLINE vec<T> load(const T* p) {
  vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T> NG_INLINE void store(T* p, vec<T> v) { std::memcpy(p, &v, sizeof v); }
template <class T> NG_INLINE T hsum(vec<T> v) {
  T s = 0;
  for (int i = 0; i < kN<T>; ++i) s += v[i];
  return s;
}
