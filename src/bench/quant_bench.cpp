// anvil bench quant: schemes applied in memory, base log-probs scored once, each scheme compared
// against them and timed with the llama-bench loops.
#include "bench/quant_bench.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "core/quant_scales.h"
#include "eval/logprob_file.h"
#include "model/convert_dtype.h"
#include "model/repack_weights.h"
#include "quant/online_quantization.h"
#include "quant/quantize_checkpoint.h"
#include "tokenizer/tokenizer.h"

namespace anvil {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

constexpr const char* kSchemeList =
    "f32, f16, bf16, fp8, fp8-dynamic, w8a8, w4a16-rtn, q8_0, q4_0, q4_k, and with --calib w4a16-gptq, "
    "w8a8-smoothquant";
const std::set<std::string> kSchemeNames = {"fp8",  "fp8-dynamic", "w8a8", "w4a16-rtn",       "q8_0",
                                            "q4_0", "q4_k",        "w4a16-gptq", "w8a8-smoothquant"};
const std::set<std::string> kCalibratedNames = {"w4a16-gptq", "w8a8-smoothquant"};

// Items that continue the previous entry of the comma-separated list ("w4a16-rtn:g32,asym").
bool is_scheme_option(const std::string& item) {
  if (item == "asym" || item == "per-tensor" || item == "act-order" || item == "dynamic-groups") return true;
  return item.size() > 1 && item.size() < 8 && item[0] == 'g' &&
         item.find_first_not_of("0123456789", 1) == std::string::npos;
}

std::optional<DType> plain_scheme_dtype(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  if (name == "bf16") return DType::BF16;
  return std::nullopt;
}

// One entry as `anvil quantize` would take it (scheme and option flags), checked by the library.
Result<QuantBenchScheme> parse_one_scheme(const std::string& label, const QuantBenchSchemeDefaults& defaults) {
  const size_t colon = label.find(':');
  const std::string name = label.substr(0, colon);
  QuantBenchScheme scheme;
  scheme.label = label;
  if (std::optional<DType> plain = plain_scheme_dtype(name)) {
    if (colon != std::string::npos)
      return Status::error(fmt::format("--schemes: {} takes no options ('{}')", name, label));
    scheme.plain = plain;
    return scheme;
  }
  if (!kSchemeNames.count(name))
    return Status::error(fmt::format("--schemes: unknown scheme '{}'; use {}", name, kSchemeList));
  const bool calibrated = kCalibratedNames.count(name) > 0;
  const bool w4 = name.rfind("w4a16", 0) == 0;
  QuantizeRequest request;
  request.scheme = name;
  if (colon != std::string::npos) {
    const std::string rest = label.substr(colon + 1);
    size_t at = 0;
    while (at <= rest.size()) {
      const size_t comma = std::min(rest.find(',', at), rest.size());
      const std::string option = rest.substr(at, comma - at);
      at = comma + 1;
      if (option == "asym") {
        request.asymmetric = true;
      } else if (option == "per-tensor") {
        request.per_tensor = true;
      } else if (option == "act-order") {
        request.act_order = true;
      } else if (option == "dynamic-groups") {
        request.dynamic_groups = true;
      } else if (is_scheme_option(option)) {
        request.group_size = std::stoll(option.substr(1));
      } else {
        return Status::error(fmt::format("--schemes {}: unknown option '{}' (gNN, asym, per-tensor, act-order, dynamic-groups)",
                                         label, option));
      }
    }
  }
  if (w4 && !request.group_size) request.group_size = defaults.group;
  if (calibrated) {
    if (defaults.calibration_file.empty() && defaults.calibration_tokens_file.empty())
      return Status::error(fmt::format("--schemes: {} needs calibration data: give --calib FILE (a text, e.g. "
                                       "WikiText-2's validation split) or --calib-tokens FILE (token ids), or use {}",
                                       name, w4 ? "w4a16-rtn" : "w8a8"));
    request.calibration_file = defaults.calibration_file;
    request.calibration_tokens_file = defaults.calibration_tokens_file;
    request.calibration_samples = defaults.calibration_samples;
    request.calibration_seq_len = defaults.calibration_seq_len;
  }
  Result<QuantizeOptions> options = make_quantize_options(request);
  if (!options) return options.status().with_context("--schemes " + label);
  scheme.quantize = *options;
  return scheme;
}

std::string join_ints(const std::set<int64_t>& values) {
  std::string out;
  for (int64_t v : values) out += (out.empty() ? "" : ", ") + std::to_string(v);
  return out;
}

// Bytes as stored: codes plus any scale and zero-point arrays.
uint64_t stored_bytes(const Tensor& t) { return t.nbytes + t.scale_bytes(); }

}  // namespace

