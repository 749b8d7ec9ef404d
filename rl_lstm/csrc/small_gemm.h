// Small-row matrix routines for the recurrent products of the chunk kernel (lstm_chunk.cpp).
//
// The per-step products (h W_hh^T forward, dh = dA W_hh backward) have as many rows as a minibatch has
// chunks (8 at the agents' settings), where BLAS libraries reach about half of a core's FMA rate. Here
// C (M x N) (+)= A (M x K) * B, with B (W_hh^T or W_hh) packed once per call into panels of 2 vectors' width
// (zero-padded past N) and A read through two strides. Each register block holds up to 8 rows (AVX-512) or
// 4 (AVX2) by 2 vectors of columns. Products with many rows (dW_hh: 4H rows) stay with BLAS.
//
// The routine is chosen at run time: the environment variable RL_LSTM_GEMM (read per call) asks for
// `auto` (the default: AVX-512, else AVX2 with FMA, else BLAS), `avx512`, `avx2` or `blas`; asking for a
// routine the CPU cannot run is an error naming the ones it can.

#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RL_SMALL_GEMM_X86 1
#endif

namespace small_gemm {

enum Path : int { BLAS = 0, AVX2 = 1, AVX512 = 2 };

inline const char* path_name(Path p) { return p == AVX512 ? "avx512" : p == AVX2 ? "avx2" : "blas"; }

inline bool cpu_has(Path p) {
#if defined(RL_SMALL_GEMM_X86)
  if (p == AVX512) return __builtin_cpu_supports("avx512f");
  if (p == AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return p == BLAS;
}

// The routines this CPU runs, for messages: "avx2, blas".
inline std::string available() {
  std::string names;
  for (Path p : {AVX512, AVX2, BLAS}) {
    if (cpu_has(p)) names += std::string(names.empty() ? "" : ", ") + path_name(p);
  }
  return names;
}

// What RL_LSTM_GEMM asks for; a routine this CPU cannot run is a ValueError naming what it can.
inline Path path() {
  const char* env = std::getenv("RL_LSTM_GEMM");
  const std::string want = env == nullptr || env[0] == '\0' ? "auto" : env;
  Path p;
  if (want == "auto") {
    return cpu_has(AVX512) ? AVX512 : cpu_has(AVX2) ? AVX2 : BLAS;
  } else if (want == "avx512") {
    p = AVX512;
  } else if (want == "avx2") {
    p = AVX2;
  } else if (want == "blas") {
    p = BLAS;
  } else {
    TORCH_CHECK_VALUE(false, "RL_LSTM_GEMM=", want, ": expected one of auto, avx512, avx2, blas");
  }
  TORCH_CHECK_VALUE(cpu_has(p), "RL_LSTM_GEMM=", want, ": this CPU cannot run the ", want,
                    " routine; it runs: ", available(), " (or auto, the fastest of them)");
  return p;
}

// Columns per packed panel: 2 vectors.
template <typename T>
int64_t panel_width(Path p) {
  const int64_t bytes = p == AVX512 ? 64 : 32;
  return 2 * bytes / int64_t(sizeof(T));
}

#if defined(RL_SMALL_GEMM_X86)
#pragma GCC push_options
#pragma GCC target("avx512f")
namespace avx512 {
struct VF {
  using T = float;
  using V = __m512;
  static constexpr int L = 16;
  static inline V zero() { return _mm512_setzero_ps(); }
  static inline V load(const T* p) { return _mm512_loadu_ps(p); }
  static inline void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static inline V set1(T x) { return _mm512_set1_ps(x); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
};
struct VD {
  using T = double;
  using V = __m512d;
  static constexpr int L = 8;
  static inline V zero() { return _mm512_setzero_pd(); }
  static inline V load(const T* p) { return _mm512_loadu_pd(p); }
  static inline void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static inline V set1(T x) { return _mm512_set1_pd(x); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static inline V add(V a, V b) { return _mm512_add_pd(a, b); }
};
#define RMAX 8
#define CVEC 2
#include "small_gemm_body.inc"
#undef RMAX
#undef CVEC
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
struct VF {
  using T = float;
  using V = __m256;
  static constexpr int L = 8;
  static inline V zero() { return _mm256_setzero_ps(); }
  static inline V load(const T* p) { return _mm256_loadu_ps(p); }
  static inline void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static inline V set1(T x) { return _mm256_set1_ps(x); }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
};
struct VD {
  using T = double;
  using V = __m256d;
  static constexpr int L = 4;
  static inline V zero() { return _mm256_setzero_pd(); }
  static inline V load(const T* p) { return _mm256_loadu_pd(p); }
  static inline void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static inline V set1(T x) { return _mm256_set1_pd(x); }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static inline V add(V a, V b) { return _mm256_add_pd(a, b); }
};
#define RMAX 4
#define CVEC 2
#include "small_gemm_body.inc"
#undef RMAX
#undef CVEC
}  // namespace avx2
#pragma GCC pop_options
#endif

// B (K x N), B(k, n) at src[k * sk + n * sn], packed for one routine: element (k, n) at
// [(n / NC) * NC * K + k * NC + n % NC], zeros past N.
template <typename T>
struct Packed {
  const T* data = nullptr;  // null: the call takes the BLAS path
  Path path = BLAS;
  int64_t K = 0, N = 0;
  explicit operator bool() const { return data != nullptr; }
};

// Buffers reused from call to call on each thread: one per operand that is packed within one call.
enum PackSlot : int { W_FORWARD = 0, W_BACKWARD = 1, TEST = 2, N_PACK_SLOTS };

template <typename T>
T* pack_buffer(PackSlot slot, int64_t numel) {
  thread_local std::array<at::Tensor, N_PACK_SLOTS> buffers[2];
  at::Tensor& buf = buffers[std::is_same_v<T, double> ? 1 : 0][slot];
  if (!buf.defined() || buf.numel() < numel) {
    buf = at::empty({std::max<int64_t>(numel, 1)}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  }
  return buf.data_ptr<T>();
}

template <typename T>
Packed<T> pack(Path p, PackSlot slot, const T* src, int64_t K, int64_t N, int64_t sk, int64_t sn) {
  Packed<T> out;
  if (p == BLAS) return out;
  const int64_t nc = panel_width<T>(p), panels = (N + nc - 1) / nc;
  T* dst = pack_buffer<T>(slot, panels * nc * K);
  for (int64_t q = 0; q < panels; ++q) {
    T* d = dst + q * nc * K;
    const int64_t n0 = q * nc, width = std::min(nc, N - n0);
    if (sn == 1) {
      for (int64_t k = 0; k < K; ++k) {
        std::memcpy(d + k * nc, src + k * sk + n0, width * sizeof(T));
        std::fill(d + k * nc + width, d + (k + 1) * nc, T(0));
      }
    } else {
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t j = 0; j < width; ++j) d[k * nc + j] = src[k * sk + (n0 + j) * sn];
        std::fill(d + k * nc + width, d + (k + 1) * nc, T(0));
      }
    }
  }
  out.data = dst;
  out.path = p;
  out.K = K;
  out.N = N;
  return out;
}

// C (M x N, row stride ldc) = A * B (acc: C += A * B), A(r, k) at a[r * rs + k * ks], B packed.
inline void multiply(const Packed<float>& b, int64_t M, const float* a, int64_t rs, int64_t ks, float* c, int64_t ldc,
                     bool acc) {
#if defined(RL_SMALL_GEMM_X86)
  if (b.path == AVX512) return avx512::multiply_f(M, b.N, b.K, a, rs, ks, b.data, c, ldc, acc);
  if (b.path == AVX2) return avx2::multiply_f(M, b.N, b.K, a, rs, ks, b.data, c, ldc, acc);
#endif
  TORCH_CHECK(false, "small_gemm::multiply: no routine for this path");
}
inline void multiply(const Packed<double>& b, int64_t M, const double* a, int64_t rs, int64_t ks, double* c,
                     int64_t ldc, bool acc) {
#if defined(RL_SMALL_GEMM_X86)
  if (b.path == AVX512) return avx512::multiply_d(M, b.N, b.K, a, rs, ks, b.data, c, ldc, acc);
  if (b.path == AVX2) return avx2::multiply_d(M, b.N, b.K, a, rs, ks, b.data, c, ldc, acc);
#endif
  TORCH_CHECK(false, "small_gemm::multiply: no routine for this path");
}

// For the tests: C = a @ b on the routine `want` names, reading both operands through their strides (so that
// transposed views exercise the strided reads the kernel uses); BLAS (at::mm) where that routine cannot run
// here. Returns C and the path that ran.
inline std::tuple<at::Tensor, std::string> matmul(const at::Tensor& a, const at::Tensor& b, const std::string& want) {
  TORCH_CHECK_VALUE(want == "avx512" || want == "avx2" || want == "blas", "matmul: path ", want,
                    ": expected avx512, avx2 or blas");
  TORCH_CHECK_VALUE(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "matmul: expected (M, K) @ (K, N), got ",
                    a.sizes(), " @ ", b.sizes());
  TORCH_CHECK_VALUE(a.scalar_type() == b.scalar_type() && (a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble),
                    "matmul: expected two float32 or two float64 tensors");
  const Path p = want == "avx512" ? AVX512 : want == "avx2" ? AVX2 : BLAS;
  if (p == BLAS || !cpu_has(p)) return {at::mm(a, b), "blas"};
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  at::Tensor C = at::empty({M, N}, a.options());
  if (a.scalar_type() == at::kFloat) {
    auto pk = pack<float>(p, TEST, b.data_ptr<float>(), K, N, b.stride(0), b.stride(1));
    multiply(pk, M, a.data_ptr<float>(), a.stride(0), a.stride(1), C.data_ptr<float>(), N, false);
  } else {
    auto pk = pack<double>(p, TEST, b.data_ptr<double>(), K, N, b.stride(0), b.stride(1));
    multiply(pk, M, a.data_ptr<double>(), a.stride(0), a.stride(1), C.data_ptr<double>(), N, false);
  }
  return {C, path_name(p)};
}

}  // namespace small_gemm
