// tests/stress/concurrency_test.cpp — concurrency stress of the limits
// engine, written for ThreadSanitizer (CI runs it in the tsan preset) and
// run in every build.
//
// Eight workers run random nests of guards of every kind (allocations,
// memory, global memory, token) around allocation workloads, for a few
// seconds, while around them:
//  * a setter thread sets the tokens of the workers' active token guards at
//    random times (and some before the guard is entered);
//  * blocks allocated inside one worker's guards are freed by another worker
//    (through a mutex-protected exchange), so that frees are credited to
//    contexts of other threads, some already exited;
//  * a monitor thread calls memlimits::tasks() and checks what it returns;
//  * the global memory limit is toggled (none, 0, half or twice the usage),
//    and configure() changes the sampling rate and the global source;
//  * short-lived threads enter guards and end in them (pthread_exit), after
//    them, or interrupted by a token.
// Each guard's result is checked (an error only of its own kind; what it
// let escape, an interruption of it or of a guard around it), nothing
// escapes the outermost guard, an interrupted task raises at its
// very next allocation, and so does a task whose token's set() has returned;
// masked sections and destructors that allocate during unwinding never see
// an interruption. The run lasts a few seconds and, whatever the machine's
// load, until each event the checks need has happened (a guard of every
// kind entered, allocation and token guards interrupted, a short-lived
// thread ended), within a bounded time. Every loop is bounded; seeds are
// fixed (the interleavings are not). Afterwards: no task is listed, the
// settings are back, the live heap estimate is back to where it was, and
// fresh guards on a quiet thread do not trip.
//
// A second test forks, again and again, a process whose other threads are in
// guards: the child runs exact guards, a token guard on a new thread, and
// exits 0 (skipped under TSan and ASan: see the test).
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/sampler.hpp"
#include "memlimits/limits.hpp"
#include "support/recording_tracker.hpp"
#include "support/stress_common.hpp"
#include "support/wait.hpp"

namespace {

using namespace memlimits::literals;
using memlimits::limit_kind;
using memlimits::testing::opaque;
using memlimits::testing::scaled;
using memlimits::testing::sink;
using memlimits::testing::under_asan;
using memlimits::testing::under_tsan;
using memlimits::testing::wait_until;
using clock_type = std::chrono::steady_clock;

constexpr int worker_count = 8;
constexpr int max_depth = 4;
constexpr int kind_count = 4;

int index_of(limit_kind kind) { return static_cast<int>(kind); }

// ---- failures, recorded without allocating (callers may be in guards) ----

class failure_log {
 public:
  void add(const char* what, long a = 0, long b = 0) noexcept {
    const int i = count_.fetch_add(1, std::memory_order_relaxed);
    if (i < capacity) entries_[i] = {what, a, b};
  }
  int count() const noexcept { return count_.load(std::memory_order_relaxed); }
  std::string describe() const {
    std::string text;
    const int n = std::min(count(), capacity);
    for (int i = 0; i < n; ++i) {
      text += "\n  ";
      text += entries_[i].what;
      text += " (" + std::to_string(entries_[i].a) + ", " + std::to_string(entries_[i].b) + ")";
    }
    return text;
  }

 private:
  static constexpr int capacity = 32;
  struct entry {
    const char* what;
    long a, b;
  };
  std::array<entry, capacity> entries_{};
  std::atomic<int> count_{0};
};

// ---- blocks handed from thread to thread ----

struct block {
  unsigned char* bytes;
  std::size_t size;
  unsigned char seed;
};

void fill(const block& b) {
  for (std::size_t i = 0; i < b.size; i += 61) b.bytes[i] = static_cast<unsigned char>(b.seed + i);
  sink(b.bytes);
}
bool intact(const block& b) {
  sink(b.bytes);
  for (std::size_t i = 0; i < b.size; i += 61) {
    if (b.bytes[i] != static_cast<unsigned char>(b.seed + i)) return false;
  }
  return true;
}

// Blocks allocated by one thread (inside its guards), freed by another.
class block_exchange {
 public:
  static constexpr std::size_t capacity = 1024;

