// bench/alloc_shapes.cpp — five allocation workloads of the shapes that cost
// a malloc hook the most, to compare a program without memlimits against the
// same program with memlimits::hooks, on glibc and on other allocators.
//
// Built in pairs (bench/CMakeLists.txt, "allocation shapes"):
// alloc_shapes_plain / alloc_shapes_hooks (glibc), and
// alloc_shapes_{plain,hooks}_<backend> with jemalloc, mimalloc or tcmalloc
// linked before the C library. bench/shapes.sh runs them.
//
// Usage:
//   alloc_shapes WORKLOAD [SCALE | --small]
//   alloc_shapes --which
// WORKLOAD:
//   lifo      small-object LIFO churn of bignum arithmetic: binary splitting
//             of series and factorials with a little arbitrary-precision
//             integer whose limbs live in malloc'd arrays (16-512 B, grown
//             with realloc), temporaries freed in the reverse order of
//             their creation, as programs built on GMP do;
//   tight     malloc/free of sizes uniform in [1, 32768] with a ring of 32
//             live blocks: free the slot's block, malloc a new one, touch
//             its first byte;
//   prodcons  2 producer threads malloc blocks of 16-1024 B and pass them
//             through lock-free single-producer single-consumer rings to 2
//             consumer threads, which read and free them;
//   threads   5,000 threads, in waves of 8, each allocating a few hundred
//             small blocks (some freed at once, some kept until it exits);
//   server    4 worker threads handle "requests" that allocate objects of
//             32 B-8 KiB (1 in 128: 64 KiB) by malloc or operator new, each
//             kept in a per-worker pool of 256 live objects and freed when
//             a later one replaces it at random; 1 in 8 is handed to another
//             worker's inbox and freed there.
// SCALE multiplies the work (default 1: ~0.3-1 s natively on a 2-core VM);
// --small is the scale for a run under callgrind (2-15 s each).
// Everything is seeded: the checksum depends on the work alone, never on
// addresses, timing or the allocator, so every build prints the same one.
//
// Output, one line:
//   workload=<name> wall_s=<s> cpu_s=<s> checksum=<16 hex digits>
// (cpu_s: user + system time of all threads, getrusage; both times cover
// the workload only.)
// glibc's heap trimming is switched off (M_TRIM_THRESHOLD, in every build;
// nothing changes for the other allocators) unless
// ALLOC_SHAPES_GLIBC_DEFAULTS=1: with the defaults, tight spends half its
// time in the kernel, shrinking and growing the heap (~96,000 page faults a
// run), and the hooks, whose sampled blocks do not come from glibc's heap,
// change how often that happens: a difference of the heap's shape, not of
// the hooks' cost.
// --which prints where malloc resolves and which allocator really served a
// block (see which_allocator below).
#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "core/prng.hpp"

namespace {

using rng_t = memlimits::core::xoshiro256;

// A generator for stream `stream` of workload `salt`: fixed seeds.
rng_t make_rng(std::uint64_t salt, std::uint64_t stream) {
  rng_t r;
  r.seed(0xa110c5ea9e5ull ^ (salt << 48) ^ (stream * 0x9E3779B97F4A7C15ull));
  return r;
}

// A 64-bit finaliser (murmur3's fmix64): mixes a value into a checksum term.
constexpr std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "alloc_shapes: %s\n", what);
  std::exit(2);
}

