// Blocked Cholesky and triangular inversion in double. Both spend their time in one kernel, a rank-kb
// update of a 64-wide row tile (out -= a_row . B) whose B tile stays in L1 and whose accumulators
// stay in registers; it is compiled once per ISA (target_clones, as compute/cpu/vector_ops.cpp
// does), so AVX-512 and AVX2 machines run it 8 or 4 doubles wide and any x86-64 runs the default.
#include "quant/gptq_linalg.h"

#include <algorithm>
#include <cmath>

namespace anvil {
namespace {

constexpr int64_t kPanel = 64;  // block size of both factorizations, and the kernel's tile width

// Unblocked Cholesky of the diagonal block [k0, k1) (earlier panels' updates already applied).
bool factor_diagonal_block(double* a, int64_t n, int64_t k0, int64_t k1) {
  for (int64_t j = k0; j < k1; ++j) {
    double* rj = a + j * n;
    double d = rj[j];
    for (int64_t k = k0; k < j; ++k) d -= rj[k] * rj[k];
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    rj[j] = std::sqrt(d);
    for (int64_t i = j + 1; i < k1; ++i) {
      double* ri = a + i * n;
      double s = ri[j];
      for (int64_t k = k0; k < j; ++k) s -= ri[k] * rj[k];
      ri[j] = s / rj[j];
    }
  }
  return true;
}

}  // namespace

#define ANVIL_GPTQ_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// out[0, width) -= sum_{k < kb} a_row[k] * b[k * b_stride + (0, width)], width <= kPanel.
ANVIL_GPTQ_CLONES void gptq_rank_update(double* out, const double* a_row, const double* b, int64_t b_stride, int64_t kb,
                                        int64_t width) {
  if (width == kPanel) {  // the common case: a fixed trip count the compiler keeps in registers
    double acc[kPanel];
    for (int64_t j = 0; j < kPanel; ++j) acc[j] = out[j];
    for (int64_t k = 0; k < kb; ++k) {
      const double a = a_row[k];
      const double* bk = b + k * b_stride;
      for (int64_t j = 0; j < kPanel; ++j) acc[j] -= a * bk[j];
    }
    for (int64_t j = 0; j < kPanel; ++j) out[j] = acc[j];
    return;
  }
  for (int64_t k = 0; k < kb; ++k) {
    const double a = a_row[k];
    const double* bk = b + k * b_stride;
    for (int64_t j = 0; j < width; ++j) out[j] -= a * bk[j];
  }
}

bool cholesky_lower(std::vector<double>& matrix, int64_t n, ThreadPool& pool) {
  ScopedFlushDenormals flush;
  double* a = matrix.data();
  // The panel transposed into 64-column tiles, tile after tile: (tiles, kb, 64). A tile is 32 KiB
  // contiguous, so it sits in L1 without the set conflicts a row stride of n doubles would cause.
  std::vector<double> panel_t;
  for (int64_t k0 = 0; k0 < n; k0 += kPanel) {
    const int64_t k1 = std::min(n, k0 + kPanel), kb = k1 - k0;
    if (!factor_diagonal_block(a, n, k0, k1)) return false;
    if (k1 == n) break;
    // Panel below the diagonal block: L[i][j] for i >= k1, j in [k0, k1). Rows are independent.
    pool.parallel_for(n - k1, [&](int64_t begin, int64_t end) {
      ScopedFlushDenormals flush_worker;
      for (int64_t i = k1 + begin; i < k1 + end; ++i) {
        double* ri = a + i * n;
        for (int64_t j = k0; j < k1; ++j) {
          const double* rj = a + j * n;
          double s = ri[j];
          for (int64_t k = k0; k < j; ++k) s -= ri[k] * rj[k];
          ri[j] = s / rj[j];
        }
      }
    });
    const int64_t tiles = (n - k1 + kPanel - 1) / kPanel;
    panel_t.assign(static_cast<size_t>(tiles * kb * kPanel), 0.0);
    pool.parallel_for(n - k1, [&](int64_t begin, int64_t end) {
      for (int64_t j = k1 + begin; j < k1 + end; ++j) {
        double* tile = panel_t.data() + ((j - k1) / kPanel) * kb * kPanel + (j - k1) % kPanel;
        for (int64_t k = 0; k < kb; ++k) tile[k * kPanel] = a[j * n + k0 + k];
      }
    });
    // Trailing update of the lower triangle: a[i][j] -= sum_k L[i][k] L[j][k] for k1 <= j <= i, a
    // 64-column tile at a time (the tile stays in L1 while every row below passes); rows are dealt
    // round-robin so every thread gets a similar share of the triangle.
    pool.run([&](int thread, int threads) {
      ScopedFlushDenormals flush_worker;
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t j0 = k1 + t * kPanel;
        const double* tile = panel_t.data() + t * kb * kPanel;
        for (int64_t i = j0 + thread; i < n; i += threads)
          gptq_rank_update(a + i * n + j0, a + i * n + k0, tile, kPanel, kb, std::min(kPanel, i + 1 - j0));
      }
    });
  }
  return true;
}

