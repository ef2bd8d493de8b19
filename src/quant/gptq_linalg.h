// The dense linear algebra GPTQ needs, in double precision on the CPU: a Cholesky factorization and
// the upper Cholesky factor of a matrix's inverse (torch.linalg.cholesky / cholesky_inverse in
// AutoGPTQ). Blocked and threaded so that Hessians of 8k-16k columns take seconds, not minutes.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace anvil {

// Flushes subnormal results to zero and reads subnormal inputs as zero on this thread while it
// lives. The factors of a well-dampened Hessian decay into subnormals far from the diagonal, and
// subnormal arithmetic is ~100x slower; values below 1e-308 (1e-38 in f32) change nothing GPTQ
// computes. Used inside every pool task of the factorizations and the GPTQ sweep.
class ScopedFlushDenormals {
 public:
#if defined(__x86_64__) || defined(__i386__)
  ScopedFlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
  ~ScopedFlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#endif
};

// In place: the lower triangle of the row-major (n, n) symmetric matrix `a` becomes L with
// a = L L^T (the strict upper triangle is left as it was). False when `a` is not (numerically)
// positive definite: a pivot <= 0 or not finite; `a` is then partly overwritten.
bool cholesky_lower(std::vector<double>& a, int64_t n, ThreadPool& pool);

// U, upper triangular with a positive diagonal, such that inverse(h) = U^T U: the matrix GPTQ
// propagates quantization errors with (AutoGPTQ: cholesky(cholesky_inverse(cholesky(H)), upper)).
// Computed without forming the inverse: with P the index reversal, P h P = M M^T gives
// h = V V^T for the upper triangular V = P M P, hence inverse(h) = V^-T V^-1 and U = V^-1 =
// P M^-1 P. `h` is consumed. Empty when h is not positive definite. Row-major (n, n) f32 (the
// strict lower triangle is zero).
std::vector<float> upper_cholesky_of_inverse(std::vector<double> h, int64_t n, ThreadPool& pool);

}  // namespace anvil
