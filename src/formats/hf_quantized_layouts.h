// Internals shared by the quantized-layout decoders (hf_quantized_ct.cpp, hf_quantized_gptq.cpp):
// typed access to one module's tensors, and assembling anvil's scaled weights from them.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/weight_memory.h"
#include "formats/hf_quantized.h"

namespace anvil::hf_quant {

using Storage = std::vector<std::shared_ptr<const void>>;

std::string shape_text(const std::vector<int64_t>& shape);

// The tensors of one linear module: tensor(SUFFIX) is MODULE.SUFFIX.
class ModuleTensors {
 public:
  ModuleTensors(std::string module, const HfTensorFinder& find) : module_(std::move(module)), find_(find) {}

  const std::string& module() const { return module_; }
  std::string name(const std::string& suffix) const { return module_ + "." + suffix; }
  const SafetensorsEntry* find(const std::string& suffix) const { return find_(name(suffix)); }
  // The entry, or "missing tensor MODULE.SUFFIX (ROLE)".
  Result<const SafetensorsEntry*> require(const std::string& suffix, const std::string& role) const;

 private:
  std::string module_;
  const HfTensorFinder& find_;
};

bool is_float_dtype(const std::string& safetensors_dtype);  // F32, F16, BF16
Status expect_dtype(const SafetensorsEntry& entry, std::initializer_list<const char*> allowed, const std::string& role);
// "tensor X has shape S; MEANING needs (a, b)".
Status expect_shape(const SafetensorsEntry& entry, const std::vector<int64_t>& shape, const std::string& meaning);

// F32 / F16 / BF16 values as floats.
Result<std::vector<float>> read_floats(const SafetensorsEntry& entry, const std::string& role);
// I8 / U8 / I16 / I32 / I64 values (and integral float values, as some writers store zero points).
Result<std::vector<int64_t>> read_integers(const SafetensorsEntry& entry, const std::string& role);
// The 32-bit words of an I32 tensor (packed codes), read little-endian: a copy, and a view of
// the bytes in place (the safetensors reader keeps I32 tensors 4-byte aligned).
std::vector<uint32_t> read_words(const SafetensorsEntry& entry);
inline const uint32_t* packed_words(const SafetensorsEntry& entry) {
  return reinterpret_cast<const uint32_t*>(entry.data);
}

// An I4 weight on its way to anvil: codes already in anvil's layout, scales and zero points still
// in the source's grouping, which may be any mapping of columns to groups (GPTQ's g_idx).
struct I4Source {
  int64_t rows = 0, cols = 0;
  // rows * cols / 2 bytes, element 2j low nibble of byte j: in the file (`codes`), or built by the
  // decoder straight into weight memory (`repacked`, which assemble_i4 keeps unless it reorders
  // the columns): a layer's codes are written once, with no zero-filling or copy on the way.
  const std::byte* codes = nullptr;
  std::shared_ptr<std::byte[]> repacked;
  int64_t groups = 0;                       // source groups per row
  std::vector<float> scale;                 // (rows, groups)
  std::vector<float> zero;                  // (rows, groups) unsigned zero points; empty: implicit 8
  std::vector<int64_t> column_group;        // (cols): source group of each column
};

// Sorts the columns by source group when the groups are not runs of consecutive columns (GPTQ
// act-order: the weight gets an input_order, core/quant_scales.h), picks anvil's group (128, 64
// or 32 consecutive columns, the largest whose columns all share one source group), gathers scales
// and zero points onto it (exact: a source group wider than anvil's is repeated), drops zero points
// that are all 8, and validates the result. Errors name `module`: a source group of a size that is
// not a multiple of 32 columns.
Result<Tensor> assemble_i4(I4Source source, const std::string& module, Storage& storage);

// An F8_E4M3 or I8 weight with one scale per row (a per-tensor scale already repeated).
Result<Tensor> assemble_per_row(DType dtype, int64_t rows, int64_t cols, const std::byte* codes,
                                std::vector<float> row_scales, const std::string& module, Storage& storage);

// Keeps a buffer alive in `storage` and returns its data. Weight-sized buffers (the repacked
// codes of a layer) go to huge-page weight memory: decode streams them every token, and heap
// memory sits on 4 KiB pages (as a mapped file's would; model/repack_weights.h).
template <typename T>
T* keep(std::vector<T> values, Storage& storage) {
  const size_t bytes = values.size() * sizeof(T);
  if (bytes >= kWeightMemoryHugePage) {
    std::shared_ptr<std::byte[]> buffer = copy_to_weight_memory(values.data(), bytes);
    storage.push_back(std::shared_ptr<const void>(buffer, buffer.get()));
    return reinterpret_cast<T*>(buffer.get());
  }
  auto owned = std::make_shared<std::vector<T>>(std::move(values));
  storage.push_back(owned);
  return owned->data();
}

// input_activations {type: float, num_bits: 8, dynamic: true, strategy: token} (FP8_DYNAMIC).
bool is_fp8_dynamic(const HfCtActivationArgs& activations);

// The layouts (one file each).
Result<std::optional<Tensor>> decode_compressed_tensors(const HfQuantization& q, const ModuleTensors& m,
                                                        int64_t rows, int64_t cols, Storage& storage);
Result<std::optional<Tensor>> decode_gptq(const HfQuantization& q, const ModuleTensors& m, int64_t rows,
                                          int64_t cols, Storage& storage);
Result<std::optional<Tensor>> decode_awq(const HfQuantization& q, const ModuleTensors& m, int64_t rows,
                                         int64_t cols, Storage& storage);

}  // namespace anvil::hf_quant
