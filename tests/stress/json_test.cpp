// tests/stress/json_test.cpp — interruptions in nlohmann::json, whose
// destructor allocates: ~basic_json() is noexcept, and destroying a
// non-empty array or object flattens it onto a heap-allocated std::vector
// (json_value::destroy: reserve(), push_back()). An interruption raised
// there would terminate the process; the library must let those
// allocations succeed and raise at the task's next allocation where a
// handler catches it (or never, if none follows: the guard then returns its
// error by its own flag, with no exception).
//
//  - DestroyedAfterTokenSet: a document built under limit_with_token, the
//    token set, the document destroyed at scope exit inside the guard, many
//    times: the guard returns the token error, the destructor's blocks are
//    allocated and counted, nothing leaks, nothing terminates.
//  - Torture: a parse-modify-dump-destroy workload with its k-th allocation
//    interrupted for every k (the method of torture_test.cpp: a rate-1
//    memprof profile records the workload's allocations in order, then
//    limit_allocations(P_{k-1}) trips exactly at the k-th). Every time: the
//    guard's allocations error, no leak (the rate-1 tracker counts every
//    live block of the process; LSan checks again under ASan), and the
//    blocks seen are the reference run's up to where the interruption was
//    raised; interruptions deferred from json's destructor are counted.
// A std::terminate handler aborts the process with a message: the test
// fails if any interruption reaches it.
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <cxxabi.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "memlimits/limits.hpp"
#include "memlimits/memprof.hpp"
#include "support/sequence_tracker.hpp"
#include "support/stress_common.hpp"

namespace {

namespace memprof = memlimits::memprof;
using json = nlohmann::json;
using memlimits::testing::scaled;

static_assert(noexcept(std::declval<json&>().~json()), "~basic_json() is noexcept");

std::uint64_t counted(std::size_t bytes) { return (static_cast<std::uint64_t>(bytes) + 7) / 8 * 8; }

// ---- the tracker (at rate 1: every block is sampled) ----

constexpr std::size_t frames_kept = 10;

struct recorded {
  std::size_t size;
  memprof::source origin;
  // Allocated while an exception was in flight, or in a handler (the
  // standard containers clean up in catch (...) { ...; throw; }).
  bool in_exception;
  friend bool operator==(const recorded&, const recorded&) = default;
};

// Every live block of the process; while recording, the calling thread's
// blocks in order (and, if asked, their innermost return addresses).
recorded describe(const memprof::allocation& a) {
  const bool in_exception =
      std::uncaught_exceptions() > 0 || abi::__cxa_current_exception_type() != nullptr;
  return {a.size, a.origin, in_exception};
}
using json_tracker = memlimits::testing::sequence_tracker<recorded>;

// Whether a return address lies in json's destructor or in the function
// it destroys with (json_value::destroy), by its symbol (the test is linked
// with -rdynamic). Inlined frames have no symbol of their own: a block
// made by a destroy() inlined into its caller is not recognised.
class destructor_frames {
 public:
  bool in_destructor(const void* address) {
    const auto [it, inserted] = known_.try_emplace(address, false);
    if (inserted) it->second = classify(address);
    return it->second;
  }

 private:
  static bool classify(const void* address) {
    Dl_info info{};
    // The return address may be one past a call at the end of a function.
    if (dladdr(static_cast<const char*>(address) - 1, &info) == 0 || info.dli_sname == nullptr) {
      return false;
    }
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> name(
        abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status), &std::free);
    if (status != 0 || name == nullptr) return false;
    const std::string s(name.get());
    return s.find("basic_json") != std::string::npos &&
           (s.find("::~basic_json()") != std::string::npos ||
            s.find("json_value::destroy(") != std::string::npos);
  }

  std::unordered_map<const void*, bool> known_;
};

// ---- documents ----

