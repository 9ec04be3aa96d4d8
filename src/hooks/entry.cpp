// hooks/entry.cpp — the slow paths of hooks/entry.hpp. Layer 4.
#include "hooks/entry.hpp"

#include <cstring>

#include "core/subscribers.hpp"
#include "tracking/tracking.hpp"

namespace memlimits::hooks {

namespace {

void* allocate_plain(std::size_t bytes, std::size_t alignment, bool zero) noexcept {
  if (alignment != 0) {
    void* p = platform::system::memalign(alignment, bytes);
    if (p != nullptr && zero) std::memset(p, 0, bytes);
    return p;
  }
  return zero ? platform::system::calloc(1, bytes) : platform::system::malloc(bytes);
}

// A block from an allocation's slow path. When its free cannot be
// recognised (the range could not hold it, or there was no memory for its
// record), `report_free` is set: the caller reports the free of `samples`
// once the limits have decided on the block, so that they see it while it
// is being allocated, and it does not stay live in their eyes for ever.
struct slow_block {
  void* block = nullptr;
  bool report_free = false;
  core::block_samples samples;
};

// A block holding `samples` samples: a block of the tracking layer, handed
// to the subscribers and recorded for its free.
slow_block allocate_sampled(std::size_t bytes, std::size_t alignment, source origin, bool zero,
                            std::uint64_t samples, void* caller) noexcept {
  slow_block out;
  void* p = tracking::allocate_block(bytes, alignment, zero);
  const bool trackable = p != nullptr;
  if (!trackable) {
    if constexpr (!tracking::uses_range) return out;  // errno is ENOMEM, as the system set it
    p = allocate_plain(bytes, alignment, zero);
    if (p == nullptr) return out;
    tracking::count_untracked();
  }

  const int saved_errno = errno;
  const core::sampled_block block{p, bytes, samples, origin, {}};
  if (core::dispatch_alloc(block, caller, out.samples)) {
    tracking::record* r = trackable ? tracking::new_record() : nullptr;
    if (r != nullptr) {
      r->address = p;
      r->size = bytes;
      r->samples = out.samples;
    }
    if (r == nullptr || !tracking::attach(r)) {
      out.report_free = true;
      if (r != nullptr) tracking::delete_record(r);
    }
  }
  errno = saved_errno;
  out.block = p;
  return out;
}

// Frees any block the hooks handed out, as free() does.
void free_block(void* p) noexcept {
  if (tracking::may_be_sampled(p)) return deallocate_slow(p);
  platform::system::free(p);
}

// A sampled block the limits refused: freed, its samples credited.
void discard(const slow_block& b) noexcept {
  if (b.report_free) core::dispatch_free(b.samples);
  free_block(b.block);
}

}  // namespace

void* refund_failed(std::size_t bytes) noexcept {
  core::refund(bytes);
  return nullptr;
}

void* allocate_slow(std::size_t bytes, std::size_t alignment, source origin, bool zero,
                    call_kind kind, void* caller) noexcept {
  if (MEMLIMITS_UNLIKELY(bytes > core::max_block_bytes)) {
    // Beyond what the core counts: the system decides, and the stream never
    // sees the request (consume() counted it; refund() undoes that exactly).
    core::refund(bytes);
    if (alignment != 0) return platform::system::memalign(alignment, bytes);
    return zero ? platform::system::calloc(1, bytes) : platform::system::malloc(bytes);
  }
  const std::uint64_t samples = core::on_event(bytes);
  if (core::task_refuses(bytes, kind, false, caller)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (samples == 0) {
    void* p = allocate_plain(bytes, alignment, zero);
    if (MEMLIMITS_UNLIKELY(p == nullptr)) core::refund_event(bytes);  // errno is ENOMEM
    return p;
  }
  const slow_block b = allocate_sampled(bytes, alignment, origin, zero, samples, caller);
  if (MEMLIMITS_UNLIKELY(b.block == nullptr)) {
    core::refund_event(bytes);  // errno is ENOMEM, as the system set it
    return nullptr;
  }
  if (core::task_refuses(bytes, kind, true, caller)) {
    // A limit tripped on this block's samples: it is the one interrupted.
    discard(b);
    errno = ENOMEM;
    return nullptr;
  }
  if (b.report_free) core::dispatch_free(b.samples);
  return b.block;
}

void* allocate_zeroed_slow(std::size_t count, std::size_t size, source origin,
                           void* caller) noexcept {
  const std::size_t bytes = count * size;  // allocate_zeroed checked the overflow
  if (MEMLIMITS_UNLIKELY(bytes > core::max_block_bytes)) {
    core::refund(bytes);
    return platform::system::calloc(count, size);
  }
  return allocate_slow(bytes, 0, origin, true, call_kind::c_library, caller);
}

void deallocate_slow(void* p) noexcept {
  if (p == nullptr) return;
  const int saved_errno = errno;
  if (tracking::record* r = tracking::detach(p); r != nullptr) {
    core::dispatch_free(r->samples);
    tracking::delete_record(r);
  }
  tracking::release(p);
  errno = saved_errno;
}

void* reallocate_slow(void* p, std::size_t bytes, bool event_pending, void* caller) noexcept {
  if (MEMLIMITS_UNLIKELY(bytes > core::max_block_bytes)) {
    if (event_pending) core::refund(bytes);  // out of the stream, as in allocate_slow
    return reallocate_by_system(p, bytes, 0, false);
  }
  // `accepted`: the fast path counted the block; undo that if it fails.
  const bool accepted = !event_pending && core::consume(bytes);
  const std::uint64_t samples = accepted ? 0 : core::on_event(bytes);
  if (!accepted && core::task_refuses(bytes, call_kind::c_library, false, caller)) {
    errno = ENOMEM;  // p is left untouched, as for any failed realloc
    return nullptr;
  }
  const bool tracked = tracking::owns(p);
  void* q;
  if (samples == 0 && !tracked) {
    q = platform::system::realloc(p, bytes);
  } else {
    // The old or the new block is sampled: move the contents, as realloc may.
    slow_block b;
    if (samples == 0) {
      b.block = platform::system::malloc(bytes);
    } else {
      b = allocate_sampled(bytes, 0, source::malloc, false, samples, caller);
      if (b.block != nullptr && core::task_refuses(bytes, call_kind::c_library, true, caller)) {
        discard(b);
        errno = ENOMEM;
        return nullptr;
      }
      if (b.report_free) core::dispatch_free(b.samples);
    }
    q = b.block;
    if (q != nullptr) {
      const std::size_t old_size =
          tracked ? tracking::usable_size(p) : platform::system::usable_size(p);
      std::memcpy(q, p, old_size < bytes ? old_size : bytes);
      free_block(p);
    }
  }
  if (q == nullptr) {
    if (accepted) {
      core::refund(bytes);
    } else {
      core::refund_event(bytes);
    }
  }
  return q;
}

namespace {

// reallocate_by_system() for a block of the range, which the system must
// not see: the system is asked what it would do with a request of this size
// (given no block, or one of its own for size 0), and the range's block is
// moved or freed to match. reallocarray is checked here and asked as
// realloc: glibc's reallocarray calls realloc through the PLT, which is the
// realloc hook.
void* reallocate_range_block(void* p, std::size_t count, std::size_t size, bool array,
                             bool to_zero) noexcept {
  std::size_t bytes = count;
  if (array && __builtin_mul_overflow(count, size, &bytes)) {
    errno = ENOMEM;  // what every reallocarray does (p untouched)
    return nullptr;
  }
  void* q;
  if (to_zero) {
    // Frees its block and returns nullptr (glibc), or returns a block.
    void* own = platform::system::malloc(1);
    q = own == nullptr ? nullptr : platform::system::realloc(own, 0);
  } else {
    q = platform::system::realloc(nullptr, bytes);  // its failure, or a block of its own
    if (q == nullptr) return nullptr;  // p untouched; errno as the system set it
    const std::size_t old_size = tracking::usable_size(p);
    std::memcpy(q, p, old_size < bytes ? old_size : bytes);
  }
  const int system_errno = errno;
  deallocate_slow(p);
  errno = system_errno;
  return q;
}

}  // namespace

void* reallocate_by_system(void* p, std::size_t count, std::size_t size, bool array) noexcept {
  const auto call = [&] {
    return array ? platform::system::reallocarray(p, count, size)
                 : platform::system::realloc(p, count);
  };
  if (!tracking::may_be_sampled(p)) return call();
  std::size_t product;
  const bool to_zero =
      array ? !__builtin_mul_overflow(count, size, &product) && product == 0 : count == 0;
  if constexpr (tracking::uses_range) {
    return reallocate_range_block(p, count, size, array, to_zero);
  }

  const int saved_errno = errno;
  // Out of the table before the call: once the system has freed p, another
  // thread may be handed the same address and record it.
  tracking::record* r = tracking::detach(p);
  errno = saved_errno;
  if (r == nullptr) return call();

  void* q = call();
  const int system_errno = errno;
  if (q == nullptr && !to_zero) {
    // The call failed and p is untouched: it keeps its record (its owner is
    // the only one who may free it meanwhile).
    if (!tracking::attach(r)) {
      core::dispatch_free(r->samples);  // out of metadata: report the free now rather than never
      tracking::delete_record(r);
    }
  } else {
    core::dispatch_free(r->samples);
    tracking::delete_record(r);
  }
  errno = system_errno;
  return q;
}

}  // namespace memlimits::hooks
