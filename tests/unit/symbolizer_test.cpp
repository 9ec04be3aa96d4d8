// memprof/symbolizer: file and line of a static function, a lambda and a
// force-inlined call (two frames: the inlined function, then its caller at
// the line of the call), compiled -O2 -g in symbolizer_sites.cpp; the same in
// a shared library loaded after the symbolizer started; libc without debug
// info; addresses in no object; a library closed before it is named, from
// the record of the module registry (memprof/module_registry.hpp), and that
// registry itself; and short_name() on real demangled names.
#include "memprof/symbolizer.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <link.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "memprof/module_registry.hpp"
#include "unit/symbolizer_sites.hpp"
#include "unit/unloadable_library.hpp"

namespace {

using memlimits::memprof::detail::module_index;
using memlimits::memprof::detail::module_offset_name;
using memlimits::memprof::detail::module_registry;
using memlimits::memprof::detail::no_module;
using memlimits::memprof::detail::recorded_module;
using memlimits::memprof::detail::unloaded_modules;
using memlimits::memprof::detail::short_name;
using memlimits::memprof::detail::symbolized;
using memlimits::memprof::detail::symbolizer;
namespace sites = memlimits::testing::symbolizer_sites;

constexpr std::string_view sites_file = "symbolizer_sites.cpp";

// A return address lies after the call: the call is at return_address - 1.
std::uintptr_t call_pc(const sites::call& c) {
  return reinterpret_cast<std::uintptr_t>(c.return_address) - 1;
}

bool is_sites_file(const std::string& path) {
  return path.size() >= sites_file.size() &&
         std::string_view(path).substr(path.size() - sites_file.size()) == sites_file;
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// For failure messages.
std::string text(const symbolized& s) {
  std::ostringstream out;
  out << "module '" << s.module << "' base 0x" << std::hex << s.module_base << std::dec << ", "
      << s.frames.size() << " frames";
  for (const auto& f : s.frames) out << "\n  " << f.function << " at " << f.file << ":" << f.line;
  return out.str();
}

std::string main_program() { return std::filesystem::canonical("/proc/self/exe").string(); }

std::uintptr_t main_program_bias() {
  std::uintptr_t bias = 0;
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        *static_cast<std::uintptr_t*>(data) = info->dlpi_addr;
        return 1;  // the main program comes first
      },
      &bias);
  return bias;
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code error;
  return std::filesystem::equivalent(a, b, error) && !error;
}