Result<std::vector<QuantBenchScheme>> parse_quant_bench_schemes(const std::string& text,
                                                                const QuantBenchSchemeDefaults& defaults) {
  std::vector<std::string> labels;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    std::string item = text.substr(at, comma - at);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    at = comma + 1;
    if (item.empty()) return Status::error(fmt::format("--schemes '{}': an empty entry", text));
    std::transform(item.begin(), item.end(), item.begin(), [](unsigned char c) { return std::tolower(c); });
    if (is_scheme_option(item) && !labels.empty() && labels.back().find(':') != std::string::npos) {
      labels.back() += "," + item;
      continue;
    }
    labels.push_back(item);
  }
  std::vector<QuantBenchScheme> schemes;
  std::set<std::string> seen;
  bool any_w4 = false, any_calibrated = false;
  for (const std::string& label : labels) {
    if (!seen.insert(label).second) return Status::error(fmt::format("--schemes: '{}' is listed twice", label));
    const std::string name = label.substr(0, label.find(':'));
    any_w4 = any_w4 || name.rfind("w4a16", 0) == 0;
    any_calibrated = any_calibrated || kCalibratedNames.count(name) > 0;
  }
  // List-level mistakes first: they explain the per-entry errors they would cause.
  if (defaults.group && !any_w4)
    return Status::error("--group applies to w4a16-rtn and w4a16-gptq, and neither is among --schemes");
  const bool calibration_given = !defaults.calibration_file.empty() || !defaults.calibration_tokens_file.empty() ||
                                 defaults.calibration_samples || defaults.calibration_seq_len;
  if (calibration_given && !any_calibrated)
    return Status::error("--calib: none of --schemes takes calibration data (w4a16-gptq and w8a8-smoothquant do)");
  for (const std::string& label : labels) {
    ANVIL_ASSIGN_OR_RETURN(QuantBenchScheme scheme, parse_one_scheme(label, defaults));
    schemes.push_back(std::move(scheme));
  }
  return schemes;
}

// ---- sizes ----------------------------------------------------------------------------------------

WeightSize measure_weight_size(const Checkpoint& checkpoint) {
  WeightSize size;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    const uint64_t bytes = stored_bytes(tensor);
    size.total_bytes += bytes;
    if (is_quantized_linear_weight(name)) {
      size.linear_bytes += bytes;
      size.linear_elements += tensor.numel();
    }
    // weight_bytes_per_token()'s rule (model_bench.h) with the scales added: an untied embedding
    // table is read one row per token.
    if (name == "token_embd.weight" && !checkpoint.config.tied_embeddings)
      size.decode_bytes_per_token += tensor.row_bytes() + (tensor.rows() > 0 ? tensor.scale_bytes() / tensor.rows() : 0);
    else
      size.decode_bytes_per_token += bytes;
  }
  return size;
}

std::string weight_type_name(const Tensor& tensor) {
  std::string name = dtype_name(tensor.dtype);
  if (tensor.dtype == DType::I4 && tensor.has_scales()) {
    name += fmt::format(" g{}", tensor.quant.group);
    if (tensor.quant.zero) name += " asym";
    if (tensor.quant.input_order) name += " act-order";
  }
  return name;
}

// ---- applying a scheme ------------------------------------------------------------------------------

