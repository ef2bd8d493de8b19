// Row permutations between the two RoPE layouts of q/k projection weights (see RopeStyle).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace anvil {

// How rows are reordered between the layouts; AsStored leaves them alone.
enum class RopeRowOrder { AsStored, NeoXToInterleaved, InterleavedToNeoX };

// Output row -> source row for heads of head_dim rows (the mapping below, for streaming writers
// that emit rows in output order without building a permuted copy).
int64_t rope_permuted_source_row(int64_t row, int64_t head_dim, RopeRowOrder order);

// Within each of n_heads heads of head_dim rows, NeoX (Hugging Face "rotate half") keeps the
// first members of all rotation pairs in rows [0, head_dim/2) and the second members in
// [head_dim/2, head_dim); Interleaved (Meta, GGUF "llama") keeps pair i in rows 2i and 2i+1:
//   interleaved row h*head_dim + 2i + j  ==  neox row h*head_dim + j*head_dim/2 + i   (j = 0, 1)
// neox_to_interleaved is llama.cpp's convert-time permute (rows viewed as (n_heads, 2, head_dim/2),
// last two axes swapped); interleaved_to_neox is its inverse.
//
// "Rows" are slices along the first axis, so a weight (n_heads*head_dim, dim) and a bias
// (n_heads*head_dim) both work; slices are moved whole, so any dtype works, block-quantized
// ones included (for 2-D tensors, whose rows are whole blocks). Returns the permuted bytes
// (t.nbytes long), or an empty vector when the tensor cannot be split that way: shape[0] not a
// positive multiple of 2*n_heads, n_heads <= 0, no data, or a 1-D block-quantized tensor.
// For GQA pass the kv head count for k.
std::vector<std::byte> permute_rows_neox_to_interleaved(const Tensor& t, int64_t n_heads);
std::vector<std::byte> permute_rows_interleaved_to_neox(const Tensor& t, int64_t n_heads);

}  // namespace anvil
