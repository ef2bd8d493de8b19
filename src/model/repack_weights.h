// Repacking a checkpoint's Q8_0 / Q4_0 / Q4_K matrices into the decode kernels' panel layouts at load,
// and moving its other mapped matrices into huge pages.
#pragma once

#include <cstdint>

#include "core/progress.h"
#include "model/checkpoint.h"

namespace anvil {

struct RepackReport {
  int64_t tensors = 0;        // tensors now in a panel layout
  uint64_t bytes = 0;         // their bytes (the same as before: panels hold the same blocks)
  int64_t moved_tensors = 0;  // other matrices moved out of a file mapping into huge pages
  uint64_t moved_bytes = 0;   // their bytes (scales and zero points not counted)
};

// Replaces every 2-D Q8_0 / Q4_0 / Q4_K tensor of `checkpoint` with its Q8_0_R4 / Q4_0_R4 / Q4_K_R4 panels
// (quant/ggml_panels.h) where the active ISA has panel kernels (gemv_prefers_panels), so decode
// streams one sequential run of aligned code vectors per 4 rows. Everything else that reads
// weights (prefill's oneDNN conversion, embedding lookups, quantizers) reads panels through
// weight_row_to_f32 / onednn_weight_row_to_bf16. The panels live in fresh huge-page memory; a
// source buffer the checkpoint alone owned is released (peak: the model plus one tensor), and a
// memory-mapped file's pages are left to the page cache. Call it on a checkpoint that inference
// will use, after any quantization at load and before DecoderModel::create: GGUF writers refuse
// panels. Every other 2-D tensor that a memory-mapped file holds (BF16, F16, F32, Q6_K, F8_E4M3,
// I8, I4 matrices, with their scales and zero points) is copied into huge-page memory as it is
// and its file pages dropped the same way: decode streams those weights every token, and on the
// page cache's 4 KiB pages it pays a TLB miss per 4 KiB. ANVIL_REPACK=0 leaves the checkpoint as
// loaded (for comparisons).
RepackReport repack_weights_for_decode(Checkpoint& checkpoint, int threads = 0, const ProgressCallback& progress = {});

}  // namespace anvil
