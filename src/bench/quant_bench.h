// anvil bench quant: what each quantization scheme costs in accuracy (perplexity and KL divergence
// against the model as loaded, llama.cpp's method) and what it buys in size and speed (llama-bench
// pp/tg), with every quantized model made in memory by the library `anvil quantize` uses.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "bench/model_bench.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "eval/chunked_scoring.h"
#include "eval/kl_divergence.h"
#include "eval/perplexity.h"
#include "model/decoder_model.h"
#include "quant/calibration.h"
#include "quant/quant_scheme.h"

namespace anvil {

// One entry of --schemes. Either a plain float type the linear layers are converted to (f32, f16,
// bf16; no scales), or an `anvil quantize` scheme with its options.
struct QuantBenchScheme {
  std::string label;                // as typed: "q4_0", "bf16", "w4a16-rtn:g32,asym"
  std::optional<DType> plain;       // F32 / F16 / BF16
  QuantizeOptions quantize;         // when !plain

  // w4a16-gptq and w8a8-smoothquant: quantized from a calibration set, the whole model at once.
  bool calibrated() const { return !plain && quantize.calibrated(); }
};

// What the scheme list applies to its entries: --group to the w4a16 entries without a gNN option,
// the calibration flags to the calibrated ones.
struct QuantBenchSchemeDefaults {
  std::optional<int64_t> group;
  std::string calibration_file;         // --calib (text)
  std::string calibration_tokens_file;  // --calib-tokens (ids)
  std::optional<int64_t> calibration_samples, calibration_seq_len;
};

// Parses "bf16,fp8,w8a8,w4a16-rtn,q8_0,q4_0,q4_k". An entry may carry options after a colon, as
// `run -q` takes them ("w4a16-rtn:g32,asym", "fp8:per-tensor", "w4a16-gptq:g32,act-order"): items
// after it that are options (gNN, asym, per-tensor, act-order) belong to it. Unknown or repeated
// schemes, --group without a w4a16 entry, calibration data without a calibrated scheme or a
// calibrated scheme without it are errors (the quantize library's checks, make_quantize_options).
Result<std::vector<QuantBenchScheme>> parse_quant_bench_schemes(const std::string& text,
                                                                const QuantBenchSchemeDefaults& defaults);

// Sizes of a checkpoint's weights, scale and zero-point arrays included.
struct WeightSize {
  uint64_t total_bytes = 0;            // every tensor
  uint64_t linear_bytes = 0;           // the linear layers' weights (what the schemes quantize)
  int64_t linear_elements = 0;
  uint64_t decode_bytes_per_token = 0; // what one decode step reads (weight_bytes_per_token's rule)
};
WeightSize measure_weight_size(const Checkpoint& checkpoint);

// "I4 g128": a tensor's storage type, with the group of I4 weights.
std::string weight_type_name(const Tensor& tensor);

// How one linear weight is stored under a scheme. Weights whose rows do not fit the scheme's block
// or group take the nearest type that fits, as llama.cpp's quantize does for k-quants: w4a16 a
// smaller group (128 -> 64 -> 32), q4_k q4_0 (llama.cpp picks q5_0, which anvil does not write);
// with nothing that fits they keep the loaded type (llama.cpp's F16 fallback).
struct TensorTarget {
  enum class Kind { Quantize, Convert, Keep } kind = Kind::Keep;
  QuantizeOptions options;  // Quantize
  DType dtype = DType::F32; // Convert
  bool fallback = false;    // not what the scheme asked for (a smaller group, another type, kept)
};
TensorTarget tensor_target(const QuantBenchScheme& scheme, const Tensor& weight);

// Fails when the scheme fits no linear weight of `base` (every one would keep its type).
Status check_scheme_fits(const Checkpoint& base, const QuantBenchScheme& scheme);

// A scheme applied to the base checkpoint, in memory.
struct QuantizedVariant {
  std::shared_ptr<const Checkpoint> checkpoint;  // shares the base's unquantized tensors
  int64_t linear_tensors = 0;
  int64_t fallback_tensors = 0;
  std::vector<std::string> notes;                // one line per kind of fallback
  double seconds = 0.0;
};
// `progress` counts linear-layer elements (calibrated schemes: layers). Fails when no linear weight
// fits the scheme at all. Calibrated schemes need `calibration` and take no fallbacks: the library
// quantizes the whole model layer by layer, so every weight must fit.
Result<QuantizedVariant> quantize_variant(const std::shared_ptr<const Checkpoint>& base, const QuantBenchScheme& scheme,
                                          ThreadPool& pool, const ProgressCallback& progress = {},
                                          const CalibrationSet* calibration = nullptr);

// The base model's log-probs of every scored position, kept for the comparisons: in memory up to a
// limit, beyond it in a temporary file (the KL-divergence base format of docs/EVAL.md), removed
// when this object goes away.
class BaseLogprobs {
 public:
  // `temp_dir` empty: $TMPDIR, else /tmp.
  static Result<std::unique_ptr<BaseLogprobs>> create(const ChunkPlan& plan, int64_t vocab_size,
                                                      std::span<const int32_t> evaluated, uint64_t memory_limit_bytes,
                                                      const std::string& temp_dir);
  ~BaseLogprobs();
  BaseLogprobs(const BaseLogprobs&) = delete;
  BaseLogprobs& operator=(const BaseLogprobs&) = delete;

