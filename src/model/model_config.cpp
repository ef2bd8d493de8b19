// ModelConfig helpers.
#include "model/model_config.h"

namespace anvil {

int64_t ModelConfig::parameter_count() const {
  const int64_t q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
  const int64_t per_layer = dim * (q_dim + 2 * kv_dim) + q_dim * dim + 3 * dim * hidden_dim + 2 * dim;
  return vocab_size * dim * (tied_embeddings ? 1 : 2) + n_layers * per_layer + dim;
}

int64_t ModelConfig::matmul_parameter_count() const {
  const int64_t q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
  const int64_t per_layer = dim * (q_dim + 2 * kv_dim) + q_dim * dim + 3 * dim * hidden_dim;
  return n_layers * per_layer + vocab_size * dim;
}

}  // namespace anvil
