// GPTQ: the linear algebra against its definitions, the Hessian accumulator against a direct sum,
// GPTQ's output error against round-to-nearest on correlated inputs, the diagonal-Hessian case
// (which must equal RTN exactly), dead inputs and the dampening retry.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "compute/cpu/matmul.h"
#include "quant/gptq.h"
#include "quant/gptq_linalg.h"
#include "quant/int4_rtn.h"

namespace anvil {
namespace {

std::vector<float> dequantize(const QuantizedMatrix& q) {
  const Tensor t = q.view("w");
  std::vector<float> out(static_cast<size_t>(q.rows * q.cols));
  for (int64_t r = 0; r < q.rows; ++r) weight_row_to_f32(t, r, out.data() + r * q.cols);
  return out;
}

// Activations with a strongly non-identity covariance: a rank-`rank` signal plus a little noise,
// with a few channels larger than the rest (as real layer inputs have).
std::vector<float> correlated_inputs(int64_t n, int64_t cols, int64_t rank, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> basis(static_cast<size_t>(rank * cols)), x(static_cast<size_t>(n * cols));
  for (float& v : basis) v = normal(rng);
  for (int64_t t = 0; t < n; ++t) {
    float coeff[64];
    for (int64_t k = 0; k < rank; ++k) coeff[k] = normal(rng);
    for (int64_t c = 0; c < cols; ++c) {
      float v = 0.05f * normal(rng);
      for (int64_t k = 0; k < rank; ++k) v += coeff[k] * basis[k * cols + c];
      x[t * cols + c] = v * (c % 37 == 0 ? 4.0f : 1.0f);
    }
  }
  return x;
}

std::vector<float> random_weights(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& v : w) v = normal(rng);
  return w;
}

// ||(Q - W) X^T||_F computed directly in double.
double output_error(const std::vector<float>& w, const std::vector<float>& q, const std::vector<float>& x, int64_t rows,
                    int64_t cols) {
  const int64_t n = static_cast<int64_t>(x.size()) / cols;
  double sum = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double d = 0;
      for (int64_t c = 0; c < cols; ++c) d += (static_cast<double>(q[r * cols + c]) - w[r * cols + c]) * x[t * cols + c];
      sum += d * d;
    }
  return std::sqrt(sum);
}

std::vector<double> hessian_of(const std::vector<float>& x, int64_t cols, ThreadPool& pool) {
  HessianAccumulator h(cols);
  h.add(pool, x.data(), static_cast<int64_t>(x.size()) / cols);
  return h.hessian();
}

TEST(GptqLinalg, CholeskyAndInverseFactorMeetTheirDefinitions) {
  ThreadPool pool(2);
  const int64_t n = 150;  // crosses the 64-column panels and the 8-column solve groups unevenly
  std::mt19937 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> b(static_cast<size_t>(n * n)), a(static_cast<size_t>(n * n), 0.0);
  for (double& v : b) v = normal(rng);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t k = 0; k < n; ++k) a[i * n + j] += b[i * n + k] * b[j * n + k];
      if (i == j) a[i * n + j] += 1.0;
    }
  std::vector<double> l = a;
  ASSERT_TRUE(cholesky_lower(l, n, pool));
  double worst = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0;
      for (int64_t k = 0; k <= j; ++k) s += l[i * n + k] * l[j * n + k];
      worst = std::max(worst, std::fabs(s - a[i * n + j]) / std::fabs(a[i * n + i]));
    }
  EXPECT_LT(worst, 1e-12);

  const std::vector<float> u = upper_cholesky_of_inverse(a, n, pool);
  ASSERT_EQ(static_cast<int64_t>(u.size()), n * n);
  // U upper with a positive diagonal, and (U^T U) A = I.
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_GT(u[i * n + i], 0.0f);
    for (int64_t j = 0; j < i; ++j) ASSERT_EQ(u[i * n + j], 0.0f);
  }
  std::vector<double> inv(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k <= std::min(i, j); ++k) inv[i * n + j] += static_cast<double>(u[k * n + i]) * u[k * n + j];
  worst = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += inv[i * n + k] * a[k * n + j];
      worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  EXPECT_LT(worst, 1e-3);  // U is stored in f32
}

