// POST /tokenize and /detokenize (vLLM's extensions): the server's own tokenizer, so clients can
// count tokens exactly as the completion routes do.
#pragma once

#include <nlohmann/json.hpp>

#include <string_view>

#include "server/api_error.h"
#include "server/serving_context.h"

namespace anvil::server {

// {"prompt": "..."} or {"messages": [...]} -> {"tokens": [...], "count": n, "max_model_len": m}
ApiResult<nlohmann::json> handle_tokenize(const ServingContext& context, std::string_view body);
// {"tokens": [...]} -> {"prompt": "..."}
ApiResult<nlohmann::json> handle_detokenize(const ServingContext& context, std::string_view body);

}  // namespace anvil::server
