// tests/support/sequence_tracker.hpp — what the tortures (torture_test,
// json_test) share: a tracker, for a profile at rate 1, that counts every
// live block of the process (bytes and blocks) and, while a `recording` is
// alive, appends the recording thread's blocks in order, as Records that
// `describe` makes of them (with, if asked, their innermost return
// addresses), to storage reserved up front. Its callbacks never allocate.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "memlimits/memprof.hpp"

namespace memlimits::testing {

template <class Record>
class sequence_tracker final : public memprof::tracker {
 public:
  using describe_fn = Record (*)(const memprof::allocation&);

  // `frames_kept`: return addresses kept per block when a recording asks
  // for them (the profile must take callstacks at least that deep).
  sequence_tracker(std::size_t capacity, describe_fn describe, std::size_t frames_kept = 0)
      : blocks_(std::make_unique<Record[]>(capacity)),
        frames_(std::make_unique<void*[]>(capacity * frames_kept)),
        capacity_(capacity),
        frames_kept_(frames_kept),
        describe_(describe) {}

  void* on_alloc(const memprof::allocation& a) override {
    live_bytes_.fetch_add(static_cast<std::int64_t>(a.size), std::memory_order_relaxed);
    live_blocks_.fetch_add(1, std::memory_order_relaxed);
    if (recording_.load(std::memory_order_relaxed) && std::this_thread::get_id() == owner_) {
      if (count_ < capacity_) {
        blocks_[count_] = describe_(a);
        if (with_frames_) {
          void** out = &frames_[count_ * frames_kept_];
          for (std::size_t i = 0; i < frames_kept_; ++i) {
            out[i] = i < a.callstack.size() ? a.callstack[i] : nullptr;
          }
        }
      }
      ++count_;
    }
    // size >= 1 (the block has a sample): the cookie is never null.
    return reinterpret_cast<void*>(static_cast<std::uintptr_t>(a.size));
  }
  void on_free(void* cookie) noexcept override {
    live_bytes_.fetch_sub(static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(cookie)),
                          std::memory_order_relaxed);
    live_blocks_.fetch_sub(1, std::memory_order_relaxed);
  }

  // RAII: records the calling thread's blocks while alive, from the start.
  class recording {
   public:
    explicit recording(sequence_tracker& t, bool with_frames = false) : t_(t) {
      t_.owner_ = std::this_thread::get_id();
      t_.count_ = 0;
      t_.with_frames_ = with_frames && t_.frames_kept_ > 0;
      t_.recording_.store(true, std::memory_order_relaxed);
    }
    ~recording() { t_.recording_.store(false, std::memory_order_relaxed); }
    recording(const recording&) = delete;
    recording& operator=(const recording&) = delete;

   private:
    sequence_tracker& t_;
  };

  std::size_t count() const { return count_; }
  bool overflowed() const { return count_ > capacity_; }
  const Record& at(std::size_t i) const { return blocks_[i]; }
  std::vector<Record> copy() const {
    return {blocks_.get(), blocks_.get() + std::min(count_, capacity_)};
  }
  const void* frame(std::size_t block, std::size_t i) const {
    return frames_[block * frames_kept_ + i];
  }
  std::int64_t live_bytes() const { return live_bytes_.load(std::memory_order_relaxed); }
  std::int64_t live_blocks() const { return live_blocks_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<Record[]> blocks_;
  std::unique_ptr<void*[]> frames_;
  std::size_t capacity_;
  std::size_t frames_kept_;
  describe_fn describe_;
  std::size_t count_ = 0;
  bool with_frames_ = false;
  std::thread::id owner_;
  std::atomic<bool> recording_{false};
  std::atomic<std::int64_t> live_bytes_{0};
  std::atomic<std::int64_t> live_blocks_{0};
};

}  // namespace memlimits::testing
