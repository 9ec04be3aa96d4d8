// limits/task_state.hpp — tasks and their contexts, the data of the limits
// engine.
//
// A task is what a limit applies to: each thread has one (in TLS), and a
// memlimits::task or a memlimits::fiber is one of its own. A task owns a
// chain of contexts, one per active guard, innermost first through `parent`.
// A child task (task(inherit), bind_limits, fiber(inherit, ...)) starts
// with the chain of the task that created it: its first `inherited`
// contexts, from the outermost, are its parent's, shared; those it enters
// itself come before them, and it exits only those.
//
// Every task under a context holds a `share` of it: where its own counting
// started, what of it was published to the context's totals, its slice of
// an exact allocation budget, and its alarms. The task that entered the
// guard holds the share embedded in the context; a child holds its shares
// of the inherited contexts in an array of its own (limits/lineage.cpp).
//
// Threads and lifetimes:
//  * The chain is written only by the task's owner (the thread running it),
//    at guard entry and exit, under the task's lock; the owner reads it
//    without the lock (it is the only writer), monitors (tasks()) under it.
//    A share is the owner's too.
//  * A context is reference-counted: the task holds one reference while the
//    guard is active, each child context holds one on its parent, a child
//    task and a captured lineage one on the innermost context they
//    inherit, and each sampled block charged to the task one on the
//    innermost context it was charged to. Frees, on any thread and at any
//    later time, credit the block's charge to that context and its
//    ancestors (all-or-nothing), then drop the reference: a context
//    outlives its guard while blocks charged to it are live.
//  * What several tasks update (totals, the budget, the flags) is atomic.
// Layer 5.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#include "core/spinlock.hpp"
#include "limits/alarm_watch.hpp"
#include "memlimits/limits.hpp"

namespace memlimits::detail {

struct token_state;

// The first slice of a shared exact budget that a task takes, and after it
// gave its slice back (limits/budget.hpp).
inline constexpr std::uint64_t first_slice = 4 * 1024;

// One task's part in a context. Positions are the task's own
// (task_position). Owner thread only.
struct share {
  std::uint64_t start = 0;      // the task's position when it came under the context
  std::uint64_t published = 0;  // of its bytes since, those added to context::allocated
  // Exact allocation limits: the task's allocations are paid for up to
  // this position; beyond it, it takes a slice of context::remaining
  // (limits/budget.cpp).
  std::uint64_t slice_end = 0;
  std::uint64_t next_slice = first_slice;  // the size of its next slice
  alarm_watch* watch = nullptr;        // on context::watchers
  alarm_watch* token_watch = nullptr;  // token contexts: on the token's watchers
};

struct context {
  // Set at entry, then read-only.
  limit_kind kind;
  std::int64_t limit;              // bytes (allocations, memory); -1 otherwise
  bool sampled;                    // allocations: memprof-limits' statistical mode
  // Samples at which the limit trips: sampled allocation limits (samples
  // of the task) and memory limits (samples of live blocks).
  std::uint64_t sample_threshold;
  double rate;                     // the engine's sampling rate at entry
  context* parent;                 // enclosing context of the same task (a reference)
  token_state* token;              // limit_with_token (a reference)
  // The CFA of the guard's entry (guard_scope's constructor), i.e. the
  // stack pointer of the frame that holds the guard: the frames of the
  // guarded code lie below it (limits/raise_point.cpp). 0: unknown.
  std::uintptr_t frame_boundary = 0;

  // Read at every slow path of its tasks; written at the trip, the exit,
  // and when tasks come under it or leave.
  std::atomic<bool> tripped{false};
  // The guard exited: its children are interrupted, as by a trip.
  std::atomic<bool> closed{false};
  // Tasks under the context, and lineages captured from them (bind_limits).
  std::atomic<std::uint32_t> members{1};
  // The alarms of the threads running its members; the first node is the
  // owner's, embedded.
  watch_list watchers;
  alarm_watch owner_watch;
  // What the trip was, for the guard's log line: the size of the
  // allocation that tripped it (0: none, e.g. a token seen by poll()), and
  // the context's use then in its own unit (allocated bytes before that
  // allocation; estimated live bytes after it; -1: not recorded). Written
  // once, by the task that trips it.
  std::atomic<std::uint64_t> trip_block{0};
  std::atomic<std::int64_t> trip_used{-1};

