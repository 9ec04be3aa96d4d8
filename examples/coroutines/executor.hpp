// executor.hpp — the coroutine machinery of the coroutines example: co<T>,
// a lazy coroutine type, and a small executor (one queue of coroutine
// handles, timers, two std::jthreads) that resumes each coroutine inside a
// memlimits::task_scope of the coroutine's own memlimits::task. It knows
// nothing else of limits: the guards are in the coroutines (handlers.cpp).
//
// What a coroutine can co_await:
//   co_await exec.schedule();              to the back of the queue
//   co_await exec.sleep_for(1ms);          a timer
//   co_await some_co;                      another coroutine of the same
//                                          task, run at once on this thread
//   co_await exec.run_child(c, t, info);   another coroutine as a task of
//                                          its own, t (resumed by the
//                                          executor like any other)
//
// The rule that shapes it: a memlimits::task is current on one thread at a
// time (making it current on a thread while another thread still has it
// current aborts the process). So a coroutine that suspends is queued
// again only after the resume() that suspended it has returned and its
// task_scope has ended, never from inside await_suspend: await_suspend
// records what it wants in a thread-local slot (detail::after_resume), and
// the worker does it once resume() has returned (executor.cpp).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include "memlimits/task.hpp"

namespace demo {

using clock_type = std::chrono::steady_clock;

// The executor's counters for one coroutine (with the coroutines of the
// same task that it awaits).
struct coroutine_info {
  std::atomic<int> resumed[2] = {0, 0};  // resumptions on executor thread 0 and 1
  std::atomic<int> awaits{0};            // co_await expressions it has passed
};

// A resumption to make: the suspended coroutine, and the task it is part of.
struct item {
  std::coroutine_handle<> handle;
  memlimits::task* task = nullptr;
  coroutine_info* info = nullptr;
};

template <class T = void>
class co;

namespace detail {

// What the coroutine that has just suspended on this thread asks the
// worker to do once its resume() has returned.
struct after_resume {
  enum class action { none, post, sleep, finish };
  action what = action::none;
  item next{};                    // post, sleep: what to resume later
  clock_type::time_point when{};  // sleep: when
};

// The thread's slot, and the item it is resuming. Out of line (executor.cpp)
// so that no coroutine keeps the address of one thread's variable across a
// suspension and uses it on another thread.
after_resume& this_thread_after_resume() noexcept;
const item& this_thread_current() noexcept;
void set_this_thread_current(const item& it) noexcept;

// The awaiting side of every awaitable here: one more co_await passed.
inline void count_await() noexcept {
  this_thread_current().info->awaits.fetch_add(1, std::memory_order_relaxed);
}

struct promise_base {
  // What happens when the coroutine ends.
  enum class on_end { unset, resume_awaiter, post_awaiter, finish };
  on_end end = on_end::unset;
  std::coroutine_handle<> awaiter;  // resume_awaiter: same task, this thread, now
  item awaiter_item{};              // post_awaiter: another task, queued
  std::exception_ptr error;

  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) noexcept {
      promise_base& p = self.promise();
      switch (p.end) {
        case on_end::resume_awaiter:
          return p.awaiter;  // symmetric transfer: the same task goes on
        case on_end::post_awaiter:
          this_thread_after_resume() = {after_resume::action::post, p.awaiter_item, {}};
          break;
        case on_end::finish:
          this_thread_after_resume() = {after_resume::action::finish, {}, {}};
          break;
        case on_end::unset:
          break;
      }
      return std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }  // lazy
  final_awaiter final_suspend() const noexcept { return {}; }
  // An exception that leaves the coroutine (a limit_reached that nobody
  // caught, say) goes to whoever awaits it.
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct promise : promise_base {
  std::optional<T> value;
  co<T> get_return_object() noexcept;
  template <class U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
  T take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct promise<void> : promise_base {
  co<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() {
    if (error) std::rethrow_exception(error);
  }
};

}  // namespace detail

// A coroutine that starts when it is awaited (or started by the executor)
// and owns its frame.
template <class T>
class [[nodiscard]] co {
 public:
  using promise_type = detail::promise<T>;