TEST(GptqLinalg, NotPositiveDefiniteIsReported) {
  ThreadPool pool(1);
  std::vector<double> a = {1.0, 2.0, 2.0, 1.0};  // eigenvalues 3 and -1
  EXPECT_FALSE(cholesky_lower(a, 2, pool));
  EXPECT_TRUE(upper_cholesky_of_inverse({1.0, 2.0, 2.0, 1.0}, 2, pool).empty());
  EXPECT_TRUE(upper_cholesky_of_inverse({NAN, 0.0, 0.0, 1.0}, 2, pool).empty());
}

TEST(HessianAccumulator, EqualsTwiceTheMeanOuterProduct) {
  ThreadPool pool(2);
  const int64_t cols = 40, n = 1500;  // two GEMM chunks of rows
  const std::vector<float> x = correlated_inputs(n, cols, 5, 11);
  HessianAccumulator acc(cols);
  acc.add(pool, x.data(), 700);
  acc.add(pool, x.data() + 700 * cols, n - 700);
  EXPECT_EQ(acc.rows_seen(), n);
  const std::vector<double> h = acc.hessian();
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double s = 0;
      for (int64_t t = 0; t < n; ++t) s += static_cast<double>(x[t * cols + i]) * x[t * cols + j];
      s *= 2.0 / n;
      ASSERT_NEAR(h[i * cols + j], s, 1e-5 * std::sqrt(std::fabs(h[i * cols + i] * h[j * cols + j]))) << i << "," << j;
    }
}

// Column orders: none, act-order with static groups, act-order with dynamic groups.
enum class Order { None, ActOrderStatic, ActOrderDynamic };
const char* order_name(Order o) {
  return o == Order::None ? "" : o == Order::ActOrderStatic ? " act-order" : " act-order dyn";
}
void set_order(GptqOptions& options, Order o) {
  options.act_order = o != Order::None;
  options.static_groups = o != Order::ActOrderDynamic;
}

TEST(Gptq, ReducesTheOutputErrorOfRoundToNearest) {
  ThreadPool pool(2);
  const int64_t rows = 48, cols = 256, n = 1024;  // two 128-column blocks
  const std::vector<float> x = correlated_inputs(n, cols, 12, 5);
  const std::vector<float> w = random_weights(rows, cols, 6);
  for (Order order : {Order::None, Order::ActOrderStatic, Order::ActOrderDynamic})
    for (bool symmetric : {true, false})
      for (int64_t group : {32, 128}) {
        SCOPED_TRACE(testing::Message() << "group " << group << (symmetric ? " sym" : " asym") << order_name(order));
        GptqOptions options;
        options.group = group;
        options.symmetric = symmetric;
        set_order(options, order);
        Result<GptqHessian> h = prepare_gptq_hessian("w", hessian_of(x, cols, pool), cols, options, pool);
        ASSERT_TRUE(h.is_ok()) << h.status().message();
        EXPECT_EQ(h->damp_percent, 0.01);
        Result<QuantizedMatrix> gptq = quantize_int4_gptq("w", w.data(), rows, cols, *h, options, pool);
        ASSERT_TRUE(gptq.is_ok()) << gptq.status().message();
        ASSERT_TRUE(check_quant_scales(gptq->view("w")).is_ok());
        // Dynamic groups store the codes in processing order, which the weight carries.
        EXPECT_EQ(gptq->input_order, order == Order::ActOrderDynamic ? h->order : std::vector<int32_t>{});
        Result<QuantizedMatrix> rtn = quantize_int4_rtn("w", w.data(), rows, cols, {group, symmetric}, pool);
        ASSERT_TRUE(rtn.is_ok());
        const double e_gptq = output_error(w, dequantize(*gptq), x, rows, cols);
        const double e_rtn = output_error(w, dequantize(*rtn), x, rows, cols);
        std::printf("  GPTQ group %3lld %-4s%-14s ||(W'-W)X^T||: gptq %.4f  rtn %.4f  (ratio %.3f)\n",
                    static_cast<long long>(group), symmetric ? "sym" : "asym", order_name(order), e_gptq, e_rtn,
                    e_gptq / e_rtn);
        EXPECT_LT(e_gptq, 0.8 * e_rtn);
        // The library's measure agrees with the direct one.
        HessianAccumulator gram(cols);
        gram.add(pool, x.data(), n);
        double ref = 0;
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < rows; ++r) {
            double d = 0;
            for (int64_t c = 0; c < cols; ++c) d += static_cast<double>(w[r * cols + c]) * x[t * cols + c];
            ref += d * d;
          }
        const std::vector<float> gptq_values = dequantize(*gptq), rtn_values = dequantize(*rtn);
        const std::vector<double> measured =
            relative_output_errors(w.data(), {gptq_values.data(), rtn_values.data()}, rows, cols, gram.gram_f32(), pool);
        EXPECT_NEAR(measured[0], e_gptq / std::sqrt(ref), 1e-3 * e_gptq / std::sqrt(ref));
        EXPECT_NEAR(measured[1], e_rtn / std::sqrt(ref), 1e-3 * e_rtn / std::sqrt(ref));
      }
}