  // What the tasks write often, each in cache lines of its own, so that
  // one task's writes do not evict what the others read above.
  // The share of the task that entered the guard (its owner's).
  alignas(64) share owner;
  // Exact allocation limits: the budget in no task's slice. While the task
  // that entered the guard is alone, its slice is the whole limit and this
  // is 0.
  alignas(64) std::atomic<std::int64_t> remaining{0};
  // Bytes allocated under the context, as its tasks last published them
  // (limits/budget.hpp: publish; exact once they have all left).
  alignas(64) std::atomic<std::uint64_t> allocated{0};
  // Charged at samples, credited at frees.
  alignas(64) std::atomic<std::uint64_t> samples{0};
  // Sampled allocation limits: the tasks' samples thinned to `rate`, so
  // that a rate raised by configure() during the guard does not move the
  // trip point.
  std::atomic<std::uint64_t> samples_at_entry_rate{0};
  std::atomic<std::int64_t> live_bytes{0};    // charged samples minus credited frees, in bytes
  std::atomic<std::int64_t> live_samples{0};  // the same, in samples
  // Taken and dropped by each sampled block charged to it.
  alignas(64) std::atomic<std::uint32_t> references{1};
};

// noexcept boundaries that the handler search found above the task's
// allocation points, remembered while they are still on the stack so that
// an interrupted task that keeps allocating inside one does not walk its
// stack at every allocation (limits/raise_point.cpp). Owner thread only.
struct deferral_cache {
  struct entry {
    std::uintptr_t sp = 0;           // the boundary frame's stack pointer at its call; 0: free
    std::uintptr_t return_to = 0;    // that call's return address, as stored on the stack
    std::uintptr_t caller_sp = 0;    // the same for the frame that called it (0: none)
    std::uintptr_t caller_return_to = 0;
    std::uint32_t skips_left = 0;    // allocations deferred before searching again
    std::uint32_t next_skips = 0;    // the next budget (doubling, capped)
  };
  static constexpr int size = 4;
  entry entries[size];
  std::uint32_t next_victim = 0;
  // Allocation sites (hook return addresses) at which a search found one of
  // the boundaries: only they are deferred without a search. (A recursive
  // teardown that the compiler inlined into itself allocates from a dozen
  // sites or more.)
  static constexpr int site_count = 32;
  std::uintptr_t sites[site_count] = {};
  std::uint32_t next_site = 0;

  bool allocates_from(std::uintptr_t site) const noexcept {
    for (std::uintptr_t known : sites) {
      if (known == site) return true;
    }
    return false;
  }
  void add_site(std::uintptr_t site) noexcept {
    if (!allocates_from(site)) sites[next_site++ % site_count] = site;
  }
};

// What a task is, for monitoring (task_info::fiber) and for finding its stack.
enum class task_kind : std::uint8_t {
  thread,  // a thread's own task
  task,    // a memlimits::task: runs on whichever stack made it current
  fiber,   // a memlimits::fiber's: runs on the fiber's stack
};

struct task_state {
  context* innermost = nullptr;  // owner writes under lock_
  std::uint32_t depth = 0;       // contexts in the chain, inherited ones included
  std::uint32_t inherited = 0;   // the outermost `inherited` are the parent's
  share* inherited_shares = nullptr;  // [i]: the share of the chain's (depth - inherited + i)-th
  std::uint32_t masks = 0;       // live memlimits::mask objects
  // Contexts of the chain that are tripped, or closed (inherited ones):
  // "interrupted" iff > 0 (refresh_trips).
  std::uint32_t tripped = 0;
  limit_kind raise_kind = limit_kind::allocations;  // the innermost tripped context's
  // The task's stream position is core::stream_position() - position_base
  // (0 for a thread's own task; fibers move it at each switch).
  std::uint64_t position_base = 0;
  std::uint64_t suspended_position = 0;  // the task's position while not current
  task_kind kind = task_kind::thread;
  // tasks()' id, given at the first registration, and the id of the task it
  // inherited its guards from (0: none).
  std::uint64_t id = 0;
  std::uint64_t parent_id = 0;
  // A memlimits::task or fiber current on some thread: the fork generation
  // (see switch_task) plus one; 0 or an older generation: current nowhere.
  // Its accounting assumes one thread at a time, which switch_task checks.
  std::atomic<std::uint64_t> current_mark{0};
  // The stack the task always runs on: a memlimits::fiber's (set by
  // src/fiber/), the thread's own (found when first needed); none (0, 0)
  // for a memlimits::task, which runs on whichever stack made it current.
  std::uintptr_t stack_low = 0;
  std::uintptr_t stack_high = 0;
  deferral_cache deferrals;

