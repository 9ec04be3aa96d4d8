// queries.cpp — the parallel_query example's queries (see queries.hpp):
// each parallel plan, phase by phase, and for the well-behaved ones a
// single-threaded reference written differently (binary search instead of
// a hash join, arrays and ordered maps instead of hash tables, one sort
// instead of sorted runs), so that the two agree only if the parallel
// plan's answer is right.
#include "queries.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string_view>
#include <utility>

namespace pq {

namespace {

// The row of the customer with this id: the reference's join.
row customer_row(const customers_table& c, std::uint32_t id) {
  const auto at = std::lower_bound(c.customer_id.begin(), c.customer_id.end(), id);
  return static_cast<row>(at - c.customer_id.begin());
}

// Groups sorted by key, flattened as key, count, sum.
std::vector<std::int64_t> flatten_groups(const std::map<std::int64_t, sum_count>& sorted) {
  std::vector<std::int64_t> values;
  for (const auto& [key, g] : sorted) {
    values.push_back(key);
    values.push_back(static_cast<std::int64_t>(g.count));
    values.push_back(g.sum);
  }
  return values;
}

template <class Key, class Hash>
std::map<std::int64_t, sum_count> sorted_groups(const groups<Key, sum_count, Hash>& unsorted) {
  std::map<std::int64_t, sum_count> sorted;
  for (const auto& [key, g] : unsorted) sorted[static_cast<std::int64_t>(key)] = g;
  return sorted;
}

// The build side of a join with customers on customer_id, one partition per
// part.
join_table customers_by_id(query_context& q) {
  const customers_table& c = q.db.customers;
  return q.parallel("build", [&](std::size_t part) {
    return build_partition({0, c.size()}, [&](row r) { return c.customer_id[r]; }, part,
                           query_context::parts);
  });
}

// ---- revenue by region -------------------------------------------------------

answer region_answer(const std::map<std::int64_t, sum_count>& by_region) {
  answer a;
  a.values = flatten_groups(by_region);
  std::int64_t total = 0, best = -1;
  std::int64_t best_region = 0;
  for (const auto& [region, g] : by_region) {
    total += g.sum;
    if (g.sum > best) best = g.sum, best_region = region;
  }
  a.summary = std::to_string(by_region.size()) + " regions, " + money(total) + "; first " +
              std::string(region_names[static_cast<std::size_t>(best_region)]) + " " + money(best);
  return a;
}

}  // namespace

answer revenue_by_region(query_context& q) {
  const customers_table& c = q.db.customers;
  const orders_table& o = q.db.orders;
  const join_table by_id = customers_by_id(q);
  using region_groups = groups<std::uint8_t, sum_count>;
  std::vector<region_groups> partial = q.parallel("probe", [&](std::size_t part) {
    region_groups by_region;
    probe(by_id, rows_of{q.chunk(o.size(), part)}, [&](row r) { return o.customer_id[r]; },
          [&](row order, row customer) { by_region[c.region[customer]].add(o.amount_cents[order]); });
    return by_region;
  });
  return region_answer(sorted_groups(merge_groups(std::move(partial))));
}

answer revenue_by_region_reference(const database& db) {
  const customers_table& c = db.customers;
  const orders_table& o = db.orders;
  std::array<sum_count, region_names.size()> by_region{};
  for (std::size_t r = 0; r < o.size(); ++r) {
    by_region[c.region[customer_row(c, o.customer_id[r])]].add(o.amount_cents[r]);
  }
  std::map<std::int64_t, sum_count> sorted;
  for (std::size_t region = 0; region < by_region.size(); ++region) {
    if (by_region[region].count > 0) sorted[static_cast<std::int64_t>(region)] = by_region[region];
  }
  return region_answer(sorted);
}

// ---- top customers -------------------------------------------------------------

namespace {

struct customer_total {
  std::uint32_t customer_id;
  std::int64_t revenue;
  std::uint64_t orders;
};

// Largest revenue first; ties by customer id.
bool before(const customer_total& a, const customer_total& b) {
  return a.revenue != b.revenue ? a.revenue > b.revenue : a.customer_id < b.customer_id;
}

answer top_answer(const std::vector<customer_total>& top, std::size_t customers) {
  answer a;
  for (const customer_total& t : top) {
    a.values.push_back(t.customer_id);
    a.values.push_back(t.revenue);
    a.values.push_back(static_cast<std::int64_t>(t.orders));
  }
  a.summary = with_commas(customers) + " customers; first #" + std::to_string(top.front().customer_id) +
              " " + money(top.front().revenue) + ", tenth " + money(top.back().revenue);
  return a;
}

constexpr std::size_t top_n = 10;

}  // namespace

answer top_customers(query_context& q) {
  const orders_table& o = q.db.orders;
  using customer_groups = groups<std::uint32_t, sum_count>;
  const customer_groups totals = merge_groups(q.parallel("aggregate", [&](std::size_t part) {
    customer_groups by_customer;
    for (const row r : rows_of{q.chunk(o.size(), part)})
      by_customer[o.customer_id[r]].add(o.amount_cents[r]);
    return by_customer;
  }));
  std::vector<customer_total> entries;
  entries.reserve(totals.size());
  for (const auto& [id, g] : totals) entries.push_back({id, g.sum, g.count});
  const std::vector<std::vector<customer_total>> runs =
      q.parallel("sort", [&](std::size_t part) {
        const row_range range = q.chunk(entries.size(), part);
        std::vector<customer_total> run(entries.begin() + static_cast<std::ptrdiff_t>(range.begin),
                                        entries.begin() + static_cast<std::ptrdiff_t>(range.end));
        sort_run(run, before);
        return run;
      });
  return top_answer(merge_runs(runs, before, top_n), entries.size());
}

answer top_customers_reference(const database& db) {
  const orders_table& o = db.orders;
  std::map<std::uint32_t, sum_count> by_customer;
  for (std::size_t r = 0; r < o.size(); ++r) by_customer[o.customer_id[r]].add(o.amount_cents[r]);
  std::vector<customer_total> all;
  for (const auto& [id, g] : by_customer) all.push_back({id, g.sum, g.count});
  std::partial_sort(all.begin(), all.begin() + top_n, all.end(), before);
  all.resize(top_n);
  return top_answer(all, by_customer.size());
}

// ---- count filtered --------------------------------------------------------------

namespace {

constexpr int july_1 = 181, september_30 = 272;

bool filtered(const orders_table& o, row r) {
  return o.amount_cents[r] >= 5'000 && o.amount_cents[r] < 15'000 && o.day[r] >= july_1 &&
         o.day[r] <= september_30;
}

answer count_answer(const sum_count& s) {
  return {{static_cast<std::int64_t>(s.count), s.sum},
          with_commas(s.count) + " orders, " + money(s.sum)};
}

}  // namespace

answer count_filtered(query_context& q) {
  const orders_table& o = q.db.orders;
  sum_count total;
  for (const sum_count& s : q.parallel("scan", [&](std::size_t part) {
         sum_count s;
         for (const row r : scan_filter(q.chunk(o.size(), part), [&](row r) { return filtered(o, r); }))
           s.add(o.amount_cents[r]);
         return s;
       })) {
    total.merge(s);
  }
  return count_answer(total);
}

answer count_filtered_reference(const database& db) {
  const orders_table& o = db.orders;
  sum_count s;
  for (std::size_t r = 0; r < o.size(); ++r) {
    const std::int64_t cents = o.amount_cents[r];
    if (cents >= 5'000 && cents < 15'000 && o.day[r] >= july_1 && o.day[r] <= september_30)
      s.add(cents);
  }
  return count_answer(s);
}

// ---- segment by month --------------------------------------------------------------

namespace {

constexpr std::int64_t segment_minimum_cents = 10'000;

answer segment_answer(const std::map<std::int64_t, sum_count>& by_key) {
  answer a;
  a.values = flatten_groups(by_key);
  std::int64_t best = -1, best_key = 0;
  for (const auto& [key, g] : by_key) {
    if (g.sum > best) best = g.sum, best_key = key;
  }
  static constexpr std::array<std::string_view, 12> months = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  a.summary = std::to_string(by_key.size()) + " groups; first " +
              std::string(segment_names[static_cast<std::size_t>(best_key / 12)]) + " in " +
              std::string(months[static_cast<std::size_t>(best_key % 12)]) + " " + money(best);
  return a;
}

}  // namespace

answer segment_by_month(query_context& q) {
  const customers_table& c = q.db.customers;
  const orders_table& o = q.db.orders;
  const join_table by_id = customers_by_id(q);
  using key_groups = groups<std::uint32_t, sum_count>;  // key: segment * 12 + month
  std::vector<key_groups> partial = q.parallel("probe", [&](std::size_t part) {
    const std::vector<row> large = scan_filter(
        q.chunk(o.size(), part), [&](row r) { return o.amount_cents[r] >= segment_minimum_cents; });
    key_groups by_key;
    probe(by_id, large, [&](row r) { return o.customer_id[r]; },
          [&](row order, row customer) {
            const std::uint32_t key = c.segment[customer] * 12u +
                                      static_cast<std::uint32_t>(month_of(o.day[order]));
            by_key[key].add(o.amount_cents[order]);
          });
    return by_key;
  });
  return segment_answer(sorted_groups(merge_groups(std::move(partial))));
}

answer segment_by_month_reference(const database& db) {
  const customers_table& c = db.customers;
  const orders_table& o = db.orders;
  std::array<std::array<sum_count, 12>, segment_names.size()> table{};
  for (std::size_t r = 0; r < o.size(); ++r) {
    if (o.amount_cents[r] < segment_minimum_cents) continue;
    const row customer = customer_row(c, o.customer_id[r]);
    table[c.segment[customer]][static_cast<std::size_t>(month_of(o.day[r]))].add(o.amount_cents[r]);
  }
  std::map<std::int64_t, sum_count> sorted;
  for (std::size_t s = 0; s < table.size(); ++s) {
    for (std::size_t m = 0; m < 12; ++m) {
      if (table[s][m].count > 0) sorted[static_cast<std::int64_t>(s * 12 + m)] = table[s][m];
    }
  }
  return segment_answer(sorted);
}

// ---- largest orders ----------------------------------------------------------------

namespace {

constexpr std::int64_t large_order_cents = 100'000;

answer largest_answer(const orders_table& o, const std::vector<row>& sorted) {
  answer a;
  for (const row r : sorted) {
    a.values.push_back(o.order_id[r]);
    a.values.push_back(o.amount_cents[r]);
  }
  a.summary = with_commas(sorted.size()) + " orders; first #" +
              std::to_string(o.order_id[sorted.front()]) + " " +
              money(o.amount_cents[sorted.front()]);
  return a;
}

}  // namespace

answer largest_orders(query_context& q) {
  const orders_table& o = q.db.orders;
  // Largest amount first; ties by order id.
  const auto larger = [&](row a, row b) {
    return o.amount_cents[a] != o.amount_cents[b] ? o.amount_cents[a] > o.amount_cents[b]
                                                  : o.order_id[a] < o.order_id[b];
  };
  const std::vector<std::vector<row>> runs = q.parallel("scan+sort", [&](std::size_t part) {
    std::vector<row> run = scan_filter(q.chunk(o.size(), part),
                                       [&](row r) { return o.amount_cents[r] >= large_order_cents; });
    sort_run(run, larger);
    return run;
  });
  return largest_answer(o, merge_runs(runs, larger));
}

answer largest_orders_reference(const database& db) {
  const orders_table& o = db.orders;
  std::vector<std::pair<std::int64_t, std::uint32_t>> large;  // (-amount, order id): ascending
  for (std::size_t r = 0; r < o.size(); ++r) {
    if (o.amount_cents[r] >= large_order_cents) large.emplace_back(-o.amount_cents[r], o.order_id[r]);
  }
  std::sort(large.begin(), large.end());
  std::vector<row> sorted;
  for (const auto& [negative_amount, id] : large) sorted.push_back(id - 1);  // order ids are rows + 1
  return largest_answer(o, sorted);
}

// ---- runaway: a join on the wrong key ----------------------------------------------

answer join_on_region(query_context& q) {
  const customers_table& c = q.db.customers;
  const orders_table& o = q.db.orders;
  const join_table by_region = q.parallel("build", [&](std::size_t part) {
    return build_partition({0, c.size()}, [&](row r) { return c.region[r]; }, part,
                           query_context::parts);
  });
  using customer_groups = groups<std::uint32_t, sum_count>;
  std::vector<customer_groups> partial = q.parallel("probe", [&](std::size_t part) {
    // The join's output, materialized batch by batch, then aggregated.
    constexpr std::size_t batch_rows = 64 * 1024;
    // The example's own stop, should the query's limit fail: 128 MiB of
    // rows, twice what its 64 MiB allocation limit lets all parts hold.
    constexpr std::size_t safety_cap = 16 * 1024 * 1024;
    std::vector<std::vector<std::pair<row, row>>> batches;
    std::size_t joined = 0;
    probe(by_region, rows_of{q.chunk(o.size(), part)}, [&](row r) { return o.ship_region[r]; },
          [&](row order, row customer) {
            if (batches.empty() || batches.back().size() == batch_rows) {
              if (!batches.empty()) q.advance(batch_rows);  // one more full batch
              if (joined >= safety_cap) throw safety_cap_reached("join: safety cap reached");
              batches.emplace_back().reserve(batch_rows);
            }
            batches.back().emplace_back(order, customer);
            ++joined;
          });
    customer_groups by_customer;
    for (const auto& batch : batches) {
      for (const auto& [order, customer] : batch)
        by_customer[c.customer_id[customer]].add(o.amount_cents[order]);
    }
    return by_customer;
  });
  const auto totals = merge_groups(std::move(partial));
  return {{static_cast<std::int64_t>(totals.size())}, with_commas(totals.size()) + " customers"};
}

// ---- runaway: a group-by on a unique, large key -------------------------------------

namespace {

// The text of an order's invoice: a header, 52 item lines and a total, at
// most 3,850 characters, built in one allocation of 4 KiB.
std::string invoice_text(const database& db, row r) {
  const orders_table& o = db.orders;
  std::string text;
  text.reserve(4'096);
  char line[160];
  std::snprintf(line, sizeof line, "INVOICE for order #%u, customer #%u, shipped to %.*s on day %d\n",
                o.order_id[r], o.customer_id[r],
                static_cast<int>(region_names[o.ship_region[r]].size()),
                region_names[o.ship_region[r]].data(), o.day[r]);
  text += line;
  random_numbers items(o.order_id[r]);
  for (int item = 1; item <= 52; ++item) {
    const std::uint64_t sku = items.below(1'000'000), quantity = 1 + items.below(9),
                        cents = items.below(50'000);
    std::snprintf(line, sizeof line,
                  "  item %2d: sku-%06llu, quantity %llu, unit price $%llu.%02llu, gift wrapped: no\n",
                  item, static_cast<unsigned long long>(sku),
                  static_cast<unsigned long long>(quantity),
                  static_cast<unsigned long long>(cents / 100),
                  static_cast<unsigned long long>(cents % 100));
    text += line;
  }
  std::snprintf(line, sizeof line, "  total $%lld.%02lld\n",
                static_cast<long long>(o.amount_cents[r] / 100),
                static_cast<long long>(o.amount_cents[r] % 100));
  text += line;
  return text;
}

}  // namespace

answer group_by_invoice(query_context& q) {
  const orders_table& o = q.db.orders;
  using text_groups = groups<std::string, sum_count>;
  const text_groups totals = merge_groups(q.parallel("aggregate", [&](std::size_t part) {
    text_groups by_text;
    for (const row r : rows_of{q.chunk(o.size(), part)}) {
      by_text[invoice_text(q.db, r)].add(o.amount_cents[r]);
      q.advance(1);
    }
    return by_text;
  }));
  return {{static_cast<std::int64_t>(totals.size())}, with_commas(totals.size()) + " groups"};
}

// ---- runaway: a nested loop -----------------------------------------------------------

answer near_duplicate_orders(query_context& q) {
  const orders_table& o = q.db.orders;
  std::uint64_t pairs = 0;
  for (const std::uint64_t n : q.parallel("nested-loop", [&](std::size_t part) {
         std::uint64_t found = 0;
         for (const row outer : rows_of{q.chunk(o.size(), part)}) {
           std::vector<row> near;  // this order's near-duplicates
           near.reserve(4);
           for (row inner = 0; inner < o.size(); ++inner) {
             if (inner != outer && o.customer_id[inner] == o.customer_id[outer] &&
                 std::abs(o.amount_cents[inner] - o.amount_cents[outer]) < 100)
               near.push_back(inner);
           }
           found += near.size();
           q.advance(1);
         }
         return found;
       })) {
    pairs += n;
  }
  return {{static_cast<std::int64_t>(pairs)}, with_commas(pairs / 2) + " pairs"};
}

}  // namespace pq
