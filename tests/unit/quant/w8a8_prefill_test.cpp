// A W8A8-quantized model's prefill (the int8 GEMM) against the same tokens decoded one at a time
// (the GEMV kernels): the linear layers agree to the bit, so the logits differ only by attention's
// rounding and the int8 activation codes it may tip over.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "compute/cpu/gemm_provider.h"
#include "compute/cpu/matmul.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"
#include "quant/quantize_checkpoint.h"

namespace anvil {
namespace {

TEST(W8A8Prefill, PrefillLogitsMatchTokenByTokenDecode) {
  const GemmProvider* int8_gemm = find_gemm_provider("onednn_int8");
  ASSERT_NE(int8_gemm, nullptr);
  if (!int8_gemm->supports(DType::I8, kI8GemmMinTokens, 64, 64))
    GTEST_SKIP() << "onednn_int8 needs AVX512-VNNI: prefill stays on GEMV/bf16 here";
  ThreadPool pool(2);
  Result<Checkpoint> loaded = load_checkpoint("dummy:tiny-llama");
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  Checkpoint checkpoint = std::move(loaded).value();
  QuantizeOptions options;
  options.scheme = QuantScheme::W8A8;
  Result<QuantizeReport> report = quantize_checkpoint(checkpoint, options, pool);
  ASSERT_TRUE(report.is_ok()) << report.status().message();
  Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(std::make_shared<const Checkpoint>(checkpoint));
  ASSERT_TRUE(model.is_ok()) << model.status().message();
  const int64_t vocab = (*model)->config().vocab_size;

  const int64_t n_tokens = std::max<int64_t>(128, kI8GemmMinTokens);
  std::mt19937 rng(41);
  std::uniform_int_distribution<int32_t> id(1, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(n_tokens);
  for (int32_t& t : tokens) t = id(rng);

  // Prefill: one forward of every token (the linear layers see n_tokens >= kI8GemmMinTokens rows).
  SequenceKvCache prefill_cache = (*model)->make_cache(n_tokens);
  std::vector<float> prefill(n_tokens * vocab);
  ASSERT_TRUE((*model)->forward(tokens, prefill_cache, pool, prefill.data(), true).is_ok());

  // Decode: one token per forward (one row: the GEMV kernels).
  SequenceKvCache decode_cache = (*model)->make_cache(n_tokens);
  std::vector<float> decode(n_tokens * vocab);
  for (int64_t t = 0; t < n_tokens; ++t)
    ASSERT_TRUE((*model)->forward({&tokens[t], 1}, decode_cache, pool, decode.data() + t * vocab, false).is_ok());

  double max_err = 0, max_ref = 0;
  int64_t same_argmax = 0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* p = prefill.data() + t * vocab;
    const float* d = decode.data() + t * vocab;
    for (int64_t v = 0; v < vocab; ++v) {
      max_err = std::max(max_err, std::fabs(double{p[v]} - d[v]));
      max_ref = std::max(max_ref, std::fabs(double{d[v]}));
    }
    same_argmax += std::max_element(p, p + vocab) - p == std::max_element(d, d + vocab) - d;
  }
  std::printf("  w8a8 tiny-llama, %lld tokens: prefill vs decode logits max |diff| / max |logit| = %.2e, "
              "same argmax %lld/%lld\n",
              static_cast<long long>(n_tokens), max_err / max_ref, static_cast<long long>(same_argmax),
              static_cast<long long>(n_tokens));
  // Measured 3.7e-7 in the Release build: the linear layers agree to the bit, and attention sums
  // a decode token's scores in another order than prefill's (the AVX-512 row-dot scorer), ~1e-7.
  // Where such a difference makes a per-token int8 activation code round the other way, the step
  // (amax / 127) propagates: 1.3e-2 of the logit range in the ASan build of this random 2-layer
  // model. A wrong int8 GEMM (scales, offsets, layout) moves logits by their whole range.
  EXPECT_LT(max_err / max_ref, 5e-2);
  EXPECT_GE(same_argmax, n_tokens * 95 / 100);
}

}  // namespace
}  // namespace anvil
