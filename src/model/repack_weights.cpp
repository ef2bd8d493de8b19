// repack_weights_for_decode: GGML rows -> 4-row panels for every Q8_0 / Q4_0 / Q4_K matrix, and
// the other matrices of a file mapping into huge-page memory.
#include "model/repack_weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

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

bool in_file_mapping(const Checkpoint& checkpoint, const void* data, size_t bytes) {
  const auto* p = static_cast<const std::byte*>(data);
  for (const auto& [start, size] : checkpoint.file_mappings)
    if (p >= start && p + bytes <= start + size) return true;
  return false;
}

// A tensor read from a file mapping: its pages leave this process's memory (they come back from
// the file if anything reads them again), so the panels are not counted twice.
void drop_file_pages(const Checkpoint& checkpoint, const void* data, size_t bytes) {
  if (!in_file_mapping(checkpoint, data, bytes)) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t last = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  if (first < last) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

// The other weight matrices of a file mapping (BF16/F16/F32, Q6_K, the scaled types) are read
// every decode step in place, on the page cache's 4 KiB pages: their TLB misses cost a GGUF
// W4A16 model ~30% of its decode speed against the same weights in huge pages.
bool movable(const Checkpoint& checkpoint, const Tensor& t) {
  return t.shape.size() == 2 && !repackable(t) && in_file_mapping(checkpoint, t.data, t.nbytes);
}

size_t aligned64(size_t bytes) { return (bytes + 63) / 64 * 64; }

// Copies t's bytes, and its scales and zero points where the mapping holds them too, into one
// huge-page buffer; points t (and any other tensor viewing the same bytes) there.
void move_to_weight_memory(Checkpoint& checkpoint, Tensor& t) {
  const std::byte* source = t.data;
  const size_t values = t.has_scales() ? static_cast<size_t>(t.rows() * t.scale_groups()) : 0;
  const float* scale = t.quant.scale && in_file_mapping(checkpoint, t.quant.scale, values * 4) ? t.quant.scale : nullptr;
  const float* zero = t.quant.zero && in_file_mapping(checkpoint, t.quant.zero, values * 4) ? t.quant.zero : nullptr;
  const size_t scale_at = aligned64(t.nbytes), zero_at = scale_at + (scale ? aligned64(values * 4) : 0);
  std::shared_ptr<std::byte[]> buffer = allocate_weight_memory(zero_at + (zero ? values * 4 : 0));
  // In chunks, each chunk's file pages dropped once copied: the peak stays the model plus one
  // chunk even for an 8B model's 1 GiB embedding table.
  constexpr size_t kChunk = size_t{64} << 20;
  for (size_t at = 0; at < t.nbytes; at += kChunk) {
    const size_t end = std::min(t.nbytes, at + kChunk);
    std::memcpy(buffer.get() + at, source + at, end - at);
    drop_file_pages(checkpoint, source, end);  // whole pages of [source, source + end)
  }
  if (scale) std::memcpy(buffer.get() + scale_at, scale, values * 4);
  if (zero) std::memcpy(buffer.get() + zero_at, zero, values * 4);
  for (auto& [name, other] : checkpoint.tensors) {
    if (other.data != source) continue;
    other.data = buffer.get();
    if (scale && other.quant.scale == scale) other.quant.scale = reinterpret_cast<const float*>(buffer.get() + scale_at);
    if (zero && other.quant.zero == zero) other.quant.zero = reinterpret_cast<const float*>(buffer.get() + zero_at);
  }
  checkpoint.storage.push_back(std::shared_ptr<const void>(buffer, buffer.get()));
  if (scale) drop_file_pages(checkpoint, scale, values * 4);
  if (zero) drop_file_pages(checkpoint, zero, values * 4);
}

}  // namespace

RepackReport repack_weights_for_decode(Checkpoint& checkpoint, int threads, const ProgressCallback& progress) {
  RepackReport report;
  if (repack_disabled()) return report;
  uint64_t total = 0;
  for (const auto& [name, tensor] : checkpoint.tensors)
    if (repackable(tensor) || movable(checkpoint, tensor)) total += tensor.nbytes;
  if (total == 0) return report;
  uint64_t done = 0;
  for (auto& [name, tensor] : checkpoint.tensors) {
    if (!movable(checkpoint, tensor)) continue;
    done += tensor.nbytes;
    ++report.moved_tensors;
    report.moved_bytes += tensor.nbytes;
    move_to_weight_memory(checkpoint, tensor);
    if (progress) progress(done, total);
  }
  std::optional<ThreadPool> pool;
  for (auto& [name, tensor] : checkpoint.tensors) {
    if (!repackable(tensor)) continue;
    if (!pool) pool.emplace(threads > 0 ? threads : default_thread_count());
    const int64_t rows = tensor.rows(), k = tensor.cols();
    std::shared_ptr<std::byte[]> buffer = allocate_weight_memory(tensor.nbytes);
    const std::byte* source = tensor.data;
    const DType ggml = tensor.dtype;
    pool->parallel_for((rows + kPanelRows - 1) / kPanelRows, [&](int64_t begin, int64_t end) {
      repack_to_panels(ggml, source, rows, k, begin, end, buffer.get());
    });
    tensor.dtype = panel_dtype_for(ggml);
    tensor.data = buffer.get();
    checkpoint.storage.push_back(std::shared_ptr<const void>(buffer, buffer.get()));
    release_if_sole_owner(checkpoint, source);
    drop_file_pages(checkpoint, source, tensor.nbytes);
    ++report.tensors;
    report.bytes += tensor.nbytes;
    done += tensor.nbytes;
    if (progress) progress(done, total);
  }
  return report;
}

}  // namespace anvil
