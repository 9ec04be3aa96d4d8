# MEMLIMITS_SANITIZER: a list for -fsanitize= applied to everything built
# here (the library, its hooks, tests, benchmarks). Under a sanitizer with its
# own allocator (address, thread), the hooks forward to that allocator rather
# than to glibc (src/platform/system_allocator.hpp).
if(MEMLIMITS_SANITIZER)
  add_compile_options(-fsanitize=${MEMLIMITS_SANITIZER} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${MEMLIMITS_SANITIZER})
  add_compile_definitions(MEMLIMITS_SANITIZED=1)
  if(MEMLIMITS_SANITIZER MATCHES "address|thread")
    add_compile_definitions(MEMLIMITS_SANITIZER_ALLOCATOR=1)
  endif()
endif()
