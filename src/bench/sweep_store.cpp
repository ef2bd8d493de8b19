// The sweep output directory: run records, runs.jsonl, and finished-run detection for resuming.
#include "bench/sweep_store.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "bench/bench_report.h"

namespace anvil {

Result<SweepStore> SweepStore::open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(dir) / "runs", ec);
  if (ec) return Status::error(fmt::format("{}: cannot create the output directory: {}", dir, ec.message()));
  return SweepStore(dir);
}

std::string SweepStore::record_path(const std::string& run_id) const { return path("runs/" + run_id + ".json"); }
std::string SweepStore::server_log_path(const std::string& run_id) const { return path("runs/" + run_id + ".server.log"); }
std::string SweepStore::path(const std::string& file_name) const {
  return (std::filesystem::path(dir_) / file_name).string();
}

std::optional<nlohmann::json> SweepStore::load(const std::string& run_id) const {
  std::ifstream in(record_path(run_id));
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json record = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!record.is_object() || record.value("run_id", std::string()) != run_id) return std::nullopt;
  return record;
}

bool SweepStore::is_finished(const std::string& run_id) const {
  std::optional<nlohmann::json> record = load(run_id);
  return record && record->value("status", std::string()) == "ok";
}

Status SweepStore::save(const nlohmann::json& record) {
  const std::string run_id = record.value("run_id", std::string());
  if (run_id.empty()) return Status::error("internal: a sweep record without a run_id");
  const std::string final_path = record_path(run_id), tmp_path = final_path + ".tmp";
  ANVIL_RETURN_IF_ERROR(write_text_file(tmp_path, record.dump(2) + "\n"));
  std::error_code ec;
  std::filesystem::rename(tmp_path, final_path, ec);
  if (ec) return Status::error(fmt::format("{}: cannot write: {}", final_path, ec.message()));

  nlohmann::json summary = record;
  summary.erase("raw");
  const std::string jsonl = path("runs.jsonl");
  std::ofstream out(jsonl, std::ios::app);
  out << summary.dump() << "\n";
  out.flush();
  if (!out) return Status::error(jsonl + ": cannot append");
  return Status::ok();
}

}  // namespace anvil
