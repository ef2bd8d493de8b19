// Model + tokenizer loading shared by the in-process benchmarks (bench latency/throughput, sweep).
#include "bench/bench_model_loader.h"

#include "core/thread_pool.h"
#include "model/load_checkpoint.h"
#include "model/repack_weights.h"
#include "quant/online_quantization.h"
#include "quant/quantize_checkpoint.h"

namespace anvil {

Result<BenchModel> load_bench_model(const std::string& spec, const ProgressCallback& progress,
                                    const std::string& quantization) {
  ANVIL_ASSIGN_OR_RETURN(std::optional<QuantizeOptions> quantize, parse_online_quantization(quantization));
  ANVIL_ASSIGN_OR_RETURN(Checkpoint checkpoint, load_checkpoint(spec, progress));
  if (quantize) {
    ThreadPool pool(default_thread_count());
    Result<QuantizeReport> report = quantize_checkpoint(checkpoint, *quantize, pool);
    if (!report) return report.status().with_context(spec + " (" + quantization + ")");
  }
  repack_weights_for_decode(checkpoint);
  auto shared = std::make_shared<const Checkpoint>(std::move(checkpoint));
  BenchModel loaded;
  ANVIL_ASSIGN_OR_RETURN(loaded.model, DecoderModel::create(shared));
  // Random prompt ids need no tokenizer; only a dataset does (and its reader says so).
  Result<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::create(shared->vocab);
  if (tokenizer) loaded.tokenizer = std::move(tokenizer).value();
  return loaded;
}

}  // namespace anvil
