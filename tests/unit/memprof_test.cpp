// Profiles: lifetime, concurrency, threads, fork, callstacks, arguments.
// The statistical laws of the counts are in tests/stats/.
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "memlimits/memprof.hpp"
#include "support/recording_tracker.hpp"
#include "support/wait.hpp"

// Callstacks start at the caller of the hook: found by name with dladdr, so
// these have external linkage (the test is linked with -rdynamic).
__attribute__((noinline)) void* allocate_in_known_function(std::size_t n) {
  void* p = std::malloc(n);
  memlimits::testing::sink(p);  // not a tail call: this frame stays on the stack
  return p;
}
__attribute__((noinline)) void* new_in_known_function(std::size_t n) {
  void* p = ::operator new(n);
  memlimits::testing::sink(p);
  return p;
}

namespace {

using memlimits::memprof::allocation;
using memlimits::memprof::profile;
using memlimits::memprof::source;
using memlimits::memprof::tracker;
using memlimits::testing::sink;
using memlimits::testing::recording_tracker;
using memlimits::testing::await;
using memlimits::testing::eventually;
using memlimits::testing::wait_for_child;

#if defined(__SANITIZE_THREAD__)
constexpr bool under_tsan = true;
#else
constexpr bool under_tsan = false;
#endif
#if defined(__SANITIZE_ADDRESS__)
constexpr bool under_asan = true;
#else
constexpr bool under_asan = false;
#endif

TEST(ProfileArguments, RejectsRatesOutsideZeroOne) {
  recording_tracker t(1);
  for (double rate : {0.0, -0.5, 1.0000001, 2.0, std::nan(""),
                      std::numeric_limits<double>::infinity(),
                      -std::numeric_limits<double>::infinity()}) {
    try {
      profile p(t, rate);
      ADD_FAILURE() << "accepted rate " << rate;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("sampling_rate"), std::string::npos) << e.what();
      // The value, in full: it reads back as the rate passed.
      const std::string what = e.what();
      const std::size_t got = what.find("got ");
      ASSERT_NE(got, std::string::npos) << what;
      const double shown = std::strtod(what.c_str() + got + 4, nullptr);
      EXPECT_TRUE(shown == rate || (std::isnan(shown) && std::isnan(rate))) << what;
    }
  }
  EXPECT_NO_THROW(profile(t, 1.0));
  EXPECT_NO_THROW(profile(t, std::numeric_limits<double>::denorm_min()));
}

TEST(ProfileArguments, RejectsTooDeepCallstacks) {
  recording_tracker t(1);
  EXPECT_THROW(profile(t, 0.1, profile::max_callstack_size + 1), std::invalid_argument);
  EXPECT_NO_THROW(profile(t, 0.1, profile::max_callstack_size));
}

TEST(ProfileArguments, AtMostMaxProfilesRunAtOnce) {
  recording_tracker t(1);
  std::vector<std::unique_ptr<profile>> running;
  for (std::size_t i = 0; i < profile::max_profiles; ++i) {
    running.push_back(std::make_unique<profile>(t, 0.01));
  }
  EXPECT_THROW(profile(t, 0.01), std::length_error);
  running.back()->stop();
  EXPECT_NO_THROW(profile(t, 0.01));  // a stopped profile frees its slot
}

TEST(ProfileLifetime, StopIsIdempotentAndEndsCallbacks) {
  recording_tracker t(64);
  profile p(t, 1.0);
  EXPECT_TRUE(p.running());
  void* a = std::malloc(64);
  sink(a);
  p.stop();
  EXPECT_FALSE(p.running());
  p.stop();
  void* b = std::malloc(64);
  sink(b);
  std::free(a);  // tracked while running, freed after stop: not reported
  std::free(b);
  EXPECT_EQ(t.allocations(), 1u);
  EXPECT_EQ(t.frees(), 0u);
}

TEST(ProfileLifetime, CallbacksMayAllocateWithoutRecursion) {
  struct allocating_tracker : tracker {
    std::atomic<int> calls{0};
    std::atomic<int> frees{0};
    void* on_alloc(const allocation&) override {
      ++calls;
      auto text = std::make_unique<std::string>(200, 'x');  // allocates, not sampled
      sink(text.get());
      return this;
    }
    void on_free(void*) noexcept override {
      ++frees;
      std::vector<int> v(100);  // allocates while a free is being reported
      sink(v.data());
    }
  } t;
  {
    profile p(t, 1.0);
    for (int i = 0; i < 10; ++i) {
      void* q = std::malloc(32);
      sink(q);
      std::free(q);
    }
  }
  EXPECT_EQ(t.calls.load(), 10);
  EXPECT_EQ(t.frees.load(), 10);
}

