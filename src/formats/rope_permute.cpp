// RoPE row permutations (NeoX <-> Interleaved) over raw first-axis slices of any dtype.
#include "formats/rope_permute.h"

#include <cstring>

namespace anvil {
namespace {

enum class PermuteDirection { NeoXToInterleaved, InterleavedToNeoX };

std::vector<std::byte> permute_rows(const Tensor& t, int64_t n_heads, PermuteDirection direction) {
  if (n_heads <= 0 || t.shape.empty() || t.shape[0] <= 0 || t.shape[0] % (2 * n_heads) != 0) return {};
  if (t.shape.size() == 1 && dtype_info(t.dtype).block_elems != 1) return {};
  const auto n_rows = static_cast<size_t>(t.shape[0]);
  if (!t.data || t.nbytes == 0 || t.nbytes % n_rows != 0) return {};

  const size_t row_bytes = t.nbytes / n_rows;
  const int64_t head_dim = t.shape[0] / n_heads;
  const int64_t half = head_dim / 2;
  std::vector<std::byte> out(t.nbytes);
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t neox_row = h * head_dim + j * half + i;
        const int64_t interleaved_row = h * head_dim + 2 * i + j;
        const int64_t src = direction == PermuteDirection::NeoXToInterleaved ? neox_row : interleaved_row;
        const int64_t dst = direction == PermuteDirection::NeoXToInterleaved ? interleaved_row : neox_row;
        std::memcpy(out.data() + static_cast<size_t>(dst) * row_bytes,
                    t.data + static_cast<size_t>(src) * row_bytes, row_bytes);
      }
    }
  }
  return out;
}

}  // namespace

std::vector<std::byte> permute_rows_neox_to_interleaved(const Tensor& t, int64_t n_heads) {
  return permute_rows(t, n_heads, PermuteDirection::NeoXToInterleaved);
}

std::vector<std::byte> permute_rows_interleaved_to_neox(const Tensor& t, int64_t n_heads) {
  return permute_rows(t, n_heads, PermuteDirection::InterleavedToNeoX);
}

}  // namespace anvil
