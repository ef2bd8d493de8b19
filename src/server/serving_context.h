// ServingContext: what the API routes share once the model is loaded.
#pragma once

#include <string>
#include <vector>

#include "engine/engine.h"
#include "server/admission.h"
#include "server/openai_protocol.h"
#include "server/server_metrics.h"
#include "tokenizer/tokenizer.h"

namespace anvil::server {

struct ServingContext {
  Engine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;   // null: the model has no tokenizer; prompts must be token ids
  std::vector<std::string> served_names;  // what requests may name as "model"; the first is shown
  std::string model_path;                 // what --model named
  std::string chat_template;              // --chat-template: a format name; "" for the model's own
  ModelLimits limits;                     // context_length: what a sequence may hold in this engine
  int64_t created = 0;                    // unix seconds the model became ready
  AdmissionControl* admission = nullptr;
  ServerMetrics* metrics = nullptr;

  const std::string& display_name() const { return served_names.front(); }
};

}  // namespace anvil::server