std::string demangled(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> name(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(mangled);
}

// ---- code of the test program ----

TEST(Symbolizer, StaticFunctionHasItsFileAndLine) {
  sites::call c;
  sites::call_static_function(c);
  ASSERT_NE(c.return_address, nullptr);
  symbolizer s;
  const symbolized& r = s.symbolize(call_pc(c));
  ASSERT_EQ(r.frames.size(), 1u) << text(r);
  EXPECT_TRUE(contains(r.frames[0].function, "static_function")) << text(r);
  EXPECT_TRUE(is_sites_file(r.frames[0].file)) << text(r);
  EXPECT_EQ(r.frames[0].line, static_cast<std::uint32_t>(c.line)) << text(r);
}

TEST(Symbolizer, LambdaHasItsFileAndLine) {
  sites::call c;
  sites::call_lambda(c);
  symbolizer s;
  const symbolized& r = s.symbolize(call_pc(c));
  ASSERT_EQ(r.frames.size(), 1u) << text(r);
  // GCC names it call_lambda(...)::{lambda(...)#1}::operator(), clang
  // call_lambda(...)::$_0::operator().
  EXPECT_TRUE(contains(r.frames[0].function, "call_lambda")) << text(r);
  EXPECT_TRUE(contains(r.frames[0].function, "::operator()(")) << text(r);
  EXPECT_FALSE(r.frames[0].linkage_name.empty()) << text(r);
  EXPECT_TRUE(is_sites_file(r.frames[0].file)) << text(r);
  EXPECT_EQ(r.frames[0].line, static_cast<std::uint32_t>(c.line)) << text(r);
}

TEST(Symbolizer, InlinedCallGivesTheInlinedFunctionThenItsCallerAtTheCall) {
  sites::inlined_call c;
  sites::call_inlined(c);
  symbolizer s;
  const symbolized& r = s.symbolize(call_pc(c.inner));
  ASSERT_EQ(r.frames.size(), 2u) << text(r);
  EXPECT_TRUE(contains(r.frames[0].function, "inlined_function")) << text(r);
  EXPECT_TRUE(is_sites_file(r.frames[0].file)) << text(r);
  EXPECT_EQ(r.frames[0].line, static_cast<std::uint32_t>(c.inner.line)) << text(r);
  EXPECT_TRUE(contains(r.frames[1].function, "inlining_function")) << text(r);
  EXPECT_FALSE(contains(r.frames[1].function, "inlined_function")) << text(r);
  EXPECT_TRUE(is_sites_file(r.frames[1].file)) << text(r);
  EXPECT_EQ(r.frames[1].line, static_cast<std::uint32_t>(c.caller_line)) << text(r);
}

TEST(Symbolizer, MainProgramIsNamedByItsRealPathAndBias) {
  sites::call c;
  sites::call_static_function(c);
  symbolizer s;
  const symbolized& r = s.symbolize(call_pc(c));
  EXPECT_TRUE(same_file(r.module, main_program())) << text(r);
  EXPECT_EQ(r.module_base, main_program_bias()) << text(r);
  EXPECT_EQ(module_offset_name(r, call_pc(c))
                .rfind(std::filesystem::path(r.module).filename().string() + "+0x", 0),
            0u);
}

TEST(Symbolizer, SameAddressIsCached) {
  sites::call c;
  sites::call_static_function(c);
  symbolizer s;
  const symbolized& first = s.symbolize(call_pc(c));
  for (int i = 0; i < 3; ++i) s.symbolize(call_pc(c) + 0x100000 * (i + 1));  // other entries
  EXPECT_EQ(&s.symbolize(call_pc(c)), &first);
}

// ---- a shared library loaded after the symbolizer listed the objects ----

TEST(Symbolizer, SharedLibraryLoadedLater) {
  symbolizer s;
  sites::call program_call;
  sites::call_static_function(program_call);
  ASSERT_FALSE(s.symbolize(call_pc(program_call)).frames.empty());

  void* library = ::dlopen(MEMLIMITS_SYMBOLIZER_TEST_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(library, nullptr) << ::dlerror();
  auto* entry = reinterpret_cast<memlimits_symbolizer_library_sites_fn*>(
      ::dlsym(library, "memlimits_symbolizer_library_sites"));
  ASSERT_NE(entry, nullptr) << ::dlerror();
  link_map* map = nullptr;
  ASSERT_EQ(::dlinfo(library, RTLD_DI_LINKMAP, &map), 0);
  sites::call static_call;
  sites::inlined_call inlined;
  entry(&static_call, &inlined);

  const symbolized& r = s.symbolize(call_pc(static_call));
  EXPECT_TRUE(same_file(r.module, MEMLIMITS_SYMBOLIZER_TEST_LIBRARY)) << text(r);
  EXPECT_EQ(r.module_base, map->l_addr) << text(r);
  ASSERT_EQ(r.frames.size(), 1u) << text(r);
  EXPECT_TRUE(contains(r.frames[0].function, "in_library")) << text(r);
  EXPECT_TRUE(contains(r.frames[0].function, "static_function")) << text(r);
  EXPECT_TRUE(is_sites_file(r.frames[0].file)) << text(r);
  EXPECT_EQ(r.frames[0].line, static_cast<std::uint32_t>(static_call.line)) << text(r);

  const symbolized& i = s.symbolize(call_pc(inlined.inner));
  EXPECT_TRUE(same_file(i.module, MEMLIMITS_SYMBOLIZER_TEST_LIBRARY)) << text(i);
  ASSERT_EQ(i.frames.size(), 2u) << text(i);
  EXPECT_TRUE(contains(i.frames[0].function, "inlined_function")) << text(i);
  EXPECT_EQ(i.frames[0].line, static_cast<std::uint32_t>(inlined.inner.line)) << text(i);
  EXPECT_TRUE(contains(i.frames[1].function, "inlining_function")) << text(i);
  EXPECT_EQ(i.frames[1].line, static_cast<std::uint32_t>(inlined.caller_line)) << text(i);
  ::dlclose(library);
}

// ---- fallbacks ----

void* qsort_return_address = nullptr;

extern "C" int compare_recording_caller(const void* a, const void* b) {
  qsort_return_address = __builtin_return_address(0);
  return *static_cast<const int*>(a) - *static_cast<const int*>(b);
}

TEST(Symbolizer, LibcWithoutDebugInfoIsNamedByItsObject) {
  int values[] = {3, 1, 2};
  std::qsort(values, 3, sizeof values[0], compare_recording_caller);
  ASSERT_NE(qsort_return_address, nullptr);
  const auto pc = reinterpret_cast<std::uintptr_t>(qsort_return_address) - 1;
  symbolizer s;
  const symbolized& r = s.symbolize(pc);
  const std::string object = std::filesystem::path(r.module).filename().string();
  EXPECT_EQ(object.rfind("libc.so", 0), 0u) << text(r);
  EXPECT_NE(r.module_base, 0u) << text(r);
  EXPECT_EQ(module_offset_name(r, pc).rfind(object + "+0x", 0), 0u) << module_offset_name(r, pc);
  // A name from libc's symbol tables (or its debug info, if installed) when
  // known; never a frame without any name.
  for (const auto& f : r.frames) EXPECT_FALSE(f.function.empty()) << text(r);
}

TEST(Symbolizer, AddressInNoObjectHasNoFrames) {
  symbolizer s;
  for (std::uintptr_t pc : {std::uintptr_t{0x1000}, std::uintptr_t{0}, ~std::uintptr_t{0}}) {
    const symbolized& r = s.symbolize(pc);
    EXPECT_TRUE(r.frames.empty()) << text(r);
    EXPECT_EQ(r.module, "") << text(r);
    EXPECT_EQ(r.module_base, 0u) << text(r);
  }
  EXPECT_EQ(module_offset_name(s.symbolize(0x1000), 0x1000), "0x1000");
}

// ---- objects unloaded since their frames were recorded ----

std::string hex(std::uintptr_t value) {
  std::ostringstream out;
  out << "0x" << std::hex << value;
  return out.str();
}

// The build ID of the loaded object whose load bias is `bias`.
std::string loaded_build_id_of(std::uintptr_t bias) {
  struct context {
    std::uintptr_t bias;
    std::string id;
  } c{bias, {}};
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        auto& c = *static_cast<context*>(data);
        if (info->dlpi_addr != c.bias) return 0;
        c.id = memlimits::memprof::detail::loaded_build_id(*info);
        return 1;
      },
      &c);
  return c.id;
}

