// RoPE row permutations (NeoX <-> Interleaved) over raw first-axis slices of any dtype.
#include "formats/rope_permute.h"

#include <cstring>

namespace anvil {
namespace {

std::vector<std::byte> permute_rows(const Tensor& t, int64_t n_heads, RopeRowOrder order) {
  if (n_heads <= 0 || t.shape.empty() || t.shape[0] <= 0 || t.shape[0] % (2 * n_heads) != 0) return {};
  if (t.shape.size() == 1 && dtype_info(t.dtype).block_elems != 1) return {};
  const auto n_rows = static_cast<size_t>(t.shape[0]);
  if (!t.data || t.nbytes == 0 || t.nbytes % n_rows != 0) return {};

  const size_t row_bytes = t.nbytes / n_rows;
  const int64_t head_dim = t.shape[0] / n_heads;
  std::vector<std::byte> out(t.nbytes);
  for (int64_t row = 0; row < t.shape[0]; ++row) {
    const int64_t src = rope_permuted_source_row(row, head_dim, order);
    std::memcpy(out.data() + static_cast<size_t>(row) * row_bytes, t.data + static_cast<size_t>(src) * row_bytes,
                row_bytes);
  }
  return out;
}

}  // namespace

int64_t rope_permuted_source_row(int64_t row, int64_t head_dim, RopeRowOrder order) {
  const int64_t head = row / head_dim, j = row % head_dim, half = head_dim / 2;
  if (order == RopeRowOrder::NeoXToInterleaved) return head * head_dim + (j % 2) * half + j / 2;
  if (order == RopeRowOrder::InterleavedToNeoX) return head * head_dim + 2 * (j % half) + j / half;
  return row;
}

std::vector<std::byte> permute_rows_neox_to_interleaved(const Tensor& t, int64_t n_heads) {
  return permute_rows(t, n_heads, RopeRowOrder::NeoXToInterleaved);
}

std::vector<std::byte> permute_rows_interleaved_to_neox(const Tensor& t, int64_t n_heads) {
  return permute_rows(t, n_heads, RopeRowOrder::InterleavedToNeoX);
}

}  // namespace anvil