TEST(ProfileLifetime, ThrowingTrackerDeclinesTheBlock) {
  struct throwing_tracker : tracker {
    std::atomic<int> calls{0};
    std::atomic<int> frees{0};
    void* on_alloc(const allocation&) override {
      ++calls;
      throw std::runtime_error("tracker failure");
    }
    void on_free(void*) noexcept override { ++frees; }
  } t;
  profile p(t, 1.0);
  char* q = static_cast<char*>(std::malloc(100));
  ASSERT_NE(q, nullptr);
  std::memset(q, 1, 100);
  std::free(q);
  p.stop();
  EXPECT_EQ(t.calls.load(), 1);
  EXPECT_EQ(t.frees.load(), 0);
}

TEST(ProfileThreads, FreesFromOtherThreadsReportedOnce) {
  constexpr int per_thread = 2000;
  constexpr int threads = 4;
  recording_tracker t(threads * per_thread + 1024);
  std::vector<std::vector<void*>> blocks(threads, std::vector<void*>(per_thread));
  profile p(t, 1.0);
  {
    std::vector<std::thread> allocators;
    for (int k = 0; k < threads; ++k) {
      allocators.emplace_back([&, k] {
        for (auto& b : blocks[k]) b = std::malloc(24 + k);
      });
    }
    for (auto& th : allocators) th.join();
  }
  {
    // Each thread frees another thread's blocks.
    std::vector<std::thread> freers;
    for (int k = 0; k < threads; ++k) {
      freers.emplace_back([&, k] {
        for (void* b : blocks[(k + 1) % threads]) std::free(b);
      });
    }
    for (auto& th : freers) th.join();
  }
  p.stop();
  std::size_t ours = 0;
  for (std::size_t i = 0; i < t.mark(); ++i) {
    const auto& e = t.at(i);
    if (e.size >= 24 && e.size < 24 + threads && e.origin == source::malloc) {
      ++ours;
      EXPECT_EQ(e.frees.load(), 1) << "block " << e.address << " of size " << e.size;
    }
  }
  EXPECT_EQ(ours, static_cast<std::size_t>(threads * per_thread));
}

// A thread_local whose destructor frees and allocates: the core must keep
// working after the thread's TLS destructors have started.
std::atomic<void*> block_freed_at_exit{nullptr};
std::atomic<void*> block_allocated_at_exit{nullptr};
struct exit_time_allocator {
  void* keep = nullptr;
  ~exit_time_allocator() {
    std::free(keep);
    void* late = std::malloc(300);
    sink(late);
    block_allocated_at_exit = late;
  }
};
thread_local exit_time_allocator exit_time;

TEST(ProfileThreads, AllocationsAtThreadExit) {
  recording_tracker t(4096);
  profile p(t, 1.0);
  std::thread th([] {
    exit_time.keep = std::malloc(100);
    block_freed_at_exit = exit_time.keep;
  });
  th.join();
  const auto* freed = t.find_sized(block_freed_at_exit.load(), 100);
  ASSERT_NE(freed, nullptr);
  EXPECT_EQ(freed->size, 100u);
  EXPECT_EQ(freed->frees.load(), 1);
  void* late = block_allocated_at_exit.load();
  const auto* allocated = t.find_sized(late, 300);
  ASSERT_NE(allocated, nullptr);
  EXPECT_EQ(allocated->size, 300u);
  EXPECT_EQ(allocated->frees.load(), 0);
  std::free(late);  // after the thread is gone
  EXPECT_EQ(allocated->frees.load(), 1);
}

TEST(ProfileThreads, ManyShortLivedThreadsThenRateChange) {
  // Exited threads must have left the registry that a rate change walks.
  for (int round = 0; round < 4; ++round) {
    std::vector<std::thread> threads;
    for (int i = 0; i < 50; ++i) {
      threads.emplace_back([] {
        for (int j = 0; j < 100; ++j) {
          void* q = std::malloc(64);
          sink(q);
          std::free(q);
        }
      });
    }
    for (auto& th : threads) th.join();
    recording_tracker t(16);
    profile p(t, 0.5 / (round + 1));  // changes the rate: alarms every thread
  }
  SUCCEED();
}

TEST(ProfileThreads, RateChangeReachesAWaitingThreadAtItsNextAllocation) {
  // The other thread's pending gap was drawn at the base rate (1e-4: one
  // sample per ~80 KiB); only the alarm makes its next 64-byte block sampled.
  recording_tracker t(64);
  std::atomic<int> phase{0};
  std::atomic<void*> block{nullptr};
  std::thread th([&] {
    void* warm = std::malloc(16);  // initialise this thread's sampler
    sink(warm);
    std::free(warm);
    phase = 1;
    await([&] { return phase.load() == 2; }, "the profile to start");
    block = std::malloc(64);
  });
  await([&] { return phase.load() == 1; }, "the other thread's first allocation");
  profile p(t, 1.0);
  phase = 2;
  th.join();
  const auto* e = t.find(block.load());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->n_samples, 8u);
  std::free(block.load());
}

