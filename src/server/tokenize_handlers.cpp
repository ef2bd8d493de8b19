// /tokenize and /detokenize over the same prompt encoding the completion routes use.
#include "server/tokenize_handlers.h"

#include <fmt/format.h>

#include "server/openai_protocol.h"
#include "server/prompt_encoding.h"

namespace anvil::server {

ApiResult<nlohmann::json> handle_tokenize(const ServingContext& context, std::string_view body) {
  ApiResult<nlohmann::json> json = parse_json_body(body);
  if (!json) return json.error();
  ApiResult<TokenizeRequest> request = parse_tokenize_request(*json);
  if (!request) return request.error();
  if (std::optional<ApiError> error = check_model_name(request->model, context.served_names)) return *error;
  ApiResult<std::vector<int32_t>> ids =
      request->is_chat ? encode_chat(context, request->messages, request->add_generation_prompt,
                                     request->add_special_tokens)
                       : encode_text_prompt(context, request->prompt, request->add_special_tokens);
  if (!ids) return ids.error();
  const int64_t count = static_cast<int64_t>(ids->size());
  return nlohmann::json{{"tokens", std::move(ids).value()}, {"count", count},
                        {"max_model_len", context.limits.context_length}};
}

ApiResult<nlohmann::json> handle_detokenize(const ServingContext& context, std::string_view body) {
  ApiResult<nlohmann::json> json = parse_json_body(body);
  if (!json) return json.error();
  ApiResult<DetokenizeRequest> request = parse_detokenize_request(*json);
  if (!request) return request.error();
  if (std::optional<ApiError> error = check_model_name(request->model, context.served_names)) return *error;
  if (context.tokenizer == nullptr)
    return ApiError::invalid("the model '" + context.display_name() + "' carries no tokenizer anvil can run",
                             "tokens");
  for (int32_t id : request->tokens)
    if (id >= context.limits.vocab_size)
      return ApiError::invalid(fmt::format("token id {} is outside the vocabulary (0..{})", id,
                                           context.limits.vocab_size - 1),
                               "tokens");
  return nlohmann::json{{"prompt", context.tokenizer->decode(request->tokens)}};
}

}  // namespace anvil::server