  // False when full (the caller keeps the block). May throw: the deque
  // allocates, inside the caller's guards; the caller keeps the block then.
  bool push(const block& b) {
    std::lock_guard lock(mutex_);
    if (blocks_.size() >= capacity) return false;
    blocks_.push_back(b);
    return true;
  }
  std::optional<block> pop() {
    std::lock_guard lock(mutex_);
    return take();
  }
  // For a forked child: the mutex may have been held by a thread that does
  // not exist there.
  std::optional<block> try_pop() {
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock()) return std::nullopt;
    return take();
  }

 private:
  std::optional<block> take() {
    if (blocks_.empty()) return std::nullopt;
    const block b = blocks_.front();
    blocks_.pop_front();
    return b;
  }

  std::mutex mutex_;
  std::deque<block> blocks_;
};

// Frees a block, checking that nobody wrote over it.
void release(const block& b, failure_log& failures) {
  if (!intact(b)) failures.add("a block handed between threads was overwritten", b.size, b.seed);
  delete[] b.bytes;
}

// ---- tokens that another thread sets ----

struct token_box {
  memlimits::token token;
  std::atomic<bool> set_returned{false};  // token.set() has returned
};

// The token guards a worker has entered (and a few it is about to enter).
struct token_slot {
  std::mutex mutex;
  std::vector<std::shared_ptr<token_box>> active;
};

// Sets one token of a random worker, if it has one.
void set_some_token(std::array<token_slot, worker_count>& slots, std::mt19937_64& rng) {
  std::shared_ptr<token_box> box;
  {
    token_slot& slot = slots[rng() % worker_count];
    std::lock_guard lock(slot.mutex);
    if (!slot.active.empty()) box = slot.active[rng() % slot.active.size()];
  }
  if (box == nullptr) return;
  box->token.set();
  box->set_returned.store(true, std::memory_order_release);
}

// ---- what every thread shares ----

struct shared_state {
  std::atomic<bool> stop{false};
  // The run goes on until `deadline` and, if `until_events_seen`, until
  // events_seen() too, but never past `hard_deadline`.
  clock_type::time_point deadline;
  clock_type::time_point hard_deadline = clock_type::time_point::max();
  bool until_events_seen = false;
  block_exchange exchange;
  std::array<token_slot, worker_count> slots;
  failure_log failures;
  // Per kind: guards entered, guards that returned their error.
  std::array<std::atomic<long>, kind_count> entered{};
  std::array<std::atomic<long>, kind_count> interrupted{};
  std::atomic<long> must_raise_probes{0};
  std::atomic<long> token_probes{0};
  std::atomic<long> handed_over{0};
  std::atomic<long> monitor_rounds{0};
  std::atomic<long> short_lived{0};

  // What the stress test checks happened: a guard of every kind entered,
  // allocation and token guards interrupted, a short-lived thread ended.
  bool events_seen() const {
    for (const auto& n : entered) {
      if (n.load(std::memory_order_relaxed) == 0) return false;
    }
    return interrupted[index_of(limit_kind::allocations)].load(std::memory_order_relaxed) > 0 &&
           interrupted[index_of(limit_kind::token)].load(std::memory_order_relaxed) > 0 &&
           short_lived.load(std::memory_order_relaxed) > 0;
  }
  long nests_entered() const {
    long n = 0;
    for (const auto& e : entered) n += e.load(std::memory_order_relaxed);
    return n;
  }

  bool done() const {
    if (stop.load(std::memory_order_relaxed)) return true;
    const clock_type::time_point now = clock_type::now();
    if (now >= hard_deadline) return true;
    return now >= deadline && (!until_events_seen || events_seen());
  }
};

// Allocates 64-byte blocks in a token guard whose token another thread sets
// once `running` is true, until the interruption, or for at most the
// timeout of support/wait.hpp (then the guard's result shows it).
void allocate_until_interrupted(std::atomic<bool>& running) {
  running.store(true, std::memory_order_release);
  const auto give_up = memlimits::testing::deadline_in();
  while (!memlimits::testing::passed(give_up)) {
    std::unique_ptr<char[]> p(new char[64]);
    sink(p.get());
  }
}

