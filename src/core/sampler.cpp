// core/sampler.cpp — the slow path of the sampling core, deadlines, the
// registry of thread states, seeding and fork handling. Layer 2.
#include "core/sampler.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "core/check.hpp"
#include "core/distributions.hpp"
#include "core/limits_port.hpp"
#include "core/spinlock.hpp"
#include "platform/environment.hpp"
#include "memlimits/sampling_rate.hpp"

namespace memlimits::core {

constinit thread_local thread_state tls_state MEMLIMITS_TLS_MODEL{};

namespace {

// The sampling rate of every thread, and a counter bumped when it changes.
constinit std::atomic<double> global_rate{default_sampling_rate};
std::atomic<std::uint64_t> global_rate_epoch{1};

// Seeds: thread k gets splitmix(seed + k). 0 means "not chosen yet".
std::atomic<std::uint64_t> global_seed{0};
std::atomic<std::uint64_t> seeded_threads{0};

// Registry of live thread states, for alarm_all_threads().
constinit spinlock registry_lock;
thread_state* registry_head = nullptr;

// MEMLIMITS_SEED: an unsigned integer (decimal, 0x hex or 0 octal), parsed
// whole; 0 or unset means "from the system's entropy". A malformed value gets
// one line on standard error and is ignored.
std::uint64_t seed_from_environment() noexcept {
  const char* text = platform::get_env("MEMLIMITS_SEED");
  if (text == nullptr || *text == '\0') return 0;
  std::uint64_t value = 0;
  if (platform::parse_unsigned(text, value)) return value;
  platform::report_ignored_variable("MEMLIMITS_SEED", text, "an unsigned integer");
  return 0;
}

std::uint64_t choose_seed() noexcept {
  std::uint64_t seed = global_seed.load(std::memory_order_acquire);
  if (seed != 0) return seed;
  std::uint64_t chosen = seed_from_environment();
  if (chosen == 0) chosen = platform::entropy() | 1;
  global_seed.compare_exchange_strong(seed, chosen, std::memory_order_acq_rel);
  return global_seed.load(std::memory_order_acquire);
}

void seed_thread(thread_state& s) noexcept {
  std::uint64_t mix = choose_seed() + seeded_threads.fetch_add(1, std::memory_order_relaxed);
  s.rng_.seed(splitmix64(mix));
}

// Draws the position of the next sampled word, counted from the arm point.
void draw_next_sample(thread_state& s) noexcept {
  const std::uint64_t gap = draw_gap_words(s.rng_, s.rate_, s.log1m_rate_);
  s.to_sample_ = static_cast<std::int64_t>((gap - 1) * 8);
}

void load_rate(thread_state& s) noexcept {
  s.rate_epoch_ = global_rate_epoch.load(std::memory_order_acquire);
  s.rate_ = global_rate.load(std::memory_order_relaxed);
  s.log1m_rate_ = std::log1p(-s.rate_);
}

// Arms the countdown at the nearest trigger.
void arm(thread_state& s) noexcept {
  const std::int64_t next = s.to_sample_ < s.to_deadline_ ? s.to_sample_ : s.to_deadline_;
  s.armed_ = next;
  s.countdown_ = next;
}

// Moves the arm point to the current stream position (the bytes consumed
// since the last arm are accounted for) and arms again.
void rearm_here(thread_state& s) noexcept {
  const std::int64_t consumed = s.armed_ - s.countdown_;
  s.position_at_arm_ += static_cast<std::uint64_t>(consumed);
  s.to_sample_ -= consumed;
  if (s.to_deadline_ != INT64_MAX) s.to_deadline_ -= consumed;
  arm(s);
}

void deregister_thread(void* arg) {
  auto* s = static_cast<thread_state*>(arg);
  spinlock_guard guard(registry_lock);
  if (s->status_ != status_live) return;
  if (s->prev_ != nullptr) s->prev_->next_ = s->next_; else registry_head = s->next_;
  if (s->next_ != nullptr) s->next_->prev_ = s->prev_;
  s->prev_ = s->next_ = nullptr;
  // The thread may still allocate (later TLS destructors, libc): it keeps
  // sampling, it is just no longer reachable by alarm_all_threads().
  s->status_ = status_exited;
}

void fork_prepare() { registry_lock.lock(); }
void fork_parent() { registry_lock.unlock(); }
void fork_child() {
  // Only the forking thread exists in the child; its generator must not
  // repeat the parent's draws.
  registry_lock.reset_after_fork();
  thread_state& self = this_thread_state();
  registry_head = nullptr;
  if (self.status_ == status_live) {
    self.prev_ = self.next_ = nullptr;
    registry_head = &self;
  }
  global_seed.store((global_seed.load(std::memory_order_relaxed) ^ platform::entropy()) | 1,
                    std::memory_order_relaxed);
  seed_thread(self);
  if (self.status_ != status_new) {
    rearm_here(self);
    draw_next_sample(self);
    arm(self);
  }
}

constinit platform::fork_handlers fork_hooks{&fork_prepare, &fork_parent, &fork_child};

void initialise_thread(thread_state& s) noexcept;

// Whether the process's start routine was claimed by a thread.
constinit std::atomic<bool> process_started{false};

void start_process_once() noexcept {
  if (on_process_start == nullptr || process_started.load(std::memory_order_relaxed)) return;
  if (process_started.exchange(true, std::memory_order_acq_rel)) return;
  on_process_start();
}

// A thread's first event (or first deadline): its state is made live and its
// stream starts at position 0, with nothing consumed.
void start_thread(thread_state& s) noexcept {
  initialise_thread(s);
  load_rate(s);
  draw_next_sample(s);
  s.position_at_arm_ = 0;
  s.armed_ = 0;
  s.countdown_ = 0;
  arm(s);
}

void initialise_thread(thread_state& s) noexcept {
  platform::register_fork_handlers(fork_hooks);
  seed_thread(s);
  load_rate(s);
  s.to_deadline_ = INT64_MAX;
  {
    spinlock_guard guard(registry_lock);
    s.prev_ = nullptr;
    s.next_ = registry_head;
    if (registry_head != nullptr) registry_head->prev_ = &s;
    registry_head = &s;
    s.status_ = status_live;
  }
  platform::on_thread_exit(&deregister_thread, &s);
}

}  // namespace

std::uint64_t on_event(std::size_t bytes) noexcept {
  thread_state& s = this_thread_state();
  if (s.reentry_ > 0) return 0;  // inside our own slow path or a callback
  const int saved_errno = errno;
  ++s.reentry_;
  // Clear the alarm before reading the state it announces: a request that
  // this exchange consumes (the requester's release store) is visible to the
  // reads below; one made later raises the alarm again.
  const std::int64_t level = s.alarm_.level.exchange(0, std::memory_order_acq_rel);

  // This block occupies bytes [before, after) of the stream since the arm
  // point. consume() subtracted counted_bytes(bytes) modulo 2^64, so adding
  // it back the same way gives the countdown before the block exactly, even
  // for sizes near SIZE_MAX. A block counts for at most max_block_bytes: no
  // such request can succeed (glibc refuses sizes above PTRDIFF_MAX), and the
  // cap keeps every offset below 2^63 (a gap is at most 2^61 bytes).
  const auto countdown_before = static_cast<std::int64_t>(
      static_cast<std::uint64_t>(s.countdown_) + counted_bytes(bytes));
  const std::int64_t block = bytes > max_block_bytes
                                 ? static_cast<std::int64_t>(max_block_bytes)
                                 : static_cast<std::int64_t>(counted_bytes(bytes));
  std::int64_t before = s.armed_ - countdown_before;
  std::int64_t after = before + block;

  // Nothing but the countdown's deadline brought the thread here unless
  // this is its first event, the alarm was raised, the rate changed, or
  // the block holds a sample (limits_port.hpp: task_ops::refill).
  bool deadline_only = level == 0;
  if (s.status_ == status_new) {
    start_process_once();
    // countdown_ was 0: the stream starts with this block.
    start_thread(s);
    before = 0;
    after = block;
    deadline_only = false;
  }
  if (s.rate_epoch_ != global_rate_epoch.load(std::memory_order_acquire) ||
      s.to_sample_ == INT64_MAX) {
    // The process has no memory: redrawing the gap from the start of this
    // block at the new rate is exact.
    load_rate(s);
    draw_next_sample(s);
    s.to_sample_ += before;
    deadline_only = false;
  }

  std::uint64_t samples = 0;
  if (s.to_sample_ < after) {
    // The sampled word lies in this block; the words after it in the block
    // are independent trials.
    const auto words_after = static_cast<std::uint64_t>((after - s.to_sample_) / 8 - 1);
    if (s.rate_ <= 0.5 &&
        static_cast<double>(words_after) * s.rate_ <= exact_binomial_mean_limit) {
      // The gaps from the sampled word on: each that ends inside the block
      // is one more sample (draw_binomial's walk); the first that ends past
      // it places the next sampled word, counted from the block's end, as
      // draw_next_sample() would (the gaps are memoryless). One gap drawn
      // per sample instead of a binomial and a fresh gap.
      samples = 1;
      std::uint64_t word = 0;  // the last sampled word, after the first one
      for (;;) {
        const std::uint64_t gap = draw_gap_words(s.rng_, s.rate_, s.log1m_rate_);
        if (gap > words_after - word) {
          s.to_sample_ = static_cast<std::int64_t>((word + gap - words_after - 1) * 8);
          break;
        }
        word += gap;
        ++samples;
      }
    } else {
      samples = 1 + draw_binomial(s.rng_, words_after, s.rate_);
      draw_next_sample(s);
    }
    deadline_only = false;
  } else {
    s.to_sample_ -= after;
  }
  if (s.to_deadline_ != INT64_MAX) s.to_deadline_ -= after;
  s.position_at_arm_ += static_cast<std::uint64_t>(after);
  s.deadline_only_ = deadline_only ? 1 : 0;
  arm(s);
  --s.reentry_;
  errno = saved_errno;
  return samples;
}

double sampling_rate() noexcept { return global_rate.load(std::memory_order_relaxed); }

void require_sampling_rate(const char* function, double rate) {
  if (is_valid_sampling_rate(rate)) return;
  char value[32];
  std::snprintf(value, sizeof value, "%.17g", rate);
  throw std::invalid_argument(std::string(function) + ": sampling_rate must be in (0, 1], got " +
                              value);
}

void set_sampling_rate(double rate) noexcept {
  MEMLIMITS_CHECK(is_valid_sampling_rate(rate), "sampling rate outside (0, 1]");
  if (global_rate.exchange(rate, std::memory_order_relaxed) == rate) return;
  global_rate_epoch.fetch_add(1, std::memory_order_acq_rel);
  alarm_all_threads();
  // The calling thread takes the new rate at its next allocation too.
  force_next_event();
}

void reseed(std::uint64_t seed) noexcept {
  // Any seed but 0 is kept as it is (0 would mean "unset").
  global_seed.store(seed != 0 ? seed : 0x9E3779B97F4A7C15ull, std::memory_order_release);
  seeded_threads.store(0, std::memory_order_relaxed);
  thread_state& s = this_thread_state();
  ++s.reentry_;
  if (s.status_ == status_new) {
    start_thread(s);
  } else {
    seed_thread(s);
  }
  // The pending gap is redrawn from here; the stream position and the
  // deadline keep their places.
  rearm_here(s);
  load_rate(s);
  draw_next_sample(s);
  arm(s);
  --s.reentry_;
}

void refund_event(std::size_t bytes) noexcept {
  thread_state& s = this_thread_state();
  const auto block = static_cast<std::int64_t>(event_bytes(bytes));
  // The arm point (the end of the block) moves back to the block's start.
  const std::int64_t consumed = s.armed_ - s.countdown_;
  s.position_at_arm_ -= static_cast<std::uint64_t>(block);
  if (s.to_deadline_ != INT64_MAX) s.to_deadline_ += block;
  arm(s);
  s.countdown_ -= consumed;
}

void set_deadline(std::uint64_t position) noexcept {
  thread_state& s = this_thread_state();
  MEMLIMITS_ASSERT(s.reentry_ == 0, "set_deadline with sampling off");
  if (s.status_ == status_new) {
    ++s.reentry_;
    start_thread(s);
    --s.reentry_;
  }
  rearm_here(s);
  if (position == no_deadline) {
    s.to_deadline_ = INT64_MAX;
  } else {
    // Offsets from the arm point stay below 2^62 on both sides.
    const auto offset = static_cast<std::int64_t>(position - s.position_at_arm_);
    constexpr std::int64_t bound = std::int64_t{1} << 62;
    s.to_deadline_ = offset > bound ? bound : offset < -bound ? -bound : offset;
  }
  arm(s);
}

void alarm_all_threads() noexcept {
  spinlock_guard guard(registry_lock);
  thread_state* self = &this_thread_state();
  for (thread_state* s = registry_head; s != nullptr; s = s->next_) {
    if (s != self) raise_alarm(&s->alarm_);
  }
}

}  // namespace memlimits::core
