// llama2.c checkpoint reader: tensors are used in place in the memory map.
#include "formats/llama2c.h"

#include <fmt/format.h>

#include <cstring>

#include "core/mapped_file.h"

namespace anvil {

Result<Checkpoint> load_llama2c_checkpoint(const std::string& path) {
  ANVIL_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
  constexpr size_t kHeaderBytes = 7 * sizeof(int32_t);
  if (file->size() < kHeaderBytes)
    return Status::error(fmt::format("{}: file of {} bytes is too small for a llama2.c header", path, file->size()));
  int32_t header[7];
  std::memcpy(header, file->data(), kHeaderBytes);
  const int64_t dim = header[0], hidden = header[1], layers = header[2], heads = header[3], kv_heads = header[4];
  const bool shared_classifier = header[5] > 0;
  const int64_t vocab = header[5] > 0 ? header[5] : -static_cast<int64_t>(header[5]);
  const int64_t seq_len = header[6];
  if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kv_heads <= 0 || vocab <= 0 || seq_len <= 0 ||
      dim % heads != 0 || heads % kv_heads != 0 || dim > (1 << 20) || hidden > (1 << 22) || layers > 4096 ||
      vocab > (1 << 24) || seq_len > (1 << 24))
    return Status::error(fmt::format("{}: not a llama2.c checkpoint (implausible header: dim={} hidden_dim={} "
                                     "n_layers={} n_heads={} n_kv_heads={} vocab_size={} seq_len={})",
                                     path, dim, hidden, layers, heads, kv_heads, header[5], seq_len));

  ModelConfig c;
  c.arch = "llama";
  c.name = path.substr(path.find_last_of('/') + 1);
  c.vocab_size = vocab;
  c.dim = dim;
  c.hidden_dim = hidden;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = dim / heads;
  c.context_length = seq_len;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_style = RopeStyle::Interleaved;  // Meta layout: adjacent pairs
  c.tied_embeddings = shared_classifier;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  const int64_t kv_dim = kv_heads * c.head_dim;

  // The fixed order of run.c's memory_map_weights(); "per_layer" tensors are stacked over layers.
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;  // of one layer's slice, or of the whole tensor
    bool per_layer;
  };
  const std::vector<Entry> order = {
      {"token_embd.weight", {vocab, dim}, false},     {"attn_norm.weight", {dim}, true},
      {"attn_q.weight", {dim, dim}, true},            {"attn_k.weight", {kv_dim, dim}, true},
      {"attn_v.weight", {kv_dim, dim}, true},         {"attn_output.weight", {dim, dim}, true},
      {"ffn_norm.weight", {dim}, true},               {"ffn_gate.weight", {hidden, dim}, true},
      {"ffn_down.weight", {dim, hidden}, true},       {"ffn_up.weight", {hidden, dim}, true},
      {"output_norm.weight", {dim}, false},           {"rope_table_real", {seq_len, c.head_dim / 2}, false},
      {"rope_table_imag", {seq_len, c.head_dim / 2}, false}, {"output.weight", {vocab, dim}, false},
  };
  uint64_t expected_floats = 0;
  for (const Entry& e : order) {
    if (e.name == "output.weight" && shared_classifier) continue;
    uint64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    expected_floats += n * (e.per_layer ? layers : 1);
  }
  const uint64_t expected_bytes = kHeaderBytes + expected_floats * sizeof(float);
  if (file->size() != expected_bytes)
    return Status::error(fmt::format("{}: llama2.c header (dim={} n_layers={} vocab_size={}) implies {} bytes, "
                                     "but the file has {} (truncated or not a llama2.c checkpoint)",
                                     path, dim, layers, vocab, expected_bytes, file->size()));

  Checkpoint checkpoint;
  checkpoint.config = c;
  checkpoint.source = path;
  const std::byte* cursor = file->data() + kHeaderBytes;
  auto add = [&](const std::string& name, const std::vector<int64_t>& shape) {
    Tensor t;
    t.name = name;
    t.dtype = DType::F32;
    t.shape = shape;
    t.nbytes = static_cast<size_t>(t.numel()) * sizeof(float);
    t.data = cursor;
    cursor += t.nbytes;
    if (name.rfind("rope_table", 0) != 0) checkpoint.tensors.emplace(name, std::move(t));
  };
  for (const Entry& e : order) {
    if (e.name == "output.weight" && shared_classifier) continue;
    if (!e.per_layer) {
      add(e.name, e.shape);
      continue;
    }
    for (int64_t l = 0; l < layers; ++l) add("blk." + std::to_string(l) + "." + e.name, e.shape);
  }
  checkpoint.storage.push_back(file);
  return checkpoint;
}

}  // namespace anvil