// A document of a few hundred values: nested objects and arrays, strings
// longer than the small-string buffer.
json make_document(int seed) {
  json doc = json::object();
  doc["name"] = "document-" + std::to_string(seed) + "-with-a-long-enough-name";
  doc["version"] = seed;
  json items = json::array();
  for (int i = 0; i < 30; ++i) {
    json item = {
        {"id", seed * 100 + i},
        {"label", "item label number " + std::to_string(i)},
        {"price", 0.25 * i},
        {"tags", json::array({"alpha-tag-long-enough", "beta", "gamma-tag-long-enough"})},
        {"dims", {{"w", i}, {"h", i + 1}, {"nested", {{"deep", json::array({i, i + 1})}}}}},
    };
    items.push_back(std::move(item));
  }
  doc["items"] = std::move(items);
  doc["meta"] = {{"owner", "someone@example.org, the owner of it all"},
                 {"empty_array", json::array()},
                 {"empty_object", json::object()}};
  return doc;
}

// Parse, modify, dump, destroy: the torture's workload. It avoids two
// places where nlohmann::json 3.11 itself is not exception-safe when an
// allocation fails (problems of json's, not of the library under test):
//  - the initializer-list constructor of an object creates its object_t
//    in the constructor's body and leaks it when an insertion throws (a
//    constructor that throws runs no destructor of its own);
//  - operator[] (and push_back) on a null value set the type to object
//    (array) before creating the container: if that allocation throws,
//    the value is an object holding a null pointer, and its destructor
//    dereferences it.
// So objects are made with json::object() and filled member by member.
volatile std::size_t json_sink = 0;

json appended_item(int i) {
  json item = json::object();
  item["id"] = 9000 + i;
  item["label"] = "appended item number " + std::to_string(i);
  json tags = json::array();
  tags.push_back("added-later-tag-long");
  tags.push_back(i);
  item["tags"] = std::move(tags);
  return item;
}

void parse_modify_destroy(const std::string& text, int items) {
  json doc = json::parse(text);
  json& list = doc["items"];
  for (int i = 0; i < items; ++i) list.push_back(appended_item(i));
  list.erase(list.begin() + 2, list.begin() + 5);  // destroys three objects
  doc.erase("meta");                               // destroys an object
  doc["items"][1]["tags"].push_back("one more tag, long enough to allocate");
  json summary = json::object();
  summary["count"] = list.size();
  summary["note"] = "summary note that allocates a string";
  doc["summary"] = std::move(summary);
  json replaced = json::object();
  replaced["replaced"] = true;
  doc["items"][0] = std::move(replaced);  // the old value destroyed
  for (std::size_t i = 0; i < list.size(); i += 3) {
    const json copy = list[i];  // copied, then destroyed
    json_sink = json_sink + copy.size();
  }
  const std::string out = doc.dump();
  json_sink = json_sink + out.size();
}  // doc destroyed: its destructor allocates

class Json : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { memlimits::testing::prepare_stress_process(); }
};

// ---- a) the document destroyed after the token is set ----

TEST_F(Json, DestroyedAfterTokenSet) {
  const int rounds = 1000;
  json_tracker tracker(std::size_t{1} << 16, &describe, frames_kept);
  memprof::profile profile(tracker, 1.0);
  std::size_t without_exception = 0;
  std::uint64_t destructor_blocks = 0;
  for (int round = 0; round < rounds; ++round) {
    const std::int64_t live_bytes = tracker.live_bytes();
    const std::int64_t live_blocks = tracker.live_blocks();
    memlimits::token t;
    std::size_t at_set = 0;    // blocks allocated in the guard when the token was set
    std::size_t in_guard = 0;  // ... in all
    std::optional<json_tracker::recording> on;
    memlimits::result<void> r = memlimits::limit_with_token(t, [&] {
      on.emplace(tracker);
      {
        json doc = make_document(round);
        at_set = tracker.count();
        t.set();
        json_sink = json_sink + doc.size();
      }  // doc destroyed at scope exit, inside the guard, while interrupted
      in_guard = tracker.count();
      on.reset();
    });
    ASSERT_FALSE(tracker.overflowed());
    ASSERT_FALSE(r.has_value()) << "round " << round << ": the token was set";
    ASSERT_EQ(r.error().kind(), memlimits::limit_kind::token) << "round " << round;
    // Nothing allocates after the destructor: no raise point followed.
    if (r.error().exception() == nullptr) {
      ++without_exception;
    } else {
      try {
        std::rethrow_exception(r.error().exception());
      } catch (const memlimits::limit_reached& e) {
        EXPECT_EQ(e.kind(), memlimits::limit_kind::token) << "round " << round;
      } catch (...) {
        ADD_FAILURE() << "round " << round << ": something else escaped";
      }
    }
    // The destructor's blocks were allocated, while interrupted, and counted.
    const std::size_t after_set = in_guard - at_set;
    ASSERT_GT(after_set, 0u) << "round " << round << ": the destructor did not allocate";
    std::uint64_t bytes = 0;
    for (std::size_t i = 0; i < in_guard; ++i) bytes += counted(tracker.at(i).size);
    ASSERT_EQ(r.usage().allocated_bytes, bytes) << "round " << round;
    destructor_blocks += after_set;
    ASSERT_EQ(tracker.live_blocks(), live_blocks) << "round " << round << ": blocks leaked";
    ASSERT_EQ(tracker.live_bytes(), live_bytes) << "round " << round << ": bytes leaked";
  }
  EXPECT_EQ(without_exception, static_cast<std::size_t>(rounds))
      << "a limit_reached was raised after the destructor, where nothing allocates";
  std::printf(
      "[ json     ] %d documents destroyed under a set token: %llu blocks allocated by their "
      "destructors while interrupted; %zu guards returned the token error without an "
      "exception\n",
      rounds, static_cast<unsigned long long>(destructor_blocks), without_exception);
}

