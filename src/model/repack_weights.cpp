// repack_weights_for_decode: GGML rows -> 4-row panels for every Q8_0 / Q4_0 / Q4_K matrix.
#include "model/repack_weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "compute/cpu/gemv.h"
#include "core/thread_pool.h"
#include "core/weight_memory.h"
#include "quant/ggml_panels.h"

namespace anvil {
namespace {

bool repack_disabled() {
  const char* value = std::getenv("ANVIL_REPACK");
  return value != nullptr && std::strcmp(value, "0") == 0;
}

bool repackable(const Tensor& t) {
  return t.shape.size() == 2 && gemv_prefers_panels(t.dtype);
}

// Drops the checkpoint's hold on the buffer that starts at `data` when nothing else holds it
// (a copied Checkpoint, another tensor view of the same bytes), so its memory is freed now.
void release_if_sole_owner(Checkpoint& checkpoint, const std::byte* data) {
  for (const auto& [name, tensor] : checkpoint.tensors)
    if (tensor.data == data) return;  // another tensor still reads these bytes
  auto it = std::find_if(checkpoint.storage.begin(), checkpoint.storage.end(),
                         [&](const std::shared_ptr<const void>& s) { return s.get() == data; });
  if (it != checkpoint.storage.end() && it->use_count() == 1) checkpoint.storage.erase(it);
}

// A tensor read from a file mapping: its pages leave this process's memory (they come back from
// the file if anything reads them again), so the panels are not counted twice.
void drop_file_pages(const Checkpoint& checkpoint, const std::byte* data, size_t bytes) {
  for (const auto& [start, size] : checkpoint.file_mappings) {
    if (data < start || data + bytes > start + size) continue;
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t first = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
    const uintptr_t last = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
    if (first < last) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
    return;
  }
}

}  // namespace

RepackReport repack_weights_for_decode(Checkpoint& checkpoint, int threads, const ProgressCallback& progress) {
  RepackReport report;
  if (repack_disabled()) return report;
  uint64_t total = 0;
  for (const auto& [name, tensor] : checkpoint.tensors)
    if (repackable(tensor)) total += tensor.nbytes;
  if (total == 0) return report;
  ThreadPool pool(threads > 0 ? threads : default_thread_count());
  for (auto& [name, tensor] : checkpoint.tensors) {
    if (!repackable(tensor)) continue;
    const int64_t rows = tensor.rows(), k = tensor.cols();
    std::shared_ptr<std::byte[]> buffer = allocate_weight_memory(tensor.nbytes);
    const std::byte* source = tensor.data;
    const DType ggml = tensor.dtype;
    pool.parallel_for((rows + kPanelRows - 1) / kPanelRows, [&](int64_t begin, int64_t end) {
      repack_to_panels(ggml, source, rows, k, begin, end, buffer.get());
    });
    tensor.dtype = panel_dtype_for(ggml);
    tensor.data = buffer.get();
    checkpoint.storage.push_back(std::shared_ptr<const void>(buffer, buffer.get()));
    release_if_sole_owner(checkpoint, source);
    drop_file_pages(checkpoint, source, tensor.nbytes);
    ++report.tensors;
    report.bytes += tensor.nbytes;
    if (progress) progress(report.bytes, total);
  }
  return report;
}

}  // namespace anvil
