// memlimits/sampling_rate.hpp — the sampling rate that limits and profiles
// share: expected samples per 8-byte word allocated. Its default, and its
// domain (0, 1]. Depends on nothing.
#pragma once

namespace memlimits {

// One sample per 10,000 words (about 78 KiB) allocated, on average: the
// default of memlimits::settings, memprof::profile and memprof::heap_profile.
inline constexpr double default_sampling_rate = 1e-4;

// Whether `rate` may be used as a sampling rate: 0 < rate <= 1 (false for NaN).
constexpr bool is_valid_sampling_rate(double rate) noexcept { return rate > 0.0 && rate <= 1.0; }

}  // namespace memlimits
