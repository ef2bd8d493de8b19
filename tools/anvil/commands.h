// Subcommand registration: each file adds one subcommand whose callback sets the exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace anvil::cli {

void add_run_command(CLI::App& app, int& exit_code);
void add_convert_command(CLI::App& app, int& exit_code);
void add_info_command(CLI::App& app, int& exit_code);
void add_bench_command(CLI::App& app, int& exit_code);
void add_tokenize_command(CLI::App& app, int& exit_code);
void add_serve_command(CLI::App& app, int& exit_code);
void add_bench_batched_command(CLI::App& bench, int& exit_code);  // under `bench`
void add_bench_serve_command(CLI::App& bench, int& exit_code);    // bench serve (HTTP load generator)
void add_bench_engine_commands(CLI::App& bench, int& exit_code);  // bench latency|throughput|compare
void add_bench_sweep_command(CLI::App& bench, int& exit_code);    // bench sweep (configuration sweep)
void add_bench_quant_command(CLI::App& bench, int& exit_code);    // bench quant (accuracy and speed per scheme)
void add_plan_command(CLI::App& app, int& exit_code);
void add_perplexity_command(CLI::App& app, int& exit_code);
void add_quantize_command(CLI::App& app, int& exit_code);

// Shared helpers.
int fail(const std::string& message);  // prints "anvil: error: message" to stderr, returns 1
std::string format_count(int64_t n);   // 1.24 B, 34.1 M, 260.0 K

}  // namespace anvil::cli
