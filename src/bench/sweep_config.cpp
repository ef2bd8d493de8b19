// Validation of a sweep configuration document (keys, types, ranges, axes anvil cannot run yet).
#include "bench/sweep_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <set>

#include "bench/sweep_config_file.h"
#include "bench/sweep_placeholders.h"
#include "core/dtype.h"
#include "model/kv_store.h"
#include "quant/online_quantization.h"

namespace anvil {
namespace {

using nlohmann::json;

const std::vector<std::string> kGroupKeys = {"name",       "models",          "weight_schemes", "kv_dtypes",
                                             "threads",    "tensor_parallel", "gemm_tuning",    "max_batch",
                                             "workload",   "server",          "price_per_hour", "instance"};
const std::vector<std::string> kTopLevelOnlyKeys = {"instances", "configs"};
const std::vector<std::string> kWorkloadKeys = {"input_len", "output_len",  "num_iters", "num_iters_warmup",
                                                "num_prompts", "batch_sizes", "concurrency", "seed"};
const std::vector<std::string> kServerKeys = {"command", "health", "startup_timeout_s", "stop_grace_s"};
const std::vector<std::string> kWeightSchemes = {"native", "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"};

std::string join(const std::vector<std::string>& items) {
  return fmt::format("{}", fmt::join(items, ", "));
}

std::string lower(std::string text) {
  for (char& ch : text) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return text;
}

std::string where_key(const std::string& where, const std::string& key) {
  return where.empty() ? key : where + "." + key;
}

Status bad(const std::string& where, const std::string& problem) {
  return Status::error(where.empty() ? problem : where + ": " + problem);
}

// Rejects keys outside `known` (with a hint when only a plural 's' is off).
Status check_keys(const json& object, const std::vector<std::string>& known, const std::string& where) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string hint;
    for (const std::string& k : known)
      if (k == key + "s" || key == k + "s") hint = fmt::format(" (did you mean '{}'?)", k);
    return bad(where, fmt::format("unknown key '{}'{}; known keys: {}", key, hint, join(known)));
  }
  return Status::ok();
}

std::string type_name(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return fmt::format("the text '{}'", v.get<std::string>());
  if (v.is_array()) return "a list";
  return "a mapping";
}

Result<int64_t> to_int(const json& v, const std::string& where, int64_t lo, int64_t hi) {
  int64_t n = 0;
  if (v.is_number_integer()) {
    n = v.get<int64_t>();
  } else if (v.is_number_float() && std::isfinite(v.get<double>()) && v.get<double>() == std::floor(v.get<double>()) &&
             std::fabs(v.get<double>()) < 9e15) {
    n = static_cast<int64_t>(v.get<double>());
  } else {
    return bad(where, fmt::format("expected a whole number, got {}", type_name(v)));
  }
  if (n < lo || n > hi) return bad(where, fmt::format("{} is out of range [{}, {}]", n, lo, hi));
  return n;
}

Result<double> to_number(const json& v, const std::string& where) {
  if (!v.is_number() || !std::isfinite(v.get<double>()))
    return bad(where, fmt::format("expected a number, got {}", type_name(v)));
  return v.get<double>();
}

Result<std::string> to_text(const json& v, const std::string& where) {
  if (!v.is_string()) return bad(where, fmt::format("expected text, got {}", type_name(v)));
  if (v.get<std::string>().empty()) return bad(where, "must not be empty");
  return v.get<std::string>();
}

// An axis: a list, or one scalar standing for a list of one.
template <typename T, typename Convert>
Result<std::vector<T>> to_list(const json& v, const std::string& where, Convert&& convert) {
  std::vector<json> items;
  if (v.is_array()) {
    items.assign(v.begin(), v.end());
  } else {
    items.push_back(v);
  }
  if (items.empty()) return bad(where, "the list is empty");
  std::vector<T> out;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string item_where = v.is_array() ? fmt::format("{}[{}]", where, i) : where;
    ANVIL_ASSIGN_OR_RETURN(T value, convert(items[i], item_where));
    if (std::find(out.begin(), out.end(), value) != out.end())
      return bad(item_where, "appears twice in the list");
    out.push_back(std::move(value));
  }
  return out;
}

