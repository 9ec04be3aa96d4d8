// memlimits/task.hpp — tasks for schedulers: limits that follow a unit of
// work (a coroutine, a fiber, a job of a user-level thread pool) rather than
// the thread that happens to run it.
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
#pragma once

#include "memlimits/config.hpp"

namespace memlimits {

namespace detail {
struct task_state;
}

class MEMLIMITS_API task {
 public:
  task();  // std::bad_alloc without memory
  // Precondition: not current anywhere, no active guard.
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

}  // namespace memlimits
