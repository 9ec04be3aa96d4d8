// core/limits_port.cpp — the port's out-of-line half: the installed task ops
// and thinning (set_deadline is the slow path's, in core/sampler.cpp).
// Layer 2.
#include "core/limits_port.hpp"

#include "core/distributions.hpp"

namespace memlimits::core {

const task_ops* installed_task_ops = nullptr;

void install_task_ops(const task_ops& ops) noexcept {
  static task_ops table;
  table = ops;
  installed_task_ops = &table;
}

std::uint64_t thin(std::uint64_t samples, double keep) noexcept {
  return keep >= 1.0 ? samples : draw_binomial(this_thread_state().rng_, samples, keep);
}

}  // namespace memlimits::core
