// A whole chunk of LSTM steps in one call, forward and backward through time, on the CPU.
//
// x (T, B, I), h0 and c0 (B, H) -> out (T, B, H), h_T and c_T (B, H), with per-row episode resets
// (a row's state is zeroed before the step where it starts an episode), per-row masks for every
// dropout site, and optional layer norm (Ba et al. 2016): LN on W_ih x and on W_hh h (gains and
// biases of 4H), and LN of c before the output tanh (the carried c stays un-normalised).
//
// The input projection is one GEMM for all steps, the recurrence one GEMM per step (W_hh goes to BLAS
// with its transpose flag: with MKL on an AMD EPYC a copy transposed once per call measured slower);
// the elementwise work is plain loops over contiguous rows that the compiler vectorises. The gradient is written out by hand (backward through time) and the
// weight gradients are one GEMM each over all steps. Float32 uses a polynomial exp; float64 the
// exact one, so that gradcheck and the float64 tests against the Python step loop hold.
//
// Mask sites (the Python side's MaskSpec.site): 0 none, 1 output (the layer output only),
// 2 hidden (h as output and carried: Gal), 3 cell (c: Moon), 4 candidate (g: Semeniuta),
// 5 zoneout (masks of 2H: the first H act on c, the last H on h; 1 keeps the previous value).

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include "small_gemm.h"

// The Fortran BLAS that PyTorch's CPU library carries (MKL in the official wheels). Weak, so that a
// build without them loads and falls back to at::mm.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
}

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

enum Site : int64_t { NONE = 0, OUTPUT = 1, HIDDEN = 2, CELL = 3, CANDIDATE = 4, ZONEOUT = 5 };

// ------------------------------------------------------------------ BLAS
// Column-major: C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C. A row-major (r, c)
// buffer is a column-major c x r matrix, so row-major products are written with their operands swapped.
Tensor col_major(const void* p, int64_t rows, int64_t cols, int64_t ld, at::ScalarType dtype) {
  return at::from_blob(const_cast<void*>(p), {rows, cols}, {1, ld}, at::TensorOptions().dtype(dtype));
}

template <typename T>
void gemm_aten(char ta, char tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
               int64_t ldb, T beta, T* c, int64_t ldc) {
  auto dtype = c10::CppTypeToScalarType<T>::value;
  Tensor A = ta == 'N' ? col_major(a, m, k, lda, dtype) : col_major(a, k, m, lda, dtype).t();
  Tensor Bm = tb == 'N' ? col_major(b, k, n, ldb, dtype) : col_major(b, n, k, ldb, dtype).t();
  Tensor C = col_major(c, m, n, ldc, dtype);
  Tensor prod = at::mm(A, Bm);
  if (beta == T(0)) {
    C.copy_(prod.mul_(alpha));
  } else {
    C.mul_(beta).add_(prod, alpha);
  }
}

void gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (sgemm_ == nullptr) return gemm_aten<float>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  int M = m, N = n, K = k, LDA = lda, LDB = ldb, LDC = ldc;
  sgemm_(&ta, &tb, &M, &N, &K, &alpha, a, &LDA, b, &LDB, &beta, c, &LDC);
}

void gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (dgemm_ == nullptr) return gemm_aten<double>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  int M = m, N = n, K = k, LDA = lda, LDB = ldb, LDC = ldc;
  dgemm_(&ta, &tb, &M, &N, &K, &alpha, a, &LDA, b, &LDB, &beta, c, &LDC);
}

// A weight's gradient over every step and row: dW (rows x cols, row-major) = dP^T x, dP (tb x rows) and
// x (tb x cols) row-major. MKL runs this product many times faster as its transpose (cols x rows row-major:
// the long side as the column-major M) when `cols` is small: for the input weights of a 4-wide observation
// (4H = 1024 rows, tb 256) 68 against 828 us on an AMD EPYC (Zen 4), 126 against 263 at 16 columns; so it
// is computed so and transposed into place (a copy of rows x cols numbers).
template <typename T>
Tensor weight_grad(const T* dp, const T* x, int64_t rows, int64_t cols, int64_t tb, const at::TensorOptions& opts) {
  Tensor flipped = at::empty({cols, rows}, opts);
  gemm('N', 'T', rows, cols, tb, T(1), dp, rows, x, cols, T(0), flipped.data_ptr<T>(), rows);
  return flipped.t().contiguous();
}

// The small-row routines (small_gemm.h) pack W_hh once per call: worth it from this many steps on, and for
// steps of at most this many rows (measured with AVX2: faster than MKL at 8 rows, slower at 256).
constexpr int64_t kPackMinSteps = 4, kSmallRowsMax = 32;

// ------------------------------------------------------------------ activations
// Cephes' expf: range reduction to [-ln2/2, ln2/2] and a degree-6 polynomial, about 1 ulp; branch-free
// so that loops calling it vectorise.
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);  // ternaries, not fmin/fmax: they inline and vectorise
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

inline float tanh_(float x) {
  // 1 - 2 / (e^2x + 1) loses relative accuracy near 0, where the odd Taylor series takes over.
  const float big = 1.0f - 2.0f / (exp_approx(2.0f * x) + 1.0f);
  const float x2 = x * x;
  const float small = x * (1.0f + x2 * (-0.333333333f + x2 * (0.133333333f + x2 * -0.0539682540f)));
  return (x < 0.125f && x > -0.125f) ? small : big;
}
inline double tanh_(double x) { return std::tanh(x); }