// A destructor that allocates while an interruption unwinds the task: the
// allocation must not be interrupted (std::uncaught_exceptions() > 0), or
// the program would terminate. (Outside unwinding it does not allocate: a
// token may be set at any time, and a destructor must not throw.)
struct allocates_while_unwinding {
  ~allocates_while_unwinding() {
    if (std::uncaught_exceptions() == 0) return;
    std::string s(200, 'd');
    sink(s.data());
  }
};

// ---- a worker ----

class worker {
 public:
  worker(int id, shared_state& shared, std::uint64_t seed) : id_(id), shared_(shared), rng_(seed) {}

  // One nest of guards around a workload.
  void iteration() {
    depth_ = 1 + static_cast<int>(rng_() % max_depth);
    for (int i = 0; i < depth_; ++i) kinds_[i] = static_cast<limit_kind>(rng_() % kind_count);
    try {
      nest(0);
    } catch (const memlimits::limit_reached& e) {
      shared_.failures.add("limit_reached escaped the outermost guard", index_of(e.kind()), id_);
    } catch (const std::bad_alloc&) {
      shared_.failures.add("bad_alloc escaped the outermost guard", id_);
    }
    if (memlimits::is_interrupted()) shared_.failures.add("interrupted outside every guard", id_);
  }

 private:
  // Log-uniform in [lo, hi].
  std::uint64_t log_uniform(std::uint64_t lo, std::uint64_t hi) {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    return static_cast<std::uint64_t>(static_cast<double>(lo) *
                                      std::pow(static_cast<double>(hi) / lo, u));
  }

  // A guard's result: an error only of its own kind. What escaped is an
  // interruption of this guard or of one around it: raised for an enclosing
  // guard, it may be captured by this one if this one tripped meanwhile
  // (while the task unwound; the guard decides by its own flag).
  template <class R>
  void judge(int level, const R& r) {
    const limit_kind kind = kinds_[level];
    shared_.entered[index_of(kind)].fetch_add(1, std::memory_order_relaxed);
    if (r.has_value()) return;
    shared_.interrupted[index_of(kind)].fetch_add(1, std::memory_order_relaxed);
    if (r.error().kind() != kind) {
      shared_.failures.add("a guard returned another kind's error", index_of(kind),
                           index_of(r.error().kind()));
    }
    if (const std::exception_ptr escaped = r.error().exception()) {
      try {
        std::rethrow_exception(escaped);
      } catch (const memlimits::limit_reached& e) {
        if (std::find(kinds_.begin(), kinds_.begin() + level + 1, e.kind()) ==
            kinds_.begin() + level + 1) {
          shared_.failures.add("a guard caught the interruption of a guard inside it",
                               index_of(kind), index_of(e.kind()));
        }
      } catch (...) {
        shared_.failures.add("a guard caught a foreign exception", index_of(kind));
      }
    }
  }

  void nest(int level) {
    auto body = [&] {
      if (level + 1 < depth_) {
        nest(level + 1);
      } else {
        workload();
      }
    };
    const limit_kind kind = kinds_[level];
    switch (kind) {
      case limit_kind::allocations: {
        const std::uint64_t limit = log_uniform(1_KiB, 4_MiB);
        judge(level, memlimits::limit_allocations(limit, body));
        break;
      }
      case limit_kind::memory: {
        const std::uint64_t limit = log_uniform(16_KiB, 16_MiB);
        judge(level, memlimits::limit_memory(limit, body));
        break;
      }
      case limit_kind::global_memory:
        judge(level, memlimits::limit_global_memory(body));
        break;
      case limit_kind::token: {
        // Published before entry: the setter may set it before the guard
        // starts (the task is then not run).
        auto box = std::make_shared<token_box>();
        token_slot& slot = shared_.slots[id_];
        {
          std::lock_guard lock(slot.mutex);
          slot.active.push_back(box);
        }
        struct unpublish {
          token_slot& slot;
          int& depth;
          ~unpublish() {
            --depth;
            std::lock_guard lock(slot.mutex);
            slot.active.pop_back();
          }
        } on_exit{slot, token_depth_};
        tokens_[token_depth_++] = box.get();
        judge(level, memlimits::limit_with_token(box->token, body));
        break;
      }
    }
  }

