// Chat templates: recognition of real templates by their markers, and the rendered formats.
#include <gtest/gtest.h>

#include "tokenizer/chat_template.h"

namespace anvil {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Why?"}};

Vocab vocab_with(const std::string& chat_template) {
  Vocab v;
  v.chat_template = chat_template;
  return v;
}

std::string render(const std::string& name, bool generation_prompt = true) {
  auto text = apply_chat_template(Vocab(), kConversation, generation_prompt, name);
  EXPECT_TRUE(text) << text.status().message();
  return text ? *text : "";
}

TEST(ChatTemplate, RecognizesRealTemplates) {
  // Excerpts of the templates the models ship.
  EXPECT_EQ(detect_chat_template("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                                 "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"),
            "chatml");
  EXPECT_EQ(detect_chat_template("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
                                 "message['content'] | trim + '<|eot_id|>' }}"),
            "llama3");
  EXPECT_EQ(detect_chat_template("{{ bos_token + '[INST] ' + '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}"), "llama2");
  EXPECT_EQ(detect_chat_template("{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + "
                                 "' [/INST]' }}{% endfor %}"),
            "mistral");
  EXPECT_EQ(detect_chat_template("{{'<|' + message['role'] + '|>' + '\\n' + message['content'] + '<|end|>\\n'}}"
                                 "{{ '<|assistant|>\\n' }}"),
            "phi3");
  EXPECT_EQ(detect_chat_template("{{ '<|user|>\\n' + message['content'] + eos_token }}{{ '</s>' }}"), "zephyr");
  EXPECT_EQ(detect_chat_template("{{'<start_of_turn>' + role + '\\n' + message['content'] | trim + "
                                 "'<end_of_turn>\\n'}}"),
            "gemma");
  EXPECT_EQ(detect_chat_template("{{ messages }}"), "");
}

TEST(ChatTemplate, RendersEachFormat) {
  EXPECT_EQ(render("chatml"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
            "Hello!<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render("llama3"),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>"
            "\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user"
            "<|end_header_id|>\n\nWhy?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render("llama2"), "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Why? [/INST]");
  EXPECT_EQ(render("mistral"), "[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] Why? [/INST]");
  EXPECT_EQ(render("phi3"),
            "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nWhy?<|end|>\n"
            "<|assistant|>\n");
  EXPECT_EQ(render("zephyr", false), "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\n"
                                     "Why?</s>\n");
  EXPECT_EQ(render("gemma"),
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
            "<start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n");
}

TEST(ChatTemplate, UsesTheVocabularyTemplateUnlessOverridden) {
  const Vocab chatml = vocab_with("{{ '<|im_start|>' + message['role'] }}");
  auto text = apply_chat_template(chatml, {{"user", "x"}}, true, "");
  ASSERT_TRUE(text) << text.status().message();
  EXPECT_EQ(*text, "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n");
  auto overridden = apply_chat_template(chatml, {{"user", "x"}}, false, "zephyr");
  ASSERT_TRUE(overridden);
  EXPECT_EQ(*overridden, "<|user|>\nx</s>\n");
}

TEST(ChatTemplate, UnknownOrMissingTemplateNamesTheOption) {
  for (const auto& [vocab, override_name] :
       {std::pair{vocab_with("{{ custom }}"), std::string()}, std::pair{Vocab(), std::string()},
        std::pair{Vocab(), std::string("vicuna")}}) {
    auto text = apply_chat_template(vocab, {{"user", "x"}}, true, override_name);
    ASSERT_FALSE(text);
    EXPECT_NE(text.status().message().find("--chat-template"), std::string::npos) << text.status().message();
  }
  auto bad_role = apply_chat_template(Vocab(), {{"tool", "x"}}, true, "chatml");
  ASSERT_FALSE(bad_role);
  EXPECT_NE(bad_role.status().message().find("tool"), std::string::npos);
}

}  // namespace
}  // namespace anvil
