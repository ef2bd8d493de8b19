// Llama 2/3/3.1/3.2 and Mistral: embed -> [norm, attention, norm, SwiGLU] x L -> norm -> logits.
#include <cstring>

#include "compute/cpu/matmul.h"
#include "compute/cpu/vector_ops.h"
#include "model/arch_registry.h"
#include "model/layers.h"

namespace anvil {

void llama_forward(ThreadPool& pool, const ModelConfig& c, const TransformerWeights& w, const ForwardBatch& batch,
                   const KvStoreView& kv, float* logits) {
  const int64_t n = static_cast<int64_t>(batch.tokens.size());
  ForwardScratch& s = thread_forward_scratch(c, n);

  for (int64_t t = 0; t < n; ++t) weight_row_to_f32(*w.token_embd, batch.tokens[t], s.hidden.data() + t * c.dim);

  for (int64_t layer = 0; layer < c.n_layers; ++layer) build_decoder_layer(pool, c, w, layer, batch, kv, s);

  // Only the rows whose logits are wanted go through the (vocab-sized) output projection:
  // gathered into `normed`, chunk after chunk.
  int64_t rows = 0, t = 0;
  for (const SequenceChunk& chunk : batch.chunks) {
    const int64_t first = chunk.all_logits ? 0 : chunk.n_tokens - chunk.logit_rows();
    for (int64_t i = first; i < chunk.n_tokens; ++i, ++rows)
      rms_norm(s.hidden.data() + (t + i) * c.dim, w.output_norm.data(), s.normed.data() + rows * c.dim, c.dim,
               c.rms_norm_eps);
    t += chunk.n_tokens;
  }
  if (rows > 0) matmul(pool, *w.output, s.normed.data(), rows, logits);
}

const ArchSpec& llama_arch_spec() {
  static const ArchSpec spec = {"llama", "Llama 2/3/3.1/3.2, Mistral (sliding window), TinyLlama",
                                RopeStyle::Interleaved, llama_forward};
  return spec;
}

}  // namespace anvil