TEST(Gptq, DiagonalHessianEqualsRoundToNearest) {
  // No off-diagonal terms: no error is propagated, so every code, scale and zero point is RTN's.
  ThreadPool pool(2);
  const int64_t rows = 13, cols = 256;
  std::vector<float> w = random_weights(rows, cols, 9);
  for (int64_t c = 0; c < cols; ++c) w[2 * cols + c] = 0.0f;         // an all-zero row
  for (int64_t c = 0; c < cols; ++c) w[3 * cols + c] = std::fabs(w[3 * cols + c]);  // one-signed
  std::mt19937 rng(4);
  std::uniform_real_distribution<double> diag(0.1, 10.0);
  for (bool identity : {true, false})
    for (Order order : {Order::None, Order::ActOrderStatic, Order::ActOrderDynamic})
      for (bool symmetric : {true, false})
        for (int64_t group : {32, 64, 128}) {
          SCOPED_TRACE(testing::Message() << (identity ? "H = I" : "H diagonal") << " group " << group
                                          << (symmetric ? " sym" : " asym") << order_name(order));
          std::vector<double> hessian(static_cast<size_t>(cols * cols), 0.0);
          for (int64_t i = 0; i < cols; ++i) hessian[i * cols + i] = identity ? 1.0 : diag(rng);
          GptqOptions options;
          options.group = group;
          options.symmetric = symmetric;
          set_order(options, order);
          Result<GptqHessian> h = prepare_gptq_hessian("w", hessian, cols, options, pool);
          ASSERT_TRUE(h.is_ok()) << h.status().message();
          Result<QuantizedMatrix> gptq = quantize_int4_gptq("w", w.data(), rows, cols, *h, options, pool);
          // Dynamic groups: round-to-nearest of the columns in processing order (groups of them).
          std::vector<float> rtn_input = w;
          if (order == Order::ActOrderDynamic) {
            if (!identity) {
              EXPECT_NE(h->order[0], 0);  // a real permutation
            }
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t p = 0; p < cols; ++p) rtn_input[r * cols + p] = w[r * cols + h->order[p]];
          }
          Result<QuantizedMatrix> rtn = quantize_int4_rtn("w", rtn_input.data(), rows, cols, {group, symmetric}, pool);
          ASSERT_TRUE(gptq.is_ok() && rtn.is_ok());
          EXPECT_EQ(gptq->codes, rtn->codes);
          EXPECT_EQ(gptq->scale, rtn->scale);
          EXPECT_EQ(gptq->zero, rtn->zero);
        }
}