// ------------------------------------------------------------------ layer norm of one row
// x -> xhat = (x - mean) / sqrt(var + eps) (biased variance, as F.layer_norm); returns 1 / sqrt(var + eps).
// xhat may be x.
template <typename T>
T ln_row(const T* x, T* xhat, int64_t n, T eps) {
  T mean = 0;
#pragma omp simd reduction(+ : mean)
  for (int64_t j = 0; j < n; ++j) mean += x[j];
  mean /= T(n);
  T var = 0;
#pragma omp simd reduction(+ : var)
  for (int64_t j = 0; j < n; ++j) var += (x[j] - mean) * (x[j] - mean);
  var /= T(n);
  const T rstd = T(1) / std::sqrt(var + eps);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) xhat[j] = (x[j] - mean) * rstd;
  return rstd;
}

// dy -> dx through y = xhat * gain + bias (dx may be dy); adds dy * xhat to dgain and dy to dbias
// when they are given.
template <typename T>
void ln_row_backward(const T* dy, const T* xhat, T rstd, const T* gain, T* dx, int64_t n, T* dgain, T* dbias) {
  if (dgain != nullptr) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) dgain[j] += dy[j] * xhat[j];
  }
  if (dbias != nullptr) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) dbias[j] += dy[j];
  }
  T mean_d = 0, mean_dx = 0;
#pragma omp simd reduction(+ : mean_d, mean_dx)
  for (int64_t j = 0; j < n; ++j) {
    const T d = dy[j] * gain[j];
    mean_d += d;
    mean_dx += d * xhat[j];
  }
  mean_d /= T(n);
  mean_dx /= T(n);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dx[j] = rstd * (dy[j] * gain[j] - mean_d - xhat[j] * mean_dx);
}

// ------------------------------------------------------------------ workspace
// Buffers reused from call to call on each thread (a fresh large tensor costs page faults). Those larger
// than KEEP_BYTES are freed when a call returns (release_large_workspaces): one big chunk would otherwise
// keep hundreds of MiB resident for the thread's life.
enum Slot : int { XW, BIAS, HP, CP, R, ACT, CN, NH, TN, HCUR, CCUR, DG, DR, DH0, DH1, DC0, DC1, DHD, DN, N_SLOTS };
constexpr size_t KEEP_BYTES = size_t(16) << 20;

template <typename T>
std::array<Tensor, N_SLOTS>& workspace_buffers() {
  thread_local std::array<Tensor, N_SLOTS> buffers;
  return buffers;
}

