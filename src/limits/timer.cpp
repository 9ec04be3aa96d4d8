// limits/timer.cpp — the timer thread behind token::set_at (limits/timer.hpp).
// Layer 5.
#include "limits/timer.hpp"

#include <pthread.h>

#include <atomic>
#include <cstdlib>
#include <condition_variable>
#include <mutex>
#include <new>
#include <queue>
#include <system_error>
#include <vector>

#include "limits/token_state.hpp"
#include "platform/platform.hpp"

namespace memlimits::detail {
namespace {

using clock = std::chrono::steady_clock;

struct deadline {
  clock::time_point when;
  token_state* state;  // a reference
};

struct later {
  bool operator()(const deadline& a, const deadline& b) const noexcept { return a.when > b.when; }
};

class timer {
 public:
  timer() = default;
  timer(const timer&) = delete;
  timer& operator=(const timer&) = delete;

  // At exit (atexit): the thread is told to stop and joined; pending
  // deadlines are dropped (no one is left to be stopped by them). The
  // object itself is never destroyed: a deadline set later, by another
  // thread or a static destructor, is ignored.
  void stop() {
    bool join = false;
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      join = running_;
      running_ = false;
      wake_.notify_one();
    }
    if (join) ::pthread_join(thread_, nullptr);
    std::lock_guard lock(mutex_);
    while (!queue_.empty()) {
      release_token_state(queue_.top().state);
      queue_.pop();
    }
  }

  void add(token_state& s, clock::time_point when) {
    std::lock_guard lock(mutex_);
    if (stopping_) return;  // the process is exiting
    start_locked();           // may throw: nothing recorded
    queue_.push({when, &s});  // may throw: nothing recorded
    retain_token_state(&s);
    wake_.notify_one();
  }

  void resume_after_fork() {
    if (!lost_thread_.load(std::memory_order_acquire)) return;
    std::lock_guard lock(mutex_);
    lost_thread_.store(false, std::memory_order_relaxed);
    if (!queue_.empty() && !stopping_) {
      try {
        start_locked();
      } catch (...) {
        lost_thread_.store(true, std::memory_order_relaxed);  // try again later
      }
    }
  }

  // fork(): no thread holds the lock while the process is copied; the child
  // has no timer thread, and the lock and condition variable of the copy
  // may describe threads that do not exist there: both start afresh.
  void fork_prepare() { mutex_.lock(); }
  void fork_parent() { mutex_.unlock(); }
  void fork_child() {
    new (&mutex_) std::mutex;
    new (&wake_) std::condition_variable;
    if (running_) {
      running_ = false;
      lost_thread_.store(true, std::memory_order_release);
    }
  }

 private:
  void start_locked() {
    if (running_) return;
    const int error = ::pthread_create(&thread_, nullptr, &timer::entry, this);
    if (error != 0) throw std::system_error(error, std::generic_category(),
                                            "memlimits: cannot start the timer thread");
    running_ = true;
  }

  static void* entry(void* self) {
    platform::wake_on_time();
    static_cast<timer*>(self)->run();
    return nullptr;
  }

  void run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (queue_.empty()) {
        wake_.wait(lock);
        continue;
      }
      const clock::time_point next = queue_.top().when;
      if (clock::now() < next) {
        wake_.wait_until(lock, next);
        continue;
      }
      token_state* due = queue_.top().state;
      queue_.pop();
      lock.unlock();
      // A token nobody holds any more cannot be observed: it is only freed.
      if (due->references.load(std::memory_order_acquire) > 1) set_token_state(*due);
      release_token_state(due);
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::priority_queue<deadline, std::vector<deadline>, later> queue_;  // under mutex_
  pthread_t thread_{};
  bool running_ = false;   // under mutex_
  bool stopping_ = false;  // under mutex_
  std::atomic<bool> lost_thread_{false};  // a child after fork() with no thread yet
};

// Constructed at the first deadline, stopped at exit, never destroyed.
void stop_at_exit() noexcept;
timer& the_timer() {
  alignas(timer) static unsigned char storage[sizeof(timer)];
  static timer* const instance = [] {
    timer* t = new (storage) timer;
    std::atexit(&stop_at_exit);
    return t;
  }();
  return *instance;
}
void stop_at_exit() noexcept { the_timer().stop(); }

// Registered by set_token_at once the_timer() exists: that the handlers are
// registered also says that the timer exists.
void fork_prepare() { the_timer().fork_prepare(); }
void fork_parent() { the_timer().fork_parent(); }
void fork_child() { the_timer().fork_child(); }
constinit platform::fork_handlers fork_hooks{&fork_prepare, &fork_parent, &fork_child};

}  // namespace

void set_token_at(token_state& s, std::chrono::steady_clock::time_point when) {
  if (when == clock::time_point::max()) return;  // never
  timer& t = the_timer();
  platform::register_fork_handlers(fork_hooks);
  t.add(s, when);  // starts the thread if there is none (in a child after fork() too)
}

void resume_timer_after_fork() {
  if (fork_hooks.registered.load(std::memory_order_acquire)) the_timer().resume_after_fork();
}

}  // namespace memlimits::detail
