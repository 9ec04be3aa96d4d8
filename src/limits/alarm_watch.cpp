// limits/alarm_watch.cpp — lists of thread alarms (limits/alarm_watch.hpp).
// Layer 5.
#include "limits/alarm_watch.hpp"

#include <new>

#include "platform/platform.hpp"
#include "platform/system_allocator.hpp"

namespace memlimits::detail {
namespace {

// Raises in progress, process-wide.
constinit std::atomic<std::uint32_t> raisers{0};

}  // namespace

void push_watch(watch_list& list, alarm_watch* node, core::alarm* alarm) noexcept {
  node->claimed.store(true, std::memory_order_relaxed);
  node->alarm.store(alarm, std::memory_order_relaxed);
  alarm_watch* head = list.head.load(std::memory_order_relaxed);
  do {
    node->next = head;
  } while (!list.head.compare_exchange_weak(head, node, std::memory_order_seq_cst,
                                            std::memory_order_relaxed));
}

alarm_watch* claim_watch(watch_list& list, core::alarm* alarm) noexcept {
  for (alarm_watch* w = list.head.load(std::memory_order_acquire); w != nullptr; w = w->next) {
    bool expected = false;
    if (!w->claimed.load(std::memory_order_relaxed) &&
        w->claimed.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      set_watch_alarm(w, alarm);
      return w;
    }
  }
  void* memory = platform::system::malloc(sizeof(alarm_watch));
  if (memory == nullptr) return nullptr;
  auto* w = new (memory) alarm_watch;
  push_watch(list, w, alarm);
  // The push published it with a relaxed alarm store: make it seq_cst.
  set_watch_alarm(w, alarm);
  return w;
}

void release_watch(alarm_watch* w) noexcept {
  if (w == nullptr) return;
  w->alarm.store(nullptr, std::memory_order_seq_cst);
  w->claimed.store(false, std::memory_order_release);
}

void raise_watchers(const watch_list& list) noexcept {
  raisers.fetch_add(1, std::memory_order_seq_cst);
  for (alarm_watch* w = list.head.load(std::memory_order_seq_cst); w != nullptr; w = w->next) {
    if (core::alarm* alarm = w->alarm.load(std::memory_order_seq_cst); alarm != nullptr) {
      core::raise_alarm(alarm);
    }
  }
  raisers.fetch_sub(1, std::memory_order_release);
}

void free_watches(watch_list& list, const alarm_watch* embedded) noexcept {
  for (alarm_watch* w = list.head.load(std::memory_order_acquire); w != nullptr;) {
    alarm_watch* const next = w->next;
    if (w != embedded) {
      w->~alarm_watch();
      platform::system::free(w);
    }
    w = next;
  }
  list.head.store(nullptr, std::memory_order_relaxed);
}

void wait_for_raisers() noexcept {
  while (raisers.load(std::memory_order_seq_cst) != 0) platform::yield();
}

void reset_raisers_after_fork() noexcept { raisers.store(0, std::memory_order_relaxed); }

}  // namespace memlimits::detail
