// The SVG line plot of svg.hpp. Depends on bounds.hpp and the standard
// library. Coordinates are printed with a fixed number of decimals (0.01 px)
// so that regenerated files differ only when the data do.
#include "stats/svg.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace memlimits::stats {
namespace {

// Canvas and the plot area inside it, in pixels.
constexpr double width = 720, height = 480;
constexpr double left = 80, right = 30, top = 70, bottom = 70;
constexpr double area_width = width - left - right;
constexpr double area_height = height - top - bottom;

std::string number(double value, const char* format = "%.2f") {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

// A tick label: as few digits as tell the ticks apart ("0.2", "1", "1.25").
std::string tick_label(double value, double step) {
  int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  // A step of 2.5 or 0.25 needs one more digit than its power of ten.
  if (std::fabs(std::round(step * std::pow(10, decimals)) - step * std::pow(10, decimals)) > 1e-6) {
    ++decimals;
  }
  if (std::fabs(value) < step * 1e-9) value = 0;  // no "-0"
  char format[16];
  std::snprintf(format, sizeof format, "%%.%df", decimals);
  return number(value, format);
}

}  // namespace

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int count) {
  std::vector<double> ticks;
  if (!(hi > lo) || count < 1 || !std::isfinite(lo) || !std::isfinite(hi)) return ticks;
  const double raw = (hi - lo) / count;
  const double magnitude = std::pow(10, std::floor(std::log10(raw)));
  double step = 10 * magnitude;
  for (double m : {1.0, 2.0, 2.5, 5.0}) {
    if (m * magnitude >= raw) {
      step = m * magnitude;
      break;
    }
  }
  // Index the ticks by integers so that rounding errors do not accumulate.
  const auto first = static_cast<long long>(std::ceil(lo / step - 1e-9));
  const auto last = static_cast<long long>(std::floor(hi / step + 1e-9));
  for (long long i = first; i <= last; ++i) ticks.push_back(static_cast<double>(i) * step);
  return ticks;
}

