// The chat formats of Llama 2, Llama 3/3.1, Mistral, ChatML (Qwen), Phi-3, Zephyr and Gemma,
// written out in code; a model's Jinja template is mapped to one of them by its markers.
#include "tokenizer/chat_template.h"

#include <fmt/format.h>

#include <algorithm>

namespace anvil {
namespace {

bool contains(const std::string& text, const char* marker) { return text.find(marker) != std::string::npos; }

std::string trim(const std::string& s) {
  const size_t begin = s.find_first_not_of(" \t\n\r");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\n\r") - begin + 1);
}

std::string join_names() {
  std::string out;
  for (const std::string& name : chat_template_names()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// Formats without a system role fold the system prompt into the first user message.
std::vector<ChatMessage> fold_system(const std::vector<ChatMessage>& messages, const std::string& separator) {
  std::vector<ChatMessage> out;
  std::string system;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      system += (system.empty() ? "" : "\n") + m.content;
      continue;
    }
    out.push_back(m);
    if (m.role == "user" && !system.empty()) {
      out.back().content = system + separator + m.content;
      system.clear();
    }
  }
  return out;
}

std::string render(const std::string& name, const std::vector<ChatMessage>& messages, bool generation_prompt) {
  std::string out;
  if (name == "chatml") {
    for (const ChatMessage& m : messages) out += fmt::format("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content);
    if (generation_prompt) out += "<|im_start|>assistant\n";
  } else if (name == "llama3") {
    for (const ChatMessage& m : messages)
      out += fmt::format("<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>", m.role, trim(m.content));
    if (generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  } else if (name == "llama2") {
    // "[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] next [/INST]"
    bool first = true;
    for (const ChatMessage& m : messages) {
      if (m.role == "user") {
        out += first ? "" : "<s>";
        out += "[INST] " + trim(m.content) + " [/INST]";
        first = false;
      } else if (m.role == "assistant") {
        out += " " + trim(m.content) + " </s>";
      }
    }
    // Llama 2 puts the system prompt in <<SYS>> markers inside the first [INST].
    for (const ChatMessage& m : messages)
      if (m.role == "system") {
        const size_t at = out.find("[INST] ");
        if (at != std::string::npos) out.insert(at + 7, "<<SYS>>\n" + trim(m.content) + "\n<</SYS>>\n\n");
        break;
      }
  } else if (name == "mistral") {
    for (const ChatMessage& m : fold_system(messages, "\n\n")) {
      if (m.role == "user") out += "[INST] " + m.content + " [/INST]";
      else if (m.role == "assistant") out += m.content + "</s>";
    }
  } else if (name == "phi3") {
    for (const ChatMessage& m : messages) out += fmt::format("<|{}|>\n{}<|end|>\n", m.role, m.content);
    if (generation_prompt) out += "<|assistant|>\n";
  } else if (name == "zephyr") {
    for (const ChatMessage& m : messages) out += fmt::format("<|{}|>\n{}</s>\n", m.role, m.content);
    if (generation_prompt) out += "<|assistant|>\n";
  } else if (name == "gemma") {
    for (const ChatMessage& m : fold_system(messages, "\n\n"))
      out += fmt::format("<start_of_turn>{}\n{}<end_of_turn>\n", m.role == "assistant" ? "model" : m.role,
                         trim(m.content));
    if (generation_prompt) out += "<start_of_turn>model\n";
  }
  return out;
}

}  // namespace

const std::vector<std::string>& chat_template_names() {
  static const std::vector<std::string> names = {"llama2", "llama3", "mistral", "chatml", "phi3", "zephyr", "gemma"};
  return names;
}

std::string detect_chat_template(const std::string& t) {
  if (contains(t, "<|im_start|>")) return "chatml";
  if (contains(t, "<|start_header_id|>") && contains(t, "<|end_header_id|>")) return "llama3";
  if (contains(t, "<start_of_turn>")) return "gemma";
  if (contains(t, "<|assistant|>") && contains(t, "<|end|>")) return "phi3";
  if (contains(t, "<|user|>") && contains(t, "</s>")) return "zephyr";
  if (contains(t, "[INST]") && contains(t, "<<SYS>>")) return "llama2";
  if (contains(t, "[INST]")) return "mistral";
  return "";
}

Result<std::string> apply_chat_template(const Vocab& vocab, const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt, const std::string& template_override) {
  std::string name;
  if (!template_override.empty()) {
    const auto& names = chat_template_names();
    name = std::find(names.begin(), names.end(), template_override) != names.end()
               ? template_override : detect_chat_template(template_override);
    if (name.empty())
      return Status::error(fmt::format("--chat-template '{}' is not a known chat format (known: {})",
                                       template_override.substr(0, 60), join_names()));
  } else if (vocab.chat_template.empty()) {
    return Status::error(fmt::format("this model carries no chat template; choose one with --chat-template ({})",
                                     join_names()));
  } else {
    name = detect_chat_template(vocab.chat_template);
    if (name.empty())
      return Status::error(fmt::format("the model's chat template is not one anvil recognizes; choose a format "
                                       "with --chat-template ({})", join_names()));
  }
  for (const ChatMessage& m : messages)
    if (m.role != "system" && m.role != "user" && m.role != "assistant")
      return Status::error(fmt::format("chat message role '{}' is not system, user or assistant", m.role));
  return render(name, messages, add_generation_prompt);
}

}  // namespace anvil
