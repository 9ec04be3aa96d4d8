// An unmodified program linked with preload_startup_lib: everything it
// allocates besides the library's table is a few small blocks.
#include <cstdio>
#include <cstdlib>

extern "C" int startup_table_checksum();

int main() {
  char* small = static_cast<char*>(std::malloc(100));
  std::printf("%d\n", startup_table_checksum());
  std::free(small);
  return 0;
}
