// operators.hpp — the parallel_query example's relational operators, each
// over one part of a table so that a query can run its parts in parallel:
// scan + filter (a selection of row numbers), hash join (a build side in
// hash partitions, probed by row), hash aggregation (groups, and the merge
// of the parts' groups) and sort (sorted runs, and their merge). Plain C++
// and the standard library: nothing here knows about memlimits.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pq {

using row = std::uint32_t;  // a row number in a table

// Rows [begin, end) of a table.
struct row_range {
  std::size_t begin = 0;
  std::size_t end = 0;
};

// Part `part` of `parts` nearly equal parts of `rows` rows.
inline row_range part_of(std::size_t rows, std::size_t part, std::size_t parts) {
  return {rows * part / parts, rows * (part + 1) / parts};
}

// ---- scan + filter -----------------------------------------------------------

// The rows of `range` that `keep` accepts, in order.
template <class Predicate>
std::vector<row> scan_filter(row_range range, Predicate keep) {
  std::vector<row> selected;
  for (std::size_t r = range.begin; r < range.end; ++r) {
    if (keep(static_cast<row>(r))) selected.push_back(static_cast<row>(r));
  }
  return selected;
}

// ---- hash join ---------------------------------------------------------------

// The build side of a hash join, split into partitions by the hash of the
// key, so that each part of a query builds one partition: key -> the build
// rows with that key (one for a unique key, many for a low-cardinality one).
using join_partition = std::unordered_multimap<std::uint64_t, row>;
using join_table = std::vector<join_partition>;

inline std::size_t partition_of(std::uint64_t key, std::size_t partitions) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdull;
  key ^= key >> 33;
  return static_cast<std::size_t>(key % partitions);
}

// Partition `partition` of the build side: the rows of `range` whose key
// falls in it.
template <class KeyOf>
join_partition build_partition(row_range range, KeyOf key_of, std::size_t partition,
                               std::size_t partitions) {
  join_partition out;
  for (std::size_t r = range.begin; r < range.end; ++r) {
    const std::uint64_t key = key_of(static_cast<row>(r));
    if (partition_of(key, partitions) == partition) out.emplace(key, static_cast<row>(r));
  }
  return out;
}

// For each probe row, emit(probe_row, build_row) for every build row with
// the same key.
template <class Rows, class KeyOf, class Emit>
void probe(const join_table& table, const Rows& probe_rows, KeyOf key_of, Emit emit) {
  for (const row r : probe_rows) {
    const std::uint64_t key = key_of(r);
    const auto [first, last] = table[partition_of(key, table.size())].equal_range(key);
    for (auto match = first; match != last; ++match) emit(r, match->second);
  }
}

// The rows of a range, as a sequence for probe().
struct rows_of {
  row_range range;
  struct iterator {
    std::size_t at;
    row operator*() const { return static_cast<row>(at); }
    iterator& operator++() { ++at; return *this; }
    bool operator!=(const iterator& other) const { return at != other.at; }
  };
  iterator begin() const { return {range.begin}; }
  iterator end() const { return {range.end}; }
};

// ---- hash aggregation --------------------------------------------------------

// sum() and count() of a group.
struct sum_count {
  std::int64_t sum = 0;
  std::uint64_t count = 0;
  void add(std::int64_t value) { sum += value; ++count; }
  void merge(const sum_count& other) { sum += other.sum; count += other.count; }
};

template <class Key, class Aggregate, class Hash = std::hash<Key>>
using groups = std::unordered_map<Key, Aggregate, Hash>;

// Merges the groups of several parts into one: a key's aggregates merged.
template <class Key, class Aggregate, class Hash>
groups<Key, Aggregate, Hash> merge_groups(std::vector<groups<Key, Aggregate, Hash>> parts) {
  groups<Key, Aggregate, Hash> out;
  for (auto& part : parts) {
    if (out.empty()) {
      out = std::move(part);
      continue;
    }
    for (auto& [key, aggregate] : part) out[key].merge(aggregate);
  }
  return out;
}

// ---- sort --------------------------------------------------------------------

// Sorts one run in place.
template <class T, class Less>
void sort_run(std::vector<T>& run, Less less) {
  std::sort(run.begin(), run.end(), less);
}

// The first `limit` elements of the merge of sorted runs, in order.
template <class T, class Less>
std::vector<T> merge_runs(const std::vector<std::vector<T>>& runs, Less less,
                          std::size_t limit = static_cast<std::size_t>(-1)) {
  std::size_t total = 0;
  for (const auto& run : runs) total += run.size();
  std::vector<T> out;
  out.reserve(std::min(total, limit));
  std::vector<std::size_t> next(runs.size(), 0);
  while (out.size() < std::min(total, limit)) {
    // A few runs: the smallest head by a linear search.
    std::size_t best = runs.size();
    for (std::size_t i = 0; i < runs.size(); ++i) {
      if (next[i] == runs[i].size()) continue;
      if (best == runs.size() || less(runs[i][next[i]], runs[best][next[best]])) best = i;
    }
    out.push_back(runs[best][next[best]++]);
  }
  return out;
}

}  // namespace pq
