// queries.hpp — the parallel_query example's queries: five well-behaved
// ones, each with a single-threaded reference that computes the same
// answer another way, and three runaway ones (an exploding join, a group-by
// whose every row is a new group, a nested loop that takes hours). Each
// query is the code of its driver: it runs its phases on the shared pool
// through query_context::parallel() and merges what the parts return.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "driver.hpp"
#include "tables.hpp"

namespace pq {

// A query's answer: its result rows, flattened, in a canonical order (so
// that two answers compare equal exactly when the results are the same),
// and the answer in words.
struct answer {
  std::vector<std::int64_t> values;
  std::string summary;
};

// Orders joined with customers on customer_id (hash join), revenue per
// customer region (hash aggregation).
answer revenue_by_region(query_context& q);
answer revenue_by_region_reference(const database& db);

// Revenue per customer (hash aggregation), sorted (sorted runs, merged):
// the ten largest.
answer top_customers(query_context& q);
answer top_customers_reference(const database& db);

// Orders of $50 to $150 placed in July to September (scan + filter): their
// count and total.
answer count_filtered(query_context& q);
answer count_filtered_reference(const database& db);

// Orders of $100 or more (scan + filter) joined with customers (hash join),
// count and revenue per customer segment and month (hash aggregation).
answer segment_by_month(query_context& q);
answer segment_by_month_reference(const database& db);

// Orders of $1,000 or more (scan + filter), sorted by amount, largest first.
answer largest_orders(query_context& q);
answer largest_orders_reference(const database& db);

// Runaway: revenue per customer of the orders shipped to the customer's
// region, written as a join on region alone (the wrong key): every order
// meets every customer of its region, about 2,500 of them.
answer join_on_region(query_context& q);

// Runaway: orders grouped by their rendered invoice text (4 KiB, different
// for every order): every row is a new group with a large key.
answer group_by_invoice(query_context& q);

// Runaway: pairs of orders of one customer within $1 of each other, by a
// nested-loop self-join: 4 * 10^10 comparisons.
answer near_duplicate_orders(query_context& q);

}  // namespace pq