TensorTarget tensor_target(const QuantBenchScheme& scheme, const Tensor& weight) {
  TensorTarget target;
  const int64_t cols = weight.cols();
  if (scheme.plain) {
    if (weight.dtype != *scheme.plain) {
      target.kind = TensorTarget::Kind::Convert;
      target.dtype = *scheme.plain;
    }
    return target;
  }
  target.kind = TensorTarget::Kind::Quantize;
  target.options = scheme.quantize;
  auto keep = [&] {
    target.kind = TensorTarget::Kind::Keep;
    target.fallback = true;
    return target;
  };
  switch (scheme.quantize.scheme) {
    case QuantScheme::Fp8:
    case QuantScheme::Fp8Dynamic: return target;
    case QuantScheme::W8A8: return cols <= kMaxI8Cols ? target : keep();
    case QuantScheme::W4A16Rtn:
    case QuantScheme::W4A16Gptq:
      for (int64_t g = scheme.quantize.group_size; g >= 32; g /= 2) {
        if (cols % g != 0) continue;
        target.options.group_size = g;
        target.fallback = g != scheme.quantize.group_size;
        return target;
      }
      return keep();
    case QuantScheme::Q8_0:
    case QuantScheme::Q4_0: return cols % 32 == 0 ? target : keep();
    case QuantScheme::Q4_K:
      if (cols % 256 == 0) return target;
      if (cols % 32 != 0) return keep();
      target.options = QuantizeOptions{};
      target.options.scheme = QuantScheme::Q4_0;
      target.fallback = true;
      return target;
  }
  return keep();
}

namespace {

// What a fallback looks like in a note: "use group 64", "use q4_0", "keep F32".
std::string target_description(const TensorTarget& target, const Tensor& weight) {
  if (target.kind == TensorTarget::Kind::Keep) return fmt::format("keep {}", dtype_name(weight.dtype));
  if (target.options.scheme == QuantScheme::W4A16Rtn || target.options.scheme == QuantScheme::W4A16Gptq)
    return fmt::format("use group {}", target.options.group_size);
  return fmt::format("use {}", quant_scheme_name(target.options.scheme));
}

// The block or group the scheme asked for, for notes.
std::string scheme_unit(const QuantBenchScheme& scheme) {
  switch (scheme.quantize.scheme) {
    case QuantScheme::W4A16Rtn:
    case QuantScheme::W4A16Gptq: return fmt::format("a multiple of group {}", scheme.quantize.group_size);
    case QuantScheme::Q4_K: return "a multiple of the Q4_K block of 256";
    case QuantScheme::Q8_0:
    case QuantScheme::Q4_0: return "a multiple of the block of 32";
    case QuantScheme::W8A8: return fmt::format("at most {} elements (int32 dot products)", kMaxI8Cols);
    default: return "a size the scheme takes";
  }
}

// Tensors that get the same treatment, quantized in one call.
struct Part {
  TensorTarget target;
  std::vector<std::string> names;
};

std::string part_key(const TensorTarget& t) {
  if (t.kind == TensorTarget::Kind::Convert) return std::string("convert ") + dtype_name(t.dtype);
  return fmt::format("quantize {} g{} {} {}", quant_scheme_name(t.options.scheme), t.options.group_size,
                     t.options.asymmetric, t.options.per_tensor);
}

}  // namespace