void* xmalloc(std::size_t n) {
  void* p = std::malloc(n);
  if (p == nullptr) die("out of memory");
  return p;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// ---------------------------------------------------------------------------
// lifo: a little arbitrary-precision unsigned integer, GMP-style: limbs in a
// malloc'd array that starts at 2 limbs (16 B) and is grown with realloc to
// exactly what a result needs; n = 0 is zero.

struct big {
  std::uint64_t* d;
  std::uint32_t n;
  std::uint32_t alloc;
};

void big_init(big& x) {
  x.d = static_cast<std::uint64_t*>(xmalloc(2 * sizeof(std::uint64_t)));
  x.n = 0;
  x.alloc = 2;
}

void big_clear(big& x) { std::free(x.d); }

void big_reserve(big& x, std::uint32_t limbs) {
  if (limbs <= x.alloc) return;
  void* p = std::realloc(x.d, limbs * sizeof(std::uint64_t));
  if (p == nullptr) die("out of memory");
  x.d = static_cast<std::uint64_t*>(p);
  x.alloc = limbs;
}

void big_set(big& x, std::uint64_t v) {
  x.n = v != 0 ? 1 : 0;
  x.d[0] = v;
}

void big_normalise(big& x) {
  while (x.n > 0 && x.d[x.n - 1] == 0) --x.n;
}

// r = a * b; r is neither a nor b.
void big_mul(big& r, const big& a, const big& b) {
  if (a.n == 0 || b.n == 0) {
    r.n = 0;
    return;
  }
  big_reserve(r, a.n + b.n);
  std::memset(r.d, 0, (a.n + b.n) * sizeof(std::uint64_t));
  for (std::uint32_t i = 0; i < a.n; ++i) {
    unsigned __int128 carry = 0;
    for (std::uint32_t j = 0; j < b.n; ++j) {
      carry += static_cast<unsigned __int128>(a.d[i]) * b.d[j] + r.d[i + j];
      r.d[i + j] = static_cast<std::uint64_t>(carry);
      carry >>= 64;
    }
    r.d[i + b.n] = static_cast<std::uint64_t>(carry);
  }
  r.n = a.n + b.n;
  big_normalise(r);
}

// r = a + b; r is neither a nor b.
void big_add(big& r, const big& a, const big& b) {
  const big& l = a.n >= b.n ? a : b;
  const big& s = a.n >= b.n ? b : a;
  big_reserve(r, l.n + 1);
  unsigned __int128 carry = 0;
  for (std::uint32_t i = 0; i < l.n; ++i) {
    carry += l.d[i];
    if (i < s.n) carry += s.d[i];
    r.d[i] = static_cast<std::uint64_t>(carry);
    carry >>= 64;
  }
  r.d[l.n] = static_cast<std::uint64_t>(carry);
  r.n = l.n + 1;
  big_normalise(r);
}

// x *= m in place: grows by one limb (realloc) when the product needs it.
void big_mul_small(big& x, std::uint64_t m) {
  unsigned __int128 carry = 0;
  for (std::uint32_t i = 0; i < x.n; ++i) {
    carry += static_cast<unsigned __int128>(x.d[i]) * m;
    x.d[i] = static_cast<std::uint64_t>(carry);
    carry >>= 64;
  }
  if (carry != 0) {
    big_reserve(x, x.n + 1);
    x.d[x.n++] = static_cast<std::uint64_t>(carry);
  }
}

std::uint64_t big_hash(const big& x) {
  std::uint64_t h = mix(x.n);
  for (std::uint32_t i = 0; i < x.n; ++i) h = mix(h ^ x.d[i]);
  return h;
}

// Binary splitting of sum_{k=a}^{b-1} 1 / (a (a+1) ... k) = P / Q:
// Q(a, b) = a (a+1) ... (b-1), P(a, b) = P(a, m) Q(m, b) + P(m, b).
// Every level creates its temporaries and frees them in reverse order.
void split(std::uint64_t a, std::uint64_t b, big& p, big& q) {
  if (b - a == 1) {
    big_set(p, 1);
    big_set(q, a);
    return;
  }
  const std::uint64_t m = (a + b) / 2;
  big p1, q1, p2, q2, t;
  big_init(p1);
  big_init(q1);
  big_init(p2);
  big_init(q2);
  split(a, m, p1, q1);
  split(m, b, p2, q2);
  big_init(t);
  big_mul(t, p1, q2);
  big_add(p, t, p2);
  big_mul(q, q1, q2);
  big_clear(t);
  big_clear(q2);
  big_clear(p2);
  big_clear(q1);
  big_clear(p1);
}

std::uint64_t run_lifo(double scale) {
  const long rounds = std::lround(120'000 * scale);
  rng_t r = make_rng(1, 0);
  std::uint64_t sum = 0;
  for (long i = 0; i < rounds; ++i) {
    const std::uint64_t v = r();
    // 8-71 terms of up to 21 bits: P and Q up to 24 limbs (192 B).
    const std::uint64_t a = 2 + (v & 0x1fffff);
    const std::uint64_t len = 8 + ((v >> 24) & 63);
    big p, q;
    big_init(p);
    big_init(q);
    split(a, a + len, p, q);
    sum = mix(sum ^ big_hash(p)) + big_hash(q);
    big_clear(q);
    big_clear(p);
    if ((i & 7) == 0) {
      // A factorial grown in place one limb at a time (realloc), up to
      // 449! (~3,300 bits, 416 B).
      const std::uint64_t n = 50 + ((v >> 32) % 400);
      big f;
      big_init(f);
      big_set(f, 1);
      for (std::uint64_t k = 2; k <= n; ++k) big_mul_small(f, k);
      sum = mix(sum ^ big_hash(f));
      big_clear(f);
    }
  }
  return sum;
}

// ---------------------------------------------------------------------------
// tight

std::uint64_t run_tight(double scale) {
  const long iterations = std::lround(6'000'000 * scale);
  constexpr std::size_t ring = 32;
  unsigned char* slot[ring] = {};
  rng_t r = make_rng(2, 0);
  std::uint64_t sum = 0;
  for (long i = 0; i < iterations; ++i) {
    const std::uint64_t v = r();
    const std::size_t j = v % ring;
    const std::size_t size = 1 + ((v >> 16) % 32768);
    if (slot[j] != nullptr) {
      sum += slot[j][0];
      std::free(slot[j]);
    }
    slot[j] = static_cast<unsigned char*>(xmalloc(size));
    slot[j][0] = static_cast<unsigned char>(i);
    sum += size;
  }
  for (unsigned char* p : slot) {
    if (p != nullptr) {
      sum += p[0];
      std::free(p);
    }
  }
  return mix(sum);
}

// ---------------------------------------------------------------------------
// prodcons

}  // namespace

// Waiting: everything a thread does while it waits for room in a ring, for
// a block, or for the other workers happens inside the functions whose names
// begin with alloc_shapes_wait (out of line, outside the anonymous
// namespace), so that `callgrind_annotate --inclusive=yes` shows what it
// cost: how long a thread waits depends on the scheduling, not on the
// allocator (under callgrind, under 0.5% of prodcons' instructions). A
// thread spins a little, then gives the core away (2 cores, 4 threads; and
// valgrind runs one thread at a time).
namespace waiting {

struct spsc_ring {
  static constexpr std::size_t capacity = 1024;
  alignas(64) std::atomic<std::size_t> head{0};  // the consumer's
  alignas(64) std::atomic<std::size_t> tail{0};  // the producer's
  std::atomic<bool> done{false};
  alignas(64) void* slot[capacity] = {};

  bool push(void* p) {
    const std::size_t t = tail.load(std::memory_order_relaxed);
    if (t - head.load(std::memory_order_acquire) == capacity) return false;
    slot[t % capacity] = p;
    tail.store(t + 1, std::memory_order_release);
    return true;
  }
  void* pop() {
    const std::size_t h = head.load(std::memory_order_relaxed);
    if (h == tail.load(std::memory_order_acquire)) return nullptr;
    void* p = slot[h % capacity];
    head.store(h + 1, std::memory_order_release);
    return p;
  }
  bool full() const {
    return tail.load(std::memory_order_relaxed) - head.load(std::memory_order_acquire) ==
           capacity;
  }
  bool empty() const {
    return head.load(std::memory_order_relaxed) == tail.load(std::memory_order_acquire);
  }
};

inline void pause_or_yield(int& spins) {
  if (spins++ < 64) {
    cpu_relax();
  } else {
    sched_yield();
  }
}

// Until the producer's ring has room.
[[gnu::noipa]] void alloc_shapes_wait_for_room(const spsc_ring& ring) {
  int spins = 0;
  while (ring.full()) pause_or_yield(spins);
}

// Until one of a consumer's rings (count of them, `stride` apart) has a
// block: false; or all are done and empty: true.
[[gnu::noipa]] bool alloc_shapes_wait_for_blocks(const spsc_ring* rings, int count, int stride) {
  for (int spins = 0;; pause_or_yield(spins)) {
    bool all_done = true;
    for (int i = 0; i < count; ++i) {
      const spsc_ring& ring = rings[i * stride];
      const bool done = ring.done.load(std::memory_order_acquire);  // before empty()
      if (!ring.empty()) return false;
      all_done = all_done && done;
    }
    if (all_done) return true;
  }
}

// A server worker that has finished waits for the others.
[[gnu::noipa]] void alloc_shapes_wait_yield() { sched_yield(); }

}  // namespace waiting

namespace {

using waiting::spsc_ring;

// A block: the value (8 B), the size (4 B), ..., the value's low byte last.
struct item_header {
  std::uint64_t value;
  std::uint32_t size;
};

std::uint64_t run_prodcons(double scale) {
  constexpr int producers = 2, consumers = 2;
  const long items = std::lround(400'000 * scale);  // per producer
  auto rings = std::make_unique<spsc_ring[]>(producers * consumers);  // [p * consumers + c]
  std::uint64_t consumed[consumers] = {};
  std::vector<std::thread> threads;
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      std::uint64_t sum = 0;
      for (;;) {
        bool got = false;
        for (int p = 0; p < producers; ++p) {
          void* block = rings[p * consumers + c].pop();
          if (block == nullptr) continue;
          got = true;
          item_header h;
          std::memcpy(&h, block, sizeof h);
          const auto last = static_cast<const unsigned char*>(block)[h.size - 1];
          if (last != static_cast<unsigned char>(h.value)) die("prodcons: a corrupt block");
          sum += mix(h.value) + h.size;
          std::free(block);
        }
        if (!got && waiting::alloc_shapes_wait_for_blocks(&rings[c], producers, consumers)) {
          break;  // every ring done and empty
        }
      }
      consumed[c] = sum;
    });
  }
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      rng_t r = make_rng(3, p);
      for (long i = 0; i < items; ++i) {
        const std::uint64_t v = r();
        const std::uint32_t size = 16 + static_cast<std::uint32_t>((v >> 8) % 1009);
        const int c = static_cast<int>(v % consumers);
        auto* block = static_cast<unsigned char*>(xmalloc(size));
        const item_header h{v, size};
        std::memcpy(block, &h, sizeof h);
        block[size - 1] = static_cast<unsigned char>(v);
        spsc_ring& q = rings[p * consumers + c];
        while (!q.push(block)) waiting::alloc_shapes_wait_for_room(q);
      }
      for (int c = 0; c < consumers; ++c) {
        rings[p * consumers + c].done.store(true, std::memory_order_release);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::uint64_t sum = 0;
  for (std::uint64_t s : consumed) sum += s;
  return mix(sum);
}

// ---------------------------------------------------------------------------
// threads

std::uint64_t thread_body(std::uint64_t id) {
  rng_t r = make_rng(4, id);
  constexpr int max_blocks = 400;
  unsigned char* kept[max_blocks];
  int live = 0;
  std::uint64_t sum = 0;
  const int count = 200 + static_cast<int>(r() % 200);
  for (int i = 0; i < count; ++i) {
    const std::uint64_t v = r();
    const std::size_t size = 16 + ((v >> 8) % 241);
    unsigned char* p;
    if ((v & 15) == 0) {
      p = static_cast<unsigned char*>(std::calloc(1, size));
      if (p == nullptr) die("out of memory");
      sum += p[size - 1];  // 0
    } else {
      p = static_cast<unsigned char*>(xmalloc(size));
    }
    p[0] = static_cast<unsigned char>(v >> 32);
    sum += size;
    if (((v >> 4) & 3) == 0 && live > 0) {
      // Free an earlier block at random, keep the new one in its place.
      const int j = static_cast<int>((v >> 40) % live);
      sum += kept[j][0];
      std::free(kept[j]);
      kept[j] = p;
    } else if (((v >> 4) & 3) == 1) {
      sum += p[0];  // freed at once
      std::free(p);
    } else {
      kept[live++] = p;
    }
  }
  // The rest until the thread exits.
  while (live > 0) {
    unsigned char* p = kept[--live];
    sum += p[0];
    std::free(p);
  }
  return mix(sum ^ id);
}

std::uint64_t run_threads(double scale) {
  constexpr int wave = 8;
  const long total = std::max<long>(wave, std::lround(5000 * scale));
  std::uint64_t sum = 0;
  for (long first = 0; first < total; first += wave) {
    std::uint64_t result[wave] = {};
    std::thread t[wave];
    const int n = static_cast<int>(std::min<long>(wave, total - first));
    for (int k = 0; k < n; ++k) {
      t[k] = std::thread([&result, k, id = first + k] {
        result[k] = thread_body(static_cast<std::uint64_t>(id));
      });
    }
    for (int k = 0; k < n; ++k) {
      t[k].join();
      sum = mix(sum + result[k]);
    }
  }
  return sum;
}

// ---------------------------------------------------------------------------
// server

struct object_header {
  std::uint64_t value;
  std::uint32_t size;
  std::uint32_t by_new;  // 1: operator new, 0: malloc
};

struct inbox {
  std::mutex lock;
  std::vector<void*> items;
};

constexpr int workers = 4;
constexpr std::size_t pool_size = 256;

struct server_state {
  inbox in[workers];
  std::atomic<int> finished{0};
  std::atomic<std::uint64_t> freed_sum{0};
};

void* make_object(std::uint64_t value, std::uint32_t size, bool by_new) {
  void* p = by_new ? ::operator new(size) : xmalloc(size);
  const object_header h{value, size, by_new ? 1u : 0u};
  std::memcpy(p, &h, sizeof h);
  static_cast<unsigned char*>(p)[size - 1] = static_cast<unsigned char>(value);
  return p;
}

// Reads the object, checks it and frees it; its term of the checksum.
std::uint64_t destroy_object(void* p) {
  object_header h;
  std::memcpy(&h, p, sizeof h);
  if (static_cast<unsigned char*>(p)[h.size - 1] != static_cast<unsigned char>(h.value)) {
    die("server: a corrupt object");
  }
  if (h.by_new != 0) {
    ::operator delete(p);
  } else {
    std::free(p);
  }
  return mix(h.value) + h.size;
}

std::uint64_t drain(inbox& box, std::vector<void*>& local) {
  {
    std::lock_guard<std::mutex> hold(box.lock);
    local.swap(box.items);
  }
  std::uint64_t sum = 0;
  for (void* p : local) sum += destroy_object(p);
  local.clear();
  return sum;
}

// One worker; returns the sum of the terms of the objects it created (every
// object is destroyed once, by some worker, so the sums must agree) plus
// what its requests computed.
std::uint64_t server_worker(server_state& s, int self, long requests,
                            std::uint64_t& created_sum) {
  rng_t r = make_rng(5, self);
  void* pool[pool_size] = {};
  std::vector<void*> local;
  std::uint64_t freed = 0, work = 0;
  created_sum = 0;
  for (long q = 0; q < requests; ++q) {
    freed += drain(s.in[self], local);
    // Parse a request line: a std::string and a vector of tokens, as new
    // and delete would have them.
    const std::uint64_t head = r();
    std::string line = "GET /item/" + std::to_string(head % 100000) + "/part/" +
                       std::to_string((head >> 20) % 1000) + "?session=" +
                       std::to_string(head >> 40);
    std::vector<std::string_view> tokens;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= line.size(); ++i) {
      if (i == line.size() || line[i] == '/' || line[i] == '?' || line[i] == ' ') {
        if (i > start) tokens.emplace_back(line.data() + start, i - start);
        start = i + 1;
      }
    }
    work += tokens.size() + tokens.back().size();
    const int objects = 1 + static_cast<int>(head % 4);
    for (int k = 0; k < objects; ++k) {
      const std::uint64_t v = r();
      std::uint32_t size;
      if ((v & 127) == 0) {
        size = 65536;
      } else {
        const std::uint32_t base = 32u << ((v >> 8) % 8);  // 32 .. 4096
        size = base + static_cast<std::uint32_t>((v >> 16) % base);  // .. 8191
      }
      const std::uint64_t value = mix((static_cast<std::uint64_t>(self) << 56) ^
                                      (static_cast<std::uint64_t>(q) << 8) ^ k);
      void* obj = make_object(value, size, ((v >> 32) & 1) != 0);
      created_sum += mix(value) + size;
      if (((v >> 33) & 7) == 0) {
        const int to = (self + 1 + static_cast<int>((v >> 36) % (workers - 1))) % workers;
        std::lock_guard<std::mutex> hold(s.in[to].lock);
        s.in[to].items.push_back(obj);
      } else {
        void*& slot = pool[(v >> 40) % pool_size];
        if (slot != nullptr) freed += destroy_object(slot);
        slot = obj;
      }
    }
  }
  // Others may still send: drain until every worker has finished.
  s.finished.fetch_add(1, std::memory_order_acq_rel);
  while (s.finished.load(std::memory_order_acquire) < workers) {
    freed += drain(s.in[self], local);
    waiting::alloc_shapes_wait_yield();
  }
  freed += drain(s.in[self], local);
  for (void* p : pool) {
    if (p != nullptr) freed += destroy_object(p);
  }
  s.freed_sum.fetch_add(freed, std::memory_order_relaxed);
  return work;
}