  // The task must raise at its next allocation: it is interrupted, or one
  // of its token guards' tokens has been set (set() returned).
  void probe() {
    bool from_token = false;
    for (int i = 0; i < token_depth_; ++i) {
      from_token = from_token || tokens_[i]->set_returned.load(std::memory_order_acquire);
    }
    const bool interrupted = memlimits::is_interrupted();
    if (!interrupted && !from_token) return;
    (from_token ? shared_.token_probes : shared_.must_raise_probes)
        .fetch_add(1, std::memory_order_relaxed);
    void* p = ::operator new(opaque(std::size_t{48}));
    sink(p);
    ::operator delete(p);
    shared_.failures.add(from_token ? "an allocation succeeded after the token's set() returned"
                                    : "an interrupted task allocated",
                         id_, interrupted);
  }

  void give_block(std::size_t size) {
    block b{new unsigned char[size], size, static_cast<unsigned char>(rng_())};
    std::unique_ptr<unsigned char[]> owner(b.bytes);
    fill(b);
    if (shared_.exchange.push(b)) {
      owner.release();
      shared_.handed_over.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void take_blocks(int n) {
    for (int i = 0; i < n; ++i) {
      const std::optional<block> b = shared_.exchange.pop();
      if (!b) return;
      release(*b, shared_.failures);
    }
  }

  void workload() {
    allocates_while_unwinding on_unwind;
    std::vector<std::string> strings;
    std::map<int, std::vector<int>> table;
    std::vector<std::unique_ptr<char[]>> churn;
    const int rounds = 10 + static_cast<int>(rng_() % 60);
    for (int round = 0; round < rounds; ++round) {
      probe();
      switch (rng_() % 10) {
        case 0:
        case 1:
          strings.emplace_back(16 + rng_() % 400, 's');
          break;
        case 2:
          table[static_cast<int>(rng_() % 32)].resize(rng_() % 200);
          break;
        case 3:
          give_block(16 + rng_() % 4096);
          break;
        case 4:
          take_blocks(1 + static_cast<int>(rng_() % 4));
          break;
        case 5: {
          // Large blocks, freed at once: memory and global limits get samples.
          for (int i = 0; i < 4; ++i) {
            // Owned before the vector grows: emplace_back(new ...) would
            // leak the block when the vector's growth is interrupted.
            std::unique_ptr<char[]> big(new char[64_KiB]);
            sink(big.get());
            churn.push_back(std::move(big));
            if (churn.size() > 3) churn.erase(churn.begin());
          }
          break;
        }
        case 6: {
          // Masked: interruptions are deferred, never raised here.
          try {
            memlimits::mask masked;
            std::string s(300, 'm');
            sink(s.data());
            std::function<int()> f = [s] { return static_cast<int>(s.size()); };
            sink(&f);
            memlimits::poll();
          } catch (const memlimits::limit_reached& e) {
            shared_.failures.add("interrupted inside a mask", id_, index_of(e.kind()));
          }
          break;
        }
        case 7:
          memlimits::poll();
          break;
        case 8: {
          auto shared = std::make_shared<std::vector<int>>(rng_() % 300);
          std::function<std::size_t()> f = [shared] { return shared->size(); };
          sink(&f);
          break;
        }
        case 9:
          give_block(32_KiB + rng_() % 96_KiB);
          break;
      }
    }
  }

  int id_;
  shared_state& shared_;
  std::mt19937_64 rng_;
  int depth_ = 0;
  std::array<limit_kind, max_depth> kinds_{};
  std::array<token_box*, max_depth> tokens_{};
  int token_depth_ = 0;
};

// ---- the threads around the workers ----

// Checks what tasks() returns while guards come and go.
void monitor(shared_state& shared) {
  while (!shared.done()) {
    const std::vector<memlimits::task_info> all = memlimits::tasks();
    std::set<std::thread::id> threads;
    for (const memlimits::task_info& t : all) {
      if (!threads.insert(t.thread).second) shared.failures.add("tasks() lists a thread twice");
      if (t.fiber) shared.failures.add("tasks() lists a fiber; there are none");
      if (t.contexts.empty()) shared.failures.add("tasks() lists a task without a guard");
      if (t.contexts.size() > max_depth) {
        shared.failures.add("tasks() lists more contexts than a task has", t.contexts.size());
      }
      for (const memlimits::context_info& c : t.contexts) {
        switch (c.kind) {
          case limit_kind::allocations:
            // (used may exceed limit: a tripped task's allocations while
            // masked or unwinding count, and tasks() reads `tripped` and
            // `used` at slightly different times.)
            if (c.limit <= 0) shared.failures.add("allocations context with limit <= 0", c.limit);
            if (c.used < 0) shared.failures.add("allocations context used < 0", c.used);
            break;
          case limit_kind::memory:
            if (c.limit <= 0) shared.failures.add("memory context with limit <= 0", c.limit);
            break;
          case limit_kind::global_memory:
            if (c.used < 0) shared.failures.add("global context used < 0", c.used);
            break;
          case limit_kind::token:
            if (c.limit != -1 || c.used != 0) {
              shared.failures.add("token context with limit != -1 or used != 0", c.limit, c.used);
            }
            break;
          default:
            shared.failures.add("tasks() lists an unknown kind", static_cast<long>(c.kind));
        }
      }
    }
    shared.monitor_rounds.fetch_add(1, std::memory_order_relaxed);
    std::this_thread::sleep_for(std::chrono::microseconds(300));
  }
}

void token_setter(shared_state& shared, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  while (!shared.done()) {
    set_some_token(shared.slots, rng);
    std::this_thread::sleep_for(std::chrono::microseconds(20 + rng() % 400));
  }
}

// Toggles the global limit and the settings; puts the settings back.
void configurator(shared_state& shared, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const memlimits::settings saved = memlimits::current_settings();
  const double rates[] = {1e-4, 1e-3, 1e-2, 5e-2};
  while (!shared.done()) {
    const std::int64_t usage = static_cast<std::int64_t>(memlimits::global_memory_usage());
    const std::int64_t limits[] = {-1, 0, usage / 2, usage * 2, std::int64_t{1} << 40};
    memlimits::set_global_memory_limit(limits[rng() % std::size(limits)]);
    if (rng() % 4 == 0) {
      memlimits::settings s = saved;
      s.sampling_rate = rates[rng() % std::size(rates)];
      s.global_source = rng() % 3 == 0 ? memlimits::memory_source::rss : saved.global_source;
      // Guards entered from now on use this mode.
      s.sampled_allocation_limits = rng() % 4 == 0;
      memlimits::configure(s);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 1500));
  }
  memlimits::set_global_memory_limit(-1);
  memlimits::configure(saved);
}

// Threads that live for one or two guards: they end inside a guard
// (pthread_exit: a forced unwinding through it), right after one with their
// blocks still live in the exchange, or interrupted by a token set here.
void spawner(shared_state& shared, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  while (!shared.done()) {
    const int mode = static_cast<int>(rng() % 3);
    const std::uint64_t thread_seed = rng();
    memlimits::token t;
    std::atomic<bool> running{false};
    std::atomic<bool> unwound{false};
    std::thread short_lived([&, mode, thread_seed] {
      std::mt19937_64 mine(thread_seed);
      auto hand_over = [&](int n) {
        for (int i = 0; i < n; ++i) {
          const std::size_t size = 16 + mine() % 8192;
          block b{new unsigned char[size], size, static_cast<unsigned char>(mine())};
          std::unique_ptr<unsigned char[]> owner(b.bytes);
          fill(b);
          if (shared.exchange.push(b)) owner.release();
        }
      };
      switch (mode) {
        case 0: {
          struct on_unwind {
            std::atomic<bool>& flag;
            ~on_unwind() { flag.store(true, std::memory_order_relaxed); }
          };
          (void)memlimits::limit_memory(64_MiB, [&] {
            on_unwind unwinding{unwound};
            (void)memlimits::limit_allocations(16_MiB, [&] {
              hand_over(8);
              ::pthread_exit(nullptr);
            });
          });
          shared.failures.add("a guard swallowed pthread_exit's forced unwinding");
          break;
        }
        case 1:
          (void)memlimits::limit_allocations(1_MiB, [&] { hand_over(8); });
          unwound.store(true, std::memory_order_relaxed);
          break;
        case 2: {
          auto r = memlimits::limit_with_token(t, [&] { allocate_until_interrupted(running); });
          if (r.has_value() || r.error().kind() != limit_kind::token) {
            shared.failures.add("a short-lived thread's token guard was not interrupted");
          }
          unwound.store(true, std::memory_order_relaxed);
          break;
        }
      }
    });
    if (mode == 2) {
      if (!wait_until([&] { return running.load(std::memory_order_acquire); })) {
        shared.failures.add("a short-lived thread did not enter its token guard in time");
      }
      t.set();  // before the guard is entered, the task does not run: still a token error
    }
    short_lived.join();
    if (!unwound.load(std::memory_order_relaxed)) {
      shared.failures.add("a short-lived thread did not unwind its guards", mode);
    }
    shared.short_lived.fetch_add(1, std::memory_order_relaxed);
  }
}

// ---- the stress test ----

class Concurrency : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { memlimits::testing::prepare_stress_process(); }
};

