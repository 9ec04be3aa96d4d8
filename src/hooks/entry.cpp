// hooks/entry.cpp — the slow paths of hooks/entry.hpp. Layer 4.
#include "hooks/entry.hpp"

#include <cstring>

#include "core/subscribers.hpp"

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

// A block holding `samples` samples: aligned to sampled_alignment, so that
// its free is recognised, and handed to the subscribers.
void* allocate_sampled(std::size_t bytes, std::size_t alignment, source origin, bool zero,
                       std::uint64_t samples, void* caller) noexcept {
  const std::size_t aligned_to =
      alignment > tracking::sampled_alignment ? alignment : tracking::sampled_alignment;
  void* p = platform::system::memalign(aligned_to, bytes);
  if (p == nullptr) return nullptr;  // errno is ENOMEM, as glibc set it
  if (zero) std::memset(p, 0, bytes);

  const int saved_errno = errno;
  const core::sampled_block block{p, bytes, samples, origin, {}};
  core::block_samples taken;
  if (core::dispatch_alloc(block, caller, taken)) {
    tracking::record* r = tracking::new_record();
    if (r != nullptr) {
      r->address = p;
      r->size = bytes;
      r->samples = taken;
    }
    if (r == nullptr || !tracking::insert(r)) {
      // Out of memory for the metadata: the free could not be recognised,
      // so report it now rather than never.
      core::dispatch_free(taken);
      if (r != nullptr) tracking::delete_record(r);
    }
  }
  errno = saved_errno;
  return p;
}

}  // namespace

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
  void* p = samples == 0 ? allocate_plain(bytes, alignment, zero)
                         : allocate_sampled(bytes, alignment, origin, zero, samples, caller);
  if (MEMLIMITS_UNLIKELY(p == nullptr)) {
    core::refund_event(bytes);  // errno is ENOMEM, as glibc set it
    return nullptr;
  }
  if (samples != 0 && core::task_refuses(bytes, kind, true, caller)) {
    // A limit tripped on this block's samples: it is the one interrupted.
    deallocate_slow(p);
    errno = ENOMEM;
    return nullptr;
  }
  return p;
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
  if (tracking::record* r = tracking::remove(p); r != nullptr) {
    core::dispatch_free(r->samples);
    tracking::delete_record(r);
  }
  platform::system::free(p);
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
  const bool tracked = tracking::may_be_sampled(p) && tracking::contains(p);
  void* q;
  if (samples == 0 && !tracked) {
    q = platform::system::realloc(p, bytes);
  } else {
    // The old or the new block is sampled: move the contents, as realloc may.
    q = samples == 0 ? platform::system::malloc(bytes)
                     : allocate_sampled(bytes, 0, source::malloc, false, samples, caller);
    if (q != nullptr && samples != 0 &&
        core::task_refuses(bytes, call_kind::c_library, true, caller)) {
      deallocate_slow(q);
      errno = ENOMEM;
      return nullptr;
    }
    if (q != nullptr) {
      const std::size_t old_size = platform::system::usable_size(p);
      std::memcpy(q, p, old_size < bytes ? old_size : bytes);
      deallocate_slow(p);
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

void* reallocate_by_system(void* p, std::size_t count, std::size_t size, bool array) noexcept {
  const auto call = [&] {
    return array ? platform::system::reallocarray(p, count, size)
                 : platform::system::realloc(p, count);
  };
  tracking::record* r = nullptr;
  if (tracking::may_be_sampled(p)) {
    const int saved_errno = errno;
    // Out of the table before the call: once the system has freed p, another
    // thread may be handed the same address and record it.
    r = tracking::remove(p);
    errno = saved_errno;
  }
  if (r == nullptr) return call();

  void* q = call();
  const int system_errno = errno;
  std::size_t product;
  const bool to_zero =
      array ? !__builtin_mul_overflow(count, size, &product) && product == 0 : count == 0;
  if (q == nullptr && !to_zero) {
    // The call failed and p is untouched: it keeps its record (its owner is
    // the only one who may free it meanwhile).
    if (!tracking::insert(r)) {
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
