// tokenizer.json (Hugging Face tokenizers) to Vocab: BPE and WordPiece models, the normalizers
// and pre-tokenizers that map onto anvil's algorithms, post-processor BOS/SEP, added tokens.
#include "tokenizer/hf_tokenizer.h"

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "tokenizer/pretokenizer_patterns.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/sentencepiece_text.h"

namespace anvil {
namespace {

using json = nlohmann::json;

// Parses without exceptions; nesting is bounded so hostile files cannot exhaust the stack.
Result<json> parse(const std::string& text, const std::string& source) {
  int max_depth = 0;
  auto guard = [&max_depth](int depth, json::parse_event_t, json&) {
    max_depth = std::max(max_depth, depth);
    return depth <= 64;
  };
  json root = json::parse(text, guard, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Status::error(source + ": not valid JSON");
  if (!root.is_object()) return Status::error(source + ": not a JSON object");
  return root;
}

std::string get_string(const json& object, const char* key, const std::string& fallback = "") {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : fallback;
}
bool get_bool(const json& object, const char* key, bool fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  return it != object.end() && it->is_boolean() ? it->get<bool>() : fallback;
}
// tokenizer_config.json writes tokens as "text" or {"content": "text", ...}.
std::string token_text(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  if (it == object.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  return get_string(*it, "content");
}

// Flattens a "Sequence" of normalizers / pre-tokenizers / post-processors into its parts.
void flatten(const json& node, const char* list_key, std::vector<json>& out) {
  if (!node.is_object()) return;
  if (get_string(node, "type") == "Sequence" && node.contains(list_key) && node[list_key].is_array()) {
    for (const json& child : node[list_key]) flatten(child, list_key, out);
    return;
  }
  out.push_back(node);
}

std::string quote_literal(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

struct Loader {
  std::string source;
  Vocab vocab;
  std::map<std::string, int32_t> added;  // added token text -> id
  bool byte_level = false;  // a ByteLevel pre-tokenizer or decoder

  Status fail(const std::string& message) const { return Status::error(source + ": " + message); }

  int32_t find(const std::string& text) const {
    for (int32_t id = 0; id < vocab.size(); ++id)
      if (vocab.tokens[id] == text) return id;
    return -1;
  }

  Status read_model(const json& model) {
    const std::string type = get_string(model, "type", model.contains("merges") ? "BPE" : "");
    if (type != "BPE" && type != "WordPiece")
      return fail(fmt::format("tokenizer model type '{}' is not supported (anvil reads BPE and WordPiece)", type));
    const json& entries = model.contains("vocab") ? model["vocab"] : json();
    if (!entries.is_object() || entries.empty()) return fail("model.vocab is missing or not an object");
    int64_t size = 0;
    for (const auto& [piece, id] : entries.items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > (1 << 24))
        return fail(fmt::format("model.vocab['{}'] is not a token id", piece));
      size = std::max<int64_t>(size, id.get<int64_t>() + 1);
    }
    vocab.tokens.assign(size, "");
    vocab.token_types.assign(size, static_cast<int32_t>(TokenType::Normal));
    for (const auto& [piece, id] : entries.items()) vocab.tokens[id.get<int64_t>()] = piece;

    if (type == "WordPiece") {
      vocab.model = "bert";
      vocab.add_space_prefix = false;
      vocab.add_bos = false;
      vocab.lowercase = false;
      vocab.strip_accents = false;
      const std::string prefix = get_string(model, "continuing_subword_prefix", "##");
      // llama.cpp's GGUF convention: "▁" marks a word start and continuations are bare.
      for (std::string& piece : vocab.tokens) {
        if (piece.empty()) continue;
        if (!prefix.empty() && piece.size() > prefix.size() && piece.rfind(prefix, 0) == 0) piece.erase(0, prefix.size());
        else piece = std::string(kSpaceMark) + piece;
      }
    } else {
      vocab.model = "gpt2";
      vocab.bpe_byte_fallback = get_bool(model, "byte_fallback", false);
      vocab.bpe_ignore_merges = get_bool(model, "ignore_merges", false);
      const json& merges = model.contains("merges") ? model["merges"] : json::array();
      if (!merges.is_array()) return fail("model.merges is not a list");
      vocab.merges.reserve(merges.size());
      for (const json& m : merges) {
        if (m.is_string()) vocab.merges.push_back(m.get<std::string>());
        else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
          vocab.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
        else return fail("model.merges has an entry that is neither \"a b\" nor [\"a\", \"b\"]");
      }
      for (int32_t id = 0; id < vocab.size(); ++id) {
        const std::string& p = vocab.tokens[id];
        if (vocab.bpe_byte_fallback && p.size() == 6 && p.rfind("<0x", 0) == 0 && p.back() == '>')
          vocab.token_types[id] = static_cast<int32_t>(TokenType::Byte);
      }
    }
    const std::string unk = get_string(model, "unk_token");
    if (!unk.empty()) vocab.unk_id = entries.contains(unk) ? entries[unk].get<int32_t>() : -1;
    return Status::ok();
  }

  Status read_added_tokens(const json& list) {
    if (list.is_null()) return Status::ok();
    if (!list.is_array()) return fail("added_tokens is not a list");
    for (const json& t : list) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
          !t["content"].is_string())
        return fail("added_tokens has an entry without an integer id and a content string");
      const int64_t id = t["id"].get<int64_t>();
      if (id < 0 || id > (1 << 24)) return fail(fmt::format("added token id {} is out of range", id));
      if (id >= vocab.size()) {
        vocab.tokens.resize(id + 1);
        vocab.token_types.resize(id + 1, static_cast<int32_t>(TokenType::Unused));
      }
      const std::string content = t["content"].get<std::string>();
      vocab.tokens[id] = content;
      const bool special = get_bool(t, "special", false);
      vocab.token_types[id] = static_cast<int32_t>(special ? TokenType::Control : TokenType::UserDefined);
      uint8_t attrs = kTokenAttrNone;
      if (get_bool(t, "lstrip", false)) attrs |= kTokenAttrLstrip;
      if (get_bool(t, "rstrip", false)) attrs |= kTokenAttrRstrip;
      if (attrs) {
        vocab.token_attrs.resize(vocab.tokens.size(), kTokenAttrNone);
        vocab.token_attrs[id] = attrs;
      }
      added[content] = static_cast<int32_t>(id);
    }
    if (!vocab.token_attrs.empty()) vocab.token_attrs.resize(vocab.tokens.size(), kTokenAttrNone);
    // Ids no entry names (gaps) stay unused so that they never match or decode.
    for (int32_t id = 0; id < vocab.size(); ++id)
      if (vocab.tokens[id].empty()) {
        vocab.tokens[id] = fmt::format("[UNUSED_{}]", id);
        vocab.token_types[id] = static_cast<int32_t>(TokenType::Unused);
      }
    return Status::ok();
  }

  Status read_normalizer(const json& node) {
    std::vector<json> parts;
    flatten(node, "normalizers", parts);
    bool prepend = false, replace_space = false;
    for (const json& n : parts) {
      const std::string type = get_string(n, "type");
      if (type == "BertNormalizer") {
        vocab.lowercase = get_bool(n, "lowercase", true);
        vocab.strip_accents = n.contains("strip_accents") && n["strip_accents"].is_boolean()
                                  ? n["strip_accents"].get<bool>() : vocab.lowercase;
      } else if (type == "Lowercase" && vocab.model == "bert") {
        vocab.lowercase = true;
      } else if (type == "StripAccents" && vocab.model == "bert") {
        vocab.strip_accents = true;
      } else if (type == "Prepend" && get_string(n, "prepend") == kSpaceMark) {
        prepend = true;
      } else if (type == "Replace" && n.contains("pattern") && get_string(n["pattern"], "String") == " " &&
                 get_string(n, "content") == kSpaceMark) {
        replace_space = true;
      } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
        vocab.unicode_normal_form = type;
      } else {
        return fail(fmt::format("normalizer '{}' is not supported", type));
      }
    }
    if (replace_space) {
      vocab.escape_whitespace = true;
      vocab.add_space_prefix = prepend;
    }
    return Status::ok();
  }