TEST_F(Concurrency, EightWorkersWithNestedGuardsOfEveryKind) {
  const memlimits::settings saved = memlimits::current_settings();
  const std::int64_t saved_global_limit = memlimits::global_memory_limit();
  ASSERT_EQ(saved.global_source, memlimits::memory_source::heap);
  const std::int64_t heap_before = static_cast<std::int64_t>(memlimits::global_memory_usage());

  auto shared = std::make_unique<shared_state>();
  shared->deadline = clock_type::now() + std::chrono::milliseconds(scaled(4000, 4000));
  shared->hard_deadline = shared->deadline + memlimits::testing::event_timeout;
  shared->until_events_seen = true;
  std::vector<std::thread> threads;
  std::array<long, worker_count> iterations{};
  for (int id = 0; id < worker_count; ++id) {
    threads.emplace_back([&, id] {
      worker w(id, *shared, 0x5eed0000 + static_cast<std::uint64_t>(id));
      // Bounded: a few thousand nests per worker at most.
      for (long i = 0; i < 200000 && !shared->done(); ++i) {
        w.iteration();
        ++iterations[id];
      }
    });
  }
  threads.emplace_back([&] { monitor(*shared); });
  threads.emplace_back([&] { token_setter(*shared, 0x7e77e4); });
  threads.emplace_back([&] { configurator(*shared, 0xc0f1); });
  threads.emplace_back([&] { spawner(*shared, 0x59a3); });
  for (std::thread& t : threads) t.join();

  // The workers' blocks still waiting in the exchange.
  while (const std::optional<block> b = shared->exchange.pop()) release(*b, shared->failures);

  EXPECT_EQ(shared->failures.count(), 0) << shared->failures.describe();
  EXPECT_TRUE(shared->events_seen())
      << "not every event the checks below need happened within "
      << memlimits::testing::event_timeout.count() << " s past the run's 4 s";
  long total = 0;
  for (long n : iterations) total += n;
  std::printf(
      "[ stress   ] %ld nests of guards; entered/interrupted: allocations %ld/%ld, "
      "memory %ld/%ld, global %ld/%ld, token %ld/%ld; %ld interrupted-task probes, "
      "%ld token probes raised; %ld blocks freed by another thread; %ld tasks() calls; "
      "%ld short-lived threads\n",
      total, shared->entered[1].load(), shared->interrupted[1].load(), shared->entered[2].load(),
      shared->interrupted[2].load(), shared->entered[0].load(), shared->interrupted[0].load(),
      shared->entered[3].load(), shared->interrupted[3].load(), shared->must_raise_probes.load(),
      shared->token_probes.load(), shared->handed_over.load(), shared->monitor_rounds.load(),
      shared->short_lived.load());
  for (int kind = 0; kind < kind_count; ++kind) {
    EXPECT_GT(shared->entered[kind].load(), 0) << "kind " << kind << " never entered";
  }
  // Sure to trip in seconds of this workload's running time (the run waits
  // for it): a limit of at most 4 MiB on a task that allocates MiBs, and
  // tokens set every few hundred microseconds.
  EXPECT_GT(shared->interrupted[index_of(limit_kind::allocations)].load(), 0);
  EXPECT_GT(shared->interrupted[index_of(limit_kind::token)].load(), 0);
  EXPECT_GT(shared->short_lived.load(), 0);

  // Everything is back.
  EXPECT_TRUE(memlimits::tasks().empty()) << memlimits::tasks().size() << " tasks still listed";
  const memlimits::settings now = memlimits::current_settings();
  EXPECT_EQ(now.sampling_rate, saved.sampling_rate);
  EXPECT_EQ(now.global_source, saved.global_source);
  EXPECT_EQ(memlimits::global_memory_limit(), -1);
  memlimits::set_global_memory_limit(saved_global_limit);
  shared.reset();

  // The live-heap estimate is back: every block of the stress was freed,
  // and each free credited what its allocation charged, whatever the rate
  // in between. (What stays live from the stress — the logger, thread
  // bookkeeping — is a few KiB: a few samples of 80 KB at 1e-4.)
  const std::int64_t heap_after = static_cast<std::int64_t>(memlimits::global_memory_usage());
  EXPECT_LE(std::abs(heap_after - heap_before), std::int64_t{16} << 20)
      << "live-heap estimate before " << heap_before << ", after " << heap_after;

  // A quiet thread: fresh guards on small workloads do not trip. (Seeded:
  // the samples of these workloads are the same in every run.)
  memlimits::core::reseed(0x9e1);
  memlimits::set_global_memory_limit(heap_after + (std::int64_t{64} << 20));
  auto churn = [] {
    for (int i = 0; i < 2000; ++i) {
      std::unique_ptr<char[]> p(new char[4096]);
      sink(p.get());
    }
  };
  auto memory = memlimits::limit_memory(1_MiB, churn);
  auto global = memlimits::limit_global_memory(churn);
  memlimits::set_global_memory_limit(saved_global_limit);
  EXPECT_TRUE(memory.has_value()) << "live estimate at exit " << memory.usage().memory_bytes;
  EXPECT_TRUE(global.has_value()) << "global usage " << memlimits::global_memory_usage();
  EXPECT_LE(memory.usage().memory_bytes, static_cast<std::int64_t>(1_MiB));
  EXPECT_TRUE(memlimits::tasks().empty());
}