template <typename T>
T* workspace(Slot slot, int64_t numel) {
  Tensor& buf = workspace_buffers<T>()[slot];
  if (!buf.defined() || buf.numel() < numel) {
    buf = Tensor();  // free the smaller buffer before taking the larger one
    buf = at::empty({std::max<int64_t>(numel, 1)}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  }
  return buf.data_ptr<T>();
}

template <typename T>
void release_large_workspaces() {
  for (Tensor& buf : workspace_buffers<T>()) {
    if (buf.defined() && buf.nbytes() > KEEP_BYTES) buf = Tensor();
  }
}

template <typename T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// ------------------------------------------------------------------ the call's tensors
struct Chunk {
  Tensor x, h0, c0, w_ih, w_hh, b_ih, b_hh, g_ih, be_ih, g_hh, be_hh, g_c, be_c, masks, starts;
  int64_t site;
  double eps_pre, eps_c;
  int64_t T, B, I, H, G, mask_t, mask_b;

  bool ln_pre() const { return g_ih.defined(); }
  bool ln_c() const { return g_c.defined(); }
  bool resets(int64_t t, int64_t b) const { return starts.defined() && starts.data_ptr<bool>()[t * B + b]; }
  template <typename T_>
  const T_* mask(int64_t t, int64_t b) const {
    return masks.data_ptr<T_>() + t * mask_t + b * mask_b;
  }
};

using Opt = std::optional<Tensor>;
Tensor get(const Opt& t) { return t.has_value() ? *t : Tensor(); }

Tensor contig(const Tensor& t) { return t.defined() ? t.contiguous() : t; }

Chunk make_chunk(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                 const Tensor& b_ih, const Tensor& b_hh, const Tensor& g_ih, const Tensor& be_ih, const Tensor& g_hh,
                 const Tensor& be_hh, const Tensor& g_c, const Tensor& be_c, const Tensor& masks, const Tensor& starts,
                 int64_t site, double eps_pre, double eps_c) {
  Chunk k{contig(x),  contig(h0),    contig(c0),   contig(w_ih), contig(w_hh),   contig(b_ih), contig(b_hh),
          contig(g_ih), contig(be_ih), contig(g_hh), contig(be_hh), contig(g_c), contig(be_c), masks,
          starts.defined() ? starts.to(at::kBool).contiguous() : starts,
          site, eps_pre, eps_c};
  TORCH_CHECK(k.x.dim() == 3, "x: expected (T, B, I), got ", k.x.sizes());
  TORCH_CHECK(k.x.device().is_cpu(), "the compiled LSTM kernel runs on CPU tensors only");
  TORCH_CHECK(site >= NONE && site <= ZONEOUT, "site: expected 0..5, got ", site);
  TORCH_CHECK(k.w_hh.dim() == 2, "weight_hh: expected (4H, H), got ", k.w_hh.sizes());
  k.T = k.x.size(0);
  k.B = k.x.size(1);
  k.I = k.x.size(2);
  k.H = k.w_hh.size(1);
  k.G = 4 * k.H;
  // Every vector the loops read G or H entries of (a wrong size would read out of bounds).
  const auto vector_of = [](const Tensor& t, int64_t n) { return !t.defined() || (t.dim() == 1 && t.size(0) == n); };
  TORCH_CHECK(vector_of(k.b_ih, k.G) && vector_of(k.b_hh, k.G), "bias_ih, bias_hh: expected (4H,) = (", k.G,
              ",), got ", k.b_ih.defined() ? k.b_ih.sizes() : at::IntArrayRef(), " and ",
              k.b_hh.defined() ? k.b_hh.sizes() : at::IntArrayRef());
  TORCH_CHECK(vector_of(k.g_ih, k.G) && vector_of(k.be_ih, k.G) && vector_of(k.g_hh, k.G) && vector_of(k.be_hh, k.G),
              "the pre-activation layer norms' weights and biases: expected (4H,) = (", k.G, ",)");
  TORCH_CHECK(vector_of(k.g_c, k.H) && vector_of(k.be_c, k.H), "the cell layer norm's weight and bias: expected (H,) = (",
              k.H, ",)");
  TORCH_CHECK(k.g_ih.defined() == k.be_ih.defined() && k.g_hh.defined() == k.be_hh.defined() &&
                  k.g_c.defined() == k.be_c.defined(),
              "a layer norm's weight and bias: both or neither");
  TORCH_CHECK(k.w_ih.sizes() == at::IntArrayRef({k.G, k.I}), "weight_ih: expected (4H, I)");
  TORCH_CHECK(k.w_hh.sizes() == at::IntArrayRef({k.G, k.H}), "weight_hh: expected (4H, H)");
  TORCH_CHECK(k.h0.sizes() == at::IntArrayRef({k.B, k.H}) && k.c0.sizes() == at::IntArrayRef({k.B, k.H}),
              "h0, c0: expected (B, H)");
  for (const Tensor* t : {&k.h0, &k.c0, &k.w_ih, &k.w_hh, &k.b_ih, &k.b_hh, &k.g_ih, &k.be_ih, &k.g_hh, &k.be_hh,
                          &k.g_c, &k.be_c, &k.masks}) {
    TORCH_CHECK(!t->defined() || (t->scalar_type() == k.x.scalar_type() && t->device().is_cpu()),
                "every tensor: expected the dtype of x on the CPU");
  }
  TORCH_CHECK(k.b_ih.defined() == k.b_hh.defined(), "bias_ih and bias_hh: both or neither");
  TORCH_CHECK(k.g_ih.defined() == k.g_hh.defined(), "the pre-activation layer norms: both or neither");
  if (site == NONE) {
    k.masks = Tensor();
  } else {
    const int64_t width = site == ZONEOUT ? 2 * k.H : k.H;
    TORCH_CHECK(masks.defined() && masks.dim() == 3 && masks.size(0) == k.T && masks.size(1) == k.B &&
                    masks.size(2) == width,
                "masks: expected (T, B, ", width, "), got ", masks.defined() ? masks.sizes() : at::IntArrayRef());
    if (masks.stride(2) != 1) k.masks = masks.contiguous();  // expanded (stride 0) rows and steps stay as they are
    k.mask_t = k.masks.stride(0);
    k.mask_b = k.masks.stride(1);
  }
  if (k.starts.defined()) {
    TORCH_CHECK(k.starts.sizes() == at::IntArrayRef({k.T, k.B}), "episode_starts: expected (T, B)");
  }
  return k;
}

// What backward needs of the forward pass, one slice of T per step.
struct Saved {
  Tensor hin, cin, act, tn, nhat, rstd_c, rhat, rstd_hh, phat, rstd_ih;
};

// ------------------------------------------------------------------ forward
// The elementwise part of a step for one row: gate pre-activations a (4H) -> activations act (i, f, g, o),
// then c_new (before any zoneout) into cn.
template <typename T, int64_t SITE>
void gates_row(const T* a, T* act, const T* cp, const T* m, T* cn, int64_t H) {
#pragma omp simd
  for (int64_t j = 0; j < 2 * H; ++j) act[j] = sigmoid(a[j]);
#pragma omp simd
  for (int64_t j = 2 * H; j < 3 * H; ++j) act[j] = tanh_(a[j]);
#pragma omp simd
  for (int64_t j = 3 * H; j < 4 * H; ++j) act[j] = sigmoid(a[j]);
  const T *i = act, *f = act + H, *g = act + 2 * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T gj = SITE == CANDIDATE ? g[j] * m[j] : g[j];
    const T c = f[j] * cp[j] + i[j] * gj;
    cn[j] = SITE == CELL ? c * m[j] : c;
  }
}

// The rest of the step for one row: n (c_new, or its layer norm) -> h, the carried state and the output.
template <typename T, int64_t SITE>
void output_row(const T* o, const T* n, const T* cn, const T* hp, const T* cp, const T* m, T* tn, T* h, T* c, T* out,
                int64_t H) {
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T t = tanh_(n[j]);
    tn[j] = t;
    const T hn = o[j] * t;
    if constexpr (SITE == ZONEOUT) {
      const T hz = hn + m[H + j] * (hp[j] - hn);
      h[j] = hz;
      out[j] = hz;
      c[j] = cn[j] + m[j] * (cp[j] - cn[j]);
    } else if constexpr (SITE == HIDDEN) {
      h[j] = hn * m[j];
      out[j] = hn * m[j];
      c[j] = cn[j];
    } else if constexpr (SITE == OUTPUT) {
      h[j] = hn;
      out[j] = hn * m[j];
      c[j] = cn[j];
    } else {
      h[j] = hn;
      out[j] = hn;
      c[j] = cn[j];
    }
  }
}