std::vector<float> upper_cholesky_of_inverse(std::vector<double> h, int64_t n, ThreadPool& pool) {
  // P h P: reverse the order of rows and of columns (in place: element (i, j) <-> (n-1-i, n-1-j)).
  std::reverse(h.begin(), h.end());
  if (!cholesky_lower(h, n, pool)) return {};
  const double* m = h.data();  // lower triangular M with P h P = M M^T
  // X = M^-1 (lower triangular) by solving M X = I for kPanel columns [j0, j0 + kPanel) at a time,
  // blocked like the Cholesky: solve a 64-row diagonal block, then subtract its contribution from
  // every row below with the rank update. U[n-1-i][n-1-j] = X[i][j] goes straight into the result.
  std::vector<float> u(static_cast<size_t>(n * n), 0.0f);
  const int64_t groups = (n + kPanel - 1) / kPanel;
  pool.run([&](int thread, int threads) {
    ScopedFlushDenormals flush_worker;
    std::vector<double> xs(static_cast<size_t>(n * kPanel));  // rows of X restricted to the group's columns
    // Group g costs ~(n - g kPanel)^3: dealt in snake order (0 1 | 3 2 | 4 5 ...) to even the shares.
    for (int64_t round = 0; round * threads < groups; ++round) {
      const int64_t g = round * threads + (round % 2 == 0 ? thread : threads - 1 - thread);
      if (g >= groups) continue;
      const int64_t j0 = g * kPanel, width = std::min(kPanel, n - j0);
      std::fill(xs.begin() + j0 * kPanel, xs.end(), 0.0);
      for (int64_t c = 0; c < width; ++c) xs[(j0 + c) * kPanel + c] = 1.0;
      for (int64_t k0 = j0; k0 < n; k0 += kPanel) {
        const int64_t k1 = std::min(n, k0 + kPanel);
        for (int64_t i = k0; i < k1; ++i) {
          double* xi = xs.data() + i * kPanel;
          gptq_rank_update(xi, m + i * n + k0, xs.data() + k0 * kPanel, kPanel, i - k0, kPanel);
          const double inv = 1.0 / m[i * n + i];
          for (int64_t c = 0; c < kPanel; ++c) xi[c] *= inv;
        }
        for (int64_t i = k1; i < n; ++i)
          gptq_rank_update(xs.data() + i * kPanel, m + i * n + k0, xs.data() + k0 * kPanel, kPanel, k1 - k0, kPanel);
      }
      for (int64_t i = j0; i < n; ++i)
        for (int64_t c = 0; c < width && j0 + c <= i; ++c)
          u[(n - 1 - i) * n + (n - 1 - (j0 + c))] = static_cast<float>(xs[i * kPanel + c]);
    }
  });
  return u;
}

}  // namespace anvil