Result<std::vector<int64_t>> to_positive_list(const json& v, const std::string& where) {
  return to_list<int64_t>(v, where, [](const json& x, const std::string& w) { return to_int(x, w, 1, 1 << 20); });
}

Result<SweepWorkload> parse_workload(const json& v, const std::string& where) {
  SweepWorkload w;
  if (v.is_null()) return w;
  if (!v.is_object()) return bad(where, fmt::format("expected a mapping, got {}", type_name(v)));
  ANVIL_RETURN_IF_ERROR(check_keys(v, kWorkloadKeys, where));
  auto key = [&](const char* k) { return where_key(where, k); };
  if (v.contains("input_len")) { ANVIL_ASSIGN_OR_RETURN(w.input_len, to_int(v["input_len"], key("input_len"), 1, 1 << 24)); }
  if (v.contains("output_len")) {
    ANVIL_ASSIGN_OR_RETURN(w.output_len, to_int(v["output_len"], key("output_len"), 1, 1 << 24));
    if (w.output_len < 2)
      return bad(key("output_len"), "must be at least 2: ms/token is measured between output tokens");
  }
  if (v.contains("num_iters")) {
    ANVIL_ASSIGN_OR_RETURN(int64_t n, to_int(v["num_iters"], key("num_iters"), 1, 100000));
    w.num_iters = static_cast<int>(n);
  }
  if (v.contains("num_iters_warmup")) {
    ANVIL_ASSIGN_OR_RETURN(int64_t n, to_int(v["num_iters_warmup"], key("num_iters_warmup"), 0, 100000));
    w.num_iters_warmup = static_cast<int>(n);
  }
  if (v.contains("num_prompts")) {
    ANVIL_ASSIGN_OR_RETURN(w.num_prompts, to_int(v["num_prompts"], key("num_prompts"), 1, int64_t{1} << 24));
  }
  if (v.contains("batch_sizes")) { ANVIL_ASSIGN_OR_RETURN(w.batch_sizes, to_positive_list(v["batch_sizes"], key("batch_sizes"))); }
  if (v.contains("concurrency")) { ANVIL_ASSIGN_OR_RETURN(w.concurrency, to_positive_list(v["concurrency"], key("concurrency"))); }
  if (v.contains("seed")) {
    ANVIL_ASSIGN_OR_RETURN(int64_t seed, to_int(v["seed"], key("seed"), 0, int64_t{1} << 53));
    w.seed = static_cast<uint64_t>(seed);
  }
  return w;
}

Result<std::optional<SweepServerTemplate>> parse_server(const json& v, const std::string& where) {
  if (v.is_null()) return std::optional<SweepServerTemplate>();
  if (!v.is_object()) return bad(where, fmt::format("expected a mapping with a command, got {}", type_name(v)));
  ANVIL_RETURN_IF_ERROR(check_keys(v, kServerKeys, where));
  SweepServerTemplate s;
  if (!v.contains("command")) return bad(where, "needs a command (\"anvil serve --model {model} --port {port}\")");
  ANVIL_ASSIGN_OR_RETURN(s.command, to_text(v["command"], where_key(where, "command")));
  Result<std::vector<std::string>> names = placeholder_names_in(s.command);
  if (!names) return bad(where_key(where, "command"), names.status().message());
  for (const std::string& name : *names) {
    const std::vector<std::string>& known = sweep_placeholder_names();
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::vector<std::string> braced;
      for (const std::string& k : known) braced.push_back("{" + k + "}");
      return bad(where_key(where, "command"), fmt::format("unknown placeholder {{{}}}; known: {}", name, join(braced)));
    }
  }
  if (std::find(names->begin(), names->end(), "port") == names->end())
    return bad(where_key(where, "command"), "must pass {port} to the server: the sweep picks a free port per run");
  if (v.contains("health")) {
    ANVIL_ASSIGN_OR_RETURN(s.health, to_text(v["health"], where_key(where, "health")));
    if (s.health[0] != '/') return bad(where_key(where, "health"), "must be a path starting with '/', like /health");
  }
  for (auto [name, field] : {std::pair{"startup_timeout_s", &s.startup_timeout_s}, std::pair{"stop_grace_s", &s.stop_grace_s}}) {
    if (!v.contains(name)) continue;
    ANVIL_ASSIGN_OR_RETURN(*field, to_number(v[name], where_key(where, name)));
    if (*field <= 0 || *field > 86400) return bad(where_key(where, name), "must be in (0, 86400] seconds");
  }
  return std::optional<SweepServerTemplate>(s);
}