template <typename T, int64_t SITE>
void forward_steps(const Chunk& k, T* xw, T* out, T* hcur, T* ccur, Saved* saved) {
  const int64_t B = k.B, H = k.H, G = k.G;
  const bool save = saved != nullptr;
  const T* w_hh = k.w_hh.data_ptr<T>();  // (4H, H) row-major: the column-major H x 4H matrix W_hh^T
  const T *g_hh = ptr_or_null<T>(k.g_hh), *be_hh = ptr_or_null<T>(k.be_hh);
  const T *g_c = ptr_or_null<T>(k.g_c), *be_c = ptr_or_null<T>(k.be_c);
  const T eps_pre = T(k.eps_pre), eps_c = T(k.eps_c);
  T* hp_ws = workspace<T>(HP, B * H);
  T* cp_ws = workspace<T>(CP, B * H);
  T* r_ws = workspace<T>(R, B * G);
  T* act_ws = workspace<T>(ACT, B * G);
  T* cn = workspace<T>(CN, B * H);
  T* nh_ws = workspace<T>(NH, B * H);
  T* tn_ws = workspace<T>(TN, B * H);
  T* n_val = workspace<T>(DN, H);  // LN(c_new) of one row
  // W_hh^T (H x 4H) packed once for a small-row routine where one runs (small_gemm.h), else BLAS.
  const auto w_t = k.T >= kPackMinSteps && B <= kSmallRowsMax ? small_gemm::pack<T>(small_gemm::path(), small_gemm::W_FORWARD, w_hh, H, G, 1, H)
                                        : small_gemm::Packed<T>{};
  for (int64_t t = 0; t < k.T; ++t) {
    const int64_t s = t * B;  // first row of step t in the (T * B, ...) layouts
    T* hp = save ? saved->hin.data_ptr<T>() + s * H : hp_ws;
    T* cp = save ? saved->cin.data_ptr<T>() + s * H : cp_ws;
    for (int64_t b = 0; b < B; ++b) {
      if (k.resets(t, b)) {
        std::fill_n(hp + b * H, H, T(0));
        std::fill_n(cp + b * H, H, T(0));
      } else {
        std::copy_n(hcur + b * H, H, hp + b * H);
        std::copy_n(ccur + b * H, H, cp + b * H);
      }
    }
    T* gates = xw + s * G;  // (B, 4H): the projected input becomes the step's pre-activations
    if (k.ln_pre()) {
      T* r = save ? saved->rhat.data_ptr<T>() + s * G : r_ws;
      if (w_t) {
        small_gemm::multiply(w_t, B, hp, H, 1, r, G, false);
      } else {
        gemm('T', 'N', G, B, H, T(1), w_hh, H, hp, H, T(0), r, G);
      }
      for (int64_t b = 0; b < B; ++b) {
        const T rstd = ln_row(r + b * G, r + b * G, G, eps_pre);
        if (save) saved->rstd_hh.data_ptr<T>()[s + b] = rstd;
        const T* rh = r + b * G;
        T* a = gates + b * G;
#pragma omp simd
        for (int64_t j = 0; j < G; ++j) a[j] += rh[j] * g_hh[j] + be_hh[j];
      }
    } else if (w_t) {
      small_gemm::multiply(w_t, B, hp, H, 1, gates, G, true);
    } else {
      gemm('T', 'N', G, B, H, T(1), w_hh, H, hp, H, T(1), gates, G);
    }
    T* act = save ? saved->act.data_ptr<T>() + s * G : act_ws;
    T* tn = save ? saved->tn.data_ptr<T>() + s * H : tn_ws;
    T* nh = save && k.ln_c() ? saved->nhat.data_ptr<T>() + s * H : nh_ws;
    for (int64_t b = 0; b < B; ++b) {
      const T* m = SITE == NONE ? nullptr : k.mask<T>(t, b);
      const int64_t rh = b * H;
      gates_row<T, SITE>(gates + b * G, act + b * G, cp + rh, m, cn + rh, H);
      const T* n = cn + rh;
      if (k.ln_c()) {
        const T rstd = ln_row(cn + rh, nh + rh, H, eps_c);
        if (save) saved->rstd_c.data_ptr<T>()[s + b] = rstd;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) n_val[j] = nh[rh + j] * g_c[j] + be_c[j];
        n = n_val;
      }
      output_row<T, SITE>(act + b * G + 3 * H, n, cn + rh, hp + rh, cp + rh, m, tn + rh, hcur + rh, ccur + rh,
                          out + (s + b) * H, H);
    }
  }
}

template <typename T>
std::vector<Tensor> forward_impl(const Chunk& k, Saved* saved) {
  const int64_t T_ = k.T, B = k.B, I = k.I, H = k.H, G = k.G, TB = T_ * B;
  auto opts = k.x.options();
  if (saved != nullptr) {
    saved->hin = at::empty({T_, B, H}, opts);
    saved->cin = at::empty({T_, B, H}, opts);
    saved->act = at::empty({T_, B, G}, opts);
    saved->tn = at::empty({T_, B, H}, opts);
    if (k.ln_c()) {
      saved->nhat = at::empty({T_, B, H}, opts);
      saved->rstd_c = at::empty({T_, B}, opts);
    }
    if (k.ln_pre()) {
      saved->rhat = at::empty({T_, B, G}, opts);
      saved->rstd_hh = at::empty({T_, B}, opts);
      saved->phat = at::empty({T_, B, G}, opts);
      saved->rstd_ih = at::empty({T_, B}, opts);
    }
  }
  // The input projection for all steps: xw (T * B, 4H) = x W_ih^T (+ LN) + b_ih + b_hh.
  T* xw = workspace<T>(XW, TB * G);
  gemm('T', 'N', G, TB, I, T(1), k.w_ih.data_ptr<T>(), I, k.x.data_ptr<T>(), I, T(0), xw, G);
  T* bias = nullptr;
  if (k.b_ih.defined()) {
    bias = workspace<T>(BIAS, G);
    const T *bi = k.b_ih.data_ptr<T>(), *bh = k.b_hh.data_ptr<T>();
#pragma omp simd
    for (int64_t j = 0; j < G; ++j) bias[j] = bi[j] + bh[j];
  }
  if (k.ln_pre()) {
    const T *g = k.g_ih.data_ptr<T>(), *be = k.be_ih.data_ptr<T>();
    const T eps = T(k.eps_pre);
    for (int64_t r = 0; r < TB; ++r) {
      T* row = xw + r * G;
      T* hat = saved != nullptr ? saved->phat.data_ptr<T>() + r * G : row;
      const T rstd = ln_row(row, hat, G, eps);
      if (saved != nullptr) saved->rstd_ih.data_ptr<T>()[r] = rstd;
      if (bias != nullptr) {
#pragma omp simd
        for (int64_t j = 0; j < G; ++j) row[j] = hat[j] * g[j] + be[j] + bias[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < G; ++j) row[j] = hat[j] * g[j] + be[j];
      }
    }
  } else if (bias != nullptr) {
    for (int64_t r = 0; r < TB; ++r) {
      T* row = xw + r * G;
#pragma omp simd
      for (int64_t j = 0; j < G; ++j) row[j] += bias[j];
    }
  }
  Tensor out = at::empty({T_, B, H}, opts);
  T* hcur = workspace<T>(HCUR, B * H);
  T* ccur = workspace<T>(CCUR, B * H);
  std::copy_n(k.h0.data_ptr<T>(), B * H, hcur);
  std::copy_n(k.c0.data_ptr<T>(), B * H, ccur);
  T* o = out.data_ptr<T>();
  switch (k.site) {
    case OUTPUT: forward_steps<T, OUTPUT>(k, xw, o, hcur, ccur, saved); break;
    case HIDDEN: forward_steps<T, HIDDEN>(k, xw, o, hcur, ccur, saved); break;
    case CELL: forward_steps<T, CELL>(k, xw, o, hcur, ccur, saved); break;
    case CANDIDATE: forward_steps<T, CANDIDATE>(k, xw, o, hcur, ccur, saved); break;
    case ZONEOUT: forward_steps<T, ZONEOUT>(k, xw, o, hcur, ccur, saved); break;
    default: forward_steps<T, NONE>(k, xw, o, hcur, ccur, saved); break;
  }
  Tensor h_t = at::empty({B, H}, opts), c_t = at::empty({B, H}, opts);
  std::copy_n(hcur, B * H, h_t.data_ptr<T>());
  std::copy_n(ccur, B * H, c_t.data_ptr<T>());
  release_large_workspaces<T>();
  return {out, h_t, c_t};
}

