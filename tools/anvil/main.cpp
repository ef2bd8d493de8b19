// anvil: one binary, thin subcommands over the library.
#include <fmt/format.h>

#include <cstdio>

#include "anvil/version.h"
#include "commands.h"

namespace anvil::cli {

int fail(const std::string& message) {
  fmt::print(stderr, "anvil: error: {}\n", message);
  return 1;
}

std::string format_count(int64_t n) {
  if (n >= 1000000000) return fmt::format("{:.2f} B", n / 1e9);
  if (n >= 1000000) return fmt::format("{:.1f} M", n / 1e6);
  return fmt::format("{:.1f} K", n / 1e3);
}

}  // namespace anvil::cli

int main(int argc, char** argv) {
  CLI::App app{"anvil: serve, benchmark, tune, quantize and train LLMs on one engine"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("anvil ") + anvil::kAnvilVersion);
  int exit_code = 0;
  anvil::cli::add_run_command(app, exit_code);
  anvil::cli::add_convert_command(app, exit_code);
  anvil::cli::add_quantize_command(app, exit_code);
  anvil::cli::add_info_command(app, exit_code);
  anvil::cli::add_bench_command(app, exit_code);
  anvil::cli::add_tokenize_command(app, exit_code);
  anvil::cli::add_serve_command(app, exit_code);
  anvil::cli::add_plan_command(app, exit_code);
  anvil::cli::add_perplexity_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}