namespace {

// Which linear weights get which treatment, and the notes on fallbacks; no work done yet.
struct VariantPlan {
  std::map<std::string, Part> parts;
  int64_t linear_tensors = 0;
  int64_t fallback_tensors = 0;
  uint64_t elements = 0;  // of the weights to quantize or convert
  std::vector<std::string> notes;
};

Result<VariantPlan> plan_variant(const Checkpoint& base, const QuantBenchScheme& scheme) {
  VariantPlan plan;
  std::map<std::string, std::set<int64_t>> fallbacks;  // description -> row lengths
  std::map<std::string, int64_t> fallback_counts;
  int64_t kept_by_fallback = 0;
  for (const auto& [name, tensor] : base.tensors) {
    if (!is_quantized_linear_weight(name)) continue;
    if (tensor.shape.size() != 2)
      return Status::error(fmt::format("{}: tensor {} has shape {}, not a matrix", base.source, name,
                                       tensor.shape_string()));
    ++plan.linear_tensors;
    const TensorTarget target = tensor_target(scheme, tensor);
    if (target.fallback && scheme.calibrated())
      return Status::error(fmt::format(
          "{}: scheme {}: tensor {} has rows of {} elements, not {}; calibrated schemes quantize the whole model "
          "layer by layer without fallbacks{}",
          base.source, scheme.label, name, tensor.cols(), scheme_unit(scheme),
          scheme.quantize.scheme == QuantScheme::W4A16Gptq ? ": give a group that divides every row (--group 32 "
                                                              "or w4a16-gptq:g32)"
                                                            : ""));
    if (target.fallback) {
      ++plan.fallback_tensors;
      const std::string what = target_description(target, tensor);
      fallbacks[what].insert(tensor.cols());
      ++fallback_counts[what];
      if (target.kind == TensorTarget::Kind::Keep) ++kept_by_fallback;
    }
    if (target.kind == TensorTarget::Kind::Keep) continue;
    Part& part = plan.parts[part_key(target)];
    part.target = target;
    part.names.push_back(name);
    plan.elements += static_cast<uint64_t>(tensor.numel());
  }
  if (plan.linear_tensors == 0)
    return Status::error(base.source + ": no linear-layer weights (blk.N.attn_q.weight, ...) to quantize");
  if (kept_by_fallback == plan.linear_tensors) {
    std::set<int64_t> cols;
    for (const auto& [what, lengths] : fallbacks) cols.insert(lengths.begin(), lengths.end());
    return Status::error(fmt::format("{}: scheme {} fits no linear weight of this model: rows of {} elements are "
                                     "not {}{}",
                                     base.source, scheme.label, join_ints(cols), scheme_unit(scheme),
                                     scheme.quantize.scheme == QuantScheme::W4A16Rtn ? " (nor of 64 or 32)" : ""));
  }
  for (const auto& [what, lengths] : fallbacks) {
    const bool kept_w4 = what.rfind("keep", 0) == 0 && scheme.quantize.scheme == QuantScheme::W4A16Rtn;
    plan.notes.push_back(fmt::format("{}: {} of {} linear weights {} (rows of {} elements are not {}{})",
                                     scheme.label, fallback_counts[what], plan.linear_tensors, what,
                                     join_ints(lengths), scheme_unit(scheme), kept_w4 ? " nor of 32" : ""));
  }
  return plan;
}

}  // namespace

Status check_scheme_fits(const Checkpoint& base, const QuantBenchScheme& scheme) {
  return plan_variant(base, scheme).status();
}

Result<QuantizedVariant> quantize_variant(const std::shared_ptr<const Checkpoint>& base, const QuantBenchScheme& scheme,
                                          ThreadPool& pool, const ProgressCallback& progress,
                                          const CalibrationSet* calibration) {
  const auto start = Clock::now();
  ANVIL_ASSIGN_OR_RETURN(VariantPlan plan, plan_variant(*base, scheme));
  QuantizedVariant variant;
  variant.linear_tensors = plan.linear_tensors;
  variant.fallback_tensors = plan.fallback_tensors;
  variant.notes = plan.notes;
  if (scheme.calibrated()) {
    // The calibrated drivers run the model layer by layer (SmoothQuant also rewrites the norms):
    // they take the whole checkpoint, whose copy gets new tensors; the base keeps its own.
    if (!calibration) return Status::error(fmt::format("internal: scheme {} without its calibration set", scheme.label));
    auto checkpoint = std::make_shared<Checkpoint>(*base);
    LayerProgressCallback on_layer;
    if (progress)
      on_layer = [&](int64_t layer, int64_t n_layers, const QuantizeReport&) {
        progress(static_cast<uint64_t>(layer + 1), static_cast<uint64_t>(n_layers));
      };
    Result<QuantizeReport> report = quantize_checkpoint(*checkpoint, scheme.quantize, *calibration, pool, {}, on_layer);
    if (!report) return report.status();
    variant.notes.push_back(fmt::format("{}: calibrated on {} samples x {} tokens from {}", scheme.label,
                                        calibration->samples.size(), calibration->seq_len(), calibration->source));
    variant.checkpoint = std::move(checkpoint);
    variant.seconds = seconds_since(start);
    return variant;
  }
  const uint64_t total = plan.elements;
  auto checkpoint = std::make_shared<Checkpoint>(*base);
  uint64_t done = 0;
  for (const auto& [key, part] : plan.parts) {
    if (part.target.kind == TensorTarget::Kind::Convert) {
      for (const std::string& name : part.names) {
        Tensor& tensor = checkpoint->tensors.at(name);
        ANVIL_RETURN_IF_ERROR(convert_tensor_dtype(*checkpoint, tensor, part.target.dtype));
        done += static_cast<uint64_t>(tensor.numel());
        if (progress) progress(done, total);
      }
      continue;
    }
    // quantize_checkpoint quantizes every linear weight it holds: give it this part's only.
    Checkpoint subset;
    subset.config = base->config;
    subset.source = base->source;
    for (const std::string& name : part.names) subset.tensors.emplace(name, base->tensors.at(name));
    const uint64_t offset = done;
    ProgressCallback part_progress;
    if (progress) part_progress = [&](uint64_t d, uint64_t) { progress(offset + d, total); };
    Result<QuantizeReport> report = quantize_checkpoint(subset, part.target.options, pool, part_progress);
    if (!report) return report.status();
    for (auto& [name, tensor] : subset.tensors) {
      checkpoint->tensors[name] = tensor;
      done += static_cast<uint64_t>(tensor.numel());
    }
    checkpoint->storage.insert(checkpoint->storage.end(), subset.storage.begin(), subset.storage.end());
  }
  // The output layer and embeddings as `anvil quantize` leaves them (the GGML schemes: llama-quantize's types).
  if (!scheme.plain) {
    ANVIL_ASSIGN_OR_RETURN(std::vector<TensorQuantReport> head, quantize_head_tensors(*checkpoint, scheme.quantize, pool));
    for (const TensorQuantReport& t : head)
      variant.notes.push_back(fmt::format("{}: {} {} -> {}", scheme.label, t.name, dtype_name(t.from), dtype_name(t.to)));
  }
  checkpoint->quantization = scheme.plain ? QuantizationInfo{} : quantization_info(scheme.quantize);
  repack_weights_for_decode(*checkpoint, pool.thread_count());  // measured as inference runs it
  variant.checkpoint = std::move(checkpoint);
  variant.seconds = seconds_since(start);
  return variant;
}