std::vector<Tensor> run_forward(const Chunk& k, Saved* saved) {
  if (k.x.scalar_type() == at::kFloat) return forward_impl<float>(k, saved);
  TORCH_CHECK(k.x.scalar_type() == at::kDouble, "the compiled LSTM kernel takes float32 or float64, got ",
              k.x.scalar_type());
  return forward_impl<double>(k, saved);
}

// ------------------------------------------------------------------ backward
struct Grads {
  Tensor dx, dh0, dc0, dw_ih, dw_hh, db, dg_ih, dbe_ih, dg_hh, dbe_hh, dg_c, dbe_c;
};

template <typename T, int64_t SITE>
void backward_steps(const Chunk& k, const Saved& sv, const T* gout, T* dh, T* dc, T* dG, T* dR, T* dg_c, T* dbe_c,
                    T* dg_hh, T* dbe_hh) {
  const int64_t B = k.B, H = k.H, G = k.G;
  const T* w_hh = k.w_hh.data_ptr<T>();
  const T *g_c = ptr_or_null<T>(k.g_c), *g_hh = ptr_or_null<T>(k.g_hh);
  const T *act_all = sv.act.data_ptr<T>(), *tn_all = sv.tn.data_ptr<T>(), *cin_all = sv.cin.data_ptr<T>();
  T* dh_next = workspace<T>(DH1, B * H);
  T* dc_next = workspace<T>(DC1, B * H);
  T* dhd = workspace<T>(DHD, B * H);  // zoneout: the gradient reaching the previous h directly
  T* dn = workspace<T>(DN, H);
  // W_hh (4H x H) packed once for a small-row routine where one runs (small_gemm.h), else BLAS.
  const auto w_p = k.T >= kPackMinSteps && B <= kSmallRowsMax ? small_gemm::pack<T>(small_gemm::path(), small_gemm::W_BACKWARD, w_hh, G, H, H, 1)
                                        : small_gemm::Packed<T>{};
  for (int64_t t = k.T - 1; t >= 0; --t) {
    const int64_t s = t * B;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t r = s + b, rh = b * H;
      const T* m = SITE == NONE ? nullptr : k.mask<T>(t, b);
      const T* act = act_all + r * G;
      const T *i = act, *f = act + H, *g = act + 2 * H, *o = act + 3 * H;
      const T* tn = tn_all + r * H;
      const T* cp = cin_all + r * H;
      const T* go = gout != nullptr ? gout + r * H : nullptr;
      T* dA = dG + r * G;
      T* dhr = dh + rh;
      T* dcr = dc + rh;
      // dA[3H..4H) holds d h_new for now, dc_next the carried part of d c_new.
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T d_out = go != nullptr ? go[j] : T(0);
        T dhn, dcn;
        if constexpr (SITE == ZONEOUT) {
          const T dh_all = dhr[j] + d_out;
          dhn = dh_all * (T(1) - m[H + j]);
          dhd[rh + j] = dh_all * m[H + j];
          dcn = dcr[j] * (T(1) - m[j]);
          dc_next[rh + j] = dcr[j] * m[j];  // the direct part, to which f * d c_pre is added below
        } else if constexpr (SITE == HIDDEN) {
          dhn = (dhr[j] + d_out) * m[j];
          dcn = dcr[j];
        } else if constexpr (SITE == OUTPUT) {
          dhn = dhr[j] + d_out * m[j];
          dcn = dcr[j];
        } else {
          dhn = dhr[j] + d_out;
          dcn = dcr[j];
        }
        dA[3 * H + j] = dhn;
        dn[j] = dhn * o[j] * (T(1) - tn[j] * tn[j]);
        dA[j] = dcn;  // parked: d c_new from the carried state
      }
      if (k.ln_c()) {
        ln_row_backward(dn, sv.nhat.data_ptr<T>() + r * H, sv.rstd_c.data_ptr<T>()[r], g_c, dn, H, dg_c, dbe_c);
      }
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T dcn = dA[j] + dn[j];
        const T dcpre = SITE == CELL ? dcn * m[j] : dcn;
        const T gj = SITE == CANDIDATE ? g[j] * m[j] : g[j];
        const T di = dcpre * gj;
        const T df = dcpre * cp[j];
        const T dgj = SITE == CANDIDATE ? dcpre * i[j] * m[j] : dcpre * i[j];
        const T dho = dA[3 * H + j] * tn[j];
        const T dcp = dcpre * f[j];
        dc_next[rh + j] = SITE == ZONEOUT ? dc_next[rh + j] + dcp : dcp;
        dA[j] = di * i[j] * (T(1) - i[j]);
        dA[H + j] = df * f[j] * (T(1) - f[j]);
        dA[2 * H + j] = dgj * (T(1) - g[j] * g[j]);
        dA[3 * H + j] = dho * o[j] * (T(1) - o[j]);
      }
    }
    // Through the recurrent GEMM (and its layer norm) to the previous h.
    T* dr = dR + s * G;
    if (k.ln_pre()) {
      const T* rhat = sv.rhat.data_ptr<T>() + s * G;
      const T* rstd = sv.rstd_hh.data_ptr<T>() + s;
      for (int64_t b = 0; b < B; ++b) {
        ln_row_backward(dG + (s + b) * G, rhat + b * G, rstd[b], g_hh, dr + b * G, G, dg_hh, dbe_hh);
      }
    }
    if (w_p) {
      small_gemm::multiply(w_p, B, dr, G, 1, dh_next, H, false);
    } else {
      gemm('N', 'N', H, B, G, T(1), w_hh, H, dr, G, T(0), dh_next, H);
    }
    for (int64_t b = 0; b < B; ++b) {
      T* dhb = dh_next + b * H;
      if (k.resets(t, b)) {
        std::fill_n(dhb, H, T(0));
        std::fill_n(dc_next + b * H, H, T(0));
      } else if (SITE == ZONEOUT) {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) dhb[j] += dhd[b * H + j];
      }
    }
    std::swap(dh, dh_next);
    std::swap(dc, dc_next);
  }
}

