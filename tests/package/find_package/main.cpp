// A consumer of memlimits as a user builds one: it links memlimits::memlimits
// and memlimits::hooks, profiles at rate 1 and checks that one `new char[1000]`
// reached its tracker with every word sampled (125 = 1000 / 8) and that its
// `delete[]` was reported; and, when built with MEMLIMITS_EXPECTED_VERSION,
// that the headers' version macros say that version. Exits non-zero, saying
// why, otherwise. Shared by the find_package and add_subdirectory consumers.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "memlimits/memlimits.hpp"

namespace {

namespace memprof = memlimits::memprof;

// Counts what it sees. on_alloc runs inside the sampling slow path: it only
// stores a few words, it does not allocate or print.
class counting_tracker final : public memprof::tracker {
 public:
  void* on_alloc(const memprof::allocation& a) override {
    ++allocations;
    if (a.size != 1000) return nullptr;
    ++seen;
    address = a.address;
    n_samples = a.n_samples;
    origin = a.origin;
    return &cookie;
  }
  void on_free(void* c) noexcept override {
    if (c == &cookie) ++freed;
  }

  int allocations = 0;
  int seen = 0;
  int freed = 0;
  void* address = nullptr;
  std::uint64_t n_samples = 0;
  memprof::source origin = memprof::source::adapter;

 private:
  int cookie = 0;
};

// Escapes the block, so that the compiler may not elide the new/delete pair.
char* volatile sink = nullptr;

int fail(const char* what) {
  std::fprintf(stderr, "memlimits package test: FAILED: %s\n", what);
  return 1;
}

// MEMLIMITS_VERSION and the numbers agree, and say `expected` if given.
int check_version(const char* expected) {
  const std::string joined = std::to_string(MEMLIMITS_VERSION_MAJOR) + "." +
                             std::to_string(MEMLIMITS_VERSION_MINOR) + "." +
                             std::to_string(MEMLIMITS_VERSION_PATCH);
  if (joined != MEMLIMITS_VERSION) return fail("MEMLIMITS_VERSION disagrees with its numbers");
  if (expected != nullptr && std::strcmp(MEMLIMITS_VERSION, expected) != 0) {
    std::fprintf(stderr, "memlimits package test: headers say %s, expected %s\n", MEMLIMITS_VERSION,
                 expected);
    return fail("the version macros are not the project's version");
  }
  return 0;
}

}  // namespace

int main() {
#if defined(MEMLIMITS_EXPECTED_VERSION)
  if (check_version(MEMLIMITS_EXPECTED_VERSION) != 0) return 1;
#else
  if (check_version(nullptr) != 0) return 1;
#endif
  counting_tracker tracker;
  char* block = nullptr;
  {
    memprof::profile profile(tracker, /*sampling_rate=*/1.0);
    sink = new char[1000];
    block = sink;
    delete[] block;
    profile.stop();
  }
  std::printf("memlimits %s: %d blocks sampled; new char[1000] seen %d, n_samples %llu, freed %d\n",
              MEMLIMITS_VERSION, tracker.allocations, tracker.seen,
              static_cast<unsigned long long>(tracker.n_samples), tracker.freed);
  if (tracker.seen != 1) return fail("the tracker did not see the new char[1000] exactly once");
  if (tracker.address != block) return fail("the tracker saw another address");
  if (tracker.n_samples != 125) return fail("n_samples != 125 at rate 1");
  if (tracker.origin != memprof::source::new_delete) return fail("origin is not new_delete");
  if (tracker.freed != 1) return fail("the delete[] was not reported exactly once");
  std::printf("memlimits package test: OK\n");
  return 0;
}
