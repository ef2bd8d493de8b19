// WordCache: a bounded thread-local map from word to ids.
#include <atomic>

#include "tokenizer/encoder.h"

namespace anvil {
namespace {

constexpr size_t kMaxEntries = 1 << 16;

struct Cache {
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<int32_t>, StringViewHash, std::equal_to<>> words;
};

Cache& cache_for(uint64_t owner) {
  thread_local Cache cache;
  if (cache.owner != owner) {
    cache.words.clear();
    cache.owner = owner;
  }
  return cache;
}

}  // namespace

uint64_t WordCache::new_owner() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

const std::vector<int32_t>* WordCache::find(uint64_t owner, std::string_view word) {
  Cache& cache = cache_for(owner);
  auto it = cache.words.find(word);
  return it == cache.words.end() ? nullptr : &it->second;
}

void WordCache::store(uint64_t owner, std::string_view word, const int32_t* ids, size_t count) {
  if (word.size() > kMaxWordBytes) return;
  Cache& cache = cache_for(owner);
  if (cache.words.size() >= kMaxEntries) cache.words.clear();  // crude but bounded; refills fast
  cache.words.emplace(std::string(word), std::vector<int32_t>(ids, ids + count));
}

}  // namespace anvil