TEST(ModuleRegistry, RecordsEachObjectOnceWithWhatTheLoaderSays) {
  if (!module_registry::supported) GTEST_SKIP() << "no _dl_find_object (glibc < 2.35)";
  sites::call program_call;
  sites::call_static_function(program_call);
  int values[] = {3, 1, 2};
  std::qsort(values, 3, sizeof values[0], compare_recording_caller);
  ASSERT_NE(qsort_return_address, nullptr);
  void* frames[] = {program_call.return_address, qsort_return_address, program_call.return_address,
                    nullptr, reinterpret_cast<void*>(0x1001)};
  module_index first[5];
  module_index again[5];
  module_registry registry;
  registry.intern(frames, 5, first);
  registry.intern(frames, 5, again);
  EXPECT_TRUE(std::equal(first, first + 5, again));
  EXPECT_NE(first[0], no_module);
  EXPECT_NE(first[1], no_module);
  EXPECT_NE(first[0], first[1]);
  EXPECT_EQ(first[2], first[0]);
  EXPECT_EQ(first[3], no_module);  // no frame
  EXPECT_EQ(first[4], no_module);  // in no object
  const std::vector<recorded_module> records = registry.records();
  ASSERT_EQ(records.size(), 2u);
  const recorded_module& program = records.at(first[0] - 1u);
  EXPECT_EQ(program.path, "");  // the main program, as the loader names it
  EXPECT_EQ(program.bias, main_program_bias());
  EXPECT_FALSE(program.build_id.empty());
  EXPECT_EQ(program.build_id, loaded_build_id_of(program.bias));
  const auto pc = reinterpret_cast<std::uintptr_t>(program_call.return_address) - 1;
  EXPECT_TRUE(program.start <= pc && pc < program.end);
  EXPECT_TRUE(program.code_start <= pc && pc < program.code_end);
  const recorded_module& libc = records.at(first[1] - 1u);
  EXPECT_EQ(std::filesystem::path(libc.path).filename().string().rfind("libc.so", 0), 0u)
      << libc.path;
  EXPECT_EQ(libc.build_id, loaded_build_id_of(libc.bias));
  // Both still loaded: named from what is loaded.
  const unloaded_modules unloaded(registry);
  EXPECT_EQ(unloaded[first[0]], nullptr);
  EXPECT_EQ(unloaded[first[1]], nullptr);
  EXPECT_EQ(unloaded[no_module], nullptr);
}

