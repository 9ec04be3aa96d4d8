// A minimal SVG line plot (axes, ticks, labels, one curve, vertical markers),
// written by hand so that the CLI needs nothing beyond Boost.Math and the
// standard library; and the plot of a cumulative curve of bounds.hpp.
// Depends on bounds.hpp and the standard library.
#pragma once

#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stats/bounds.hpp"

namespace memlimits::stats {

struct marker {
  double x;
  std::string label;
};

struct line_plot {
  std::string title;
  std::string subtitle;
  std::string x_label;
  std::string y_label;
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
  std::vector<std::pair<double, double>> points;  // the curve, in data units
  std::vector<marker> markers;                    // dashed vertical lines
};

// Text escaped for SVG/XML character data and attribute values.
std::string xml_escape(std::string_view text);

// Round tick positions in [lo, hi]: steps of 1, 2 or 5 times a power of ten,
// about `count` of them.
std::vector<double> nice_ticks(double lo, double hi, int count);

// Writes a complete, standalone SVG document (an XML declaration, one <svg>
// element with its namespace). Points outside the axes are clipped.
void write_svg(std::ostream& out, const line_plot& plot);

// The plot of P(n) against n / l, with a marker at the limit (n = l).
line_plot cumulative_plot(const curve& c, double from, double to);

}  // namespace memlimits::stats
