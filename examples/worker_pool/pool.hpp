// pool.hpp — the worker_pool demo's server machinery: a fixed-size thread
// pool that runs queued jobs. The pool itself knows nothing of limits: the
// demo wraps each job in a guard before submitting it, as a server would.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

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

}  // namespace demo