  Status append_chunk(std::span<const float> rows);  // the next chunk's scored rows
  Status finish();                                  // after the last chunk: ready to read
  // Chunk c's rows: a view of the stored rows, or of `buffer` filled from the file.
  Result<std::span<const float>> chunk(int64_t c, std::vector<float>& buffer);

  bool in_memory() const { return spill_path_.empty(); }
  const std::string& spill_path() const { return spill_path_; }
  uint64_t bytes() const { return bytes_; }

 private:
  BaseLogprobs() = default;
  struct File;
  ChunkPlan plan_;
  int64_t vocab_size_ = 0;
  uint64_t bytes_ = 0;
  int64_t chunks_ = 0;
  std::vector<float> rows_;
  std::string spill_path_;
  std::unique_ptr<File> file_;
};

// PPL of the base model over the evaluated chunks, storing its log-probs in `out`.
Result<PerplexityResult> score_base(const DecoderModel& model, std::span<const int32_t> evaluated,
                                    const ChunkPlan& plan, ThreadPool& pool, BaseLogprobs& out,
                                    const ProgressCallback& progress = {});
// KL divergence, top-1 agreement and PPL of `model` against the stored base log-probs.
Result<KlDivergenceResult> compare_with_base(const DecoderModel& model, std::span<const int32_t> evaluated,
                                             const ChunkPlan& plan, BaseLogprobs& base, ThreadPool& pool,
                                             const ProgressCallback& progress = {});

// The evaluation text tokenized whole with BOS, one trailing newline dropped (anvil perplexity's
// rules; token-id files go through parse_token_ids, quant/calibration.h).
Result<std::vector<int32_t>> tokenize_eval_text(const Checkpoint& checkpoint, const std::string& model_spec,
                                                const std::string& text);
// The id that replaces each chunk's first token (BOS when the model adds one; -1: none).
int32_t chunk_bos_id(const Checkpoint& checkpoint);

// ---- the run ----------------------------------------------------------------------------------

enum class QuantBenchPhase { Quantize, Evaluate, Speed };
const char* quant_bench_phase_name(QuantBenchPhase phase);  // "quantize", "evaluate", "speed"

// One row: the base (the model as loaded) or one scheme. Phases that did not run stay empty.
struct QuantBenchRow {
  std::string scheme;  // "base" or the label of --schemes
  bool is_base = false;
  std::map<std::string, int64_t> weight_types;  // linear weights by weight_type_name()
  WeightSize size;
  int64_t fallback_tensors = 0;
  std::vector<std::string> notes;
  double quantize_seconds = 0.0;
  std::optional<PerplexityResult> base_ppl;  // base row
  std::optional<KlDivergenceResult> kld;     // scheme rows
  double eval_seconds = 0.0;
  std::optional<ModelBenchResult> speed;
};

struct QuantBenchOptions {
  std::vector<QuantBenchScheme> schemes;
  ModelBenchOptions speed;                           // prompt_tokens and generate_tokens 0: no speed phase
  uint64_t base_memory_limit_bytes = uint64_t{1} << 30;  // base log-probs above this go to a temp file
  std::string temp_dir;                              // for that file; empty: $TMPDIR or /tmp
  const std::atomic<bool>* interrupt = nullptr;      // when it turns true: stop after the current phase
  // Where the run is: called with the phase's units done / total (elements, chunks, runs).
  std::function<void(size_t row, const std::string& scheme, QuantBenchPhase, uint64_t done, uint64_t total)> progress;
  std::function<void(size_t row, const QuantBenchRow&, QuantBenchPhase)> on_phase_done;
};

struct QuantBenchResult {
  ChunkPlan plan;
  QuantBenchRow base;
  std::vector<QuantBenchRow> schemes;  // in the order asked; the unfinished one of an interrupted run is partial
  bool base_in_memory = true;
  bool interrupted = false;
};

// Row 0 is the base; row i the i-th scheme. `evaluated`: plan.n_chunks * plan.n_ctx ids from
// chunk_tokens(). Every scheme is quantized from `base`, measured, and freed before the next.
Result<QuantBenchResult> run_quant_bench(const std::shared_ptr<const Checkpoint>& base, const DecoderModel& base_model,
                                         std::span<const int32_t> evaluated, const ChunkPlan& plan, ThreadPool& pool,
                                         const QuantBenchOptions& options);

}  // namespace anvil
