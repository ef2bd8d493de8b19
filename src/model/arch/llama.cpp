// Llama 2/3/3.1/3.2 and Mistral: embed -> [norm, attention, norm, SwiGLU] x L -> norm -> logits.
#include <cstring>

#include "compute/cpu/matmul.h"
#include "compute/cpu/vector_ops.h"
#include "model/arch_registry.h"
#include "model/layers.h"

namespace anvil {

void llama_forward(ThreadPool& pool, const ModelConfig& c, const TransformerWeights& w,
                   std::span<const int32_t> tokens, SequenceKvCache& cache, float* logits, bool all_logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t first_position = cache.length();
  ForwardScratch s(c, n);

  for (int64_t t = 0; t < n; ++t) weight_row_to_f32(*w.token_embd, tokens[t], s.hidden.data() + t * c.dim);

  for (int64_t layer = 0; layer < c.n_layers; ++layer) {
    const LayerWeights& lw = w.layers[layer];
    build_norm(s.hidden.data(), lw.attn_norm, c.rms_norm_eps, n, c.dim, s.normed.data());
    build_attention(pool, c, w, layer, first_position, cache, s);
    add_inplace(s.hidden.data(), s.proj.data(), n * c.dim);

    build_norm(s.hidden.data(), lw.ffn_norm, c.rms_norm_eps, n, c.dim, s.normed.data());
    build_ffn(pool, lw, c.hidden_dim, s);
    add_inplace(s.hidden.data(), s.proj.data(), n * c.dim);
  }
  cache.set_length(first_position + n);

  // Only the rows whose logits are wanted go through the (vocab-sized) output projection.
  const int64_t first_row = all_logits ? 0 : n - 1;
  const int64_t rows = n - first_row;
  build_norm(s.hidden.data() + first_row * c.dim, w.output_norm, c.rms_norm_eps, rows, c.dim, s.normed.data());
  matmul(pool, *w.output, s.normed.data(), rows, logits);
}

const ArchSpec& llama_arch_spec() {
  static const ArchSpec spec = {"llama", "Llama 2/3/3.1/3.2, Mistral (sliding window), TinyLlama",
                                RopeStyle::Interleaved, llama_forward};
  return spec;
}

}  // namespace anvil
