// pool.hpp — the worker_pool demo's server machinery: a fixed-size thread
// pool that runs queued jobs, and a watchdog thread that cancels jobs past
// their deadline by setting their memlimits::token. The pool itself knows
// nothing of limits: the demo wraps each job in a guard before submitting
// it, as a server would.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include "memlimits/limits.hpp"

namespace demo {

class thread_pool {
 public:
  explicit thread_pool(unsigned threads) {
    for (unsigned i = 0; i < threads; ++i) {
      workers_.emplace_back([this](std::stop_token stop) { work(stop); });
    }
  }
  // Runs the jobs still queued, then joins the workers.
  ~thread_pool() {
    {
      // Under the lock, so that no worker is between its check and its wait.
      std::lock_guard lock(mutex_);
      for (auto& worker : workers_) worker.request_stop();
    }
    ready_.notify_all();
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  void submit(std::function<void()> job) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(job));
    }
    ready_.notify_one();
  }
  unsigned size() const { return static_cast<unsigned>(workers_.size()); }

 private:
  void work(std::stop_token stop) {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return !queue_.empty() || stop.stop_requested(); });
        if (queue_.empty()) return;  // stopping, and nothing left to do
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job();  // jobs report their own outcome; they do not throw
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::jthread> workers_;  // last: joined before the queue is destroyed
};

// Sets a job's token when its deadline passes, unless the job finished
// first (and destroyed its `armed` handle).
class watchdog {
 public:
  using clock = std::chrono::steady_clock;

  watchdog() : thread_([this](std::stop_token stop) { watch(stop); }) {}
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);  // as in ~thread_pool
      thread_.request_stop();
    }
    wake_.notify_all();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

  // Disarms its alarm when destroyed.
  class [[nodiscard]] armed {
   public:
    armed(watchdog& dog, std::uint64_t id) : dog_(dog), id_(id) {}
    ~armed() { dog_.disarm(id_); }
    armed(const armed&) = delete;
    armed& operator=(const armed&) = delete;

   private:
    watchdog& dog_;
    std::uint64_t id_;
  };

  // Sets t at `deadline`, unless the returned handle is destroyed before.
  armed arm(memlimits::token t, clock::time_point deadline) {
    std::lock_guard lock(mutex_);
    alarms_.push_back({++last_id_, deadline, std::move(t)});
    wake_.notify_all();
    return armed(*this, last_id_);
  }

 private:
  void disarm(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    std::erase_if(alarms_, [id](const alarm& a) { return a.id == id; });
  }

  struct alarm {
    std::uint64_t id;
    clock::time_point deadline;
    memlimits::token token;
  };

  void watch(std::stop_token stop) {
    std::unique_lock lock(mutex_);
    while (!stop.stop_requested()) {
      auto next = clock::time_point::max();
      for (auto it = alarms_.begin(); it != alarms_.end();) {
        if (it->deadline <= clock::now()) {
          it->token.set();  // the job stops at its next allocation
          it = alarms_.erase(it);
        } else {
          next = std::min(next, it->deadline);
          ++it;
        }
      }
      if (next == clock::time_point::max()) {
        wake_.wait(lock);
      } else {
        wake_.wait_until(lock, next);
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<alarm> alarms_;
  std::uint64_t last_id_ = 0;
  std::jthread thread_;  // last: started after, and joined before, the members it uses
};

}  // namespace demo
