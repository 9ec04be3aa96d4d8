// hooks/sanitizer.cpp — in sanitizer builds only: when the hooks may start
// doing more than forwarding (see MEMLIMITS_FORWARD_UNTIL_READY in
// hooks/entry.hpp). Compiled without instrumentation: it runs on threads the
// sanitizer has not set up yet. Layer 4.
#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)

#  include <link.h>

#  include <cstdint>
#  include <cstring>

#  include "hooks/entry.hpp"

namespace memlimits::hooks {

bool ready = false;
constinit thread_local bool thread_ready MEMLIMITS_TLS_MODEL = false;

namespace {

struct range {
  std::uintptr_t begin;
  std::uintptr_t end;
};
constexpr int max_ranges = 16;
range runtime_ranges[max_ranges];
int runtime_range_count = 0;

// The code that runs before a thread is set up: the C library, the loader,
// and the sanitizers' runtimes.
bool is_runtime(const char* name) {
  for (const char* part : {"/libc.so", "/ld-linux", "/libasan", "/libtsan", "/libubsan"}) {
    if (std::strstr(name, part) != nullptr) return true;
  }
  return false;
}

int collect(dl_phdr_info* info, std::size_t, void*) {
  if (info->dlpi_name == nullptr || !is_runtime(info->dlpi_name)) return 0;
  for (int i = 0; i < info->dlpi_phnum && runtime_range_count < max_ranges; ++i) {
    const auto& segment = info->dlpi_phdr[i];
    if (segment.p_type != PT_LOAD || (segment.p_flags & PF_X) == 0) continue;
    const std::uintptr_t begin = info->dlpi_addr + segment.p_vaddr;
    runtime_ranges[runtime_range_count++] = {begin, begin + segment.p_memsz};
  }
  return 0;
}

// The first of the executable's constructors: the sanitizer's runtime has
// started (from preinit_array) and the main thread is set up.
__attribute__((constructor(101))) void declare_ready() {
  dl_iterate_phdr(&collect, nullptr);
  ready = true;
}

}  // namespace

bool called_from_runtime(const void* caller) noexcept {
  const auto address = reinterpret_cast<std::uintptr_t>(caller);
  for (int i = 0; i < runtime_range_count; ++i) {
    if (address >= runtime_ranges[i].begin && address < runtime_ranges[i].end) return true;
  }
  return false;
}

}  // namespace memlimits::hooks

#endif  // MEMLIMITS_SANITIZER_ALLOCATOR
