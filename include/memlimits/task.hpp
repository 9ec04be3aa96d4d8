// memlimits/task.hpp — tasks for schedulers, and work that spans threads.
//
// By default the task of a thread is the thread. A memlimits::task is a task
// of its own: while a task_scope makes it current on a thread, that thread's
// allocations are charged to it only (its guards, counters and pending
// interruption), and the thread's own task, or whichever task was current,
// is charged nothing. Make it current wherever the work runs, on any
// thread, one thread at a time:
//
//   memlimits::task job_task;                 // one per job
//   ...
//   { memlimits::task_scope running(job_task); job.coroutine.resume(); }
//
// One thread at a time is checked: making a task current while another
// thread still has it current aborts with a message. A coroutine that
// suspends itself must therefore be queued for its next resumption only
// after the resume() that suspended it has returned and its task_scope
// has ended, not from inside its await_suspend.
//
// Guards entered while a task is current belong to it, and must be exited
// while it is current (they are RAII scopes in the job's own code, so they
// are). A token set while the task is suspended interrupts it at its next
// allocation after it is made current again. Scopes nest and must be
// destroyed in the reverse order of their creation on each thread.
// memlimits::fiber (<memlimits/fiber.hpp>) is built on this.
//
// Child tasks. A guard's limits cover the work done for it on other
// threads, pools and coroutines. `task(memlimits::inherit)` is a child of
// the calling task: wherever it runs, its allocations count toward every
// guard that was active in the calling task when it was made (and toward
// guards it enters itself, which limit only it and its own children).
// `bind_limits(f)` wraps f so that each call runs it as a fresh child task,
// on whichever thread calls it:
//
//   auto r = memlimits::limit({.allocations = 64_MiB, .deadline = 2s}, [&] {
//     std::vector<std::future<void>> parts;
//     for (auto& chunk : chunks)
//       parts.push_back(pool.submit(memlimits::bind_limits([&] { scan(chunk); })));
//     for (auto& p : parts) p.get();
//   });
//
// An exact allocation limit shared by children never lets their total
// exceed it; it trips early by up to 64 KiB and one block per other task
// running at that moment (exact for a task alone). A memory limit is charged every child's samples
// and credited their frees, by any thread, at any time. When a guard trips
// in any of its tasks, or its token is set, every task under it is
// interrupted: the one that tripped at once, the others at their next
// allocation. When the guard exits, children still running are interrupted
// at their next allocation: its work ends with it.
#pragma once

#include <exception>
#include <functional>
#include <type_traits>
#include <utility>

#include "memlimits/config.hpp"
#include "memlimits/mask.hpp"
#include "memlimits/result.hpp"

namespace memlimits {

inline constexpr struct inherit_t {
  explicit inherit_t() = default;
} inherit{};

namespace detail {
struct task_state;

// The guards of a task, captured for its children: counted as one more
// task under each of them (so an exact budget is shared from then on)
// until released. Null: the task has no guard.
struct lineage;
MEMLIMITS_API lineage* capture_lineage();  // std::bad_alloc without memory
MEMLIMITS_API lineage* retain_lineage(lineage* l) noexcept;
MEMLIMITS_API void release_lineage(lineage* l) noexcept;

// Owns one reference to a lineage; copies share it.
class lineage_ref {
 public:
  static lineage_ref capture() { return lineage_ref(capture_lineage()); }
  lineage_ref(const lineage_ref& other) noexcept : lineage_(retain_lineage(other.lineage_)) {}
  lineage_ref(lineage_ref&& other) noexcept : lineage_(std::exchange(other.lineage_, nullptr)) {}
  lineage_ref& operator=(lineage_ref other) noexcept {
    std::swap(lineage_, other.lineage_);
    return *this;
  }
  ~lineage_ref() { release_lineage(lineage_); }
  lineage* get() const noexcept { return lineage_; }

 private:
  explicit lineage_ref(lineage* l) noexcept : lineage_(l) {}
  lineage* lineage_;
};

inline constexpr struct from_lineage_t {
  explicit from_lineage_t() = default;
} from_lineage{};
}  // namespace detail

class MEMLIMITS_API task {
 public:
  task();  // std::bad_alloc without memory
  // A child of the calling task: under all its active guards.
  explicit task(inherit_t);
  // A child of the task that captured `l` (null: a task of its own).
  task(detail::from_lineage_t, detail::lineage* l);
  // Precondition: not current anywhere, no active guard of its own.
  ~task();
  task(const task&) = delete;
  task& operator=(const task&) = delete;

 private:
  friend class task_scope;
  detail::task_state* task_;
};

// Makes `t` the calling thread's current task until destroyed, then makes
// the previous one current again.
class MEMLIMITS_API task_scope {
 public:
  explicit task_scope(task& t) noexcept;
  ~task_scope();
  task_scope(const task_scope&) = delete;
  task_scope& operator=(const task_scope&) = delete;

 private:
  detail::task_state* previous_;
};

namespace detail {

// The callable that bind_limits returns.
template <class F>
class limits_binder {
 public:
  limits_binder(F f, lineage_ref l) : f_(std::move(f)), lineage_(std::move(l)) {}

  template <class... Args>
    requires std::is_invocable_v<F&, Args...>
  std::invoke_result_t<F&, Args...> operator()(Args&&... args) {
    return run(lineage_.get(), f_, std::forward<Args>(args)...);
  }
  template <class... Args>
    requires std::is_invocable_v<const F&, Args...>
  std::invoke_result_t<const F&, Args...> operator()(Args&&... args) const {
    return run(lineage_.get(), f_, std::forward<Args>(args)...);
  }

 private:
  template <class G, class... Args>
  static std::invoke_result_t<G&, Args...> run(lineage* l, G& f, Args&&... args) {
    task child(from_lineage, l);
    task_scope running(child);
    if constexpr (std::is_void_v<std::invoke_result_t<G&, Args...>>) {
      // The child's work ended because its guards did: nothing to report
      // (the guard that tripped or exited returns its error), and nothing
      // for a std::thread or a pool to terminate on. Any other limit_reached
      // goes on; rethrown outside the handler, so that the handler ends the
      // search phase of the interruption's unwinding (it is caught here).
      std::exception_ptr escaped;
      try {
        std::invoke(f, std::forward<Args>(args)...);
      } catch (const limit_reached&) {
        if (!is_interrupted()) escaped = std::current_exception();
      }
      if (escaped) std::rethrow_exception(escaped);
    } else {
      return std::invoke(f, std::forward<Args>(args)...);
    }
  }

  F f_;
  lineage_ref lineage_;
};

}  // namespace detail

// A callable that runs f, with the arguments it is called with, as a fresh
// child task of the calling task (the one calling bind_limits), on
// whichever thread calls it: std::jthread t(memlimits::bind_limits(f)),
// pool.submit(memlimits::bind_limits(f)). For a void f, a limit_reached
// that ends the child because an inherited guard tripped or exited is
// caught (the guard reports it); a non-void f lets it propagate, as a
// std::future does. std::bad_alloc without memory.
template <class F>
auto bind_limits(F&& f) {
  return detail::limits_binder<std::decay_t<F>>(std::forward<F>(f),
                                                detail::lineage_ref::capture());
}

}  // namespace memlimits
