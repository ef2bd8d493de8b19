// AutoGPTQ and AutoAWQ (GEMM) int4 layouts: qweight / qzeros packed eight 4-bit values per int32,
// fp16 scales per (group, output), transposed relative to PyTorch's (out, in) weight.
#include <fmt/format.h>

#include "formats/hf_quantized_layouts.h"
#include "quant/int4_codes.h"

namespace anvil::hf_quant {
namespace {

// AutoAWQ's GEMM packing: nibble i of a word holds output column 8k + kAwqOrder[i] ("AWQ_ORDER").
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// The tensors both layouts share, checked against the config: scales (groups, rows) and qzeros
// (groups, rows / 8), where groups = cols / group_size (one group per row for group_size -1).
struct GroupTensors {
  int64_t groups = 0;
  int64_t group_size = 0;
  std::vector<float> scale;      // (groups, rows) as stored
  std::vector<uint32_t> qzeros;  // (groups, rows / 8) as stored
  const SafetensorsEntry* qzeros_entry = nullptr;
};

Result<GroupTensors> read_group_tensors(const HfQuantization& q, const ModuleTensors& m, int64_t rows, int64_t cols,
                                        const char* method) {
  GroupTensors out;
  out.group_size = q.group_size == -1 ? cols : q.group_size;
  if (cols % out.group_size != 0)
    return Status::error(fmt::format("{}: group_size {} does not divide its input size {} ({} checkpoints with a "
                                     "partial last group are not supported)",
                                     m.module(), q.group_size, cols, method));
  if (rows % 8 != 0)
    return Status::error(fmt::format("{}: {} output rows are not a multiple of 8, which {} packing needs", m.module(),
                                     rows, method));
  out.groups = cols / out.group_size;
  ANVIL_ASSIGN_OR_RETURN(const SafetensorsEntry* scales, m.require("scales", "the group scales"));
  ANVIL_RETURN_IF_ERROR(expect_shape(*scales, {out.groups, rows},
                                     fmt::format("group_size {} (one row per group, one column per output)", q.group_size)));
  ANVIL_ASSIGN_OR_RETURN(out.scale, read_floats(*scales, "group scales"));
  ANVIL_ASSIGN_OR_RETURN(out.qzeros_entry, m.require("qzeros", "the packed zero points"));
  ANVIL_RETURN_IF_ERROR(expect_dtype(*out.qzeros_entry, {"I32"}, "packed zero points"));
  ANVIL_RETURN_IF_ERROR(expect_shape(*out.qzeros_entry, {out.groups, rows / 8},
                                     fmt::format("group_size {} with eight 4-bit zero points per int32", q.group_size)));
  out.qzeros = read_words(*out.qzeros_entry);
  return out;
}

// The source's per-(group, output) scale and zero, transposed to anvil's (output, group) order.
// GPTQ and AWQ store unsigned zero points: w = (q - zero) * scale.
Status transpose_groups(const GroupTensors& g, const std::vector<float>& zero_by_group, int64_t rows, I4Source& s) {
  s.groups = g.groups;
  s.scale.resize(static_cast<size_t>(rows * g.groups));
  s.zero.resize(static_cast<size_t>(rows * g.groups));
  for (int64_t k = 0; k < g.groups; ++k)
    for (int64_t r = 0; r < rows; ++r) {
      s.scale[r * g.groups + k] = g.scale[k * rows + r];
      s.zero[r * g.groups + k] = zero_by_group[k * rows + r];
    }
  return Status::ok();
}

}  // namespace

// AutoGPTQ (QuantLinear.pack): qweight (cols / 8, rows), input column c of output r in word
// [c / 8][r] at bits 4 * (c % 8); qzeros (groups, rows / 8), output r at bits 4 * (r % 8) of word
// [g][r / 8], holding zero - 1 in checkpoint_format "gptq" (v1; sym zero 8 is stored as 7) and zero
// in "gptq_v2"; g_idx (cols) names each input column's group (act-order permutes it).
Result<std::optional<Tensor>> decode_gptq(const HfQuantization& q, const ModuleTensors& m, int64_t rows, int64_t cols,
                                          Storage& storage) {
  const SafetensorsEntry* qweight = m.find("qweight");
  if (!qweight) {
    const SafetensorsEntry* weight = m.find("weight");
    if (weight && is_float_dtype(weight->dtype)) return std::optional<Tensor>();  // not quantized (e.g. lm_head)
    return Status::error(fmt::format("missing tensor {} (GPTQ packed weight)", m.name("qweight")));
  }
  ANVIL_RETURN_IF_ERROR(expect_dtype(*qweight, {"I32"}, "packed 4-bit weight"));
  if (cols % 8 != 0 || qweight->shape != std::vector<int64_t>{cols / 8, rows})
    return Status::error(fmt::format("tensor {} has shape {}; a ({}, {}) layer in 4-bit GPTQ packs eight input columns "
                                     "per int32: ({}, {})",
                                     qweight->name, shape_text(qweight->shape), rows, cols, cols / 8, rows));
  ANVIL_ASSIGN_OR_RETURN(GroupTensors g, read_group_tensors(q, m, rows, cols, "GPTQ"));

  I4Source s;
  s.rows = rows;
  s.cols = cols;
  if (const SafetensorsEntry* g_idx = m.find("g_idx")) {
    ANVIL_RETURN_IF_ERROR(expect_shape(*g_idx, {cols}, "one group index per input column"));
    ANVIL_ASSIGN_OR_RETURN(s.column_group, read_integers(*g_idx, "group index of each input column"));
  } else {
    if (q.desc_act) return Status::error(fmt::format("missing tensor {} (desc_act=true needs it)", m.name("g_idx")));
    s.column_group.resize(static_cast<size_t>(cols));
    for (int64_t c = 0; c < cols; ++c) s.column_group[c] = c / g.group_size;
  }

  const int zero_offset = q.gptq_zero_minus_one ? 1 : 0;
  std::vector<float> zero(static_cast<size_t>(g.groups * rows));
  for (int64_t k = 0; k < g.groups; ++k)
    for (int64_t r = 0; r < rows; ++r) {
      const int zero_point = static_cast<int>((g.qzeros[k * (rows / 8) + r / 8] >> (4 * (r % 8))) & 0xF) + zero_offset;
      if (q.symmetric && zero_point != kI4ImplicitZero)
        return Status::error(fmt::format(
            "tensor {} gives zero point {} (group {}, output {}), but sym=true GPTQ uses 8 everywhere, stored as 7 "
            "with checkpoint_format \"gptq\" (v1) and as 8 with \"gptq_v2\"; is checkpoint_format right?",
            g.qzeros_entry->name, zero_point, k, r));
      if (zero_point > 15)
        return Status::error(fmt::format(
            "tensor {} gives zero point 16 (group {}, output {}): format v1 stores zero - 1, and a stored 15 means 16 "
            "(or a zero point of 0 that AutoGPTQ wrapped to -1); anvil's I4 zero points are 0..15",
            g.qzeros_entry->name, k, r));
      zero[k * rows + r] = static_cast<float>(zero_point);
    }
  ANVIL_RETURN_IF_ERROR(transpose_groups(g, zero, rows, s));

  // qweight word [p][r] holds input columns 8p..8p+7 of output r, low nibble first: as a
  // little-endian word it is bytes 4p..4p+3 of anvil's row r. Repacking is a word transpose.
  const uint32_t* words = packed_words(*qweight);
  const int64_t words_per_row = cols / 8;
  s.repacked = allocate_weight_memory(static_cast<size_t>(rows * words_per_row) * 4);
  std::byte* codes = s.repacked.get();
  // In tiles of 16 x 16 words: both the file's rows of words and anvil's rows stay in cache.
  constexpr int64_t kTile = 16;
  for (int64_t p0 = 0; p0 < words_per_row; p0 += kTile)
    for (int64_t r0 = 0; r0 < rows; r0 += kTile)
      for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
        for (int64_t p = p0; p < std::min(words_per_row, p0 + kTile); ++p)
          std::memcpy(codes + (r * words_per_row + p) * 4, &words[p * rows + r], 4);
  ANVIL_ASSIGN_OR_RETURN(Tensor t, assemble_i4(std::move(s), m.module(), storage));
  return std::optional<Tensor>(std::move(t));
}

// AutoAWQ GEMM (WQLinear_GEMM.from_linear): qweight (cols, rows / 8), output r of input column c
// in word [c][r / 8] at nibble i where kAwqOrder[i] == r % 8; qzeros (groups, rows / 8) in the same
// interleaved order, zero points as they are (no offset); scales (groups, rows).
Result<std::optional<Tensor>> decode_awq(const HfQuantization& q, const ModuleTensors& m, int64_t rows, int64_t cols,
                                         Storage& storage) {
  const SafetensorsEntry* qweight = m.find("qweight");
  if (!qweight) {
    const SafetensorsEntry* weight = m.find("weight");
    if (weight && is_float_dtype(weight->dtype)) return std::optional<Tensor>();  // modules_to_not_convert
    return Status::error(fmt::format("missing tensor {} (AWQ packed weight)", m.name("qweight")));
  }
  ANVIL_RETURN_IF_ERROR(expect_dtype(*qweight, {"I32"}, "packed 4-bit weight"));
  if (rows % 8 != 0 || qweight->shape != std::vector<int64_t>{cols, rows / 8})
    return Status::error(fmt::format("tensor {} has shape {}; a ({}, {}) layer in 4-bit AWQ GEMM packs eight output "
                                     "columns per int32: ({}, {})",
                                     qweight->name, shape_text(qweight->shape), rows, cols, cols, rows / 8));
  if (m.find("g_idx"))
    return Status::error(fmt::format("{}: AWQ checkpoints have no g_idx; this looks like a GPTQ layer", m.module()));
  ANVIL_ASSIGN_OR_RETURN(GroupTensors g, read_group_tensors(q, m, rows, cols, "AWQ"));

  I4Source s;
  s.rows = rows;
  s.cols = cols;
  s.column_group.resize(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) s.column_group[c] = c / g.group_size;
  std::vector<float> zero(static_cast<size_t>(g.groups * rows));
  for (int64_t k = 0; k < g.groups; ++k)
    for (int64_t w = 0; w < rows / 8; ++w)
      for (int i = 0; i < 8; ++i)
        zero[k * rows + 8 * w + kAwqOrder[i]] = static_cast<float>((g.qzeros[k * (rows / 8) + w] >> (4 * i)) & 0xF);
  ANVIL_RETURN_IF_ERROR(transpose_groups(g, zero, rows, s));

  const uint32_t* words = packed_words(*qweight);
  const int64_t row_bytes = cols / 2;
  s.repacked = allocate_weight_memory(static_cast<size_t>(rows * row_bytes));
  auto* codes = reinterpret_cast<uint8_t*>(s.repacked.get());
  std::memset(codes, 0, static_cast<size_t>(rows * row_bytes));  // nibbles are or-ed in
  for (int64_t c = 0; c < cols; ++c) {
    const int shift = (c & 1) ? 4 : 0;
    for (int64_t w = 0; w < rows / 8; ++w) {
      const uint32_t word = words[c * (rows / 8) + w];
      for (int i = 0; i < 8; ++i) {
        const int64_t r = 8 * w + kAwqOrder[i];
        codes[r * row_bytes + c / 2] |= static_cast<uint8_t>(((word >> (4 * i)) & 0xF) << shift);
      }
    }
  }
  ANVIL_ASSIGN_OR_RETURN(Tensor t, assemble_i4(std::move(s), m.module(), storage));
  return std::optional<Tensor>(std::move(t));
}

}  // namespace anvil::hf_quant