template <typename T>
Grads backward_impl(const Chunk& k, const Saved& sv, const Tensor& grad_out, const Tensor& grad_h,
                    const Tensor& grad_c, const std::array<bool, 15>& need) {
  const int64_t T_ = k.T, B = k.B, I = k.I, H = k.H, G = k.G, TB = T_ * B;
  auto opts = k.x.options();
  T* dh = workspace<T>(DH0, B * H);
  T* dc = workspace<T>(DC0, B * H);
  if (grad_h.defined()) {
    std::copy_n(grad_h.contiguous().data_ptr<T>(), B * H, dh);
  } else {
    std::fill_n(dh, B * H, T(0));
  }
  if (grad_c.defined()) {
    std::copy_n(grad_c.contiguous().data_ptr<T>(), B * H, dc);
  } else {
    std::fill_n(dc, B * H, T(0));
  }
  Tensor gout = grad_out.defined() ? grad_out.contiguous() : grad_out;
  T* dG = workspace<T>(DG, TB * G);
  T* dR = k.ln_pre() ? workspace<T>(DR, TB * G) : dG;
  Grads gr;
  auto zeros = [&](int64_t n) { return at::zeros({n}, opts); };
  if (k.ln_c()) {
    gr.dg_c = zeros(H);
    gr.dbe_c = zeros(H);
  }
  if (k.ln_pre()) {
    gr.dg_hh = zeros(G);
    gr.dbe_hh = zeros(G);
  }
  T *dg_c = ptr_or_null<T>(gr.dg_c), *dbe_c = ptr_or_null<T>(gr.dbe_c);
  T *dg_hh = ptr_or_null<T>(gr.dg_hh), *dbe_hh = ptr_or_null<T>(gr.dbe_hh);
  const T* go = ptr_or_null<T>(gout);
  // backward_steps swaps buffers each step: pass copies of the pointers and read the results back by parity.
  T* dh_end = dh;
  T* dc_end = dc;
  switch (k.site) {
    case OUTPUT: backward_steps<T, OUTPUT>(k, sv, go, dh_end, dc_end, dG, dR, dg_c, dbe_c, dg_hh, dbe_hh); break;
    case HIDDEN: backward_steps<T, HIDDEN>(k, sv, go, dh_end, dc_end, dG, dR, dg_c, dbe_c, dg_hh, dbe_hh); break;
    case CELL: backward_steps<T, CELL>(k, sv, go, dh_end, dc_end, dG, dR, dg_c, dbe_c, dg_hh, dbe_hh); break;
    case CANDIDATE:
      backward_steps<T, CANDIDATE>(k, sv, go, dh_end, dc_end, dG, dR, dg_c, dbe_c, dg_hh, dbe_hh);
      break;
    case ZONEOUT: backward_steps<T, ZONEOUT>(k, sv, go, dh_end, dc_end, dG, dR, dg_c, dbe_c, dg_hh, dbe_hh); break;
    default: backward_steps<T, NONE>(k, sv, go, dh_end, dc_end, dG, dR, dg_c, dbe_c, dg_hh, dbe_hh); break;
  }
  // After T swaps the final gradients are in the first buffer of each pair when T is even, else in the second.
  const T* dh_fin = T_ % 2 == 0 ? dh : workspace<T>(DH1, B * H);
  const T* dc_fin = T_ % 2 == 0 ? dc : workspace<T>(DC1, B * H);
  if (need[1]) {
    gr.dh0 = at::empty({B, H}, opts);
    std::copy_n(dh_fin, B * H, gr.dh0.template data_ptr<T>());
  }
  if (need[2]) {
    gr.dc0 = at::empty({B, H}, opts);
    std::copy_n(dc_fin, B * H, gr.dc0.template data_ptr<T>());
  }
  if (need[4]) {  // dW_hh (4H, H) = sum over steps and rows of dR^T h_in
    gr.dw_hh = at::empty({G, H}, opts);
    // 4H rows: BLAS (the small-row routine measured slower here, 45 against 76 GFLOP/s with AVX2).
    gemm('N', 'T', H, G, TB, T(1), sv.hin.data_ptr<T>(), H, dR, G, T(0), gr.dw_hh.template data_ptr<T>(), H);
  }
  // Every additive term of the gate pre-activations gets the column sums of dG.
  if (need[5] || need[6] || need[7] || need[8] || need[10]) {
    Tensor colsum = zeros(G);
    Tensor colsum_hat = k.ln_pre() && need[7] ? zeros(G) : Tensor();
    T* cs = colsum.template data_ptr<T>();
    T* ch = ptr_or_null<T>(colsum_hat);
    const T* phat = k.ln_pre() ? sv.phat.data_ptr<T>() : nullptr;
    for (int64_t r = 0; r < TB; ++r) {
      const T* row = dG + r * G;
#pragma omp simd
      for (int64_t j = 0; j < G; ++j) cs[j] += row[j];
      if (ch != nullptr) {
        const T* hat = phat + r * G;
#pragma omp simd
        for (int64_t j = 0; j < G; ++j) ch[j] += row[j] * hat[j];
      }
    }
    if (k.b_ih.defined()) {
      gr.db = colsum;
    }
    if (k.ln_pre()) {
      gr.dbe_ih = colsum;
      gr.dg_ih = colsum_hat;
    }
  }
  if (need[0] || need[3]) {
    // Through the input layer norm (in place) to the raw projection.
    if (k.ln_pre()) {
      const T* g = k.g_ih.data_ptr<T>();
      const T* phat = sv.phat.data_ptr<T>();
      const T* rstd = sv.rstd_ih.data_ptr<T>();
      for (int64_t r = 0; r < TB; ++r) {
        ln_row_backward<T>(dG + r * G, phat + r * G, rstd[r], g, dG + r * G, G, nullptr, nullptr);
      }
    }
    if (need[0]) {  // dx (T * B, I) = dP W_ih
      gr.dx = at::empty({T_, B, I}, opts);
      gemm('N', 'N', I, TB, G, T(1), k.w_ih.data_ptr<T>(), I, dG, G, T(0), gr.dx.template data_ptr<T>(), I);
    }
    if (need[3]) {  // dW_ih (4H, I) = dP^T x
      gr.dw_ih = weight_grad<T>(dG, k.x.data_ptr<T>(), G, I, TB, opts);
    }
  }
  release_large_workspaces<T>();
  return gr;
}