// ---- b) the torture ----

TEST_F(Json, Torture) {
  const int items = static_cast<int>(scaled(20, 8));
  const std::string text = [] {
    json doc = make_document(7);
    const std::size_t kept = scaled(24, 10);
    doc["items"].erase(doc["items"].begin() + static_cast<std::ptrdiff_t>(kept),
                       doc["items"].end());
    return doc.dump(1);
  }();
  parse_modify_destroy(text, items);  // first use of what is built lazily

  json_tracker tracker(std::size_t{1} << 16, &describe, frames_kept);
  std::optional<memprof::profile> profile;

  // The reference: the workload's blocks in order, twice (deterministic),
  // the first time with their callstacks.
  const auto record_once = [&](bool with_frames) {
    auto r = memlimits::limit_allocations(static_cast<std::uint64_t>(INT64_MAX), [&] {
      json_tracker::recording on(tracker, with_frames);
      parse_modify_destroy(text, items);
    });
    EXPECT_TRUE(r.has_value());
    EXPECT_FALSE(tracker.overflowed());
    std::vector<recorded> blocks;
    for (std::size_t i = 0; i < tracker.count(); ++i) blocks.push_back(tracker.at(i));
    std::uint64_t total = 0;
    for (const recorded& b : blocks) total += counted(b.size);
    EXPECT_EQ(r.usage().allocated_bytes, total) << "usage() differs from the blocks requested";
    return blocks;
  };
  profile.emplace(tracker, 1.0, frames_kept);
  const std::vector<recorded> sizes = record_once(true);
  profile.reset();
  profile.emplace(tracker, 1.0);  // no callstacks from here on
  std::vector<bool> in_destructor(sizes.size());
  {
    destructor_frames frames;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      for (std::size_t f = 0; f < frames_kept && !in_destructor[i]; ++f) {
        const void* address = tracker.frame(i, f);
        if (address != nullptr && frames.in_destructor(address)) in_destructor[i] = true;
      }
    }
  }
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_TRUE(record_once(false) == sizes) << "the workload is not deterministic";
  const std::size_t total = sizes.size();
  ASSERT_GE(total, 100u);
  std::vector<std::uint64_t> prefix(1, 0);
  for (const recorded& b : sizes) prefix.push_back(prefix.back() + counted(b.size));
  const auto destructors =
      static_cast<std::size_t>(std::count(in_destructor.begin(), in_destructor.end(), true));
  ASSERT_GT(destructors, 0u) << "no block of json's destructor was recognised";

  std::size_t deferred = 0;
  std::size_t deferred_from_destructor = 0;
  std::size_t deferred_to_the_end = 0;  // no raise after: the guard's flag alone
  std::size_t raised = 0;
  for (std::size_t k = 1; k <= total + 1; ++k) {
    const bool completes = k == total + 1;
    const std::uint64_t limit = prefix[k - 1];
    std::size_t target = k - 1;  // the first allocation from k on that may be refused
    while (target < total && sizes[target].origin == memprof::source::malloc) ++target;
    const auto where = [&] {
      return "allocation k = " + std::to_string(k) + " of " + std::to_string(total) +
             (completes ? std::string()
                        : ", " + std::to_string(sizes[k - 1].size) + " bytes" +
                              (in_destructor[k - 1] ? " (in json's destructor)" : ""));
    };
    const std::int64_t live_bytes = tracker.live_bytes();
    const std::int64_t live_blocks = tracker.live_blocks();
    memlimits::result<void> r = memlimits::limit_allocations(limit, [&] {
      json_tracker::recording on(tracker);
      parse_modify_destroy(text, items);
    });
    ASSERT_FALSE(tracker.overflowed()) << where();
    const std::size_t seen = tracker.count();
    std::size_t same = 0;  // j - 1: the blocks as in the reference run
    while (same < std::min(seen, total) && tracker.at(same) == sizes[same]) ++same;
    ASSERT_GE(same, std::min(k - 1, total)) << where() << ": block " << same << " differs";
    std::uint64_t extra = 0;
    for (std::size_t i = same; i < seen; ++i) {
      // After the raise: malloc's blocks, and json's destructors run by the
      // unwinding or by the handlers on its way.
      ASSERT_TRUE(tracker.at(i).origin == memprof::source::malloc || tracker.at(i).in_exception)
          << where() << ": block " << i << " of " << tracker.at(i).size
          << " bytes allocated after the interruption was raised at allocation " << same + 1;
      extra += counted(tracker.at(i).size);
    }
    ASSERT_EQ(r.usage().allocated_bytes, prefix[same] + extra) << where();
    if (completes) {
      ASSERT_TRUE(r.has_value()) << where();
    } else {
      ASSERT_FALSE(r.has_value()) << where() << ": not interrupted";
      ASSERT_EQ(r.error().kind(), memlimits::limit_kind::allocations) << where();
      if (target < total && in_destructor[target]) {
        ASSERT_GT(same, target) << where() << ": an allocation of json's destructor was refused";
      }
      if (same < total) {
        ASSERT_FALSE(in_destructor[same])
            << where() << ": allocation " << same + 1 << " refused in json's destructor";
      }
      // Only allocations that raising would terminate from are deferred.
      for (std::size_t i = target; i < same; ++i) {
        ASSERT_TRUE(in_destructor[i] || sizes[i].origin == memprof::source::malloc)
            << where() << ": allocation " << i + 1 << " deferred outside json's destructor";
      }
      if (same > target) {
        // Deferred: json's destructor is the only noexcept code here that
        // allocates (a destroy() inlined into its caller is not recognised
        // by its frames).
        ++deferred;
        if (in_destructor[target]) ++deferred_from_destructor;
        if (same == total) ++deferred_to_the_end;
      }
      if (r.error().exception() != nullptr) {
        ++raised;
        try {
          std::rethrow_exception(r.error().exception());
        } catch (const memlimits::limit_reached& e) {
          EXPECT_EQ(e.kind(), memlimits::limit_kind::allocations) << where();
        } catch (...) {
          ADD_FAILURE() << where() << ": something else escaped";
        }
      } else {
        ASSERT_EQ(same, total) << where() << ": no exception, but an allocation was refused";
      }
    }
    ASSERT_EQ(tracker.live_blocks(), live_blocks) << where() << ": blocks leaked";
    ASSERT_EQ(tracker.live_bytes(), live_bytes) << where() << ": bytes leaked";
  }
  std::printf(
      "[ json     ] torture: %zu allocations (%llu bytes, %zu by json's destructor), each "
      "interrupted: %zu raised; %zu deferred (%zu from json's destructor, %zu with no raise "
      "after)\n",
      total, static_cast<unsigned long long>(prefix.back()), destructors, raised, deferred,
      deferred_from_destructor, deferred_to_the_end);
}

}  // namespace
