// memlimits/memprof.hpp — the profiler interface: trackers that are told about
// sampled allocations and their frees, and profiles that feed them.
//
// Sampling model: every 8-byte word allocated by the program is sampled
// independently with probability `sampling_rate`, so a block of `size` bytes
// (w = ceil(size / 8) words) carries n ~ Binomial(w, rate) samples. A profile
// sees the blocks with n >= 1, with n counted at its own rate whatever other
// profiles and limits ask for (binomial thinning), so that `n / rate` words is
// an unbiased estimate of what was allocated. At rate 1, n == w exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iosfwd>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "memlimits/config.hpp"
#include "memlimits/sampling_rate.hpp"

namespace memlimits::memprof {

// Which entry point the block came through.
enum class source { new_delete, malloc, adapter };

struct allocation {
  void* address;
  std::size_t size;                 // bytes requested
  std::uint64_t n_samples;          // >= 1, at the profile's rate
  source origin;
  std::span<void* const> callstack; // return addresses, innermost frame first
};

class tracker {
 public:
  virtual ~tracker() = default;
  // Called on the allocating thread with sampling off for that thread: it may
  // allocate (those allocations are not sampled). Any allocation of the
  // program may call it: a tracker must not allocate while it holds a lock
  // that on_alloc or on_free takes. Return non-null to be told,
  // through on_free, when the block is freed. An exception thrown from here is
  // swallowed and counts as returning null.
  virtual void* on_alloc(const allocation& a) = 0;
  // Called on the freeing thread, exactly once per block for which on_alloc
  // returned non-null, with that value, as long as the profile is running.
  virtual void on_free(void* cookie) noexcept { (void)cookie; }
};

// RAII: while a profile lives (until stop()), sampled allocations of every
// thread flow to its tracker. At most `max_profiles` run at once.
// stop() waits for callbacks in flight on other threads, so that once it has
// returned the tracker may be destroyed; blocks still live at that point are
// not reported any more. stop() must not be called from the tracker's own
// callbacks.
class MEMLIMITS_API profile {
 public:
  static constexpr std::size_t max_profiles = 8;
  static constexpr std::size_t max_callstack_size = 256;

  // Throws std::invalid_argument when sampling_rate is not in (0, 1] or
  // callstack_size exceeds max_callstack_size, and std::length_error when
  // max_profiles profiles are already running.
  explicit profile(tracker& t, double sampling_rate = default_sampling_rate,
                   std::size_t callstack_size = 0);
  ~profile();
  profile(const profile&) = delete;
  profile& operator=(const profile&) = delete;

  void stop() noexcept;
  bool running() const noexcept { return slot_ >= 0; }
  double sampling_rate() const noexcept { return rate_; }

 private:
  int slot_ = -1;
  double rate_;
};

// ---- A ready heap profiler ----

// One distinct callstack of a heap profile and what is live from it.
struct heap_stack {
  std::vector<void*> frames;    // return addresses, innermost frame first; empty for
                                // the blocks whose stack is not recorded (beyond
                                // max_stacks, or no frame found)
  std::int64_t live_bytes = 0;  // estimated: round(samples * 8 / rate)
  std::uint64_t samples = 0;    // samples of the blocks allocated from here, not yet freed
  std::int64_t live_objects = 0;  // estimated blocks allocated from here, not yet freed:
                                  // each sampled block counts 1 / q, q = 1 - (1 - rate)^words
                                  // the probability that a block of its size is sampled
};

// How the text writers of heap_profile name a frame.
struct frame_style {
  // false: demangled names shortened the way flame graphs want them
  // (template argument lists longer than 32 characters and parameter lists
  // longer than 64 become "<...>" and "(...)"), and source files by their
  // base name; true: names as demangled and paths as recorded.
  bool full_names = false;
  // Add the source file and line of each frame where the program's debug
  // information has them ("f()@file.cpp:12" in folded stacks, "f() at
  // file.cpp:12" in the top table).
  bool source_lines = true;
};

// The live heap by callstack: a profile whose tracker adds each sampled
// block's samples to its callstack's count and takes them back when the
// block is freed. `live_bytes` estimates, without bias, the bytes allocated
// from a stack while the profile ran and not freed since (each sample stands
// for 8 / rate bytes; its relative standard error is about
// 1 / sqrt(samples)). Blocks allocated before the profile started, or freed
// after it stopped, are not seen.
//
// Thread-safety: any thread may allocate and free while the profile runs;
// the callbacks neither lock nor allocate (a fixed, lock-free table of
// `max_stacks` stacks, and of the objects that hold their frames, in pages
// of its own). snapshot() and the writers may run on any thread, also while
// other threads allocate. snapshot() allocates through the program's
// allocator (those allocations may be sampled too); the writers run with
// sampling off for the writing thread, one at a time, and keep the debug
// information they read to name frames (a few MB to tens of MB) until the
// profile is destroyed, so that the next write is fast.
class MEMLIMITS_API heap_profile {
 public:
  static constexpr std::size_t default_callstack_size = 64;
  static constexpr std::size_t default_max_stacks = std::size_t{1} << 16;
  static constexpr std::size_t max_stacks_limit = std::size_t{1} << 23;
  static constexpr std::size_t default_top = 20;

