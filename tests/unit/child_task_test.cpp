// tests/unit/child_task_test.cpp — work that spans threads: child tasks
// (memlimits::task(inherit), memlimits::bind_limits) under their parent's
// guards. An exact allocation limit shared by 1 to 8 threads (its total
// never exceeds the limit, and the trip comes within the documented slack:
// 64 KiB per other task holding a slice, and the block); memory, global
// and token limits shared by children; a trip in one worker, a token and a
// guard's exit interrupting the others; a pool thread alternating between
// children of two guards; nested children; std::async and std::jthread;
// monitoring (task_info::parent).
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <new>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "memlimits/guard.hpp"
#include "memlimits/limits.hpp"
#include "memlimits/task.hpp"
#include "../support/limits_support.hpp"
#include "../support/wait.hpp"

namespace {

using namespace std::chrono_literals;
using memlimits::limit_kind;
using memlimits::testing::await;
using memlimits::testing::churn;
using memlimits::testing::delete_block;
using memlimits::testing::eventually;
using memlimits::testing::new_block;

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;
// The most a task holds of a shared budget unused (limits/budget.hpp).
constexpr std::uint64_t max_slice = 64 * KiB;

// What one worker did: the bytes it allocated (each block once it was
// granted), and the limit that stopped it.
struct worker_record {
  std::atomic<bool> ran{false};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<bool> stopped{false};
  std::atomic<limit_kind> kind{limit_kind::global_memory};
};

// Allocates and frees blocks of `bytes` until interrupted (or `cap` bytes,
// a runaway test's end), recording each granted block.
void churn_until_interrupted(worker_record& record, std::uint64_t bytes,
                             std::uint64_t cap = std::uint64_t{1} << 40) {
  record.ran = true;
  try {
    while (record.bytes.load(std::memory_order_relaxed) < cap) {
      delete_block(new_block(bytes), bytes);
      record.bytes.fetch_add(bytes, std::memory_order_relaxed);
    }
  } catch (const memlimits::limit_reached& e) {
    record.kind = e.kind();
    record.stopped = true;
  }
}

// ---- an exact allocation limit shared by threads ----

struct shared_case {
  int threads;
  std::uint64_t limit;
  std::uint64_t block;
};

class SharedAllocationLimit : public ::testing::TestWithParam<shared_case> {};

TEST_P(SharedAllocationLimit, TheTotalNeverExceedsItAndTheTripComesWithinTheSlack) {
  const shared_case c = GetParam();
  std::vector<worker_record> records(c.threads);
  std::atomic<bool> go{false};
  auto r = memlimits::limit_allocations(c.limit, [&] {
    // All started before any allocates, so that this thread allocates
    // nothing after the trip (pthread_create's own calloc would be counted
    // and not refused in an interrupted task: malloc_policy::count).
    std::vector<std::jthread> workers;
    workers.reserve(c.threads);
    for (int i = 0; i < c.threads; ++i) {
      workers.emplace_back(memlimits::bind_limits([&, i] {
        await([&] { return go.load(); }, "the go");
        churn_until_interrupted(records[i], c.block);
      }));
    }
    go = true;
    for (std::jthread& w : workers) w.join();
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::allocations);
  std::uint64_t sum = 0;
  for (int i = 0; i < c.threads; ++i) {
    EXPECT_TRUE(records[i].stopped) << "worker " << i << " was not interrupted";
    EXPECT_EQ(records[i].kind.load(), limit_kind::allocations) << "worker " << i;
    sum += records[i].bytes;
  }
  const std::uint64_t total = r.usage().allocated_bytes;  // the workers' and the creator's
  std::string per_worker;
  for (const worker_record& w : records) per_worker += " " + std::to_string(w.bytes.load());
  EXPECT_LE(sum, c.limit) << "summed over the workers:" << per_worker;
  EXPECT_LE(total, c.limit) << "usage(); summed over the workers: " << sum;
  EXPECT_GE(total, sum);
  // Slices held unused by the other tasks (the creator's and the other
  // workers'), a block that another worker had in flight at the trip (paid
  // for, then refused), and the block that did not fit.
  const std::uint64_t slack = static_cast<std::uint64_t>(c.threads) * (max_slice + c.block);
  EXPECT_GT(total + slack, c.limit) << "tripped earlier than the slack allows: usage " << total
                                    << ", summed over the workers " << sum;
}

INSTANTIATE_TEST_SUITE_P(
    Threads, SharedAllocationLimit,
    ::testing::Values(shared_case{1, 4 * MiB, 64}, shared_case{2, 4 * MiB, 64},
                      shared_case{4, 4 * MiB, 64}, shared_case{8, 4 * MiB, 64},
                      shared_case{8, 4 * MiB, 1000},
                      // a limit smaller than one slice
                      shared_case{1, 10 * KiB, 64}, shared_case{8, 10 * KiB, 64},
                      // blocks larger than a slice
                      shared_case{1, 4 * MiB, 256 * KiB}, shared_case{8, 4 * MiB, 256 * KiB},
                      shared_case{8, 4 * MiB, 100 * KiB + 8}),
    [](const ::testing::TestParamInfo<shared_case>& info) {
      return std::to_string(info.param.threads) + "threads_limit" +
             std::to_string(info.param.limit) + "_block" + std::to_string(info.param.block);
    });

TEST(SharedAllocationLimitAlone, ATaskWithoutChildrenIsExact) {
  // No child, no slice: the allocation that would exceed is the one refused.
  worker_record record;
  constexpr std::uint64_t limit = 1 * MiB;
  auto r = memlimits::limit_allocations(limit, [&] { churn_until_interrupted(record, 1000); });
  ASSERT_FALSE(r.has_value());
  EXPECT_LE(r.usage().allocated_bytes, limit);
  EXPECT_GT(r.usage().allocated_bytes + 1000, limit);
}

TEST(SharedAllocationLimitAlone, AfterItsChildrenEndedTheCreatorIsExactAgain) {
  constexpr std::uint64_t limit = 2 * MiB;
  worker_record child, self;
  auto r = memlimits::limit_allocations(limit, [&] {
    std::thread(memlimits::bind_limits([&] { churn(100, 1000); })).join();
    // The child gave its slice back and left: the creator is alone.
    churn_until_interrupted(self, 1000);
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_LE(r.usage().allocated_bytes, limit);
  EXPECT_GT(r.usage().allocated_bytes + 1000, limit);
}

// ---- memory, global and token limits shared by children ----

TEST(SharedMemoryLimit, FourThreadsAreChargedTogetherAndCreditedByOtherThreadsAfterExit) {
  // At rate 1 every word is sampled: the live-bytes estimate is exact.
  memlimits::testing::settings_restorer restore;
  memlimits::settings s = restore.saved();
  s.sampling_rate = 1.0;
  memlimits::configure(s);
  constexpr std::uint64_t block = 4 * KiB;
  constexpr std::uint64_t limit = 256 * KiB;
  constexpr int threads = 4;
  constexpr std::size_t capacity = limit / block + 1;
  std::array<std::array<void*, capacity>, threads> kept{};
  std::array<std::size_t, threads> count{};
  std::array<limit_kind, threads> kinds{};
  std::array<std::atomic<bool>, threads> ran{};

  memlimits::guard outer(memlimits::limits{.memory = 1ull << 40});
  const std::int64_t outer_before = outer.usage().memory_bytes;
  std::optional<memlimits::guard> inner(std::in_place, memlimits::limits{.memory = limit});
  {
    std::vector<std::jthread> workers;
    workers.reserve(threads);
    try {
      for (int i = 0; i < threads; ++i) {
        workers.emplace_back(memlimits::bind_limits([&, i] {
          ran[i] = true;
          try {
            while (count[i] < capacity) {
              kept[i][count[i]] = new_block(block);
              ++count[i];
            }
          } catch (const memlimits::limit_reached& e) {
            kinds[i] = e.kind();
          }
        }));
      }
    } catch (const memlimits::limit_reached& e) {
      // The workers that started tripped the limit while this thread was
      // starting the others: it is interrupted too.
      EXPECT_EQ(e.kind(), limit_kind::memory);
    }
  }  // joined
  // This thread is interrupted until its tripped guard exits: the checks
  // below (which may allocate) run masked.
  std::optional<memlimits::mask> checking(std::in_place);
  std::uint64_t live = 0;
  for (int i = 0; i < threads; ++i) {
    if (!ran[i]) continue;
    EXPECT_LT(count[i], capacity) << "worker " << i << " was not interrupted";
    EXPECT_EQ(kinds[i], limit_kind::memory) << "worker " << i;
    live += count[i] * block;
  }
  EXPECT_LE(live, limit);
  // At the trip, each worker may have had a block charged and then refused,
  // and this thread's own live blocks (the threads' states) count too.
  EXPECT_GT(live + (threads + 1) * block, limit);
  ASSERT_TRUE(inner->tripped());
  // Frees by this thread, which allocated none of them, while the guard is
  // active: credited to it (and to the outer guard).
  const std::int64_t inner_live = inner->usage().memory_bytes;
  EXPECT_GE(inner_live, static_cast<std::int64_t>(live));
  std::uint64_t freed = 0;
  for (std::size_t b = 0; b < count[0]; ++b) delete_block(kept[0][b], block), freed += block;
  EXPECT_EQ(inner->usage().memory_bytes, inner_live - static_cast<std::int64_t>(freed));
  const std::optional<memlimits::interruption> error = inner->exit();
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), limit_kind::memory);
  inner.reset();
  checking.reset();
  // After the guard's exit: still credited, to the guards around it.
  const std::int64_t outer_live = outer.usage().memory_bytes;
  for (int i = 1; i < threads; ++i) {
    for (std::size_t b = 0; b < count[i]; ++b) delete_block(kept[i][b], block), freed += block;
  }
  EXPECT_EQ(outer.usage().memory_bytes,
            outer_live - static_cast<std::int64_t>(live - count[0] * block));
  EXPECT_LE(outer.usage().memory_bytes - outer_before, 64 * static_cast<std::int64_t>(KiB))
      << "what the workers allocated is all credited back";
  EXPECT_FALSE(outer.exit().has_value());
}

TEST(SharedGlobalLimit, ChildrenTripItAndAllStop) {
  memlimits::testing::settings_restorer restore;
  memlimits::settings s = restore.saved();
  s.sampling_rate = 1e-3;  // a sample every 8 KiB
  memlimits::configure(s);
  memlimits::set_global_memory_limit(
      static_cast<std::int64_t>(memlimits::global_memory_usage() + 4 * MiB));
  constexpr int threads = 4;
  constexpr std::uint64_t block = 64 * KiB;
  constexpr std::size_t capacity = 4096;  // 256 MiB each at most
  std::vector<std::vector<void*>> kept(threads);
  for (auto& k : kept) k.reserve(capacity);
  std::array<limit_kind, threads> kinds{};
  std::array<bool, threads> stopped{};
  std::array<std::atomic<bool>, threads> ran{};
  auto r = memlimits::limit_global_memory([&] {
    std::vector<std::jthread> workers;
    workers.reserve(threads);
    for (int i = 0; i < threads; ++i) {
      workers.emplace_back(memlimits::bind_limits([&, i] {
        ran[i] = true;
        try {
          while (kept[i].size() < capacity) kept[i].push_back(new_block(block));
        } catch (const memlimits::limit_reached& e) {
          kinds[i] = e.kind();
          stopped[i] = true;
        }
      }));
    }
    for (std::jthread& w : workers) w.join();
  });
  for (auto& k : kept) {
    for (void* p : k) delete_block(p, block);
  }
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::global_memory);
  // The creator may have been interrupted before it started them all.
  for (int i = 0; i < threads; ++i) {
    if (!ran[i]) continue;
    EXPECT_TRUE(stopped[i]) << "worker " << i;
    EXPECT_EQ(kinds[i], limit_kind::global_memory) << "worker " << i;
  }
}

TEST(SharedToken, InterruptsAllEightWorkers) {
  constexpr int threads = 8;
  std::vector<worker_record> records(threads);
  std::atomic<int> started{0};
  memlimits::token t;
  auto r = memlimits::limit_with_token(t, [&] {
    std::vector<std::jthread> workers;
    workers.reserve(threads);
    for (int i = 0; i < threads; ++i) {
      workers.emplace_back(memlimits::bind_limits([&, i] {
        started.fetch_add(1);
        churn_until_interrupted(records[i], 64);
      }));
    }
    await([&] { return started.load() == threads; }, "the 8 workers to start");
    t.set();
    for (std::jthread& w : workers) w.join();
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::token);
  for (int i = 0; i < threads; ++i) {
    EXPECT_TRUE(records[i].stopped) << "worker " << i;
    EXPECT_EQ(records[i].kind.load(), limit_kind::token) << "worker " << i;
  }
}

TEST(SharedTrip, OneWorkersTripInterruptsTheOthers) {
  // Seven workers churn (their live memory stays small); the eighth keeps
  // what it allocates until the memory limit trips. The seven stop too.
  constexpr int threads = 8;
  std::vector<worker_record> records(threads);
  std::atomic<int> started{0};
  std::vector<void*> kept;
  kept.reserve(1 << 16);
  constexpr std::uint64_t block = 64 * KiB;
  auto r = memlimits::limit_memory(8 * MiB, [&] {
    std::vector<std::jthread> workers;
    workers.reserve(threads);
    for (int i = 0; i < threads - 1; ++i) {
      workers.emplace_back(memlimits::bind_limits([&, i] {
        started.fetch_add(1);
        churn_until_interrupted(records[i], 64);
      }));
    }
    workers.emplace_back(memlimits::bind_limits([&] {
      await([&] { return started.load() == threads - 1; }, "the churning workers to start");
      try {
        while (kept.size() < kept.capacity()) kept.push_back(new_block(block));
      } catch (const memlimits::limit_reached& e) {
        records[threads - 1].kind = e.kind();
        records[threads - 1].stopped = true;
      }
    }));
    for (std::jthread& w : workers) w.join();
  });
  for (void* p : kept) delete_block(p, block);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::memory);
  for (int i = 0; i < threads; ++i) {
    EXPECT_TRUE(records[i].stopped) << "worker " << i;
    EXPECT_EQ(records[i].kind.load(), limit_kind::memory) << "worker " << i;
  }
}

TEST(SharedExit, TheGuardsExitInterruptsADetachedChild) {
  auto record = std::make_shared<worker_record>();
  auto started = std::make_shared<std::atomic<bool>>(false);
  {
    memlimits::guard g(memlimits::limits{.allocations = 1ull << 40});
    std::thread(memlimits::bind_limits([record, started] {
      *started = true;
      churn_until_interrupted(*record, 64);
    })).detach();
    ASSERT_TRUE(eventually([&] { return started->load(); }, "the child to start"));
    EXPECT_FALSE(g.exit().has_value()) << "the guard itself did not trip";
  }
  ASSERT_TRUE(eventually([&] { return record->stopped.load(); },
                         "the child to be interrupted after the guard's exit"));
  EXPECT_EQ(record->kind.load(), limit_kind::allocations);
}

// ---- where children run ----

TEST(ChildTasks, APoolThreadAlternatingBetweenTwoGuardsChargesEach) {
  memlimits::task a, b;
  std::optional<memlimits::guard> guard_a, guard_b;
  std::function<void()> job_a, job_b;
  std::uint64_t before_a = 0, before_b = 0;
  {
    memlimits::task_scope in(a);
    guard_a.emplace(memlimits::limits{});
    job_a = memlimits::bind_limits([] { churn(10, 1000); });
    before_a = guard_a->usage().allocated_bytes;
  }
  {
    memlimits::task_scope in(b);
    guard_b.emplace(memlimits::limits{});
    job_b = memlimits::bind_limits([] { churn(10, 3000); });
    before_b = guard_b->usage().allocated_bytes;
  }
  std::uint64_t pool_own = 0;
  std::thread pool([&] {
    memlimits::guard own(memlimits::limits{});  // the pool thread's own task
    for (int round = 0; round < 7; ++round) {
      job_a();
      job_b();
    }
    pool_own = own.usage().allocated_bytes;
  });
  pool.join();
  EXPECT_EQ(pool_own, 0u) << "the children's allocations are not the pool thread's";
  {
    memlimits::task_scope in(a);
    EXPECT_EQ(guard_a->usage().allocated_bytes - before_a, 7u * 10 * 1000);
    guard_a.reset();
    job_a = nullptr;
  }
  {
    memlimits::task_scope in(b);
    EXPECT_EQ(guard_b->usage().allocated_bytes - before_b, 7u * 10 * 3000);
    guard_b.reset();
    job_b = nullptr;
  }
}

TEST(ChildTasks, NestedChildrenCountTowardEveryGuardAboveAndTheirOwnLimitOnlyThem) {
  worker_record grandchild;
  std::optional<memlimits::result<void>> child_result;
  memlimits::guard root(memlimits::limits{.allocations = 1ull << 40});
  const std::uint64_t before = root.usage().allocated_bytes;
  std::thread(memlimits::bind_limits([&] {
    child_result = memlimits::limit_allocations(256 * KiB, [&] {
      std::thread(memlimits::bind_limits([&] { churn_until_interrupted(grandchild, 512); }))
          .join();
    });
  })).join();
  ASSERT_TRUE(child_result.has_value());
  ASSERT_FALSE(child_result->has_value()) << "the child's own limit holds its grandchild";
  EXPECT_EQ(child_result->error().kind(), limit_kind::allocations);
  EXPECT_TRUE(grandchild.stopped);
  EXPECT_LE(grandchild.bytes.load(), 256 * KiB);
  EXPECT_GE(child_result->usage().allocated_bytes, grandchild.bytes.load());
  EXPECT_FALSE(root.tripped()) << "the child's limit is its own";
  EXPECT_GE(root.usage().allocated_bytes - before, child_result->usage().allocated_bytes);
  // The root's work goes on: it may allocate.
  churn(10, 100);
  EXPECT_FALSE(root.exit().has_value());
}

TEST(ChildTasks, AsyncWithAValueAndAfterAnInterruption) {
  auto r = memlimits::limit_allocations(4 * MiB, [] {
    auto f = std::async(std::launch::async, memlimits::bind_limits([] {
                          churn(100, 1000);
                          return 42;
                        }));
    return f.get();
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 42);
  EXPECT_GE(r.usage().allocated_bytes, 100u * 1000);

  // A non-void child lets limit_reached propagate: the future carries it to
  // the parent, whose guard reports its own error.
  memlimits::token t;
  std::atomic<bool> started{false};
  auto stopped = memlimits::limit_with_token(t, [&] {
    auto f = std::async(std::launch::async, memlimits::bind_limits([&] {
                          started = true;
                          for (;;) churn(1, 64);
                          return 0;
                        }));
    await([&] { return started.load(); }, "the async child to start");
    t.set();
    return f.get();
  });
  ASSERT_FALSE(stopped.has_value());
  EXPECT_EQ(stopped.error().kind(), limit_kind::token);
  ASSERT_TRUE(stopped.error().exception() != nullptr);
  EXPECT_THROW(std::rethrow_exception(stopped.error().exception()), memlimits::limit_reached);
}

TEST(ChildTasks, AJthreadRunawayEndsWithoutTerminatingTheProcess) {
  std::atomic<bool> started{false}, stop_token_seen{false};
  auto r = memlimits::limit_allocations(1 * MiB, [&] {
    // bind_limits keeps the callee's signature: a jthread passes its stop
    // token to a function that takes one. (First: once the runaway trips
    // the limit, this thread's next allocation is interrupted too.)
    std::jthread(memlimits::bind_limits([&](std::stop_token st) {
      stop_token_seen = st.stop_possible();
    })).join();
    // A void child that never catches: the wrapper ends it quietly.
    std::jthread runaway(memlimits::bind_limits([&] {
      started = true;
      for (;;) churn(1, 64);
    }));
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::allocations);
  EXPECT_TRUE(started);
  EXPECT_TRUE(stop_token_seen);
}

TEST(ChildTasks, AnInheritingTaskMadeCurrentOnAnotherThread) {
  std::optional<memlimits::task> child;
  memlimits::guard g(memlimits::limits{.allocations = 1ull << 40});
  child.emplace(memlimits::inherit);
  // The std::thread's state is this thread's: started before measuring.
  std::atomic<bool> go{false};
  std::thread there([&] {
    await([&] { return go.load(); }, "the go");
    memlimits::task_scope in(*child);
    churn(20, 1000);
  });
  const std::uint64_t before = g.usage().allocated_bytes;
  go = true;
  there.join();
  // The child's bytes are published when it stops running on that thread.
  EXPECT_EQ(g.usage().allocated_bytes - before, 20u * 1000);
  EXPECT_FALSE(g.exit().has_value());
  // After the guard's exit, the child is interrupted at its next allocation.
  std::optional<limit_kind> seen;
  std::thread([&] {
    memlimits::task_scope in(*child);
    try {
      churn(1, 64);
    } catch (const memlimits::limit_reached& e) {
      seen = e.kind();
    }
    EXPECT_TRUE(memlimits::is_interrupted());
  }).join();
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(*seen, limit_kind::allocations);
  child.reset();
}

TEST(ChildTasks, OutsideAnyGuardAChildIsATaskOfItsOwn) {
  memlimits::task child(memlimits::inherit);
  std::thread([&] {
    memlimits::task_scope in(child);
    EXPECT_FALSE(memlimits::is_interrupted());
    churn(10, 1000);
    auto r = memlimits::limit_allocations(1000, [] { churn(10, 1000); });
    EXPECT_FALSE(r.has_value()) << "its own guard limits it";
  }).join();
  bool ran = false;
  memlimits::bind_limits([&] { ran = true; })();
  EXPECT_TRUE(ran);
}

TEST(ChildTasks, TasksListsAChildWithItsParent) {
  memlimits::guard g(memlimits::limits{.allocations = 1ull << 40, .memory = 1ull << 40});
  const std::optional<memlimits::task_info> self =
      memlimits::testing::find_task(std::this_thread::get_id());
  ASSERT_TRUE(self.has_value());
  ASSERT_NE(self->id, 0u);
  std::atomic<bool> listed{false}, release{false};
  std::thread::id child_thread;
  std::thread child(memlimits::bind_limits([&] {
    child_thread = std::this_thread::get_id();
    listed = true;
    await([&] { return release.load(); }, "the parent to look");
  }));
  ASSERT_TRUE(eventually([&] { return listed.load(); }, "the child to run"));
  const std::optional<memlimits::task_info> info = memlimits::testing::find_task(child_thread);
  release = true;
  child.join();
  ASSERT_TRUE(info.has_value()) << "a child under inherited guards is listed";
  EXPECT_EQ(info->parent, self->id);
  EXPECT_NE(info->id, self->id);
  EXPECT_FALSE(info->fiber);
  ASSERT_EQ(info->contexts.size(), self->contexts.size()) << "its inherited contexts";
  for (std::size_t i = 0; i < info->contexts.size(); ++i) {
    EXPECT_EQ(info->contexts[i].kind, self->contexts[i].kind);
    EXPECT_EQ(info->contexts[i].limit, self->contexts[i].limit);
  }
}

TEST(ChildTasks, SampledAllocationLimitsCountEveryChildsSamples) {
  memlimits::testing::settings_restorer restore;
  memlimits::settings s = restore.saved();
  s.sampled_allocation_limits = true;
  memlimits::configure(s);
  constexpr int threads = 4;
  std::vector<worker_record> records(threads);
  std::atomic<bool> go{false};
  auto r = memlimits::limit_allocations(4 * MiB, [&] {
    std::vector<std::jthread> workers;  // all started before any allocates
    workers.reserve(threads);
    for (int i = 0; i < threads; ++i) {
      workers.emplace_back(memlimits::bind_limits([&, i] {
        await([&] { return go.load(); }, "the go");
        churn_until_interrupted(records[i], 1000);
      }));
    }
    go = true;
    for (std::jthread& w : workers) w.join();
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::allocations);
  std::uint64_t sum = 0;
  for (const worker_record& w : records) {
    EXPECT_TRUE(w.stopped);
    sum += w.bytes;
  }
  // The K-th sample of 4 MiB at 1e-4 (K = 53) falls after 4 MiB on average;
  // 64 MiB would need K samples in 16 times the expected span.
  EXPECT_LT(sum, 64 * MiB);
}

}  // namespace
