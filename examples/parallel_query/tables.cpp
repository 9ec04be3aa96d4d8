// tables.cpp — the generator of the parallel_query example's tables, and
// the number formatting its report uses (see tables.hpp).
#include "tables.hpp"

#include <algorithm>

namespace pq {

database generate(std::size_t orders, std::size_t customers, std::uint64_t seed) {
  random_numbers random(seed);
  database db;

  customers_table& c = db.customers;
  c.customer_id.reserve(customers);
  c.region.reserve(customers);
  c.segment.reserve(customers);
  std::uint32_t id = 10'000;
  for (std::size_t i = 0; i < customers; ++i) {
    id += 1 + static_cast<std::uint32_t>(random.below(40));  // gaps: ids are keys, not indexes
    c.customer_id.push_back(id);
    c.region.push_back(static_cast<std::uint8_t>(random.below(region_names.size())));
    // Most customers are consumers.
    const std::uint64_t s = random.below(10);
    c.segment.push_back(static_cast<std::uint8_t>(s < 6 ? 0 : s < 8 ? 1 : s < 9 ? 2 : 3));
  }

  orders_table& o = db.orders;
  o.order_id.reserve(orders);
  o.customer_id.reserve(orders);
  o.amount_cents.reserve(orders);
  o.day.reserve(orders);
  o.ship_region.reserve(orders);
  for (std::size_t i = 0; i < orders; ++i) {
    o.order_id.push_back(static_cast<std::uint32_t>(i + 1));
    // The smaller of two draws: customers early in the table order more.
    const std::size_t who = std::min(random.below(customers), random.below(customers));
    o.customer_id.push_back(c.customer_id[who]);
    // Mostly small orders, a few large ones.
    std::int64_t cents = 200 + static_cast<std::int64_t>(random.below(20'000));
    if (random.below(20) == 0) cents += static_cast<std::int64_t>(random.below(480'000));
    o.amount_cents.push_back(cents);
    o.day.push_back(static_cast<std::uint16_t>(random.below(365)));
    // Nine orders in ten ship to the customer's own region.
    o.ship_region.push_back(random.below(10) < 9
                                ? c.region[who]
                                : static_cast<std::uint8_t>(random.below(region_names.size())));
  }
  return db;
}

int month_of(int day) {
  static constexpr int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int month = 0;
  while (month < 11 && day >= month_days[month]) day -= month_days[month++];
  return month;
}

std::string with_commas(std::uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string money(std::int64_t cents) {
  const std::string sign = cents < 0 ? "-" : "";
  const std::uint64_t magnitude = static_cast<std::uint64_t>(cents < 0 ? -cents : cents);
  return sign + "$" + with_commas(magnitude / 100) + "." + std::to_string(magnitude % 100 / 10) +
         std::to_string(magnitude % 10);
}

}  // namespace pq