// ------------------------------------------------------------------ autograd
Saved load_saved(AutogradContext* ctx) {
  Saved sv;
  auto get = [&](const char* key) { return ctx->saved_data.count(key) ? ctx->saved_data[key].toTensor() : Tensor(); };
  sv.hin = get("hin");
  sv.cin = get("cin");
  sv.act = get("act");
  sv.tn = get("tn");
  sv.nhat = get("nhat");
  sv.rstd_c = get("rstd_c");
  sv.rhat = get("rhat");
  sv.rstd_hh = get("rstd_hh");
  sv.phat = get("phat");
  sv.rstd_ih = get("rstd_ih");
  return sv;
}

struct LSTMChunk : public torch::autograd::Function<LSTMChunk> {
  // Optional tensors are None or defined; an absent one is no input edge of the graph, so forward records
  // which inputs are there, to map them to the edges in backward.
  static variable_list forward(AutogradContext* ctx, Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh,
                               Opt b_ih, Opt b_hh, Opt g_ih, Opt be_ih, Opt g_hh, Opt be_hh, Opt g_c, Opt be_c,
                               Opt masks, Opt starts, int64_t site, double eps_pre, double eps_c) {
    Chunk k = make_chunk(x, h0, c0, w_ih, w_hh, get(b_ih), get(b_hh), get(g_ih), get(be_ih), get(g_hh), get(be_hh),
                         get(g_c), get(be_c), get(masks), get(starts), site, eps_pre, eps_c);
    const Opt optional[] = {b_ih, b_hh, g_ih, be_ih, g_hh, be_hh, g_c, be_c};
    int64_t present = 0;
    for (int i = 0; i < 8; ++i) present |= int64_t(optional[i].has_value()) << i;
    ctx->saved_data["present"] = present;
    Saved sv;
    auto outputs = run_forward(k, &sv);
    // The inputs (checked against in-place changes before backward), then the intermediates.
    ctx->save_for_backward({k.x, k.w_ih, k.w_hh, k.b_ih, k.g_ih, k.g_hh, k.g_c, k.masks, k.starts});
    const std::pair<const char*, Tensor*> items[] = {
        {"hin", &sv.hin},   {"cin", &sv.cin},         {"act", &sv.act},   {"tn", &sv.tn},
        {"nhat", &sv.nhat}, {"rstd_c", &sv.rstd_c},   {"rhat", &sv.rhat}, {"rstd_hh", &sv.rstd_hh},
        {"phat", &sv.phat}, {"rstd_ih", &sv.rstd_ih},
    };
    for (const auto& [key, t] : items) {
      if (t->defined()) ctx->saved_data[key] = *t;
    }
    ctx->saved_data["site"] = k.site;
    ctx->saved_data["eps_pre"] = eps_pre;
    ctx->saved_data["eps_c"] = eps_c;
    ctx->set_materialize_grads(false);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // Grad mode is on in a backward pass only when it must build a graph (create_graph=True), which this
    // hand-written backward cannot: say so rather than return gradients that silently have no graph.
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "the compiled LSTM kernel has no double backward (create_graph=True, e.g. a gradient penalty): "
                "run the cells' Python path with the environment variable RL_LSTM_KERNEL=0");
    auto in = ctx->get_saved_variables();
    Chunk k;
    k.x = in[0];
    k.w_ih = in[1];
    k.w_hh = in[2];
    k.b_ih = in[3];
    k.g_ih = in[4];
    k.g_hh = in[5];
    k.g_c = in[6];
    k.masks = in[7];
    k.starts = in[8];
    k.site = ctx->saved_data["site"].toInt();
    k.eps_pre = ctx->saved_data["eps_pre"].toDouble();
    k.eps_c = ctx->saved_data["eps_c"].toDouble();
    k.T = k.x.size(0);
    k.B = k.x.size(1);
    k.I = k.x.size(2);
    k.H = k.w_hh.size(1);
    k.G = 4 * k.H;
    if (k.masks.defined()) {
      k.mask_t = k.masks.stride(0);
      k.mask_b = k.masks.stride(1);
    }
    Saved sv = load_saved(ctx);
    // Inputs 0-4 are always edges 0-4; the optional ones 5-12 take the next edges when present.
    const int64_t present = ctx->saved_data["present"].toInt();
    std::array<bool, 15> need{};
    size_t edge = 0;
    for (int i = 0; i < 13; ++i) {
      if (i < 5 || (present >> (i - 5) & 1)) need[i] = ctx->needs_input_grad(edge++);
    }
    Grads gr = k.x.scalar_type() == at::kFloat ? backward_impl<float>(k, sv, grads[0], grads[1], grads[2], need)
                                                : backward_impl<double>(k, sv, grads[0], grads[1], grads[2], need);
    auto keep = [&](int i, const Tensor& g) { return need[i] ? g : Tensor(); };
    return {keep(0, gr.dx),      keep(1, gr.dh0),   keep(2, gr.dc0),    keep(3, gr.dw_ih), keep(4, gr.dw_hh),
            keep(5, gr.db),      keep(6, gr.db),    keep(7, gr.dg_ih),  keep(8, gr.dbe_ih), keep(9, gr.dg_hh),
            keep(10, gr.dbe_hh), keep(11, gr.dg_c), keep(12, gr.dbe_c), Tensor(),          Tensor(),
            Tensor(),            Tensor(),          Tensor()};
  }
};

