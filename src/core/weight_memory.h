// Weight memory that Anvil fills itself (random-weight presets, dtype conversion, quantization at
// load): large buffers come from anonymous 2 MiB-aligned mappings advised for transparent huge
// pages, so that decode, which streams every weight once per token, takes ~500x fewer TLB misses
// than on 4 KiB pages (`anvil bench model` measured +5-10% tokens/s on Q4_0 Llama-3.2-1B).
#pragma once

#include <cstddef>
#include <memory>

namespace anvil {

// `bytes` of uninitialized, 64-byte aligned (2 MiB aligned from 2 MiB up) writable memory, freed
// when the last owner goes. Throws std::bad_alloc when the memory cannot be had, like new[].
// Huge pages are advice: where the kernel has them off, the memory is plain 4 KiB pages.
std::shared_ptr<std::byte[]> allocate_weight_memory(size_t bytes);
// A copy of `bytes` bytes at `data` in weight memory (weights Anvil built on the heap).
std::shared_ptr<std::byte[]> copy_to_weight_memory(const void* data, size_t bytes);

// The huge-page size: smaller buffers come from the heap (not worth a mapping of their own).
constexpr size_t kWeightMemoryHugePage = size_t{2} << 20;

}  // namespace anvil
