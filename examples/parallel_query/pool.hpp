// pool.hpp — the parallel_query example's shared thread pool: a queue of
// std::function<void()> jobs run by a fixed set of std::jthreads; submit()
// returns the std::future of the job's result. The pool knows nothing of
// limits: a query binds each part to its guard (memlimits::bind_limits)
// before submitting it, and the part's future carries its value or the
// exception that ended it, so a worker survives every part it runs.
#pragma once

#include <condition_variable>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace pq {

class thread_pool {
 public:
  explicit thread_pool(unsigned threads) {
    workers_.reserve(threads);
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

  // Queues f() and returns the future of its result (or of the exception it
  // threw). All-or-nothing: everything the job needs is allocated before it
  // is queued, so if submit throws (std::bad_alloc, or memlimits'
  // limit_reached in a caller under a tripped guard), nothing was queued and
  // nothing will run; if it returns, the job will run.
  template <class F>
  auto submit(F f) -> std::future<std::invoke_result_t<F&>> {
    using R = std::invoke_result_t<F&>;
    // A shared_ptr: std::function needs a copyable callable, and a
    // packaged_task is move-only.
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(f));
    std::future<R> result = task->get_future();
    std::list<std::function<void()>> job;
    job.emplace_back([task] { (*task)(); });  // a packaged_task stores what f throws
    {
      std::lock_guard lock(mutex_);
      queue_.splice(queue_.end(), job);  // moves the node: no allocation
    }
    ready_.notify_one();
    return result;
  }

  unsigned size() const { return static_cast<unsigned>(workers_.size()); }

 private:
  void work(std::stop_token stop) {
    for (;;) {
      std::list<std::function<void()>> job;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return !queue_.empty() || stop.stop_requested(); });
        if (queue_.empty()) return;  // stopping, and nothing left to do
        job.splice(job.end(), queue_, queue_.begin());
      }
      job.front()();  // does not throw: the job's future holds its outcome
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::list<std::function<void()>> queue_;
  std::vector<std::jthread> workers_;  // last: joined before the queue is destroyed
};

}  // namespace pq