TEST(Symbolizer, ClosedLibraryIsNamedFromItsFileAtItsRecordedBias) {
  if (!module_registry::supported) GTEST_SKIP() << "no _dl_find_object (glibc < 2.35)";
  module_registry registry;
  module_index index = no_module;
  std::uintptr_t entry = 0;
  std::string path;
  std::uintptr_t bias = 0;
  {
    memlimits::testing::unloadable_library library(MEMLIMITS_UNLOADABLE_LIB);
    entry = library.entry();
    path = library.path();
    bias = library.bias();
    // As a stack would record it: a return address just past entry.
    void* frame = reinterpret_cast<void*>(entry + 1);
    registry.intern(&frame, 1, &index);
    ASSERT_TRUE(library.close()) << "dlclose left the library mapped";
  }
  ASSERT_NE(index, no_module);
  const unloaded_modules unloaded(registry);
  ASSERT_NE(unloaded[index], nullptr) << "the closed library is not seen as unloaded";
  const recorded_module record = *unloaded[index];
  EXPECT_EQ(record.path, path);
  EXPECT_EQ(record.bias, bias);
  EXPECT_TRUE(record.start <= entry && entry < record.end);
  EXPECT_TRUE(record.code_start <= entry && entry < record.code_end);
  EXPECT_EQ(record.build_id.size(), 20u);  // GNU ld's default: SHA-1

  symbolizer s;
  const symbolized& r = s.symbolize_in(entry, record);
  EXPECT_EQ(r.module, path) << text(r);
  EXPECT_EQ(r.module_base, bias) << text(r);
  ASSERT_EQ(r.frames.size(), 1u) << text(r);
  EXPECT_EQ(r.frames[0].function, "memlimits_unloadable_allocate") << text(r);
  EXPECT_TRUE(contains(r.frames[0].file, "unloadable_lib.cpp")) << text(r);
  EXPECT_GT(r.frames[0].line, 0u) << text(r);
  EXPECT_EQ(r.symbol_start, entry);
  EXPECT_EQ(r.symbol, "memlimits_unloadable_allocate");
  EXPECT_EQ(&s.symbolize_in(entry, record), &r);  // cached

  // A record whose build ID is not the file's (the file was replaced), or
  // whose file is gone: named by module and offset only.
  recorded_module replaced = record;
  replaced.build_id[0] = static_cast<char>(replaced.build_id[0] ^ 1);
  recorded_module gone = record;
  gone.path += ".gone";
  for (const recorded_module* other : {&replaced, &gone}) {
    const symbolized& o = s.symbolize_in(entry, *other);
    EXPECT_TRUE(o.frames.empty()) << text(o);
    EXPECT_EQ(o.symbol_start, 0u);
    EXPECT_EQ(module_offset_name(o, entry),
              std::filesystem::path(other->path).filename().string() + "+" + hex(entry - bias));
  }
}

// ---- short_name ----

TEST(ShortName, MapInsertLosesItsLongTemplateArguments) {
  const std::string name = demangled(
      "_ZNSt3mapINSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEEiSt4lessIS5_ESaISt4pairIKS5_"
      "iEEE6insertEOSA_");
  ASSERT_EQ(name.rfind("std::map<std::__cxx11::basic_string<char", 0), 0u) << name;
  EXPECT_EQ(short_name(name), "std::map<...>::insert(std::pair<...>&&)");
  // The return type's arguments and the member template's too.
  EXPECT_EQ(
      short_name(demangled("_ZNSt8_Rb_treeINSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcE"
                           "EESt4pairIKS5_iESt10_Select1stIS8_ESt4lessIS5_ESaIS8_EE16_M_insert_"
                           "uniqueIS8_EES6_ISt17_Rb_tree_iteratorIS8_EbEOT_")),
      "std::pair<...> std::_Rb_tree<...>::_M_insert_unique<...>(std::pair<...>&&)");
}