// ---- fork ----

// The child's checks; returns a mask of the failed ones.
int child_checks(bool inside_guard) {
  int failed = 0;
  // Only this thread exists; it has a task iff it forked inside a guard.
  const std::vector<memlimits::task_info> listed = memlimits::tasks();
  if (listed.size() != (inside_guard ? 1u : 0u)) failed |= 1;
  if (inside_guard && !listed.empty() &&
      (listed[0].thread != std::this_thread::get_id() || listed[0].contexts.size() != 1)) {
    failed |= 1;
  }
  // An exact allocation limit: 64 blocks of 64 bytes, then the trip.
  std::array<void*, 100> blocks{};
  std::size_t count = 0;
  auto r = memlimits::limit_allocations(4096, [&] {
    while (count < blocks.size()) blocks[count++] = ::operator new(opaque(std::size_t{64}));
  });
  if (r.has_value() || r.error().kind() != limit_kind::allocations) failed |= 2;
  if (count != 64 || r.usage().allocated_bytes != 4096) failed |= 4;
  for (std::size_t i = 0; i < count; ++i) ::operator delete(blocks[i]);
  // A token set from another thread, on a thread created in the child.
  memlimits::token t;
  std::atomic<bool> running{false};
  bool interrupted = false;
  std::thread inner([&] {
    auto tr = memlimits::limit_with_token(t, [&] { allocate_until_interrupted(running); });
    interrupted = !tr.has_value() && tr.error().kind() == limit_kind::token;
  });
  const bool entered = wait_until([&] { return running.load(std::memory_order_acquire); });
  t.set();
  inner.join();
  if (!entered || !interrupted) failed |= 8;
  // A memory guard whose blocks the child frees.
  auto m = memlimits::limit_memory(1_GiB, [] {
    std::vector<std::string> v(100, std::string(1000, 'c'));
    sink(v.data());
  });
  if (!m.has_value()) failed |= 16;
  return failed;
}