  Status read_pre_tokenizer(const json& node) {
    std::vector<json> parts;
    flatten(node, "pretokenizers", parts);
    for (const json& p : parts) {
      const std::string type = get_string(p, "type");
      if (type == "ByteLevel") {
        byte_level = true;
        if (get_bool(p, "use_regex", true)) vocab.split_regexes.push_back(pretokenizer_regex::kGpt2);
        if (get_bool(p, "add_prefix_space", false))
          return fail("pre-tokenizer ByteLevel with add_prefix_space is not supported");
      } else if (type == "Split") {
        const std::string behavior = get_string(p, "behavior", "Isolated");
        if (behavior != "Isolated" || get_bool(p, "invert", false))
          return fail(fmt::format("pre-tokenizer Split with behavior '{}'{} is not supported (only Isolated)", behavior,
                                  get_bool(p, "invert", false) ? " and invert" : ""));
        const json& pattern = p.contains("pattern") ? p["pattern"] : json();
        if (pattern.contains("Regex") && pattern["Regex"].is_string())
          vocab.split_regexes.push_back(pattern["Regex"].get<std::string>());
        else if (pattern.contains("String") && pattern["String"].is_string())
          vocab.split_regexes.push_back(quote_literal(pattern["String"].get<std::string>()));
        else return fail("pre-tokenizer Split has no Regex or String pattern");
      } else if (type == "Digits") {
        vocab.split_regexes.push_back(get_bool(p, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
      } else if (type == "Metaspace") {
        vocab.escape_whitespace = true;
        const std::string scheme = get_string(p, "prepend_scheme", get_bool(p, "add_prefix_space", true) ? "always" : "never");
        vocab.add_space_prefix = scheme != "never";
        if (get_bool(p, "split", true)) vocab.split_regexes.push_back("\\x{2581}[^\\x{2581}]*|[^\\x{2581}]+");
      } else if (type == "BertPreTokenizer" && vocab.model == "bert") {
        // The WordPiece encoder always splits words the BERT way.
      } else if (type == "Whitespace" && vocab.model == "bert") {
      } else {
        return fail(fmt::format("pre-tokenizer '{}' is not supported for a {} model", type,
                                vocab.model == "bert" ? "WordPiece" : "BPE"));
      }
    }
    return Status::ok();
  }

  // TemplateProcessing / BertProcessing / RobertaProcessing: the tokens around a single text.
  Status read_post_processor(const json& node) {
    std::vector<json> parts;
    flatten(node, "processors", parts);
    for (const json& p : parts) {
      const std::string type = get_string(p, "type");
      if (type == "TemplateProcessing") {
        const json& single = p.contains("single") ? p["single"] : json();
        if (!single.is_array()) continue;
        std::vector<std::string> before, after;
        bool seen_sequence = false;
        for (const json& item : single) {
          if (item.contains("Sequence")) {
            seen_sequence = true;
          } else if (item.contains("SpecialToken")) {
            const std::string id = get_string(item["SpecialToken"], "id");
            (seen_sequence ? after : before).push_back(id);
          }
        }
        if (before.size() > 1 || after.size() > 1) return fail("post-processor template adds more than one token per side");
        if (!before.empty()) {
          vocab.bos_id = resolve(p, before[0]);
          vocab.add_bos = vocab.bos_id >= 0;
        }
        if (!after.empty()) {
          vocab.sep_id = resolve(p, after[0]);
          vocab.add_sep = vocab.sep_id >= 0;
        }
      } else if (type == "BertProcessing" || type == "RobertaProcessing") {
        const json& cls = p.contains("cls") ? p["cls"] : json();
        const json& sep = p.contains("sep") ? p["sep"] : json();
        if (cls.is_array() && cls.size() == 2 && cls[1].is_number_integer()) {
          vocab.bos_id = cls[1].get<int32_t>();
          vocab.add_bos = true;
        }
        if (sep.is_array() && sep.size() == 2 && sep[1].is_number_integer()) {
          vocab.sep_id = sep[1].get<int32_t>();
          vocab.add_sep = true;
        }
      }
    }
    return Status::ok();
  }

  int32_t resolve(const json& processor, const std::string& name) const {
    if (processor.contains("special_tokens") && processor["special_tokens"].contains(name)) {
      const json& ids = processor["special_tokens"][name]["ids"];
      if (ids.is_array() && ids.size() == 1 && ids[0].is_number_integer()) return ids[0].get<int32_t>();
    }
    auto it = added.find(name);
    return it != added.end() ? it->second : find(name);
  }

  void read_config(const json& config) {
    auto id_of = [&](const char* key) {
      const std::string text = token_text(config, key);
      return text.empty() ? -1 : find(text);
    };
    if (int32_t id = id_of("bos_token"); id >= 0) vocab.bos_id = id;
    if (int32_t id = id_of("eos_token"); id >= 0) vocab.eos_id = id;
    if (int32_t id = id_of("unk_token"); id >= 0) vocab.unk_id = id;
    if (int32_t id = id_of("pad_token"); id >= 0) vocab.pad_id = id;
    if (int32_t id = id_of("sep_token"); id >= 0 && vocab.model == "bert") vocab.sep_id = id;
    if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean())
      vocab.add_bos = config["add_bos_token"].get<bool>() && vocab.bos_id >= 0;
    if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean())
      vocab.add_eos = config["add_eos_token"].get<bool>() && vocab.eos_id >= 0;
    auto it = config.find("chat_template");
    if (it != config.end() && it->is_string()) {
      vocab.chat_template = it->get<std::string>();
    } else if (it != config.end() && it->is_array()) {
      for (const json& item : *it)
        if (get_string(item, "name") == "default" || vocab.chat_template.empty())
          vocab.chat_template = get_string(item, "template", vocab.chat_template);
    }
  }
};

}  // namespace