// ---- base log-probs ---------------------------------------------------------------------------------

struct BaseLogprobs::File {
  std::unique_ptr<LogprobFileWriter> writer;
  std::unique_ptr<LogprobFileReader> reader;
};

Result<std::unique_ptr<BaseLogprobs>> BaseLogprobs::create(const ChunkPlan& plan, int64_t vocab_size,
                                                           std::span<const int32_t> evaluated,
                                                           uint64_t memory_limit_bytes, const std::string& temp_dir) {
  std::unique_ptr<BaseLogprobs> base(new BaseLogprobs());
  base->plan_ = plan;
  base->vocab_size_ = vocab_size;
  const uint64_t floats = static_cast<uint64_t>(plan.scored_tokens()) * static_cast<uint64_t>(vocab_size);
  base->bytes_ = floats * sizeof(float);
  if (base->bytes_ <= memory_limit_bytes) {
    base->rows_.reserve(floats);
    return base;
  }
  std::string dir = temp_dir;
  if (dir.empty()) {
    const char* env = std::getenv("TMPDIR");
    dir = env && *env ? env : "/tmp";
  }
  static std::atomic<int> counter{0};
  base->spill_path_ =
      (std::filesystem::path(dir) / fmt::format("anvil-bench-quant-{}-{}.base", ::getpid(), counter++)).string();
  LogprobFileHeader header;
  header.dtype = DType::F32;
  header.vocab_size = vocab_size;
  header.n_ctx = plan.n_ctx;
  header.n_chunks = plan.n_chunks;
  header.model = "bench quant base";
  base->file_ = std::make_unique<File>();
  Result<std::unique_ptr<LogprobFileWriter>> writer = LogprobFileWriter::create(base->spill_path_, header, evaluated);
  if (!writer)
    return writer.status().with_context(fmt::format("the base log-probs ({:.2f} GiB, more than the {:.2f} GiB kept "
                                                    "in memory) go to a temporary file",
                                                    base->bytes_ / 1073741824.0, memory_limit_bytes / 1073741824.0));
  base->file_->writer = std::move(writer).value();
  return base;
}

BaseLogprobs::~BaseLogprobs() {
  if (spill_path_.empty()) return;
  file_.reset();  // close the streams before removing the file
  std::error_code ignored;
  std::filesystem::remove(spill_path_, ignored);
}

Status BaseLogprobs::append_chunk(std::span<const float> rows) {
  if (static_cast<int64_t>(rows.size()) != plan_.scored_per_chunk() * vocab_size_ || chunks_ >= plan_.n_chunks)
    return Status::error("internal: base log-probs of the wrong size or one chunk too many");
  ++chunks_;
  if (in_memory()) {
    rows_.insert(rows_.end(), rows.begin(), rows.end());
    return Status::ok();
  }
  return file_->writer->write_chunk(rows);
}