TEST(ProfileConcurrency, StartAndStopWhileOtherThreadsAllocate) {
  // Callbacks may only run while the profile runs: after stop() returns,
  // none starts, so the tracker can be destroyed. Each profile stays open
  // until a worker's allocation has been reported to it, and each tracker
  // lives on after stop() until the workers have allocated again: the
  // allocations that would make late callbacks happen while it is checked.
  struct checking_tracker : tracker {
    std::thread::id owner = std::this_thread::get_id();
    std::atomic<bool> stopped{false};
    std::atomic<long> late_calls{0};
    std::atomic<long> allocs{0};
    std::atomic<long> worker_allocs{0};
    std::atomic<long> frees{0};
    void* on_alloc(const allocation&) override {
      if (stopped.load()) ++late_calls;
      ++allocs;
      if (std::this_thread::get_id() != owner) ++worker_allocs;
      return this;
    }
    void on_free(void*) noexcept override {
      if (stopped.load()) ++late_calls;
      ++frees;
    }
  };
  std::atomic<bool> done{false};
  std::atomic<long> worker_rounds{0};
  std::vector<std::thread> workers;
  for (int k = 0; k < 3; ++k) {
    workers.emplace_back([&, k] {
      std::vector<void*> held(64, nullptr);
      unsigned i = 0;
      while (!done.load(std::memory_order_relaxed)) {
        void*& slot = held[i++ % held.size()];
        std::free(slot);
        slot = std::malloc(16 + 8 * ((i + k) % 32));
        worker_rounds.fetch_add(1, std::memory_order_relaxed);
      }
      for (void* q : held) std::free(q);
    });
  }
  long total_allocs = 0;
  long total_late = 0;
  bool timed_out = false;
  for (int round = 0; round < 200 && !timed_out; ++round) {
    auto t = std::make_unique<checking_tracker>();
    {
      profile p(*t, round % 2 == 0 ? 1.0 : 0.05);
      const auto reported = eventually([&] { return t->worker_allocs.load() > 0; },
                                       "a worker's allocation to be reported to the profile");
      EXPECT_TRUE(reported) << "round " << round;
      p.stop();
      t->stopped = true;
      // Of the rounds counted from here on, at most one per worker (3) may
      // have allocated before stop(): the 4th allocated after it.
      const long rounds_at_stop = worker_rounds.load();
      const auto allocated_after = eventually(
          [&] { return worker_rounds.load() > rounds_at_stop + 3; }, "a worker to allocate after stop()");
      EXPECT_TRUE(allocated_after) << "round " << round;
      timed_out = !reported || !allocated_after;
    }
    total_allocs += t->allocs.load();
    total_late += t->late_calls.load();
    EXPECT_LE(t->frees.load(), t->allocs.load());
  }  // trackers destroyed here: a late callback would be a use after free
  done = true;
  for (auto& th : workers) th.join();
  EXPECT_EQ(total_late, 0);
  EXPECT_GT(total_allocs, 0);
}

TEST(ProfileConcurrency, TwoProfilesEachReportFreesOnce) {
  recording_tracker fine(200000);
  recording_tracker coarse(200000);
  profile a(fine, 0.5);
  profile b(coarse, 0.05);
  std::vector<void*> blocks(20000);
  for (std::size_t i = 0; i < blocks.size(); ++i) blocks[i] = std::malloc(8 + i % 200);
  for (void* q : blocks) std::free(q);
  a.stop();
  b.stop();
  for (const auto* t : {&fine, &coarse}) {
    ASSERT_FALSE(t->overflow() != 0);
    EXPECT_GT(t->mark(), 0u);
    for (std::size_t i = 0; i < t->mark(); ++i) {
      const auto& e = t->at(i);
      if (e.size >= 8 && e.size < 208) {
        EXPECT_EQ(e.frees.load(), 1);
      }
    }
  }
  EXPECT_GT(fine.samples(), coarse.samples());
}

std::string symbol_of(void* address) {
  Dl_info info{};
  if (address == nullptr || dladdr(address, &info) == 0 || info.dli_sname == nullptr) return "?";
  return info.dli_sname;
}

