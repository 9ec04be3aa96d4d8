// A consumer of the fiber component (find_package(memlimits COMPONENTS
// fiber)): a fiber whose body is its own task, under a guard of its own,
// resumed from main and back. Exits non-zero, saying why, otherwise.
#include <cstdio>
#include <memory>
#include <utility>

#include "memlimits/fiber.hpp"
#include "memlimits/limits.hpp"

int main() {
  bool interrupted = false;
  memlimits::fiber f([&](memlimits::fiber&& back) {
    // 4 KiB for the fiber alone: the second 4 KiB block exceeds it.
    const auto r = memlimits::limit_allocations(4096, [] {
      auto a = std::make_unique<char[]>(3000);
      auto b = std::make_unique<char[]>(3000);
      return a[0] + b[0];
    });
    interrupted = !r.has_value();
    return std::move(back);
  });
  f = std::move(f).resume();
  if (!interrupted) {
    std::puts("memlimits fiber package test: the fiber's guard did not trip");
    return 1;
  }
  std::puts("memlimits fiber package test: OK");
  return 0;
}