Status BaseLogprobs::finish() {
  if (chunks_ != plan_.n_chunks)
    return Status::error(fmt::format("internal: {} of {} base chunks stored", chunks_, plan_.n_chunks));
  if (in_memory()) return Status::ok();
  ANVIL_RETURN_IF_ERROR(file_->writer->close());
  file_->writer.reset();
  ANVIL_ASSIGN_OR_RETURN(file_->reader, LogprobFileReader::open(spill_path_));
  return Status::ok();
}

Result<std::span<const float>> BaseLogprobs::chunk(int64_t c, std::vector<float>& buffer) {
  const size_t per_chunk = static_cast<size_t>(plan_.scored_per_chunk() * vocab_size_);
  if (c < 0 || c >= chunks_) return Status::error(fmt::format("internal: base chunk {} of {}", c, chunks_));
  if (in_memory()) return std::span<const float>(rows_).subspan(static_cast<size_t>(c) * per_chunk, per_chunk);
  if (!file_->reader) return Status::error("internal: base log-probs read before finish()");
  ANVIL_RETURN_IF_ERROR(file_->reader->read_chunk(c, buffer));
  return std::span<const float>(buffer);
}

// ---- scoring ------------------------------------------------------------------------------------------

Result<PerplexityResult> score_base(const DecoderModel& model, std::span<const int32_t> evaluated,
                                    const ChunkPlan& plan, ThreadPool& pool, BaseLogprobs& out,
                                    const ProgressCallback& progress) {
  if (static_cast<int64_t>(evaluated.size()) != plan.n_chunks * plan.n_ctx)
    return Status::error(fmt::format("internal: {} tokens for {} chunks of {}", evaluated.size(), plan.n_chunks,
                                     plan.n_ctx));
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<ChunkScorer> scorer, ChunkScorer::create(model, plan.n_ctx));
  const auto start = Clock::now();
  MeanStats nll;
  for (int64_t c = 0; c < plan.n_chunks; ++c) {
    std::span<const int32_t> chunk = evaluated.subspan(c * plan.n_ctx, plan.n_ctx);
    Result<std::span<const float>> logprobs = scorer->score(chunk, pool);
    if (!logprobs) return logprobs.status().with_context(fmt::format("chunk {}", c + 1));
    accumulate_chunk_nll(*logprobs, chunk, plan, scorer->vocab_size(), nll);
    ANVIL_RETURN_IF_ERROR(out.append_chunk(*logprobs));
    if (progress) progress(static_cast<uint64_t>(c + 1), static_cast<uint64_t>(plan.n_chunks));
  }
  ANVIL_RETURN_IF_ERROR(out.finish());
  PerplexityResult result = perplexity_from_nll(nll, plan);
  result.seconds = seconds_since(start);
  return result;
}

Result<KlDivergenceResult> compare_with_base(const DecoderModel& model, std::span<const int32_t> evaluated,
                                             const ChunkPlan& plan, BaseLogprobs& base, ThreadPool& pool,
                                             const ProgressCallback& progress) {
  if (static_cast<int64_t>(evaluated.size()) != plan.n_chunks * plan.n_ctx)
    return Status::error(fmt::format("internal: {} tokens for {} chunks of {}", evaluated.size(), plan.n_chunks,
                                     plan.n_ctx));
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<ChunkScorer> scorer, ChunkScorer::create(model, plan.n_ctx));
  const int64_t vocab = scorer->vocab_size();
  const int64_t rows = plan.scored_per_chunk();
  const auto start = Clock::now();
  KlDivergenceStats stats;
  std::vector<float> buffer;
  std::vector<TokenComparison> compared(static_cast<size_t>(rows));
  for (int64_t c = 0; c < plan.n_chunks; ++c) {
    ANVIL_ASSIGN_OR_RETURN(std::span<const float> base_rows, base.chunk(c, buffer));
    std::span<const int32_t> chunk = evaluated.subspan(c * plan.n_ctx, plan.n_ctx);
    Result<std::span<const float>> logprobs = scorer->score(chunk, pool);
    if (!logprobs) return logprobs.status().with_context(fmt::format("chunk {}", c + 1));
    // Compared in parallel, added in row order: results do not depend on the thread count
    // (evaluate_kl_divergence's loop, over rows kept in memory instead of a file).
    pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const size_t offset = static_cast<size_t>(r * vocab);
        compared[r] = compare_token(base_rows.subspan(offset, vocab), logprobs->subspan(offset, vocab),
                                    chunk[plan.first + r + 1]);
      }
    });
    for (const TokenComparison& t : compared) stats.add(t);
    if (progress) progress(static_cast<uint64_t>(c + 1), static_cast<uint64_t>(plan.n_chunks));
  }
  KlDivergenceResult result = stats.summarize(plan);
  result.seconds = seconds_since(start);
  return result;
}