std::uint64_t run_server(double scale) {
  const long requests = std::lround(450'000 * scale);  // per worker
  server_state s;
  std::uint64_t work[workers] = {}, created[workers] = {};
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back(
        [&, w] { work[w] = server_worker(s, w, requests, created[w]); });
  }
  for (auto& t : threads) t.join();
  std::uint64_t created_sum = 0, sum = 0;
  for (int w = 0; w < workers; ++w) {
    created_sum += created[w];
    sum = mix(sum ^ work[w]);
  }
  if (created_sum != s.freed_sum.load()) die("server: objects lost or freed twice");
  return mix(sum ^ created_sum);
}

// ---------------------------------------------------------------------------
// --which: where malloc resolves, and which allocator served a block.

const char* object_of(void* symbol) {
  Dl_info info;
  if (symbol == nullptr) return "none";
  if (::dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) return "?";
  const char* slash = std::strrchr(info.dli_fname, '/');
  const char* name = slash != nullptr ? slash + 1 : info.dli_fname;
  return *name != '\0' ? name : "(executable)";
}

template <typename F>
F lookup(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_DEFAULT, name));
}

// Allocates 16 blocks of 2,000 B through malloc, whatever malloc resolves
// to, and asks each allocator present in the process how many of them it
// served: jemalloc (its thread.allocated counter), tcmalloc
// (generic.current_allocated_bytes), mimalloc (mi_is_in_heap_region), glibc
// (mallinfo2's in-use bytes; 2,000 B is above its thread cache's largest
// size, whose blocks count as in use). These ask without touching the
// blocks' metadata, so they are safe on blocks of another allocator.
// Several small blocks, not one large one: the hooks sample a block of 2 KB
// with a probability of ~2.5%, and a sampled block may be served elsewhere.
// served_by: the allocator that served at least half of them.
void which_allocator() {
  using mallctl_t = int (*)(const char*, void*, std::size_t*, void*, std::size_t);
  using tc_property_t = int (*)(const char*, std::size_t*);
  using mi_in_heap_t = bool (*)(const void*);
  const auto mallctl = lookup<mallctl_t>("mallctl");
  const auto tc_property = lookup<tc_property_t>("MallocExtension_GetNumericProperty");
  const auto mi_in_heap = lookup<mi_in_heap_t>("mi_is_in_heap_region");

  constexpr int blocks = 16;
  constexpr std::size_t bytes = 2000;
  auto je_allocated = [&]() -> std::uint64_t {
    std::uint64_t v = 0;
    std::size_t len = sizeof v;
    if (mallctl == nullptr || mallctl("thread.allocated", &v, &len, nullptr, 0) != 0) return 0;
    return v;
  };
  auto tc_allocated = [&]() -> std::size_t {
    std::size_t v = 0;
    if (tc_property == nullptr || !tc_property("generic.current_allocated_bytes", &v)) return 0;
    return v;
  };
  auto glibc_in_use = [] {
    const struct mallinfo2 m = ::mallinfo2();
    return m.uordblks + m.hblkhd;
  };
  // Blocks of the grown bytes: a block takes bytes..2*bytes (size classes).
  auto count = [](std::size_t grown) { return static_cast<int>((grown + bytes / 2) / bytes); };
  const std::uint64_t je_before = je_allocated();
  const std::size_t tc_before = tc_allocated();
  const std::size_t glibc_before = glibc_in_use();
  void* (*volatile allocate)(std::size_t) = std::malloc;
  void* p[blocks];
  for (void*& block : p) {
    block = allocate(bytes);
    if (block == nullptr) die("out of memory");
    std::memset(block, 1, 64);
  }
  const int je = mallctl != nullptr ? count(je_allocated() - je_before) : 0;
  const int tc = tc_property != nullptr ? count(tc_allocated() - tc_before) : 0;
  const int glibc = count(glibc_in_use() - glibc_before);
  int mi = 0;
  for (void* block : p) mi += mi_in_heap != nullptr && mi_in_heap(block);
  void (*volatile release)(void*) = std::free;
  for (void* block : p) release(block);

  const char* served = "unknown";
  for (auto [n, name] : {std::pair{je, "jemalloc"}, std::pair{mi, "mimalloc"},
                         std::pair{tc, "tcmalloc"}, std::pair{glibc, "glibc"}}) {
    if (2 * n >= blocks) {
      served = name;
      break;
    }
  }
  std::printf("malloc=%s next_malloc=%s operator_new=%s mallctl=%d mi_version=%d tc_version=%d "
              "served_of_%d=jemalloc:%d,mimalloc:%d,tcmalloc:%d,glibc:%d served_by=%s\n",
              object_of(::dlsym(RTLD_DEFAULT, "malloc")), object_of(::dlsym(RTLD_NEXT, "malloc")),
              object_of(::dlsym(RTLD_DEFAULT, "_Znwm")), mallctl != nullptr,
              ::dlsym(RTLD_DEFAULT, "mi_version") != nullptr,
              ::dlsym(RTLD_DEFAULT, "tc_version") != nullptr, blocks, je, mi, tc, glibc, served);
}

