// executor.cpp — the executor's threads (executor.hpp): each takes the next
// coroutine from the queue (or a timer that is due), resumes it inside a
// task_scope of its task, and only then, with the scope ended, does what
// the coroutine asked for as it suspended: queue it again, set a timer,
// queue the coroutine it resumes, or count it finished.
#include "executor.hpp"

#include "memlimits/task.hpp"

namespace demo {

namespace detail {

namespace {
thread_local after_resume this_thread_slot{};
thread_local item this_thread_item{};
}  // namespace

after_resume& this_thread_after_resume() noexcept { return this_thread_slot; }
const item& this_thread_current() noexcept { return this_thread_item; }
void set_this_thread_current(const item& it) noexcept { this_thread_item = it; }

}  // namespace detail

executor::executor() {
  for (int i = 0; i < thread_count; ++i) {
    threads_[i] = std::jthread([this, i](std::stop_token stop) { work(stop, i); });
  }
}

void executor::start(co<void>& c, memlimits::task& t, coroutine_info& info) {
  c.handle().promise().end = detail::promise_base::on_end::finish;
  {
    std::lock_guard lock(mutex_);
    ++unfinished_;
  }
  post({c.handle(), &t, &info});
}

bool executor::wait_finished_for(clock_type::duration timeout) {
  std::unique_lock lock(mutex_);
  return all_finished_.wait_for(lock, timeout, [&] { return unfinished_ == 0; });
}

void executor::post(const item& it) {
  {
    std::lock_guard lock(mutex_);
    ready_.push_back(it);
  }
  wake_.notify_one();
}

void executor::add_timer(const timer& t) {
  {
    std::lock_guard lock(mutex_);
    timers_.push(t);
  }
  wake_.notify_one();  // a worker waiting for a later timer looks again
}

void executor::finished() {
  {
    std::lock_guard lock(mutex_);
    --unfinished_;
  }
  all_finished_.notify_all();
}

void executor::work(const std::stop_token& stop, int index) {
  for (;;) {
    item next{};
    bool more = false;
    {
      std::unique_lock lock(mutex_);
      for (;;) {
        const clock_type::time_point now = clock_type::now();
        while (!timers_.empty() && timers_.top().when <= now) {
          ready_.push_back(timers_.top().it);
          timers_.pop();
        }
        if (!ready_.empty()) break;
        if (stop.stop_requested()) return;
        if (timers_.empty()) {
          wake_.wait(lock, stop, [&] { return !ready_.empty() || !timers_.empty(); });
        } else {
          const clock_type::time_point first = timers_.top().when;
          wake_.wait_until(lock, stop, first, [&] {
            return !ready_.empty() || timers_.empty() || timers_.top().when < first;
          });
        }
      }
      next = ready_.front();
      ready_.pop_front();
      more = !ready_.empty();
    }
    if (more) wake_.notify_one();  // timers came due together: the other thread takes one

    next.info->resumed[index].fetch_add(1, std::memory_order_relaxed);
    detail::set_this_thread_current(next);
    {
      // The coroutine's own task is current while it runs, on this thread.
      memlimits::task_scope running(*next.task);
      next.handle.resume();
    }
    // resume() has returned and the task is no longer current here: the
    // coroutine may now be resumed by either thread. (Not before: the other
    // thread would make its task current while this one still had it.)
    detail::set_this_thread_current({});
    const detail::after_resume after = std::exchange(detail::this_thread_after_resume(), {});
    switch (after.what) {
      case detail::after_resume::action::post:
        post(after.next);
        break;
      case detail::after_resume::action::sleep:
        add_timer({after.when, after.next});
        break;
      case detail::after_resume::action::finish:
        finished();
        break;
      case detail::after_resume::action::none:
        break;
    }
  }
}

}  // namespace demo