// A server run only differs from its neighbours through what the command passes on.
Status check_axes_reach_server(const SweepGroup& g, const std::string& where) {
  Result<std::vector<std::string>> names = placeholder_names_in(g.server->command);
  auto uses = [&](const char* name) { return std::find(names->begin(), names->end(), name) != names->end(); };
  auto check = [&](size_t count, const char* axis, bool used, const char* placeholder) {
    if (count > 1 && !used)
      return bad(where_key(where, axis), fmt::format("{} values, but the server command has no {}: the runs would "
                                                     "measure the same server",
                                                     count, placeholder));
    return Status::ok();
  };
  ANVIL_RETURN_IF_ERROR(check(g.models.size(), "models", uses("model"), "{model}"));
  ANVIL_RETURN_IF_ERROR(check(g.weight_schemes.size(), "weight_schemes", uses("model") || uses("quant") || uses("quantization"),
                              "{model}, {quant} or {quantization}"));
  ANVIL_RETURN_IF_ERROR(check(g.kv_dtypes.size(), "kv_dtypes", uses("kv_dtype"), "{kv_dtype}"));
  ANVIL_RETURN_IF_ERROR(check(g.threads.size(), "threads", uses("threads"), "{threads}"));
  return Status::ok();
}

Result<SweepGroup> parse_group(const json& v, const std::string& where, const std::map<std::string, double>& instances) {
  SweepGroup g;
  auto key = [&](const char* k) { return where_key(where, k); };
  if (!v.contains("models") || v["models"].is_null())
    return bad(where, "no models: give at least one, e.g. models: [dummy:tiny-llama]");
  ANVIL_ASSIGN_OR_RETURN(g.models, to_list<std::string>(v["models"], key("models"), to_text));

  if (v.contains("weight_schemes")) {
    ANVIL_ASSIGN_OR_RETURN(g.weight_schemes, to_list<std::string>(v["weight_schemes"], key("weight_schemes"),
                                                                  [](const json& x, const std::string& w) -> Result<std::string> {
      ANVIL_ASSIGN_OR_RETURN(std::string s, to_text(x, w));
      s = lower(s);
      if (std::find(kWeightSchemes.begin(), kWeightSchemes.end(), s) == kWeightSchemes.end() && !is_scaled_scheme(s))
        return bad(w, fmt::format("weight scheme '{}' is not one anvil runs ({}, or fp8, fp8-dynamic, w8a8, "
                                  "w4a16-rtn[:g32,asym] applied at load)",
                                  s, join(kWeightSchemes)));
      return s;
    }));
  }
  if (v.contains("kv_dtypes")) {
    ANVIL_ASSIGN_OR_RETURN(g.kv_dtypes, to_list<std::string>(v["kv_dtypes"], key("kv_dtypes"),
                                                             [](const json& x, const std::string& w) -> Result<std::string> {
      ANVIL_ASSIGN_OR_RETURN(std::string s, to_text(x, w));
      s = lower(s);
      if (!kv_cache_dtype_from_name(s))
        return bad(w, fmt::format("'{}' is not a KV cache dtype the engine runs (f32, f16, bf16, fp8, int8)", s));
      return s;
    }));
  }
  if (v.contains("threads")) {
    ANVIL_ASSIGN_OR_RETURN(g.threads, to_list<int>(v["threads"], key("threads"), [](const json& x, const std::string& w) -> Result<int> {
      ANVIL_ASSIGN_OR_RETURN(int64_t n, to_int(x, w, 0, 1024));
      return static_cast<int>(n);
    }));
  }
  if (v.contains("tensor_parallel")) {
    ANVIL_ASSIGN_OR_RETURN(g.tensor_parallel, to_list<int>(v["tensor_parallel"], key("tensor_parallel"),
                                                           [](const json& x, const std::string& w) -> Result<int> {
      ANVIL_ASSIGN_OR_RETURN(int64_t n, to_int(x, w, 1, 4096));
      if (n > 1) return bad(w, fmt::format("{}: tensor parallelism is not available yet; use 1", n));
      return static_cast<int>(n);
    }));
  }
  if (v.contains("gemm_tuning")) {
    ANVIL_ASSIGN_OR_RETURN(g.gemm_tuning, to_list<bool>(v["gemm_tuning"], key("gemm_tuning"),
                                                        [](const json& x, const std::string& w) -> Result<bool> {
      if (!x.is_boolean()) return bad(w, fmt::format("expected true or false, got {}", type_name(x)));
      if (x.get<bool>()) return bad(w, "true: there is no GEMM tuner yet (anvil tune gemm); use false");
      return false;
    }));
  }
  if (v.contains("max_batch") && !v["max_batch"].is_null()) {
    ANVIL_ASSIGN_OR_RETURN(g.max_batch, to_int(v["max_batch"], key("max_batch"), 1, 1 << 20));
  }
  ANVIL_ASSIGN_OR_RETURN(g.workload, parse_workload(v.value("workload", json()), key("workload")));
  ANVIL_ASSIGN_OR_RETURN(g.server, parse_server(v.value("server", json()), key("server")));
  if (g.server) {
    ANVIL_RETURN_IF_ERROR(check_axes_reach_server(g, where));
  } else if (g.max_batch > 0) {
    const int64_t largest = *std::max_element(g.workload.batch_sizes.begin(), g.workload.batch_sizes.end());
    if (largest > g.max_batch)
      return bad(key("max_batch"), fmt::format("{} is below the largest batch size {}: a batch must run at once",
                                               g.max_batch, largest));
  }

  const bool has_price = v.contains("price_per_hour") && !v["price_per_hour"].is_null();
  const bool has_instance = v.contains("instance") && !v["instance"].is_null();
  if (has_price && has_instance)
    return bad(where, "give price_per_hour or instance, not both");
  if (has_price) {
    ANVIL_ASSIGN_OR_RETURN(double price, to_number(v["price_per_hour"], key("price_per_hour")));
    if (price <= 0) return bad(key("price_per_hour"), "must be a positive $/hour");
    g.usd_per_hour = price;
  }
  if (has_instance) {
    ANVIL_ASSIGN_OR_RETURN(g.instance, to_text(v["instance"], key("instance")));
    auto it = instances.find(g.instance);
    if (it == instances.end()) {
      std::vector<std::string> known;
      for (const auto& [name, price] : instances) known.push_back(name);
      return bad(key("instance"), fmt::format("'{}' is not in the instances table ({})", g.instance,
                                              known.empty() ? std::string("the table is empty") : "known: " + join(known)));
    }
    g.usd_per_hour = it->second;
  }
  return g;
}