  // Starts profiling. callstack_size: frames kept per stack, in
  // [1, profile::max_callstack_size]; max_stacks: distinct stacks kept, in
  // [1, max_stacks_limit] (the samples of stacks beyond are counted in one
  // stack with no frames). The table reserves address space for 4/3 to 8/3
  // of max_stacks entries of 10 * callstack_size + 32 bytes (a power of two
  // of them; per frame, its return address and its object's record), and
  // 2 MiB for the records of the objects (path, load bias, build ID),
  // committed as they fill: 90 MB reserved by default. Throws
  // std::invalid_argument on a bad argument, std::length_error when
  // profile::max_profiles profiles already run, std::bad_alloc when the table
  // cannot be mapped.
  explicit heap_profile(double sampling_rate = default_sampling_rate,
                        std::size_t callstack_size = default_callstack_size,
                        std::size_t max_stacks = default_max_stacks);
  ~heap_profile();
  heap_profile(const heap_profile&) = delete;
  heap_profile& operator=(const heap_profile&) = delete;

  // Stops sampling; what was live then stays readable. Same contract as
  // profile::stop().
  void stop() noexcept;
  bool running() const noexcept;
  double sampling_rate() const noexcept;
  std::size_t callstack_size() const noexcept;

  // Every stack with live samples, identical stacks merged, largest
  // live_bytes first (ties: more samples first, then by frames).
  [[nodiscard]] std::vector<heap_stack> snapshot() const;
  // Sum of live_bytes over snapshot().
  [[nodiscard]] std::int64_t live_bytes() const;

  // Folded stacks, the input format of flamegraph.pl and speedscope: one
  // line per stack, "outermost;...;innermost <live bytes>". Each frame is
  // the function at the return address, and before it, the functions
  // inlined there (so that an inlined call is a frame of its own), named
  // from the program's debug information (static functions and lambdas
  // included; the symbol table, then "object+0xoffset", where there is
  // none) as `style` says: "name@file.cpp:12" by default. In names, ';'
  // becomes ':', and white space is removed after ',' and between '>' and
  // '>', replaced by '_' elsewhere. The count is the stack's estimated live
  // bytes (unit: bytes, not samples). The stack with no frames is named
  // "[memlimits:unrecorded_stack]". The frames are named when the profile
  // is written: the first write reads the objects' debug information. A
  // frame of an object unloaded (dlclose) or moved since its stack was
  // recorded is named from that object's file, by the path, load bias and
  // build ID recorded with the stack (where glibc has _dl_find_object, 2.35
  // and later), "object+0xoffset" when the file is gone or was replaced.
  // The path overload writes a temporary file beside `path` and renames it,
  // so that readers see a whole profile; it and the FILE* overload throw
  // std::system_error when the file cannot be written; the ostream overload
  // reports errors through the stream's state.
  void write_folded(std::ostream& out, const frame_style& style = {}) const;
  void write_folded(std::FILE* out, const frame_style& style = {}) const;
  void write_folded(const std::string& path, const frame_style& style = {}) const;

  // A table of the `top` stacks with the most live bytes: rank, estimated
  // live bytes, share of the total, live samples, then the frames innermost
  // first, one function per line ("name at file.cpp:12", a function inlined
  // into the next one marked "[inlined]"; without a line, the offset of the
  // call in its function, "f(int)+0x1c"). Stacks whose frames have the same
  // names are one row. Frames are named as in write_folded. Same error
  // handling as write_folded.
  void write_top(std::ostream& out, std::size_t top = default_top,
                 const frame_style& style = {}) const;
  void write_top(std::FILE* out, std::size_t top = default_top,
                 const frame_style& style = {}) const;
  void write_top(const std::string& path, std::size_t top = default_top,
                 const frame_style& style = {}) const;

  // The profile in pprof's format (profile.proto, gzip-compressed), which
  // `go tool pprof`, its web UI and continuous profilers read: sample types
  // inuse_objects/count and inuse_space/bytes, estimated (already scaled for
  // the sampling), period_type space/bytes with period 8 / rate; a location
  // per frame with its inlined functions, file and line where the program
  // has debug information; the mappings of the loaded objects with their
  // build IDs, so that pprof can also symbolize offline, and of the objects
  // unloaded since their frames were recorded (named as in write_folded),
  // whose locations point at them. Same error handling as write_folded.
  void write_pprof(std::ostream& out) const;
  void write_pprof(std::FILE* out) const;
  void write_pprof(const std::string& path) const;

 private:
  class impl;
  std::unique_ptr<impl> impl_;
};

// A readable name for a return address of a callstack: the demangled name of
// the function that contains the call (dladdr: needs the symbol in the
// dynamic symbol table, e.g. -rdynamic for an executable), else
// "module+0xoffset", else the address in hex.
MEMLIMITS_API std::string frame_name(const void* return_address);

}  // namespace memlimits::memprof
