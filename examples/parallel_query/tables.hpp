// tables.hpp — the parallel_query example's data: two generated tables,
// customers and orders, stored by column, and the deterministic generator
// that fills them (the same rows on every run and every platform). Nothing
// here knows about memlimits.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pq {

inline constexpr std::array<std::string_view, 8> region_names = {
    "north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west"};
inline constexpr std::array<std::string_view, 4> segment_names = {"consumer", "corporate",
                                                                  "small-business", "public"};

struct customers_table {
  std::vector<std::uint32_t> customer_id;  // unique, ascending, not contiguous
  std::vector<std::uint8_t> region;        // index into region_names
  std::vector<std::uint8_t> segment;       // index into segment_names
  std::size_t size() const { return customer_id.size(); }
};

struct orders_table {
  std::vector<std::uint32_t> order_id;     // 1, 2, 3, ...
  std::vector<std::uint32_t> customer_id;  // a customers.customer_id
  std::vector<std::int64_t> amount_cents;  // $2.00 to about $5,000
  std::vector<std::uint16_t> day;          // day of the year, 0 to 364
  std::vector<std::uint8_t> ship_region;   // where it was shipped: usually the customer's region
  std::size_t size() const { return order_id.size(); }
};

struct database {
  customers_table customers;
  orders_table orders;
};

// `orders` orders placed by `customers` customers, some of whom order far
// more than others; the same tables for the same arguments.
database generate(std::size_t orders, std::size_t customers, std::uint64_t seed);

// The month (0 to 11) of a day of a 365-day year.
int month_of(int day);

// splitmix64: small, fast, and the same sequence everywhere.
class random_numbers {
 public:
  explicit random_numbers(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }

 private:
  std::uint64_t state_;
};

// "$1,234,567.89"
std::string money(std::int64_t cents);
// "1,234,567"
std::string with_commas(std::uint64_t n);

}  // namespace pq
