// Anonymous mappings for weights, aligned to the huge-page size and advised for THP.
#include "core/weight_memory.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <new>

namespace anvil {
namespace {

size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

}  // namespace

std::shared_ptr<std::byte[]> allocate_weight_memory(size_t bytes) {
  if (bytes < kWeightMemoryHugePage) {
    // Small tensors (norms, biases): not worth a mapping of their own.
    return std::shared_ptr<std::byte[]>(new (std::align_val_t{64}) std::byte[bytes > 0 ? bytes : 1],
                                        [](std::byte* p) { ::operator delete[](p, std::align_val_t{64}); });
  }
  const size_t length = round_up(bytes, kWeightMemoryHugePage);
  // Over-map by one huge page, then unmap the unaligned head and the tail.
  void* raw = mmap(nullptr, length + kWeightMemoryHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = round_up(start, kWeightMemoryHugePage);
  if (aligned > start) munmap(raw, aligned - start);
  const size_t tail = start + length + kWeightMemoryHugePage - (aligned + length);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + length), tail);
  void* memory = reinterpret_cast<void*>(aligned);
  madvise(memory, length, MADV_HUGEPAGE);  // advice only: failure leaves 4 KiB pages
  return std::shared_ptr<std::byte[]>(static_cast<std::byte*>(memory),
                                      [length](std::byte* p) { munmap(p, length); });
}

std::shared_ptr<std::byte[]> copy_to_weight_memory(const void* data, size_t bytes) {
  std::shared_ptr<std::byte[]> buffer = allocate_weight_memory(bytes);
  std::memcpy(buffer.get(), data, bytes);
  return buffer;
}

}  // namespace anvil