TEST_F(Concurrency, ForkWhileOtherThreadsAreInGuards) {
  if (under_tsan) GTEST_SKIP() << "ThreadSanitizer does not support fork() with threads running";
  if (under_asan) {
    // GCC 12's ASan allocator takes size-class locks without fork handlers:
    // a child forked while other threads allocate can deadlock in it
    // (tests/unit/memprof_test.cpp, ProfileFork).
    GTEST_SKIP() << "ASan's allocator is not fork-safe with threads allocating (GCC 12)";
  }
  auto shared = std::make_unique<shared_state>();
  shared->deadline = clock_type::time_point::max();  // stopped below
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int id = 0; id < 4; ++id) {
    threads.emplace_back([&, id] {
      worker w(id, *shared, 0xf0c0 + static_cast<std::uint64_t>(id));
      for (long i = 0; i < 1000000 && !stop.load(std::memory_order_relaxed); ++i) w.iteration();
    });
  }
  threads.emplace_back([&] { token_setter(*shared, 0xf5e7); });

  // Each fork waits until the workers have gone through guards since the
  // previous one, so that every fork happens while they run.
  constexpr int forks = 24;
  int bad_children = 0;
  std::string report;
  long nests_at_fork = 0;
  for (int i = 0; i < forks; ++i) {
    if (!wait_until([&] { return shared->nests_entered() > nests_at_fork; })) {
      ADD_FAILURE() << "the workers entered no guard in " << memlimits::testing::event_timeout.count()
                    << " s before fork " << i;
      break;
    }
    nests_at_fork = shared->nests_entered();
    const bool inside_guard = i % 2 == 1;
    auto fork_and_wait = [&] {
      const pid_t pid = ::fork();
      if (pid == 0) {
        // A deadlock ends the child with SIGALRM (after its own bounded
        // waits would have failed).
        ::alarm(90);
        int code = 125;
        try {
          code = child_checks(inside_guard);
          // Blocks of the parent's workers, charged to contexts of threads
          // that do not exist here.
          for (int j = 0; j < 16; ++j) {
            const std::optional<block> b = shared->exchange.try_pop();
            if (!b) break;
            if (!intact(*b)) code |= 32;
            delete[] b->bytes;
          }
        } catch (...) {
          code = 126;
        }
        ::_exit(code);
      }
      return pid;
    };
    pid_t pid = -1;
    if (inside_guard) {
      auto r = memlimits::limit_memory(1_GiB, [&] { pid = fork_and_wait(); });
      EXPECT_TRUE(r.has_value());
    } else {
      pid = fork_and_wait();
    }
    if (pid <= 0) {
      ADD_FAILURE() << "fork " << i << " failed";
      break;
    }
    const int status = memlimits::testing::wait_for_child(pid, std::chrono::seconds(120));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++bad_children;
      report += "\n  fork " + std::to_string(i) + (inside_guard ? " (inside a guard)" : "") +
                (WIFEXITED(status) ? ": exit code " + std::to_string(WEXITSTATUS(status))
                                   : ": killed by signal " + std::to_string(WTERMSIG(status)));
    }
  }
  stop.store(true);
  shared->stop.store(true);
  for (std::thread& t : threads) t.join();
  while (const std::optional<block> b = shared->exchange.pop()) release(*b, shared->failures);
  EXPECT_EQ(bad_children, 0)
      << "children that failed (exit code bits: 1 tasks(), 2 allocation trip, 4 exact count, "
         "8 token from another thread, 16 memory guard, 32 a block overwritten; 125/126 "
         "exception; SIGALRM a deadlock):"
      << report;
  EXPECT_EQ(shared->failures.count(), 0) << shared->failures.describe();
  EXPECT_TRUE(memlimits::tasks().empty());
}

}  // namespace