std::vector<Tensor> lstm_chunk(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                               const Tensor& w_hh, const std::optional<Tensor>& b_ih,
                               const std::optional<Tensor>& b_hh, const std::optional<Tensor>& g_ih,
                               const std::optional<Tensor>& be_ih, const std::optional<Tensor>& g_hh,
                               const std::optional<Tensor>& be_hh, const std::optional<Tensor>& g_c,
                               const std::optional<Tensor>& be_c, const std::optional<Tensor>& masks,
                               const std::optional<Tensor>& starts, int64_t site, double eps_pre, double eps_c) {
  const Tensor args[] = {x, h0, c0, w_ih, w_hh, get(b_ih), get(b_hh), get(g_ih), get(be_ih), get(g_hh), get(be_hh),
                         get(g_c), get(be_c)};
  bool grad = false;
  if (at::GradMode::is_enabled()) {
    for (const Tensor& t : args) grad = grad || (t.defined() && t.requires_grad());
  }
  if (grad) {
    return LSTMChunk::apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, g_ih, be_ih, g_hh, be_hh, g_c, be_c, masks, starts,
                            site, eps_pre, eps_c);
  }
  Chunk k = make_chunk(args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8], args[9],
                       args[10], args[11], args[12], get(masks), get(starts), site, eps_pre, eps_c);
  return run_forward(k, nullptr);
}

// ------------------------------------------------------------------ the GRU family
#include "gru_chunk.inc"

// ------------------------------------------------------------------ linear recurrences
#include "linear_scan.inc"

// ------------------------------------------------------------------ the RMSprop step
#include "rmsprop.inc"

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "A whole chunk of LSTM or GRU steps per call, with resets, dropout masks and layer norm, and its backward";
  m.def("lstm_chunk", &lstm_chunk,
        "lstm_chunk(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih_weight, ln_ih_bias, ln_hh_weight, "
        "ln_hh_bias, ln_c_weight, ln_c_bias, masks, starts, site, eps_pre, eps_c) -> [out, h, c]");
  m.def("gru_chunk", &gru_chunk,
        "gru_chunk(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih_weight, ln_ih_bias, ln_hh_weight, "
        "ln_hh_bias, masks, starts, site, eps) -> [out, h]");
  m.def("rnn_chunk", &rnn_chunk,
        "rnn_chunk(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, masks, starts, site) -> [out, h]");
  m.def("linear_scan", &linear_scan, "linear_scan(a, b, s0, starts) -> s: s_t = a_t * s_{t-1} + b_t, cut at starts");
  m.def("linear_scan_backward", &linear_scan_backward,
        "linear_scan_backward(a, s0, starts, s, grad_s, need_a, need_s0) -> [grad_a, grad_b, grad_s0]");
  m.def("rmsprop_step", &rmsprop_step,
        "rmsprop_step(params, grads, square_avgs, steps, lr, alpha, eps) -> bool: torch's plain RMSprop step; false, "
        "changing nothing, where a tensor is not dense contiguous CPU float32/float64");
  m.def("rmsprop_fma_matches", &rmsprop_fma_matches,
        "rmsprop_fma_matches(s, a, b, value) -> bool: whether torch's addcmul rounds as fma(value * a, b, s)");
  m.def("gemm_path", [] { return std::string(small_gemm::path_name(small_gemm::path())); },
        "The routine of the recurrent products, as RL_LSTM_GEMM and the CPU allow: avx512, avx2 or blas");
  m.def("small_matmul", &small_gemm::matmul, "small_matmul(a, b, path) -> (a @ b, the path that ran); for the tests");
}
