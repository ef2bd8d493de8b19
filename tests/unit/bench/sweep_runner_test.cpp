// Running sweeps: records in the output directory, resuming (finished runs skipped, failed ones
// retried, --force re-runs), interruption, and the server process wrapper with plain shell commands.
#include "bench/sweep_runner.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <signal.h>

#include "bench/sweep_config_file.h"
#include "bench/sweep_record.h"
#include "bench/sweep_server.h"
#include "test_paths.h"

namespace anvil {
namespace {

std::vector<SweepRun> tiny_runs(const std::string& extra = "", const std::string& kv_dtypes = "[f16, bf16]") {
  Result<nlohmann::json> doc = yaml_to_json(
      "models: [dummy:tiny-llama]\nkv_dtypes: " + kv_dtypes + "\nthreads: [1]\n"
      "workload: {input_len: 4, output_len: 2, batch_sizes: [1, 2], num_iters: 1, num_iters_warmup: 0}\n" + extra,
      "s.yaml");
  EXPECT_TRUE(doc);
  Result<SweepConfig> config = parse_sweep_config(*doc, "s.yaml");
  EXPECT_TRUE(config) << config.status().message();
  Result<std::vector<SweepRun>> runs = expand_sweep(*config, SweepExpandOptions{1});
  EXPECT_TRUE(runs) << runs.status().message();
  return *runs;
}

size_t lines_in(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += !line.empty();
  return n;
}

TEST(SweepRunner, RecordsEveryRunAndSkipsFinishedOnesOnResume) {
  const std::string dir = testing::scratch_dir("sweep_resume");
  Result<SweepStore> store = SweepStore::open(dir);
  ASSERT_TRUE(store);
  const std::vector<SweepRun> runs = tiny_runs();
  ASSERT_EQ(runs.size(), 2u);

  size_t skipped_seen = 99, done_seen = 0;
  SweepRunOptions options;
  options.observer.on_plan = [&](size_t skipped, size_t) { skipped_seen = skipped; };
  options.observer.on_run_done = [&](const SweepRun&, const nlohmann::json&) { ++done_seen; };
  Result<SweepExecution> first = run_sweep(runs, *store, options);
  ASSERT_TRUE(first) << first.status().message();
  EXPECT_EQ(first->finished, 2u);
  EXPECT_EQ(first->skipped, 0u);
  EXPECT_EQ(skipped_seen, 0u);
  EXPECT_EQ(done_seen, 2u);
  for (const SweepRun& run : runs) {
    ASSERT_TRUE(store->is_finished(run.id));
    std::optional<nlohmann::json> record = store->load(run.id);
    ASSERT_TRUE(record);
    const SweepOutcome o = sweep_outcome(run, *record);
    EXPECT_TRUE(o.ok);
    ASSERT_EQ(o.points.size(), 2u);
    EXPECT_GT(o.points[1].output_tok_s, 0);
    EXPECT_EQ((*record)["engine"]["kv_dtype"], run.kv_dtype);
    EXPECT_EQ((*record)["raw"]["bench"], "latency");
  }
  EXPECT_EQ(lines_in(dir + "/runs.jsonl"), 2u);

  // Again: both skipped, nothing new in runs.jsonl.
  Result<SweepExecution> second = run_sweep(runs, *store, options);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->skipped, 2u);
  EXPECT_EQ(second->finished, 0u);
  EXPECT_EQ(skipped_seen, 2u);
  EXPECT_EQ(lines_in(dir + "/runs.jsonl"), 2u);

  // A failed record is not finished: the next sweep retries it.
  ASSERT_TRUE(store->save(sweep_failed_record(runs[1], "out of memory", 0.1)));
  EXPECT_FALSE(store->is_finished(runs[1].id));
  Result<SweepExecution> third = run_sweep(runs, *store, options);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->skipped, 1u);
  EXPECT_EQ(third->finished, 1u);
  EXPECT_TRUE(store->is_finished(runs[1].id));

  // --force runs everything again.
  options.force = true;
  Result<SweepExecution> forced = run_sweep(runs, *store, options);
  ASSERT_TRUE(forced);
  EXPECT_EQ(forced->skipped, 0u);
  EXPECT_EQ(forced->finished, 2u);
}

// The quantized KV caches of the engine (--kv-dtype fp8|int8) are sweep axes too.
TEST(SweepRunner, QuantizedKvCachesRunInProcess) {
  const std::string dir = testing::scratch_dir("sweep_kv_quant");
  Result<SweepStore> store = SweepStore::open(dir);
  ASSERT_TRUE(store);
  const std::vector<SweepRun> runs = tiny_runs("", "[fp8, int8]");
  ASSERT_EQ(runs.size(), 2u);
  Result<SweepExecution> done = run_sweep(runs, *store, SweepRunOptions{});
  ASSERT_TRUE(done) << done.status().message();
  EXPECT_EQ(done->finished, 2u);
  for (const SweepRun& run : runs) {
    std::optional<nlohmann::json> record = store->load(run.id);
    ASSERT_TRUE(record);
    EXPECT_TRUE(sweep_outcome(run, *record).ok) << record->dump();
    EXPECT_EQ((*record)["engine"]["kv_dtype"], run.kv_dtype);
  }
}

