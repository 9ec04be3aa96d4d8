// A program with one guard of each kind that ends interrupted, and nothing
// else: log_test runs it with and without SPDLOG_LEVEL and reads what it
// writes to stderr (memlimits' log lines, if any). Prints "done" on stdout.
#include <cstdio>
#include <memory>
#include <vector>

#include "memlimits/limits.hpp"

int main() {
  using namespace memlimits::literals;
  std::vector<std::unique_ptr<char[]>> kept;
  kept.reserve(64);
  const auto fill = [&] {
    for (int i = 0; i < 64; ++i) kept.push_back(std::make_unique<char[]>(4_KiB));
  };
  // 16 KiB allow four 4 KiB blocks: the fifth would have made 16 KiB + 4 KiB.
  const auto allocations = memlimits::limit_allocations(16_KiB, fill);
  kept.clear();
  memlimits::token t;
  t.set();
  const auto token = memlimits::limit_with_token(t, fill);
  kept.clear();
  const bool ok = !allocations.has_value() && !token.has_value();
  std::puts(ok ? "done" : "a guard did not trip");
  return ok ? 0 : 1;
}