// defaults + entry: the entry's keys win; workload and server merge key by key; a price or
// instance in the entry replaces both of the defaults'.
json merge_group(const json& defaults, const json& entry) {
  json merged = defaults;
  if (entry.contains("price_per_hour") || entry.contains("instance")) {
    merged.erase("price_per_hour");
    merged.erase("instance");
  }
  for (const auto& [key, value] : entry.items()) {
    if ((key == "workload" || key == "server") && value.is_object() && merged.contains(key) && merged[key].is_object()) {
      for (const auto& [k, v] : value.items()) merged[key][k] = v;
    } else {
      merged[key] = value;
    }
  }
  return merged;
}

Result<SweepConfig> parse(const json& doc, const std::string& source) {
  if (!doc.is_object())
    return Status::error(fmt::format("expected a mapping at the top (models, workload, ...), got {}", type_name(doc)));
  std::vector<std::string> top_keys = kGroupKeys;
  top_keys.insert(top_keys.end(), kTopLevelOnlyKeys.begin(), kTopLevelOnlyKeys.end());
  ANVIL_RETURN_IF_ERROR(check_keys(doc, top_keys, ""));
  for (const char* k : {"workload", "server"})
    if (doc.contains(k) && !doc[k].is_null() && !doc[k].is_object())
      return bad(k, fmt::format("expected a mapping, got {}", type_name(doc[k])));

  SweepConfig config;
  config.source = source;
  config.name = std::filesystem::path(source).stem().string();
  if (doc.contains("name")) { ANVIL_ASSIGN_OR_RETURN(config.name, to_text(doc["name"], "name")); }
  if (doc.contains("instances") && !doc["instances"].is_null()) {
    const json& table = doc["instances"];
    if (!table.is_object())
      return bad("instances", "expected a mapping of instance name to $/hour, e.g. {c7i.2xlarge: 0.357}");
    for (const auto& [name, price] : table.items()) {
      ANVIL_ASSIGN_OR_RETURN(double usd, to_number(price, "instances." + name));
      if (usd <= 0) return bad("instances." + name, "must be a positive $/hour");
      config.instances[name] = usd;
    }
  }

  json defaults = doc;
  for (const char* k : {"name", "instances", "configs"}) defaults.erase(k);
  if (!doc.contains("configs")) {
    ANVIL_ASSIGN_OR_RETURN(SweepGroup g, parse_group(defaults, "", config.instances));
    g.name = config.name;
    config.groups.push_back(std::move(g));
    return config;
  }
  const json& entries = doc["configs"];
  if (!entries.is_array() || entries.empty())
    return bad("configs", "expected a non-empty list of configurations");
  std::set<std::string> names;
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string where = fmt::format("configs[{}]", i);
    if (!entries[i].is_object()) return bad(where, fmt::format("expected a mapping, got {}", type_name(entries[i])));
    ANVIL_RETURN_IF_ERROR(check_keys(entries[i], kGroupKeys, where));
    for (const char* k : {"workload", "server"})
      if (entries[i].contains(k) && !entries[i][k].is_null() && !entries[i][k].is_object())
        return bad(where_key(where, k), fmt::format("expected a mapping, got {}", type_name(entries[i][k])));
    std::string name = fmt::format("config-{}", i + 1);
    if (entries[i].contains("name")) { ANVIL_ASSIGN_OR_RETURN(name, to_text(entries[i]["name"], where + ".name")); }
    const std::string named_where = fmt::format("{} ({})", where, name);
    if (!names.insert(name).second) return bad(named_where, "another configuration has the same name");
    ANVIL_ASSIGN_OR_RETURN(SweepGroup g, parse_group(merge_group(defaults, entries[i]), named_where, config.instances));
    g.name = name;
    config.groups.push_back(std::move(g));
  }
  return config;
}

}  // namespace

const std::vector<std::string>& sweep_placeholder_names() {
  static const std::vector<std::string> names = {"model",     "quant",   "quantization", "port", "tp",
                                                 "max_batch", "threads", "kv_dtype",     "anvil"};
  return names;
}

Result<SweepConfig> parse_sweep_config(const nlohmann::json& document, const std::string& source) {
  Result<SweepConfig> config = parse(document, source);
  if (!config) return config.status().with_context(source);
  return config;
}

Result<SweepConfig> load_sweep_config(const std::string& path) {
  ANVIL_ASSIGN_OR_RETURN(nlohmann::json document, read_config_document(path));
  return parse_sweep_config(document, path);
}

}  // namespace anvil