TEST(SweepRunner, AStoreIgnoresRecordsThatAreNotRecordsOfTheRun) {
  const std::string dir = testing::scratch_dir("sweep_store");
  Result<SweepStore> store = SweepStore::open(dir);
  ASSERT_TRUE(store);
  std::ofstream(store->record_path("aaaa")) << "{ truncated";
  std::ofstream(store->record_path("bbbb")) << R"({"run_id": "cccc", "status": "ok"})";
  EXPECT_FALSE(store->load("aaaa"));
  EXPECT_FALSE(store->is_finished("bbbb"));
  EXPECT_FALSE(store->is_finished("missing"));
}

TEST(SweepRunner, InterruptStopsBeforeTheNextRunAndRecordsNothingPartial) {
  const std::string dir = testing::scratch_dir("sweep_interrupt");
  Result<SweepStore> store = SweepStore::open(dir);
  ASSERT_TRUE(store);
  const std::vector<SweepRun> runs = tiny_runs();
  std::atomic<bool> interrupt{false};
  SweepRunOptions options;
  options.interrupt = &interrupt;
  options.observer.on_run_done = [&](const SweepRun&, const nlohmann::json&) { interrupt.store(true); };
  Result<SweepExecution> execution = run_sweep(runs, *store, options);
  ASSERT_TRUE(execution);
  EXPECT_TRUE(execution->interrupted);
  EXPECT_EQ(execution->finished, 1u);
  EXPECT_TRUE(store->is_finished(runs[0].id));
  EXPECT_FALSE(store->load(runs[1].id));
}

TEST(SweepRunner, AFailingRunIsRecordedAndTheSweepGoesOn) {
  const std::string dir = testing::scratch_dir("sweep_failing");
  Result<SweepStore> store = SweepStore::open(dir);
  ASSERT_TRUE(store);
  std::vector<SweepRun> runs = tiny_runs();
  runs[0].workload.input_len = 100000;  // longer than the model's context: the bench refuses it
  Result<SweepExecution> execution = run_sweep(runs, *store, SweepRunOptions{});
  ASSERT_TRUE(execution);
  EXPECT_EQ(execution->failed, 1u);
  EXPECT_EQ(execution->finished, 1u);
  std::optional<nlohmann::json> record = store->load(runs[0].id);
  ASSERT_TRUE(record);
  EXPECT_EQ((*record)["status"], "failed");
  EXPECT_NE((*record)["error"].get<std::string>().find("context"), std::string::npos) << (*record)["error"];
}

TEST(SweepServer, ACommandThatExitsFailsTheHealthWaitWithItsOutput) {
  const std::string dir = testing::scratch_dir("sweep_server_exit");
  Result<int> port = pick_free_port();
  ASSERT_TRUE(port);
  EXPECT_GT(*port, 0);
  Result<std::unique_ptr<ServerProcess>> server =
      ServerProcess::start("echo starting; echo 'cannot load the model' >&2; exit 3", dir + "/server.log");
  ASSERT_TRUE(server) << server.status().message();
  Status healthy = (*server)->wait_healthy(*port, "/health", 30, nullptr);
  ASSERT_FALSE(healthy);
  EXPECT_NE(healthy.message().find("exited with code 3"), std::string::npos) << healthy.message();
  EXPECT_NE(healthy.message().find("cannot load the model"), std::string::npos) << healthy.message();
}

TEST(SweepServer, StopEndsTheWholeProcessGroup) {
  const std::string dir = testing::scratch_dir("sweep_server_stop");
  // A shell that ignores SIGTERM around a child: SIGKILL after the grace period ends both.
  Result<std::unique_ptr<ServerProcess>> server =
      ServerProcess::start("trap '' TERM; sleep 30 & echo ready; wait", dir + "/server.log");
  ASSERT_TRUE(server);
  const pid_t pgid = (*server)->pid();
  for (int i = 0; i < 250 && (*server)->log_tail(5).find("ready") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_NE((*server)->log_tail(5).find("ready"), std::string::npos);
  const auto start = std::chrono::steady_clock::now();
  (*server)->stop(0.3);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
  EXPECT_TRUE((*server)->exit_description());
  // Give init a moment to reap the orphaned sleep; then nothing of the group may be left running.
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = ::kill(-pgid, 0) != 0;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(gone);
}

TEST(SweepServer, TimesOutWhenNothingAnswers) {
  const std::string dir = testing::scratch_dir("sweep_server_timeout");
  Result<int> port = pick_free_port();
  ASSERT_TRUE(port);
  Result<std::unique_ptr<ServerProcess>> server = ServerProcess::start("sleep 30", dir + "/server.log");
  ASSERT_TRUE(server);
  Status healthy = (*server)->wait_healthy(*port, "/health", 0.5, nullptr);
  ASSERT_FALSE(healthy);
  EXPECT_NE(healthy.message().find("did not answer 200 on /health within"), std::string::npos) << healthy.message();
  (*server)->stop(1.0);
}

}  // namespace
}  // namespace anvil
