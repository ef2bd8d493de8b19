// Weight dtype conversion through float rows.
#include "model/convert_dtype.h"

#include <fmt/format.h>

#include <vector>

#include "compute/cpu/matmul.h"
#include "core/weight_memory.h"

namespace anvil {
namespace {

Status check_writable(DType dtype) {
  const DTypeInfo& target = dtype_info(dtype);
  if (target.external_scales)
    return Status::error(fmt::format("{} weights need scales; use `anvil quantize --scheme fp8|w8a8|w4a16-rtn`",
                                     target.name));
  if (!target.from_float) return Status::error(fmt::format("anvil cannot write {} weights yet", target.name));
  return Status::ok();
}

}  // namespace

Status convert_tensor_dtype(Checkpoint& checkpoint, Tensor& tensor, DType dtype, ThreadPool* pool) {
  ANVIL_RETURN_IF_ERROR(check_writable(dtype));
  const int64_t rows = tensor.rows(), cols = tensor.cols();
  if (cols % dtype_info(dtype).block_elems != 0)
    return Status::error(fmt::format("{}: tensor {} has rows of {} elements, not a multiple of the {} block of {}",
                                     checkpoint.source, tensor.name, cols, dtype_info(dtype).name,
                                     dtype_info(dtype).block_elems));
  const size_t row_bytes = dtype_bytes(dtype, cols);
  std::shared_ptr<std::byte[]> buffer = allocate_weight_memory(row_bytes * rows);
  auto convert_rows = [&](int64_t begin, int64_t end) {
    std::vector<float> row(cols);
    for (int64_t r = begin; r < end; ++r) {
      weight_row_to_f32(tensor, r, row.data());
      dtype_info(dtype).from_float(row.data(), buffer.get() + r * row_bytes, cols);
    }
  };
  if (pool != nullptr) {
    pool->parallel_for(rows, convert_rows);
  } else {
    convert_rows(0, rows);
  }
  tensor.dtype = dtype;
  tensor.data = buffer.get();
  tensor.nbytes = row_bytes * rows;
  tensor.quant = {};  // the scales were applied while dequantizing
  checkpoint.storage.push_back(std::shared_ptr<const void>(buffer, buffer.get()));
  return Status::ok();
}

Status convert_weight_dtype(Checkpoint& checkpoint, DType dtype, const ProgressCallback& progress) {
  ANVIL_RETURN_IF_ERROR(check_writable(dtype));
  uint64_t total_elements = 0, done_elements = 0;
  for (const auto& [name, tensor] : checkpoint.tensors) total_elements += tensor.numel();
  for (auto& [name, tensor] : checkpoint.tensors) {
    done_elements += tensor.numel();
    if (progress) progress(done_elements, total_elements);
    const bool is_matrix = tensor.shape.size() == 2;
    const DType wanted = is_matrix ? dtype : DType::F32;
    if (tensor.dtype == wanted) continue;
    ANVIL_RETURN_IF_ERROR(convert_tensor_dtype(checkpoint, tensor, wanted));
  }
  // The weights no longer follow the quantization scheme a source file recorded.
  checkpoint.quantization = {};
  return Status::ok();
}

}  // namespace anvil
