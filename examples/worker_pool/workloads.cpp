// workloads.cpp — the work of the worker_pool demo's jobs and the inputs
// they are fed (see workloads.hpp). Plain C++ and the standard library.
#include "workloads.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace demo {

// ---- plumbing --------------------------------------------------------------

std::uint64_t fnv1a(std::string_view text, std::uint64_t h) {
  for (const char c : text) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

std::uint64_t combine(std::uint64_t seed, std::uint64_t value) {
  return (seed ^ (value + 0x9e3779b97f4a7c15ull + (seed << 6) + (seed >> 2))) *
         0xff51afd7ed558ccdull;
}

void progress::advance(std::uint64_t n) {
  // One writer (the job's thread); the progress line only reads.
  const std::uint64_t now = items.load(std::memory_order_relaxed) + n;
  items.store(now, std::memory_order_relaxed);
  if (now > cap) throw safety_cap_reached("safety cap reached: the job was not stopped");
}

std::string_view text_chunks::next() {
  const std::string_view chunk = text_.substr(0, chunk_size_);
  text_.remove_prefix(chunk.size());
  return chunk;
}

std::string_view endless_chunks::next() {
  buffer_.clear();
  produce_(buffer_);
  return buffer_;
}

namespace {

[[noreturn]] void malformed(const char* what, std::string_view where) {
  throw std::runtime_error(std::string(what) + " near \"" + std::string(where.substr(0, 40)) +
                           "\"");
}

template <class Int>
Int parse_integer(std::string_view field, std::string_view line) {
  Int value{};
  const auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (error != std::errc() || end != field.data() + field.size())
    malformed("csv: bad number", line);
  return value;
}

// Short pieces of made-up words: vocabularies that look like text.
constexpr std::array<std::string_view, 24> syllables = {
    "ka",  "lo",  "mi",  "ren", "tor", "ux",  "vel", "zan", "bri", "cho", "dun", "eth",
    "fal", "gor", "hin", "ist", "jor", "kel", "mor", "nar", "ost", "pra", "qui", "sul"};

std::string make_word(random_numbers& random, int min_syllables, int max_syllables) {
  std::string word;
  const int n = min_syllables + static_cast<int>(random.below(max_syllables - min_syllables + 1));
  for (int i = 0; i < n; ++i) word += syllables[random.below(syllables.size())];
  return word;
}

constexpr std::array<std::string_view, 8> products = {
    "anvil-forged-iron",  "bicycle-bell-brass", "ceramic-mug-large",     "desk-lamp-adjustable",
    "ergonomic-keyboard", "fountain-pen-black", "garden-hose-25m-green", "hiking-boots-size-42"};

constexpr std::array<std::string_view, 6> regions = {"north-east-europe",  "south-west-europe",
                                                     "north-america-east", "north-america-west",
                                                     "south-east-asia",    "oceania-and-pacific"};

std::string customer_name(std::uint64_t index) {
  char name[32];
  std::snprintf(name, sizeof name, "customer-%07llu", static_cast<unsigned long long>(index));
  return name;
}

}  // namespace

// ---- CSV: orders -----------------------------------------------------------

std::uint64_t append_order_line(std::string& out, std::uint64_t id, std::uint64_t customers) {
  random_numbers random(id * 0x2545f4914f6cdd1dull + 7);
  const std::uint64_t customer = random.below(customers);
  const std::string_view product = products[random.below(products.size())];
  const std::uint64_t quantity = 1 + random.below(9);
  const std::uint64_t price = 199 + random.below(99800);
  char line[160];
  const int n = std::snprintf(
      line, sizeof line, "%llu,customer-%07llu,%.*s,%llu,%llu\n",
      static_cast<unsigned long long>(id), static_cast<unsigned long long>(customer),
      static_cast<int>(product.size()), product.data(), static_cast<unsigned long long>(quantity),
      static_cast<unsigned long long>(price));
  out.append(line, static_cast<std::size_t>(n));
  return quantity * price;
}

endless_chunks endless_orders_csv(std::uint64_t customers) {
  return endless_chunks([customers, next_id = std::uint64_t{0}](std::string& out) mutable {
    if (next_id == 0) out += orders_header;
    for (int i = 0; i < 1000; ++i) append_order_line(out, ++next_id, customers);
  });
}

namespace {

order parse_order_line(std::string_view line) {
  std::array<std::string_view, 5> fields;
  std::size_t count = 0;
  std::string_view rest = line;
  while (count < fields.size()) {
    const std::size_t comma = rest.find(',');
    fields[count++] = rest.substr(0, comma);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  if (count != fields.size() || fields[4].find(',') != std::string_view::npos) {
    malformed("csv: expected 5 fields", line);
  }
  order o;
  o.id = parse_integer<std::uint64_t>(fields[0], line);
  o.customer = fields[1];
  o.product = fields[2];
  o.quantity = parse_integer<std::uint32_t>(fields[3], line);
  o.price_cents = parse_integer<std::uint64_t>(fields[4], line);
  return o;
}

}  // namespace

std::vector<order> parse_orders(chunk_source& in, progress& seen) {
  std::vector<order> rows;
  std::string carry;  // a line split across two chunks
  bool header = true;
  auto handle = [&](std::string_view line) {
    if (header) {
      header = false;
      if (line != orders_header.substr(0, orders_header.size() - 1))
        malformed("csv: bad header", line);
    } else if (!line.empty()) {
      rows.push_back(parse_order_line(line));
      seen.advance();
    }
  };
  for (std::string_view chunk = in.next(); !chunk.empty(); chunk = in.next()) {
    std::size_t start = 0;
    for (std::size_t newline = chunk.find('\n'); newline != std::string_view::npos;
         newline = chunk.find('\n', start)) {
      const std::string_view piece = chunk.substr(start, newline - start);
      if (carry.empty()) {
        handle(piece);
      } else {
        carry += piece;
        handle(carry);
        carry.clear();
      }
      start = newline + 1;
    }
    carry += chunk.substr(start);
  }
  if (!carry.empty()) handle(carry);
  return rows;
}

// ---- JSON ------------------------------------------------------------------

namespace {

// One character at a time over the chunks of the input.
class json_reader {
 public:
  explicit json_reader(chunk_source& in) : in_(in) {}

  int peek() {
    if (position_ == chunk_.size()) {
      chunk_ = in_.next();
      position_ = 0;
      if (chunk_.empty()) return -1;
    }
    return static_cast<unsigned char>(chunk_[position_]);
  }
  int get() {
    const int c = peek();
    if (c >= 0) ++position_;
    return c;
  }
  void skip_space() {
    for (int c = peek(); c == ' ' || c == '\n' || c == '\t' || c == '\r'; c = peek()) ++position_;
  }
  void expect(char wanted) {
    if (get() != wanted) fail(std::string("expected '") + wanted + "'");
  }
  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("json: " + what + " near \"" +
                             std::string(chunk_.substr(position_, 40)) + "\"");
  }

 private:
  chunk_source& in_;
  std::string_view chunk_;
  std::size_t position_ = 0;
};

std::string read_string(json_reader& r) {
  r.expect('"');
  std::string text;
  for (;;) {
    const int c = r.get();
    if (c < 0) r.fail("unterminated string");
    if (c == '"') return text;
    if (c != '\\') {
      text += static_cast<char>(c);
      continue;
    }
    switch (const int e = r.get()) {
      case '"':
      case '\\':
      case '/':
        text += static_cast<char>(e);
        break;
      case 'b':
        text += '\b';
        break;
      case 'f':
        text += '\f';
        break;
      case 'n':
        text += '\n';
        break;
      case 'r':
        text += '\r';
        break;
      case 't':
        text += '\t';
        break;
      case 'u': {
        unsigned code = 0;
        for (int i = 0; i < 4; ++i) {
          const int h = r.get();
          const int digit = h >= '0' && h <= '9'   ? h - '0'
                            : h >= 'a' && h <= 'f' ? h - 'a' + 10
                            : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                   : -1;
          if (digit < 0) r.fail("bad \\u escape");
          code = code * 16 + static_cast<unsigned>(digit);
        }
        text += code < 0x80 ? static_cast<char>(code) : '?';  // ASCII is all the demo needs
        break;
      }
      default:
        r.fail("bad escape");
    }
  }
}

void read_literal(json_reader& r, std::string_view word) {
  for (const char c : word) r.expect(c);
}

}  // namespace

json_document parse_json(chunk_source& in, progress& seen) {
  json_reader r(in);
  json_document doc;
  std::vector<std::uint32_t> open;  // the containers not yet closed, innermost last
  auto add = [&](json_node::type kind) -> json_node& {
    json_node& node = doc.nodes.emplace_back();
    node.kind = kind;
    node.end = static_cast<std::uint32_t>(doc.nodes.size());  // containers: set when closed
    seen.advance();
    return node;
  };
  auto in_object = [&] {
    return !open.empty() && doc.nodes[open.back()].kind == json_node::type::object;
  };
  auto read_key = [&] {
    r.skip_space();
    if (r.peek() != '"') r.fail("expected a key");
    std::string key = read_string(r);
    add(json_node::type::string).text = std::move(key);
    r.skip_space();
    r.expect(':');
  };
  auto close = [&] {
    doc.nodes[open.back()].end = static_cast<std::uint32_t>(doc.nodes.size());
    open.pop_back();
  };

  bool want_value = true;
  for (;;) {
    r.skip_space();
    if (want_value) {
      const int c = r.peek();
      if (c == '{' || c == '[') {
        r.get();
        add(c == '{' ? json_node::type::object : json_node::type::array);
        open.push_back(static_cast<std::uint32_t>(doc.nodes.size() - 1));
        r.skip_space();
        if (r.peek() == (c == '{' ? '}' : ']')) {
          r.get();
          close();
          want_value = false;
        } else if (c == '{') {
          read_key();
        }
        continue;
      }
      if (c == '"') {
        std::string text = read_string(r);
        add(json_node::type::string).text = std::move(text);
      } else if (c == 't' || c == 'f') {
        read_literal(r, c == 't' ? "true" : "false");
        add(json_node::type::boolean).boolean = c == 't';
      } else if (c == 'n') {
        read_literal(r, "null");
        add(json_node::type::null);
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        char digits[64];
        std::size_t n = 0;
        for (int d = r.peek(); n < sizeof digits && d >= 0 &&
                               std::string_view("+-.0123456789eE").find(static_cast<char>(d)) !=
                                   std::string_view::npos;
             d = r.peek()) {
          digits[n++] = static_cast<char>(r.get());
        }
        double value = 0;
        const auto [end, error] = std::from_chars(digits, digits + n, value);
        if (error != std::errc() || end != digits + n) r.fail("bad number");
        add(json_node::type::number).number = value;
      } else {
        r.fail(c < 0 ? "unexpected end" : "unexpected character");
      }
      want_value = false;
      continue;
    }
    if (open.empty()) break;
    const int c = r.get();
    if (c == ',') {
      if (in_object()) read_key();
      want_value = true;
    } else if (c == (in_object() ? '}' : ']')) {
      close();
    } else {
      r.fail(c < 0 ? "unexpected end" : "expected ',' or a closing bracket");
    }
  }
  r.skip_space();
  if (r.peek() >= 0) r.fail("trailing characters");
  return doc;
}

endless_chunks endless_nested_json() {
  return endless_chunks([](std::string& out) {
    for (int i = 0; i < 1000; ++i) out += R"({"child":[)";
  });
}

namespace {

// Calls f(key, value index) for each member of the object at `at`.
template <class F>
void for_each_member(const json_document& d, std::uint32_t at, F f) {
  for (std::uint32_t key = at + 1; key < d.nodes[at].end; key = d.nodes[key + 1].end) {
    f(d.nodes[key].text, key + 1);
  }
}

// Calls f(index) for each element of the array at `at`.
template <class F>
void for_each_element(const json_document& d, std::uint32_t at, F f) {
  for (std::uint32_t i = at + 1; i < d.nodes[at].end; i = d.nodes[i].end) f(i);
}

}  // namespace

catalog_answer summarize_catalog(chunk_source& json, progress& seen) {
  const json_document doc = parse_json(json, seen);
  catalog_answer answer;
  if (doc.nodes.empty() || doc.nodes[0].kind != json_node::type::object) {
    throw std::runtime_error("catalog: not an object");
  }
  for_each_member(doc, 0, [&](const std::string& key, std::uint32_t items) {
    if (key != "items" || doc.nodes[items].kind != json_node::type::array) return;
    for_each_element(doc, items, [&](std::uint32_t item) {
      ++answer.items;
      double price = 0;
      bool in_stock = false;
      for_each_member(doc, item, [&](const std::string& field, std::uint32_t value) {
        if (field == "price_cents") price = doc.nodes[value].number;
        if (field == "in_stock") in_stock = doc.nodes[value].boolean;
      });
      if (in_stock) {
        ++answer.in_stock;
        answer.in_stock_value_cents += static_cast<std::uint64_t>(price);
      }
    });
  });
  return answer;
}

// ---- fixtures --------------------------------------------------------------

fixtures make_fixtures() {
  fixtures f;
  random_numbers random(20240601);

  f.customer_count = 2000;
  for (const auto region : regions) f.region_names.emplace_back(region);
  for (std::uint64_t i = 0; i < f.customer_count; ++i) {
    f.customers.push_back({customer_name(i), f.region_names[random.below(regions.size())]});
  }
  f.order_count = 40000;
  f.orders_csv = orders_header;
  for (std::uint64_t id = 1; id <= f.order_count; ++id) {
    f.revenue_cents += append_order_line(f.orders_csv, id, f.customer_count);
  }

  // A catalog of items; the answer is worked out as the text is written.
  f.catalog_json = R"({"catalog":"demo-shop","version":3,"items":[)";
  constexpr std::array<std::string_view, 6> tags = {"garden",  "kitchen", "office",
                                                    "outdoor", "sale",    "new"};
  for (int i = 0; i < 6000; ++i) {
    const std::uint64_t price = 99 + random.below(50000);
    const bool in_stock = random.below(4) != 0;
    char item[320];
    std::snprintf(item, sizeof item,
                  R"(%s{"sku":"SKU-%06d-%s","name":"%s %s","price_cents":%llu,)"
                  R"("tags":["%s","%s"],"in_stock":%s,"size":{"w":%.1f,"h":%.1f},"note":null})",
                  i == 0 ? "" : ",\n", i, i % 2 ? "M" : "L", make_word(random, 2, 4).c_str(),
                  make_word(random, 2, 4).c_str(), static_cast<unsigned long long>(price),
                  tags[random.below(tags.size())].data(), tags[random.below(tags.size())].data(),
                  in_stock ? "true" : "false", static_cast<double>(random.below(1000)) / 10,
                  static_cast<double>(random.below(1000)) / 10);
    f.catalog_json += item;
    ++f.catalog.items;
    if (in_stock) {
      ++f.catalog.in_stock;
      f.catalog.in_stock_value_cents += price;
    }
  }
  f.catalog_json += "]}\n";

  for (int i = 0; i < 100000; ++i) f.words_to_sort.push_back(make_word(random, 3, 8));
  const sorted_words reference = sort_words_reference(f.words_to_sort);
  f.sorted_distinct = reference.distinct;
  f.sorted_checksum = reference.checksum;

  // A text over a vocabulary of distinct words, skewed towards the first ones.
  std::vector<std::string> vocabulary;
  std::unordered_set<std::string> taken;
  while (vocabulary.size() < 20000) {
    std::string word = make_word(random, 4, 8);
    if (taken.insert(word).second) vocabulary.push_back(std::move(word));
  }
  std::vector<std::uint64_t> counts(vocabulary.size());
  for (int i = 0; i < 250000; ++i) {
    const double u = static_cast<double>(random.next() >> 11) / 9007199254740992.0;
    const auto index = static_cast<std::size_t>(static_cast<double>(vocabulary.size()) * u * u * u);
    if (i > 0) f.text += i % 17 == 0 ? '\n' : ' ';
    f.text += vocabulary[index];
    ++counts[index];
  }
  f.text_words.total = 250000;
  for (const std::uint64_t n : counts) {
    f.text_words.distinct += n > 0;
    f.text_words.most_frequent = std::max(f.text_words.most_frequent, n);
  }

  // URLs with repeats; each index names one distinct URL.
  std::vector<bool> seen(30000);
  for (int i = 0; i < 50000; ++i) {
    const std::uint64_t index = random.below(seen.size());
    char url[160];
    std::snprintf(url, sizeof url, "https://shop.example.com/catalog/%s/item-%llu?ref=newsletter",
                  products[index % products.size()].data(), static_cast<unsigned long long>(index));
    f.urls.emplace_back(url);
    if (!seen[index]) {
      seen[index] = true;
      ++f.distinct_urls;
    }
  }
  return f;
}

// ---- the jobs' work --------------------------------------------------------

orders_total total_orders(chunk_source& csv, progress& seen) {
  const std::vector<order> rows = parse_orders(csv, seen);
  orders_total total;
  total.rows = rows.size();
  for (const order& o : rows) total.revenue_cents += o.quantity * o.price_cents;
  return total;
}

sorted_words sort_words(const std::vector<std::string>& words, progress& seen) {
  std::vector<std::string> sorted(words.begin(), words.end());
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  sorted_words answer{sorted.size(), 0};
  for (const std::string& word : sorted) answer.checksum = combine(answer.checksum, fnv1a(word));
  seen.advance(words.size());
  return answer;
}

sorted_words sort_words_reference(const std::vector<std::string>& words) {
  const std::set<std::string_view> ordered(words.begin(), words.end());
  sorted_words answer{ordered.size(), 0};
  for (const std::string_view word : ordered)
    answer.checksum = combine(answer.checksum, fnv1a(word));
  return answer;
}

words_answer index_words(std::string_view text, progress& seen) {
  std::map<std::string, std::uint64_t, std::less<>> index;
  words_answer answer;
  while (!text.empty()) {
    const std::size_t end = std::min(text.find(' '), text.find('\n'));
    const std::string_view word = text.substr(0, end);
    if (!word.empty()) {
      auto it = index.find(word);
      if (it == index.end()) it = index.emplace(std::string(word), 0).first;
      answer.most_frequent = std::max(answer.most_frequent, ++it->second);
      ++answer.total;
      seen.advance();
    }
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
  }
  answer.distinct = index.size();
  return answer;
}

std::uint64_t count_distinct_urls(const std::vector<std::string>& urls, progress& seen) {
  std::unordered_set<std::string> distinct;
  for (const std::string& url : urls) {
    distinct.insert(url);
    seen.advance();
  }
  return distinct.size();
}

region_revenue revenue_by_region(const fixtures& f, progress& seen) {
  text_chunks csv(f.orders_csv);
  progress rows;
  const std::vector<order> orders = parse_orders(csv, rows);
  std::unordered_map<std::string_view, const std::string*> region_of;
  for (const customer& c : f.customers) region_of.emplace(c.name, &c.region);
  std::map<std::string, std::uint64_t> revenue;
  for (const order& o : orders) {
    const auto it = region_of.find(o.customer);
    if (it == region_of.end()) throw std::runtime_error("join: unknown customer " + o.customer);
    revenue[*it->second] += o.quantity * o.price_cents;
    seen.advance();
  }
  region_revenue answer{revenue.size(), 0};
  for (const auto& [region, cents] : revenue) answer.revenue_cents += cents;
  return answer;
}

// ---- runaway work ----------------------------------------------------------

void keep_sorted_leaderboard(progress& seen) {
  struct entry {
    std::uint64_t score;
    std::string player;
  };
  auto by_score = [](const entry& a, const entry& b) { return a.score > b.score; };
  std::vector<entry> board;
  random_numbers random(99);
  char name[48];
  for (;;) {  // a feed of scores that never ends
    std::vector<entry> batch;
    batch.reserve(20000);
    for (int i = 0; i < 20000; ++i) {
      std::snprintf(name, sizeof name, "player-%08llu-eu-west",
                    static_cast<unsigned long long>(random.below(100000000)));
      batch.push_back({random.below(1000000), name});
    }
    std::sort(batch.begin(), batch.end(), by_score);
    std::vector<entry> merged;
    merged.reserve(board.size() + batch.size());
    std::merge(std::make_move_iterator(board.begin()), std::make_move_iterator(board.end()),
               std::make_move_iterator(batch.begin()), std::make_move_iterator(batch.end()),
               std::back_inserter(merged), by_score);
    board.swap(merged);
    seen.advance(20000);
  }
}

void cache_sessions_forever(progress& seen) {
  struct session {
    std::string user_agent;
    std::vector<std::uint32_t> recent_pages;
    std::uint64_t last_seen = 0;
  };
  std::unordered_map<std::string, session> sessions;
  random_numbers random(7);
  char id[40];
  for (std::uint64_t request = 0;; ++request) {  // every request opens a session, none expires
    std::snprintf(id, sizeof id, "sess-%016llx", static_cast<unsigned long long>(random.next()));
    session& s = sessions[id];
    s.user_agent = "Mozilla/5.0 (X11; Linux x86_64) demo-client/" + std::to_string(request % 97);
    for (int page = 0; page < 8; ++page)
      s.recent_pages.push_back(static_cast<std::uint32_t>(random.below(5000)));
    s.last_seen = request;
    seen.advance();
  }
}

std::uint64_t search_nonce(progress& seen) {
  const std::string block = "block=000042|prev=9f3c1ab0d2e4f6a8|payload=demo-transactions";
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (std::uint64_t nonce = 0;; ++nonce) {
    const std::string candidate = block + "|nonce=" + std::to_string(nonce);
    if (std::countl_zero(fnv1a(candidate)) >= 60) return nonce;
    if (nonce % 4096 == 0) {
      seen.advance(4096);
      if (std::chrono::steady_clock::now() > give_up) {
        throw safety_cap_reached("safety cap reached: the search was not cancelled");
      }
    }
  }
}

std::uint64_t join_on_region(const fixtures& f, progress& seen) {
  text_chunks csv(f.orders_csv);
  progress rows;
  const std::vector<order> orders = parse_orders(csv, rows);
  std::unordered_map<std::string_view, std::vector<const customer*>> by_region;
  std::unordered_map<std::string_view, const std::string*> region_of;
  for (const customer& c : f.customers) {
    by_region[c.region].push_back(&c);
    region_of.emplace(c.name, &c.region);
  }
  std::vector<std::string> output;
  for (const order& o : orders) {
    for (const customer* c : by_region[*region_of.at(o.customer)]) {
      output.push_back(std::to_string(o.id) + "," + c->name + "," + c->region);
      seen.advance();
    }
  }
  return output.size();
}

}  // namespace demo