Result<Vocab> parse_hf_tokenizer(const std::string& tokenizer_json, const std::string& config_json,
                                 const std::string& source) {
  ANVIL_ASSIGN_OR_RETURN(json root, parse(tokenizer_json, source));
  Loader loader;
  loader.source = source;
  loader.vocab.add_bos = false;
  loader.vocab.add_space_prefix = false;
  if (!root.contains("model") || !root["model"].is_object()) return loader.fail("no \"model\" object");
  ANVIL_RETURN_IF_ERROR(loader.read_model(root["model"]));
  ANVIL_RETURN_IF_ERROR(loader.read_added_tokens(root.value("added_tokens", json())));
  ANVIL_RETURN_IF_ERROR(loader.read_normalizer(root.value("normalizer", json())));
  ANVIL_RETURN_IF_ERROR(loader.read_pre_tokenizer(root.value("pre_tokenizer", json())));
  ANVIL_RETURN_IF_ERROR(loader.read_post_processor(root.value("post_processor", json())));
  if (get_string(root.value("decoder", json()), "type") == "ByteLevel") loader.byte_level = true;
  Vocab& v = loader.vocab;
  v.bpe_byte_level = v.model == "gpt2" && loader.byte_level;
  if (v.model == "gpt2" && v.bpe_byte_level) {
    // Name the family when the regexes are a known one, so the vocabulary converts to GGUF's
    // tokenizer.ggml.pre; with no regex at all the whole text is one pre-token.
    for (const char* family : {"gpt-2", "llama-bpe", "qwen2", "starcoder", "deepseek-llm", "deepseek-coder",
                               "deepseek-v3", "falcon", "gpt-4o", "tekken", "bloom", "seed-coder"}) {
      Result<PreTokenizerSpec> spec = pretokenizer_for(family);
      if (spec && spec->regexes == v.split_regexes) {
        v.pre = family;
        break;
      }
    }
    if (v.split_regexes.empty()) v.split_regexes.push_back("[\\s\\S]+");
  }
  if (loader.vocab.model == "bert") {
    if (loader.vocab.unk_id < 0) loader.vocab.unk_id = loader.find("[UNK]");
    if (loader.vocab.sep_id < 0) loader.vocab.sep_id = loader.find("[SEP]");
  }
  if (!config_json.empty()) {
    const std::string config_source = source + " (tokenizer_config.json)";
    ANVIL_ASSIGN_OR_RETURN(json config, parse(config_json, config_source));
    loader.read_config(config);
  }
  return std::move(loader.vocab);
}

Result<Vocab> load_hf_tokenizer(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string path = (fs::path(dir) / "tokenizer.json").string();
  const std::string spm_path = (fs::path(dir) / "tokenizer.model").string();
  const bool has_json = fs::exists(path, ec);
  // Older Llama/Mistral checkpoints ship only SentencePiece's tokenizer.model.
  if (!has_json && !fs::exists(spm_path, ec)) return Vocab();
  std::string config;
  const std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();
  if (fs::exists(config_path, ec)) {
    ANVIL_ASSIGN_OR_RETURN(config, read_text_file(config_path));
  }
  if (!has_json) {
    Loader loader;
    loader.source = spm_path;
    ANVIL_ASSIGN_OR_RETURN(loader.vocab, load_sentencepiece_model(spm_path));
    if (!config.empty()) {
      ANVIL_ASSIGN_OR_RETURN(json parsed, parse(config, config_path));
      loader.read_config(parsed);
    }
    return std::move(loader.vocab);
  }
  ANVIL_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  return parse_hf_tokenizer(text, config, path);
}

}  // namespace anvil