TEST(ProfileCallstacks, InnermostFrameIsTheCallerOfTheHook) {
  recording_tracker t(64);
  profile p(t, 1.0, 16);
  void* a = allocate_in_known_function(100);
  void* b = new_in_known_function(100);
  p.stop();
  const auto* ea = t.find(a);
  const auto* eb = t.find(b);
  ASSERT_NE(ea, nullptr);
  ASSERT_NE(eb, nullptr);
  EXPECT_GT(ea->callstack_size, 1u);
  EXPECT_LE(ea->callstack_size, 16u);
  EXPECT_NE(symbol_of(ea->innermost_frame).find("allocate_in_known_function"), std::string::npos)
      << symbol_of(ea->innermost_frame);
  EXPECT_NE(symbol_of(eb->innermost_frame).find("new_in_known_function"), std::string::npos)
      << symbol_of(eb->innermost_frame);
  std::free(a);
  ::operator delete(b);
}

TEST(ProfileCallstacks, EachProfileGetsItsOwnDepth) {
  recording_tracker none(64);
  recording_tracker shallow(64);
  profile p0(none, 1.0, 0);
  profile p3(shallow, 1.0, 3);
  void* a = allocate_in_known_function(64);
  p0.stop();
  p3.stop();
  ASSERT_NE(none.find(a), nullptr);
  ASSERT_NE(shallow.find(a), nullptr);
  EXPECT_EQ(none.find(a)->callstack_size, 0u);
  EXPECT_EQ(shallow.find(a)->callstack_size, 3u);
  std::free(a);
}

// fork(): both processes keep sampling and reporting.
TEST(ProfileFork, ParentAndChildKeepWorking) {
  recording_tracker t(4096);
  profile p(t, 1.0);
  void* before = std::malloc(128);
  sink(before);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    void* q = std::malloc(200);
    sink(q);
    const auto* e = t.find(q);
    bool ok = e != nullptr && e->size == 200 && e->n_samples == 25;
    std::free(q);
    ok = ok && e->frees.load() == 1;
    const auto* inherited = t.find(before);
    std::free(before);  // inherited block, freed in the child
    ok = ok && inherited != nullptr && inherited->frees.load() == 1;
    _exit(ok ? 0 : 1);
  }
  const int status = wait_for_child(pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  void* after = std::malloc(300);
  sink(after);
  ASSERT_NE(t.find(after), nullptr);
  EXPECT_EQ(t.find(after)->size, 300u);
  std::free(after);
  const auto* inherited = t.find(before);
  std::free(before);
  EXPECT_EQ(inherited->frees.load(), 1);  // the child's free was its own
}

TEST(ProfileFork, ForkWhileOtherThreadsAllocate) {
  if (under_tsan) GTEST_SKIP() << "ThreadSanitizer does not support fork() with threads running";
  if (under_asan) {
    // GCC 12's ASan allocator takes size-class locks without fork handlers:
    // a program without memlimits, two threads looping on memalign(4096, 48)
    // and fork() in a loop, deadlocks its children there too.
    GTEST_SKIP() << "ASan's allocator is not fork-safe with threads allocating (GCC 12)";
  }
  // The other threads hold the core's and tracking's locks often (rate 1:
  // every allocation takes the slow path); the fork handlers must leave the
  // child with usable locks.
  // Each fork waits until the workers have allocated since the previous
  // one, so that every fork happens while they allocate.
  recording_tracker t(1 << 16);
  profile p(t, 1.0);
  std::atomic<bool> done{false};
  std::atomic<long> worker_rounds{0};
  std::vector<std::thread> workers;
  for (int k = 0; k < 2; ++k) {
    workers.emplace_back([&] {
      while (!done.load(std::memory_order_relaxed)) {
        void* q = std::malloc(48);
        sink(q);
        std::free(q);
        worker_rounds.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  struct stop_workers {
    std::atomic<bool>& done;
    std::vector<std::thread>& workers;
    ~stop_workers() {
      done = true;
      for (auto& th : workers) th.join();
    }
  } stopping{done, workers};
  long rounds_at_fork = 0;
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(eventually([&] { return worker_rounds.load() > rounds_at_fork; },
                           "the workers to allocate"))
        << "before fork " << i;
    rounds_at_fork = worker_rounds.load();
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(60);  // a deadlock ends the child with SIGALRM
      for (int j = 0; j < 100; ++j) {
        void* q = std::malloc(64 + j);
        sink(q);
        std::free(q);
      }
      recording_tracker child_tracker(16);
      profile child_profile(child_tracker, 0.5);
      child_profile.stop();
      _exit(0);
    }
    const int status = wait_for_child(pid);
    ASSERT_TRUE(WIFEXITED(status)) << "child " << i << " killed by signal "
                                   << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
}

}  // namespace