TEST(ShortName, NestedListsShortenOnlyWhenLong) {
  // operator[]: its brackets are the operator's, not an ABI tag.
  EXPECT_EQ(
      short_name(demangled("_ZNSt3mapINSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEEiSt4"
                           "lessIS5_ESaISt4pairIKS5_iEEEixEOS5_")),
      "std::map<...>::operator[](std::__cxx11::basic_string<...>&&)");
  EXPECT_EQ(short_name("std::vector<int, std::allocator<int> >::push_back(int const&)"),
            "std::vector<int, std::allocator<int> >::push_back(int const&)");
  EXPECT_EQ(short_name("std::vector<int, std::allocator<int> >::push_back(int const&)", 16),
            "std::vector<...>::push_back(int const&)");
}

TEST(ShortName, LambdaInAnonymousNamespaceSurvives) {
  const std::string name = demangled("_ZZN12_GLOBAL__N_11fEiENKUliE_clEi");
  ASSERT_EQ(name, "(anonymous namespace)::f(int)::{lambda(int)#1}::operator()(int) const");
  EXPECT_EQ(short_name(name), name);
  EXPECT_EQ(short_name(name, 0, 0),
            "(anonymous namespace)::f(...)::{lambda(int)#1}::operator()(...) const");
  // The enclosing function's long parameter list shortens, the lambda stays.
  EXPECT_EQ(
      short_name(demangled("_ZZ3useRSt3mapINSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"
                           "iSt4lessIS5_ESaISt4pairIKS5_iEEEN2ns5pointESF_ENKUliE_clEi")),
      "use(std::map<...>&, ns::point, ns::point)::{lambda(int)#1}::operator()(int) const");
  EXPECT_EQ(
      short_name(demangled("_ZNSt17_Function_handlerIFiiEZ3useRSt3mapINSt7__cxx1112basic_"
                           "stringIcSt11char_traitsIcESaIcEEEiSt4lessIS7_ESaISt4pairIKS7_iEEEN2"
                           "ns5pointESH_EUliE_E9_M_invokeERKSt9_Any_dataOi")),
      "std::_Function_handler<...>::_M_invoke(std::_Any_data const&, int&&)");
}

TEST(ShortName, OperatorsSurvive) {
  const std::string shift = demangled("_ZStlsISt11char_traitsIcEERSt13basic_ostreamIcT_ES5_PKc");
  ASSERT_EQ(shift,
            "std::basic_ostream<char, std::char_traits<char> >& std::operator<< "
            "<std::char_traits<char> >(std::basic_ostream<char, std::char_traits<char> >&, char "
            "const*)");
  EXPECT_EQ(short_name(shift), shift);
  EXPECT_EQ(
      short_name(shift, 8),
      "std::basic_ostream<...>& std::operator<< <...>(std::basic_ostream<...>&, char const*)");
  EXPECT_EQ(short_name(shift, 8, 10), "std::basic_ostream<...>& std::operator<< <...>(...)");
  const std::string spaceship = demangled("_ZNK2ns5pointssERKS0_");
  ASSERT_EQ(spaceship, "ns::point::operator<=>(ns::point const&) const");
  EXPECT_EQ(short_name(spaceship, 0), spaceship);
  const std::string less = demangled("_ZNK2ns5pointltERKS0_");
  ASSERT_EQ(less, "ns::point::operator<(ns::point const&) const");
  EXPECT_EQ(short_name(less, 0), less);
  const std::string call = demangled("_ZNKSt4lessIiEclERKiS2_");
  ASSERT_EQ(call, "std::less<int>::operator()(int const&, int const&) const");
  EXPECT_EQ(short_name(call), call);
  EXPECT_EQ(short_name(call, 2), "std::less<...>::operator()(int const&, int const&) const");
  EXPECT_EQ(short_name("a::operator>>(int)"), "a::operator>>(int)");
  EXPECT_EQ(short_name("a::operator->() const"), "a::operator->() const");
  EXPECT_EQ(short_name("a::operator<<=(int)", 0, 0), "a::operator<<=(...)");
}

TEST(ShortName, OtherTextPassesThrough) {
  for (std::string_view plain : {"main", "libc.so.6+0x3ffd0", "0x1000", "", "qsort",
                                 "f(int) [clone .cold]", "a<b(c>", "x)("}) {
    EXPECT_EQ(short_name(plain, 0, 0),
              plain == "f(int) [clone .cold]" ? "f(...) [clone .cold]" : std::string(plain));
  }
}

}  // namespace
