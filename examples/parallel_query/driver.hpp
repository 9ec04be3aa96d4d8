// driver.hpp — how a query of the parallel_query example runs in parallel:
// its driver (the code inside the query's guard, on the query's own thread)
// splits each phase into parts, submits each part to the shared pool bound
// to the guard (memlimits::bind_limits), waits for all of them and hands
// their results back in order. Each part is recorded (queued, running,
// completed, or stopped and by which limit), so that the example can check
// that a runaway query was stopped as a whole.
//
// The one rule the driver keeps: no part outlives the frame whose data it
// uses. The driver itself can be interrupted (memlimits::limit_reached at
// its next allocation once a part tripped the query's limit), and a part's
// future rethrows the interruption that ended the part; either way,
// parallel() waits for every part it submitted before its frame goes away.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <future>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "memlimits/memlimits.hpp"
#include "operators.hpp"
#include "pool.hpp"
#include "tables.hpp"

namespace pq {

enum class part_state { queued, running, completed, stopped, failed };

// One part of one phase of a query, as it went.
struct part_record {
  part_record(const char* p, std::size_t i) : phase(p), index(i) {}
  const char* phase;
  std::size_t index;
  std::atomic<part_state> state{part_state::queued};
  std::atomic<memlimits::limit_kind> stopped_by{memlimits::limit_kind::token};  // if stopped
};

// A runaway part that its query's limit failed to stop gives up here: the
// example reports a failure rather than exhaust the machine.
struct safety_cap_reached : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What a query's code sees: the tables, and parallel() to run a phase.
class query_context {
 public:
  static constexpr std::size_t parts = 4;

  query_context(const database& tables, thread_pool& pool, std::deque<part_record>& log,
                std::atomic<std::uint64_t>& progress)
      : db(tables), pool_(pool), log_(log), progress_(progress) {}

  const database& db;

  // Part `part` of a table of `rows` rows.
  static row_range chunk(std::size_t rows, std::size_t part) { return part_of(rows, part, parts); }

  // Counts work done, for the report of a stopped query ("31M joined rows").
  void advance(std::uint64_t n) const { progress_.fetch_add(n, std::memory_order_relaxed); }

  // Runs part(0) ... part(parts - 1) on the pool, each as a child task of
  // the calling task (so under the query's guard), and returns their
  // results in order. If a part throws (limit_reached when the query's
  // guard tripped), get() rethrows it here, after which the remaining parts
  // are still waited for; so they are if the driver is interrupted at one
  // of its own allocations here.
  template <class F>
  auto parallel(const char* phase, F part) -> std::vector<std::invoke_result_t<F&, std::size_t>> {
    using T = std::invoke_result_t<F&, std::size_t>;
    std::vector<std::future<T>> futures;
    futures.reserve(parts);  // push_back below then never allocates
    const wait_for_all<T> wait_on_every_exit(futures);
    {
      // The phase is submitted whole: an interruption of the driver is
      // deferred until every part is queued (parts whose query was stopped
      // meanwhile end at their first allocation), so that a stopped phase
      // reports all its parts. Only a real std::bad_alloc can still end the
      // loop early.
      const memlimits::mask whole_phase;
      for (std::size_t i = 0; i < parts; ++i) {
        part_record& record = log_.emplace_back(phase, i);
        try {
          futures.push_back(pool_.submit(memlimits::bind_limits(
              [&part, &record, i]() -> T { return run_part(part, record, i); })));
        } catch (...) {
          log_.pop_back();  // not submitted (thread_pool::submit is all-or-nothing)
          throw;
        }
      }
    }
    std::vector<T> results;
    results.reserve(parts);
    for (std::future<T>& f : futures) results.push_back(f.get());
    return results;
  }

 private:
  // Waits for every future still valid when the frame that owns them ends,
  // however it ends.
  template <class T>
  class wait_for_all {
   public:
    explicit wait_for_all(std::vector<std::future<T>>& futures) : futures_(futures) {}
    ~wait_for_all() {
      for (std::future<T>& f : futures_) {
        if (f.valid()) f.wait();
      }
    }
    wait_for_all(const wait_for_all&) = delete;
    wait_for_all& operator=(const wait_for_all&) = delete;

   private:
    std::vector<std::future<T>>& futures_;
  };

  // One part, on a pool thread, as a child task of the query: records how
  // it ended, and lets its exception go on into its future.
  template <class F>
  static auto run_part(F& part, part_record& record, std::size_t i) {
    record.state = part_state::running;
    try {
      auto out = part(i);
      record.state = part_state::completed;
      return out;
    } catch (const memlimits::limit_reached& e) {
      record.stopped_by = e.kind();
      record.state = part_state::stopped;
      throw;
    } catch (...) {
      record.state = part_state::failed;
      throw;
    }
  }

  thread_pool& pool_;
  std::deque<part_record>& log_;  // a deque: records stay where they are
  std::atomic<std::uint64_t>& progress_;
};

}  // namespace pq