TEST(Gptq, DeadInputsGetZeroWeights) {
  ThreadPool pool(1);
  const int64_t rows = 8, cols = 64, n = 300;
  std::vector<float> x = correlated_inputs(n, cols, 6, 21);
  for (int64_t t = 0; t < n; ++t) x[t * cols + 5] = x[t * cols + 40] = 0.0f;
  const std::vector<float> w = random_weights(rows, cols, 22);
  for (Order order : {Order::None, Order::ActOrderDynamic}) {  // dynamic: dead columns at permuted places
    for (bool symmetric : {true, false}) {
      SCOPED_TRACE(testing::Message() << (symmetric ? "sym" : "asym") << order_name(order));
      GptqOptions options;
      options.group = 32;
      options.symmetric = symmetric;
      set_order(options, order);
      Result<GptqHessian> h = prepare_gptq_hessian("w", hessian_of(x, cols, pool), cols, options, pool);
      ASSERT_TRUE(h.is_ok()) << h.status().message();
      EXPECT_EQ(h->dead_columns, 2);
      Result<QuantizedMatrix> q = quantize_int4_gptq("w", w.data(), rows, cols, *h, options, pool);
      ASSERT_TRUE(q.is_ok());
      const std::vector<float> back = dequantize(*q);
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(back[r * cols + 5], 0.0f) << r;
        EXPECT_EQ(back[r * cols + 40], 0.0f) << r;
      }
    }
  }
}

TEST(Gptq, DampeningIsRetriedThenTheErrorIsClear) {
  ThreadPool pool(1);
  const int64_t cols = 32;
  // 2x2 blocks [[1, 1.05], [1.05, 1]]: eigenvalue -0.05, which 1% dampening (0.01) does not cover
  // but 10% does.
  std::vector<double> h(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t b = 0; b < cols; b += 2) {
    h[b * cols + b] = h[(b + 1) * cols + b + 1] = 1.0;
    h[b * cols + b + 1] = h[(b + 1) * cols + b] = 1.05;
  }
  GptqOptions options;
  options.group = 32;
  Result<GptqHessian> retried = prepare_gptq_hessian("layer 0", h, cols, options, pool);
  ASSERT_TRUE(retried.is_ok()) << retried.status().message();
  EXPECT_NEAR(retried->damp_percent, 0.1, 1e-12);

  std::vector<double> negative(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t i = 0; i < cols; ++i) negative[i * cols + i] = i == 3 ? -5.0 : 1.0;  // mean diagonal 0.81
  Result<GptqHessian> failed = prepare_gptq_hessian("layer 0", negative, cols, options, pool);
  ASSERT_FALSE(failed.is_ok());
  EXPECT_NE(failed.status().message().find("layer 0: the calibration Hessian is not positive definite even with "
                                           "dampening"),
            std::string::npos)
      << failed.status().message();

  std::vector<double> poisoned(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t i = 0; i < cols; ++i) poisoned[i * cols + i] = 1.0;
  poisoned[7] = INFINITY;
  Result<GptqHessian> bad = prepare_gptq_hessian("layer 0", poisoned, cols, options, pool);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("non-finite"), std::string::npos);
}

TEST(Gptq, RefusesShapesItCannotStore) {
  ThreadPool pool(1);
  const int64_t cols = 96;
  std::vector<double> eye(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t i = 0; i < cols; ++i) eye[i * cols + i] = 1.0;
  GptqOptions options;
  options.group = 64;
  Result<GptqHessian> h = prepare_gptq_hessian("w", eye, cols, options, pool);
  ASSERT_TRUE(h.is_ok());
  const std::vector<float> w = random_weights(2, cols, 1);
  Result<QuantizedMatrix> q = quantize_int4_gptq("w", w.data(), 2, cols, *h, options, pool);
  ASSERT_FALSE(q.is_ok());
  EXPECT_NE(q.status().message().find("not a multiple of the int4 group size 64"), std::string::npos);
  options.group = 32;
  q = quantize_int4_gptq("w", w.data(), 2, 64, *h, options, pool);
  ASSERT_FALSE(q.is_ok());
  EXPECT_NE(q.status().message().find("the Hessian is for 96 inputs, the weight has 64"), std::string::npos);
}

}  // namespace
}  // namespace anvil