// ---------------------------------------------------------------------------

double cpu_seconds() {
  struct rusage u;
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

struct workload {
  const char* name;
  std::uint64_t (*run)(double scale);
  double small;  // the scale of --small: a callgrind run of a few seconds
};

constexpr workload workloads[] = {
    {"lifo", run_lifo, 0.1},          {"tight", run_tight, 0.2},
    {"prodcons", run_prodcons, 0.5}, {"threads", run_threads, 0.5},
    {"server", run_server, 0.1},
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: alloc_shapes WORKLOAD [SCALE | --small]\n"
               "       alloc_shapes --which\n"
               "WORKLOAD: lifo tight prodcons threads server\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--which") == 0) {
    which_allocator();
    return 0;
  }
  if (argc < 2 || argc > 3) usage();
  const workload* w = nullptr;
  for (const workload& candidate : workloads) {
    if (std::strcmp(argv[1], candidate.name) == 0) w = &candidate;
  }
  if (w == nullptr) usage();
  double scale = 1.0;
  if (argc == 3) {
    if (std::strcmp(argv[2], "--small") == 0) {
      scale = w->small;
    } else {
      char* end = nullptr;
      scale = std::strtod(argv[2], &end);
      if (end == argv[2] || *end != '\0' || !(scale > 0)) usage();
    }
  }
  const char* glibc_defaults = std::getenv("ALLOC_SHAPES_GLIBC_DEFAULTS");
  if (glibc_defaults == nullptr || std::strcmp(glibc_defaults, "1") != 0) {
    ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
  const double cpu_before = cpu_seconds();
  const auto wall_before = std::chrono::steady_clock::now();
  const std::uint64_t checksum = w->run(scale);
  const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - wall_before;
  const double cpu = cpu_seconds() - cpu_before;
  std::printf("workload=%s wall_s=%.4f cpu_s=%.4f checksum=%016" PRIx64 "\n", w->name,
              wall.count(), cpu, checksum);
  return 0;
}
