// Model + tokenizer loading shared by the in-process benchmarks (bench latency/throughput, sweep).
#include "bench/bench_model_loader.h"

#include "model/load_checkpoint.h"

namespace anvil {

Result<BenchModel> load_bench_model(const std::string& spec, const ProgressCallback& progress) {
  ANVIL_ASSIGN_OR_RETURN(Checkpoint checkpoint, load_checkpoint(spec, progress));
  auto shared = std::make_shared<const Checkpoint>(std::move(checkpoint));
  BenchModel loaded;
  ANVIL_ASSIGN_OR_RETURN(loaded.model, DecoderModel::create(shared));
  // Random prompt ids need no tokenizer; only a dataset does (and its reader says so).
  Result<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::create(shared->vocab);
  if (tokenizer) loaded.tokenizer = std::move(tokenizer).value();
  return loaded;
}

}  // namespace anvil