// ---- the evaluation stream ------------------------------------------------------------------------------

Result<std::vector<int32_t>> tokenize_eval_text(const Checkpoint& checkpoint, const std::string& model_spec,
                                                const std::string& text) {
  if (checkpoint.vocab.empty())
    return Status::error(fmt::format("{}: this model carries no tokenizer; give token ids with --tokens-file",
                                     model_spec));
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::create(checkpoint.vocab));
  std::string_view view = text;
  if (!view.empty() && view.back() == '\n') view.remove_suffix(1);
  return tokenizer->encode(view, /*add_special=*/true, /*parse_special=*/false);
}

int32_t chunk_bos_id(const Checkpoint& checkpoint) {
  if (!checkpoint.vocab.empty()) return checkpoint.vocab.add_bos ? checkpoint.vocab.bos_id : -1;
  return checkpoint.config.bos_token_id;
}

// ---- the run ----------------------------------------------------------------------------------------------

const char* quant_bench_phase_name(QuantBenchPhase phase) {
  switch (phase) {
    case QuantBenchPhase::Quantize: return "quantize";
    case QuantBenchPhase::Evaluate: return "evaluate";
    case QuantBenchPhase::Speed: return "speed";
  }
  return "?";
}

namespace {

void describe_weights(const Checkpoint& checkpoint, QuantBenchRow& row) {
  row.size = measure_weight_size(checkpoint);
  for (const auto& [name, tensor] : checkpoint.tensors)
    if (is_quantized_linear_weight(name)) ++row.weight_types[weight_type_name(tensor)];
}

}  // namespace

