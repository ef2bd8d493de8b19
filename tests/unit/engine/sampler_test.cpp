// Sampler: greedy, seeds, top-k/top-p/min-p truncation and penalties.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "engine/sampler/sampler.h"
#include "engine/stop_strings.h"

namespace anvil {
namespace {

std::vector<float> test_logits() { return {0.1f, 2.0f, 1.5f, -1.0f, 1.9f, 0.0f}; }

TEST(Sampler, GreedyPicksArgmaxLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler sampler(p);
  auto logits = test_logits();
  EXPECT_EQ(sampler.sample(logits, {}, 0), 1);
  std::vector<float> ties = {1.0f, 3.0f, 3.0f};
  EXPECT_EQ(sampler.sample(ties, {}, 0), 1);
}

// The vectorized argmax gives the first maximum, as a plain scan does, over a real vocabulary size
// and with NaNs present (which never win).
TEST(Sampler, ArgmaxMatchesScanOnLargeRows) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> logits(128256);
  for (int trial = 0; trial < 20; ++trial) {
    for (float& v : logits) v = dist(rng);
    if (trial % 2) logits[rng() % logits.size()] = NAN;
    if (trial % 3 == 0) logits[100000] = logits[77] = 50.0f;  // a tie: the lower id wins
    int32_t expected = 0;
    for (size_t i = 1; i < logits.size(); ++i)
      if (logits[i] > logits[expected]) expected = static_cast<int32_t>(i);
    EXPECT_EQ(argmax(logits), expected) << trial;
  }
}

TEST(Sampler, SameSeedSameSequence) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 1234;
  Sampler a(p), b(p);
  std::set<int32_t> seen;
  for (int i = 0; i < 200; ++i) {
    auto la = test_logits(), lb = test_logits();
    const int32_t x = a.sample(la, {}, 0);
    EXPECT_EQ(x, b.sample(lb, {}, 0));
    seen.insert(x);
  }
  EXPECT_GT(seen.size(), 3u);  // it really samples
}

TEST(Sampler, TopKTopPMinPRestrictTheCandidates) {
  auto draws = [](SamplingParams p) {
    p.temperature = 1.0f;
    std::set<int32_t> seen;
    Sampler s(p);
    for (int i = 0; i < 500; ++i) {
      auto l = test_logits();
      seen.insert(s.sample(l, {}, 0));
    }
    return seen;
  };
  SamplingParams k;
  k.top_k = 2;
  k.top_p = 1.0f;
  k.min_p = 0.0f;
  EXPECT_EQ(draws(k), (std::set<int32_t>{1, 4}));
  SamplingParams top_p;
  top_p.top_k = 0;
  top_p.top_p = 0.3f;  // the top token alone has ~0.32 of the mass
  top_p.min_p = 0.0f;
  EXPECT_EQ(draws(top_p), (std::set<int32_t>{1}));
  SamplingParams min_p;
  min_p.top_k = 0;
  min_p.top_p = 1.0f;
  min_p.min_p = 0.5f;  // keeps p >= 0.5 * p(1): ids 1, 4, 2 (exp(-0.5) = 0.61)
  EXPECT_EQ(draws(min_p), (std::set<int32_t>{1, 2, 4}));
}

TEST(Sampler, PenaltiesDemoteSeenTokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  Sampler rep(p);
  auto logits = test_logits();
  const std::vector<int32_t> context = {1};
  EXPECT_EQ(rep.sample(logits, context, 0), 4);  // 2.0 / 2 = 1.0 < 1.9
  SamplingParams f;
  f.temperature = 0.0f;
  f.frequency_penalty = 0.1f;
  f.presence_penalty = 0.0f;
  Sampler freq(f);
  auto l2 = test_logits();
  const std::vector<int32_t> generated = {1, 1};
  EXPECT_EQ(freq.sample(l2, generated, 2), 4);  // 2.0 - 0.2 = 1.8 < 1.9
}

TEST(Sampler, InvalidParametersAreRejected) {
  SamplingParams p;
  p.temperature = -1.0f;
  EXPECT_FALSE(p.validate());
  p.temperature = 1.0f;
  p.top_p = 0.0f;
  EXPECT_FALSE(p.validate());
  p.top_p = 1.0f;
  EXPECT_TRUE(p.validate());
}

TEST(StopStrings, HoldsBackPrefixesAndCutsAtTheMatch) {
  StopStringMatcher m({"STOP", "\n\n"});
  EXPECT_EQ(m.push("Hello ST"), "Hello ");
  EXPECT_EQ(m.push("OR"), "STOR");  // no longer a prefix of STOP: released
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push(" more\n"), " more");  // "\n" may start "\n\n"
  EXPECT_EQ(m.push("\nafter"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "\n\n");
}

}  // namespace
}  // namespace anvil
