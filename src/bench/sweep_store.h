// A sweep's output directory: one JSON record per run (runs/<id>.json, named by the run's stable
// id), runs.jsonl (one line per run as it ends), server logs, and the report files. A run whose
// record says "ok" is finished: a re-run skips it.
//
//   DIR/runs/<id>.json         the run's record (bench/sweep_record.h)
//   DIR/runs/<id>.server.log   stdout + stderr of a server run's command (its latest attempt)
//   DIR/runs.jsonl             the records without their raw bench reports, appended in run order
//   DIR/report.md, report.json, pareto.svg
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "anvil/status.h"

namespace anvil {

class SweepStore {
 public:
  // The store at DIR, which may not exist yet (a dry run only looks).
  explicit SweepStore(std::string dir) : dir_(std::move(dir)) {}
  // Creates DIR and DIR/runs when missing.
  static Result<SweepStore> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::string record_path(const std::string& run_id) const;
  std::string server_log_path(const std::string& run_id) const;
  std::string path(const std::string& file_name) const;  // DIR/file_name

  // The stored record of `run_id`; none when there is none (or it is not a readable record of that id).
  std::optional<nlohmann::json> load(const std::string& run_id) const;
  bool is_finished(const std::string& run_id) const;
  // Writes the record (to a temporary file, then renamed, so an interrupted write leaves no
  // half record) and appends its summary (the record without "raw") to runs.jsonl.
  Status save(const nlohmann::json& record);

 private:
  std::string dir_;
};

}  // namespace anvil