  co(co&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  co& operator=(co&&) = delete;
  ~co() {
    if (handle_) handle_.destroy();
  }

  // co_await in the same task: the coroutine runs now, on this thread, and
  // resumes its awaiter when it ends; its exception is rethrown there.
  auto operator co_await() && noexcept {
    struct awaiter {
      std::coroutine_handle<promise_type> callee;
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
        callee.promise().end = detail::promise_base::on_end::resume_awaiter;
        callee.promise().awaiter = caller;
        return callee;
      }
      T await_resume() {
        detail::count_await();
        return callee.promise().take();
      }
    };
    return awaiter{handle_};
  }

  std::coroutine_handle<promise_type> handle() const noexcept { return handle_; }
  bool done() const noexcept { return handle_ && handle_.done(); }
  // Precondition: done(). Rethrows what escaped it.
  T result() { return handle_.promise().take(); }

 private:
  friend promise_type;
  explicit co(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  std::coroutine_handle<promise_type> handle_;
};

template <class T>
co<T> detail::promise<T>::get_return_object() noexcept {
  return co<T>(std::coroutine_handle<promise<T>>::from_promise(*this));
}
inline co<void> detail::promise<void>::get_return_object() noexcept {
  return co<void>(std::coroutine_handle<promise<void>>::from_promise(*this));
}

// One queue of coroutines to resume, timers, and two threads that resume
// them, each coroutine inside a task_scope of its task.
class executor {
 public:
  static constexpr int thread_count = 2;

  executor();
  ~executor() = default;  // the jthreads stop and are joined first (declared last)
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  // Starts c as (part of) task t. From outside the executor.
  void start(co<void>& c, memlimits::task& t, coroutine_info& info);
  // Waits until every coroutine start()ed has ended, at most `timeout`;
  // whether they all have.
  bool wait_finished_for(clock_type::duration timeout);

  // co_await exec.schedule(): to the back of the queue.
  auto schedule() const noexcept {
    struct awaiter {
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> self) noexcept {
        const item& running = detail::this_thread_current();
        detail::this_thread_after_resume() = {
            detail::after_resume::action::post, {self, running.task, running.info}, {}};
      }
      void await_resume() const noexcept { detail::count_await(); }
    };
    return awaiter{};
  }

  // co_await exec.sleep_for(d): resumed after d (by either thread).
  auto sleep_for(clock_type::duration d) const noexcept {
    struct awaiter {
      clock_type::duration delay;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> self) noexcept {
        const item& running = detail::this_thread_current();
        detail::this_thread_after_resume() = {detail::after_resume::action::sleep,
                                              {self, running.task, running.info},
                                              clock_type::now() + delay};
      }
      void await_resume() const noexcept { detail::count_await(); }
    };
    return awaiter{d};
  }

  // co_await exec.run_child(c, t, info): runs c as task t, on the executor
  // like any other coroutine, and resumes the awaiter with its result (or
  // its exception) once it has ended. t and info must outlive the co_await.
  template <class T>
  auto run_child(co<T> child, memlimits::task& t, coroutine_info& info) const noexcept {
    struct awaiter {
      co<T> child;
      memlimits::task* task;
      coroutine_info* info;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> self) noexcept {
        auto& p = child.handle().promise();
        const item& running = detail::this_thread_current();
        p.end = detail::promise_base::on_end::post_awaiter;
        p.awaiter_item = {self, running.task, running.info};
        // The child is queued once this resume() has returned, as any other.
        detail::this_thread_after_resume() = {
            detail::after_resume::action::post, {child.handle(), task, info}, {}};
      }
      T await_resume() {
        detail::count_await();
        return child.result();
      }
    };
    return awaiter{std::move(child), &t, &info};
  }

 private:
  struct timer {
    clock_type::time_point when;
    item it;
    bool operator>(const timer& other) const noexcept { return when > other.when; }
  };

  void work(const std::stop_token& stop, int index);
  void post(const item& it);
  void add_timer(const timer& t);
  void finished();

  std::mutex mutex_;
  std::condition_variable_any wake_;  // a worker: an item or an earlier timer
  std::condition_variable all_finished_;
  std::deque<item> ready_;
  std::priority_queue<timer, std::vector<timer>, std::greater<>> timers_;
  int unfinished_ = 0;
  std::jthread threads_[thread_count];  // last: stopped and joined first
};

}  // namespace demo
