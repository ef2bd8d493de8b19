// Chat templates: format a conversation the way a chat model was trained to read it.
#pragma once

#include <string>
#include <vector>

#include "anvil/status.h"
#include "tokenizer/vocab.h"

namespace anvil {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The built-in formats, by the names --chat-template accepts.
const std::vector<std::string>& chat_template_names();

// Recognizes the family of a Jinja chat template (tokenizer.chat_template / chat_template in
// tokenizer_config.json) by its markers; "" when it is none of the built-in formats.
std::string detect_chat_template(const std::string& template_text);

// Renders `messages`, then the assistant header when add_generation_prompt is set. The format is
// `template_override` (a name from chat_template_names(), or a template text to recognize) when
// given, else the vocabulary's own template. The leading BOS is left out: encoding with special
// tokens adds it; encode the result with parse_special so the markers become their tokens.
Result<std::string> apply_chat_template(const Vocab& vocab, const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt, const std::string& template_override);

}  // namespace anvil