void write_svg(std::ostream& out, const line_plot& plot) {
  auto px = [&](double x) {
    return left + (x - plot.x_min) / (plot.x_max - plot.x_min) * area_width;
  };
  auto py = [&](double y) {
    return top + area_height - (y - plot.y_min) / (plot.y_max - plot.y_min) * area_height;
  };
  const std::string font = R"( font-family="DejaVu Sans, Helvetica, Arial, sans-serif")";

  out << R"(<?xml version="1.0" encoding="UTF-8"?>)" << '\n'
      << R"(<svg xmlns="http://www.w3.org/2000/svg" width=")" << width << R"(" height=")" << height
      << R"(" viewBox="0 0 )" << width << ' ' << height << R"(">)" << '\n'
      << "<title>" << xml_escape(plot.title) << "</title>\n"
      << R"(<rect x="0" y="0" width=")" << width << R"(" height=")" << height
      << R"(" fill="white"/>)" << '\n'
      << R"(<defs><clipPath id="area"><rect x=")" << left << R"(" y=")" << top << R"(" width=")"
      << area_width << R"(" height=")" << area_height << R"("/></clipPath></defs>)" << '\n';

  // Title and subtitle.
  out << R"(<text x=")" << width / 2 << R"(" y="28" text-anchor="middle" font-size="17")" << font
      << '>' << xml_escape(plot.title) << "</text>\n";
  if (!plot.subtitle.empty()) {
    out << R"(<text x=")" << width / 2 << R"(" y="50" text-anchor="middle" font-size="13")" << font
        << R"( fill="#444">)" << xml_escape(plot.subtitle) << "</text>\n";
  }

  // Grid and ticks.
  const auto x_ticks = nice_ticks(plot.x_min, plot.x_max, 8);
  const auto y_ticks = nice_ticks(plot.y_min, plot.y_max, 5);
  const double x_step = x_ticks.size() > 1 ? x_ticks[1] - x_ticks[0] : 1;
  const double y_step = y_ticks.size() > 1 ? y_ticks[1] - y_ticks[0] : 1;
  out << R"(<g stroke="#ddd" stroke-width="1">)" << '\n';
  for (double x : x_ticks) {
    out << R"(<line x1=")" << number(px(x)) << R"(" y1=")" << top << R"(" x2=")" << number(px(x))
        << R"(" y2=")" << top + area_height << R"("/>)" << '\n';
  }
  for (double y : y_ticks) {
    out << R"(<line x1=")" << left << R"(" y1=")" << number(py(y)) << R"(" x2=")"
        << left + area_width << R"(" y2=")" << number(py(y)) << R"("/>)" << '\n';
  }
  out << "</g>\n";
  out << R"(<g stroke="black" stroke-width="1">)" << '\n';
  for (double x : x_ticks) {
    out << R"(<line x1=")" << number(px(x)) << R"(" y1=")" << top + area_height << R"(" x2=")"
        << number(px(x)) << R"(" y2=")" << top + area_height + 6 << R"("/>)" << '\n';
  }
  for (double y : y_ticks) {
    out << R"(<line x1=")" << left - 6 << R"(" y1=")" << number(py(y)) << R"(" x2=")" << left
        << R"(" y2=")" << number(py(y)) << R"("/>)" << '\n';
  }
  out << "</g>\n";
  out << R"(<g font-size="12")" << font << '>' << '\n';
  for (double x : x_ticks) {
    out << R"(<text x=")" << number(px(x)) << R"(" y=")" << top + area_height + 21
        << R"(" text-anchor="middle">)" << tick_label(x, x_step) << "</text>\n";
  }
  for (double y : y_ticks) {
    out << R"(<text x=")" << left - 10 << R"(" y=")" << number(py(y) + 4)
        << R"(" text-anchor="end">)" << tick_label(y, y_step) << "</text>\n";
  }
  out << "</g>\n";

  // Axis labels.
  out << R"(<text x=")" << left + area_width / 2 << R"(" y=")" << height - 18
      << R"(" text-anchor="middle" font-size="14")" << font << '>' << xml_escape(plot.x_label)
      << "</text>\n";
  out << R"(<text x="22" y=")" << top + area_height / 2
      << R"(" text-anchor="middle" font-size="14")" << font << R"svg( transform="rotate(-90 22 )svg"
      << top + area_height / 2 << R"svg()">)svg" << xml_escape(plot.y_label) << "</text>\n";

  // Markers, then the curve above them, both clipped to the plot area.
  for (const auto& m : plot.markers) {
    out << R"(<line x1=")" << number(px(m.x)) << R"(" y1=")" << top << R"(" x2=")"
        << number(px(m.x)) << R"(" y2=")" << top + area_height
        << R"svg(" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="6 4" clip-path="url(#area)"/>)svg"
        << '\n';
    out << R"(<text x=")" << number(px(m.x) + 5) << R"(" y=")" << top + 16
        << R"(" font-size="12" fill="#c0392b")" << font << '>' << xml_escape(m.label)
        << "</text>\n";
  }
  out << R"svg(<polyline fill="none" stroke="#1f5fa8" stroke-width="2" clip-path="url(#area)" points=")svg";
  for (std::size_t i = 0; i < plot.points.size(); ++i) {
    if (i > 0) out << (i % 8 == 0 ? '\n' : ' ');
    out << number(px(plot.points[i].first)) << ',' << number(py(plot.points[i].second));
  }
  out << R"("/>)" << '\n';

  // The frame last, so that it is drawn over the grid.
  out << R"(<rect x=")" << left << R"(" y=")" << top << R"(" width=")" << area_width
      << R"(" height=")" << area_height << R"(" fill="none" stroke="black" stroke-width="1"/>)"
      << '\n';
  out << "</svg>\n";
}

line_plot cumulative_plot(const curve& c, double from, double to) {
  line_plot plot;
  plot.title = "Cumulative probability of being interrupted, k = " + std::to_string(c.k);
  char subtitle[200];
  // The limit as an integer when it is one (1e+07 reads badly in a caption).
  const bool whole = c.limit_words == std::floor(c.limit_words) && c.limit_words < 1e15;
  std::snprintf(subtitle, sizeof subtitle,
                whole ? "P(n) = I_p(k, n-k+1), rate p = %g per word, limit l = k/p = %.0f words "
                        "(%.6g MiB)"
                      : "P(n) = I_p(k, n-k+1), rate p = %g per word, limit l = k/p = %.6g words "
                        "(%.6g MiB)",
                c.rate, c.limit_words, c.limit_words * word_bytes / (1024.0 * 1024.0));
  plot.subtitle = subtitle;
  plot.x_label = "words allocated n, relative to the limit (n / l)";
  plot.y_label = "P(interrupted after n words)";
  plot.x_min = from;
  plot.x_max = to;
  plot.y_min = 0;
  plot.y_max = 1;
  plot.points.reserve(c.points.size());
  for (const auto& point : c.points) {
    plot.points.emplace_back(static_cast<double>(point.words) / c.limit_words, point.probability);
  }
  plot.markers.push_back({1.0, "limit l"});
  return plot;
}

}  // namespace memlimits::stats
