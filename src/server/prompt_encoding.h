// Prompt encoding for the API: text and chat prompts to token ids, the same way for completions,
// chat completions and /tokenize (so usage always matches /tokenize).
#pragma once

#include <string>
#include <vector>

#include "server/api_error.h"
#include "server/openai_protocol.h"
#include "server/serving_context.h"

namespace anvil::server {

// Text as `anvil run --prompt` encodes it: BOS when add_special, and control tokens written in
// the text ("<|im_start|>") become their ids.
ApiResult<std::vector<int32_t>> encode_text_prompt(const ServingContext& context, const std::string& text,
                                                   bool add_special = true);
// A completions prompt: token ids pass through as given; text is encoded as above.
ApiResult<std::vector<int32_t>> encode_prompt(const ServingContext& context, const PromptInput& prompt);
// The conversation rendered by the chat template (--chat-template or the model's own), then encoded.
ApiResult<std::string> render_chat(const ServingContext& context, const std::vector<ChatMessage>& messages,
                                   bool add_generation_prompt);
ApiResult<std::vector<int32_t>> encode_chat(const ServingContext& context, const std::vector<ChatMessage>& messages,
                                            bool add_generation_prompt, bool add_special = true);

}  // namespace anvil::server