Result<QuantBenchResult> run_quant_bench(const std::shared_ptr<const Checkpoint>& base, const DecoderModel& base_model,
                                         std::span<const int32_t> evaluated, const ChunkPlan& plan, ThreadPool& pool,
                                         const QuantBenchOptions& options) {
  if (static_cast<int64_t>(evaluated.size()) != plan.n_chunks * plan.n_ctx || plan.n_chunks < 1)
    return Status::error(fmt::format("internal: {} tokens for {} chunks of {}", evaluated.size(), plan.n_chunks,
                                     plan.n_ctx));
  if (options.schemes.empty()) return Status::error("--schemes: no scheme to measure");
  const bool measure_speed = options.speed.prompt_tokens > 0 || options.speed.generate_tokens > 0;
  if (measure_speed) {
    if (options.speed.repetitions < 1) return Status::error("-r/--repetitions must be at least 1");
    const int64_t needed = std::max(options.speed.prompt_tokens, options.speed.generate_tokens);
    if (needed > base->config.context_length)
      return Status::error(fmt::format("-p/-n: {} tokens exceed the model's context length of {}", needed,
                                       base->config.context_length));
  }
  if (plan.n_ctx > base->config.context_length)
    return Status::error(fmt::format("--ctx {} is larger than the model's context length of {}", plan.n_ctx,
                                     base->config.context_length));
  // A scheme that fits no weight of this model, or calibration data that cannot be read, fails
  // now, not after the base has been measured.
  for (const QuantBenchScheme& scheme : options.schemes) ANVIL_RETURN_IF_ERROR(check_scheme_fits(*base, scheme));
  std::map<std::string, CalibrationSet> calibration_sets;  // by source and shape, loaded once
  const auto calibration_key = [](const QuantizeOptions& o) {
    return fmt::format("{}|{}|{}|{}", o.calibration_source.text_file, o.calibration_source.tokens_file,
                       o.calibration.samples, o.calibration.seq_len);
  };
  for (const QuantBenchScheme& scheme : options.schemes) {
    if (!scheme.calibrated() || calibration_sets.count(calibration_key(scheme.quantize))) continue;
    Result<CalibrationSet> set =
        load_calibration_set(scheme.quantize.calibration_source, scheme.quantize.calibration, *base);
    if (!set) return set.status().with_context("scheme " + scheme.label);
    calibration_sets.emplace(calibration_key(scheme.quantize), std::move(set).value());
  }

  const auto interrupted = [&] { return options.interrupt && options.interrupt->load(); };
  const auto phase_progress = [&](size_t row, const std::string& scheme, QuantBenchPhase phase) -> ProgressCallback {
    if (!options.progress) return {};
    return [&options, row, scheme, phase](uint64_t done, uint64_t total) { options.progress(row, scheme, phase, done, total); };
  };
  const auto done = [&](size_t index, const QuantBenchRow& row, QuantBenchPhase phase) {
    if (options.on_phase_done) options.on_phase_done(index, row, phase);
  };

  QuantBenchResult result;
  result.plan = plan;
  QuantBenchRow& base_row = result.base;
  base_row.scheme = "base";
  base_row.is_base = true;
  describe_weights(*base, base_row);

  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<BaseLogprobs> base_logprobs,
                         BaseLogprobs::create(plan, base->config.vocab_size, evaluated,
                                              options.base_memory_limit_bytes, options.temp_dir));
  result.base_in_memory = base_logprobs->in_memory();
  {
    Result<PerplexityResult> ppl =
        score_base(base_model, evaluated, plan, pool, *base_logprobs, phase_progress(0, "base", QuantBenchPhase::Evaluate));
    if (!ppl) return ppl.status().with_context("base model");
    base_row.base_ppl = *ppl;
    base_row.eval_seconds = ppl->seconds;
    done(0, base_row, QuantBenchPhase::Evaluate);
  }
  if (interrupted()) {
    result.interrupted = true;
    return result;
  }
  if (measure_speed) {
    Result<ModelBenchResult> speed =
        run_model_bench(base_model, pool, options.speed, phase_progress(0, "base", QuantBenchPhase::Speed));
    if (!speed) return speed.status().with_context("base model");
    base_row.speed = *speed;
    done(0, base_row, QuantBenchPhase::Speed);
    if (interrupted()) {
      result.interrupted = true;
      return result;
    }
  }

  for (size_t i = 0; i < options.schemes.size(); ++i) {
    const QuantBenchScheme& scheme = options.schemes[i];
    const size_t index = i + 1;
    const std::string context = "scheme " + scheme.label;
    const CalibrationSet* calibration =
        scheme.calibrated() ? &calibration_sets.at(calibration_key(scheme.quantize)) : nullptr;
    Result<QuantizedVariant> variant = quantize_variant(
        base, scheme, pool, phase_progress(index, scheme.label, QuantBenchPhase::Quantize), calibration);
    if (!variant) return variant.status().with_context(context);
    Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(variant->checkpoint);
    if (!model) return model.status().with_context(context);
    result.schemes.emplace_back();
    QuantBenchRow& row = result.schemes.back();
    row.scheme = scheme.label;
    describe_weights(*variant->checkpoint, row);
    row.fallback_tensors = variant->fallback_tensors;
    row.notes = variant->notes;
    row.quantize_seconds = variant->seconds;
    done(index, row, QuantBenchPhase::Quantize);
    if (interrupted()) {
      result.interrupted = true;
      return result;
    }

    Result<KlDivergenceResult> kld = compare_with_base(**model, evaluated, plan, *base_logprobs, pool,
                                                       phase_progress(index, scheme.label, QuantBenchPhase::Evaluate));
    if (!kld) return kld.status().with_context(context);
    row.kld = *kld;
    row.eval_seconds = kld->seconds;
    done(index, row, QuantBenchPhase::Evaluate);
    if (interrupted()) {
      result.interrupted = true;
      return result;
    }

    if (measure_speed) {
      Result<ModelBenchResult> speed =
          run_model_bench(**model, pool, options.speed, phase_progress(index, scheme.label, QuantBenchPhase::Speed));
      if (!speed) return speed.status().with_context(context);
      row.speed = *speed;
      done(index, row, QuantBenchPhase::Speed);
      if (interrupted()) {
        result.interrupted = true;
        return result;
      }
    }
  }
  return result;
}

}  // namespace anvil