  // Registry of tasks that have entered a guard (tasks(), thread exit).
  core::spinlock lock_;
  // std::this_thread::get_id() at registration, as bytes: std::thread::id
  // has no constexpr constructor, and a thread's task is constinit.
  alignas(std::thread::id) unsigned char thread_id[sizeof(std::thread::id)] = {};
  bool registered = false;
  task_state* prev = nullptr;
  task_state* next = nullptr;
};

// Bumped in a child after fork() (limits/registry.cpp): tasks current on
// other threads at the fork are current nowhere in the child.
extern constinit std::atomic<std::uint64_t> fork_generation;

// The task that runs on the calling thread now, and the thread's own task.
task_state& current_task() noexcept;
task_state& own_task() noexcept;

// The task's allocation stream position (exact).
std::uint64_t task_position(const task_state& t) noexcept;

// Takes and drops a reference to a context (drop: frees it, and drops its
// parent's, at zero). Any thread.
void retain(context* c) noexcept;
void release(context* c) noexcept;

// Entry and exit of the calling task's innermost context (limits/task_state.cpp).
context* push_context(task_state& t, context* c) noexcept;
void pop_context(task_state& t, context* c) noexcept;

// Marks a context of the calling task as tripped (owner thread).
void trip(task_state& t, context& c, std::uint64_t block = 0, std::int64_t used = -1) noexcept;

// Calls f(context&, share&, bool own) for each context of the task's chain,
// innermost first; `own`: entered by this task, not inherited.
template <class F>
void for_each_share(task_state& t, F&& f) {
  const std::uint32_t own = t.depth - t.inherited;
  std::uint32_t i = 0;
  for (context* c = t.innermost; c != nullptr; c = c->parent, ++i) {
    if (i < own) {
      f(*c, c->owner, true);
    } else {
      f(*c, t.inherited_shares[i - own], false);
    }
  }
}

// Whether a context no longer lets its tasks allocate.
inline bool stopped(const context& c) noexcept {
  return c.tripped.load(std::memory_order_relaxed) || c.closed.load(std::memory_order_acquire);
}

// Counts the task's stopped contexts (tripped by any of its tasks, or
// closed) into `tripped` and `raise_kind` (owner thread).
void refresh_trips(task_state& t) noexcept;

// Trips the task's token contexts whose token is set, and takes in what
// other tasks of its contexts tripped or closed (owner thread): for the
// points where the task learns of them without an allocation (poll,
// is_interrupted, being made current).
void sync_trips(task_state& t) noexcept;

// Recomputes the countdown deadline of the calling thread for its task: the
// nearest exact allocation limit, or "every allocation" while interrupted.
void update_deadline(task_state& t) noexcept;

// Makes `to` the task running on the calling thread (nullptr: the thread's
// own) and returns the one it replaces. The outgoing task keeps its stream
// position and stops listening to its tokens on this thread; the incoming
// one resumes its position, listens here, sees tokens set meanwhile, and
// gets its deadline.
task_state* switch_task(task_state* to) noexcept;

std::thread::id task_thread(const task_state& t) noexcept;

// The bounds of the stack that the calling task runs on, if known: a
// memlimits::fiber's own, else the calling thread's (looked up once per
// thread, with sampling off by the caller). A memlimits::task made current
// on another stack (a fiber's, a coroutine library's) gets the thread's
// bounds, which do not contain its stack pointer: callers check that.
bool running_stack(task_state& t, std::uintptr_t* low, std::uintptr_t* high) noexcept;

}  // namespace memlimits::detail
