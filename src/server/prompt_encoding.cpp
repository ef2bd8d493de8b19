// Text and chat prompts to token ids, with errors an API client can act on.
#include "server/prompt_encoding.h"

#include "tokenizer/chat_template.h"

namespace anvil::server {
namespace {

ApiError no_tokenizer(const ServingContext& context) {
  return ApiError::invalid("the model '" + context.display_name() +
                               "' carries no tokenizer anvil can run; send the prompt as token ids",
                           "prompt");
}

}  // namespace

ApiResult<std::vector<int32_t>> encode_text_prompt(const ServingContext& context, const std::string& text,
                                                   bool add_special) {
  if (context.tokenizer == nullptr) return no_tokenizer(context);
  Result<std::vector<int32_t>> ids = context.tokenizer->encode(text, add_special, /*parse_special=*/true);
  if (!ids) return ApiError::invalid("cannot tokenize the prompt: " + ids.status().message(), "prompt");
  return std::move(ids).value();
}

ApiResult<std::vector<int32_t>> encode_prompt(const ServingContext& context, const PromptInput& prompt) {
  if (prompt.is_tokens) return prompt.tokens;
  return encode_text_prompt(context, prompt.text);
}

ApiResult<std::string> render_chat(const ServingContext& context, const std::vector<ChatMessage>& messages,
                                   bool add_generation_prompt) {
  if (context.tokenizer == nullptr) return ApiError::invalid(no_tokenizer(context).message, "messages");
  Result<std::string> text =
      apply_chat_template(context.tokenizer->vocab(), messages, add_generation_prompt, context.chat_template);
  if (!text) return ApiError::invalid(text.status().message(), "messages");
  return std::move(text).value();
}

ApiResult<std::vector<int32_t>> encode_chat(const ServingContext& context, const std::vector<ChatMessage>& messages,
                                            bool add_generation_prompt, bool add_special) {
  ApiResult<std::string> text = render_chat(context, messages, add_generation_prompt);
  if (!text) return text.error();
  ApiResult<std::vector<int32_t>> ids = encode_text_prompt(context, *text, add_special);
  if (!ids) return ApiError::invalid(ids.error().message, "messages");
  return ids;
}

}  // namespace anvil::server
