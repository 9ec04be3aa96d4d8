# check_layers.cmake — are the layer rules of src/README.md kept?
#
#   cmake -DSOURCE_DIR=<repository root> -P tests/structure/check_layers.cmake
#
# src/ is organised as layers, one folder each, listed in order in the layer
# table of src/README.md; a layer may use only itself and the layers above it.
# Nothing in the compiler enforces this (every target sees all of src/), so
# this script does, by reading the files, with no compiler. The table:
#
#   | # | folder | what it is for | files | public headers |
#   |---|---|---|---|---|
#   | 2 | `core/` | free text | `sampler.hpp/.cpp`, `detail/x.hpp` | `memlimits/config.hpp` |
#
# `name.hpp/.cpp` stands for `name.hpp` and `name.cpp`. The public headers of
# a row are the headers of include/ that this layer implements: they can be
# included from this layer on. `—` (or nothing in backticks) means none.
#
# The rules (each violation is printed as one line, `file:line: what`):
#  1. Every file under src/<folder>/ (but README.md files) is listed in its
#     folder's row, and every listed file exists. Every folder of src/ is a
#     row of the table, and every row's folder exists.
#  2. A file of layer N includes ("..." includes; <...> ones are not looked
#     at) only `folder/file` headers that exist and whose folder is a layer
#     M <= N, and `memlimits/...` public headers listed in a row M <= N.
#     Never the umbrella `memlimits/memlimits.hpp`.
#  3. Public headers (include/memlimits/) include only public headers that
#     exist, never a header of src/. Every one of them is listed in exactly
#     one row, but the umbrella `memlimits/memlimits.hpp`, and every listed
#     one exists.
#  4. The core's per-thread state is private to it: outside src/core/, no
#     file of src/, include/, tests/, bench/ or examples/ names
#     `thread_state`, `this_thread_state` or `tls_state` (as whole words).
#     Markdown and CMake files are not read for this rule (nor for rule 2),
#     so that the table and this script may name them.
#
# On success it prints one summary line; otherwise it fails (FATAL_ERROR)
# after printing every violation.
cmake_minimum_required(VERSION 3.25)

if(NOT DEFINED SOURCE_DIR OR NOT IS_DIRECTORY "${SOURCE_DIR}/src")
  message(FATAL_ERROR "usage: cmake -DSOURCE_DIR=<repository root> -P check_layers.cmake")
endif()
get_filename_component(SOURCE_DIR "${SOURCE_DIR}" ABSOLUTE)
set(SRC "${SOURCE_DIR}/src")
set(README "src/README.md")
set(UMBRELLA "memlimits/memlimits.hpp")
set(CORE_PRIVATE_NAMES thread_state this_thread_state tls_state)

# ---------------------------------------------------------------------------
# Bookkeeping: the table and the counters live in global properties, so that
# any function can read them. (No variable here is named like one of if()'s
# constants, such as `n` or `y`: if(NOT n) would test the constant N.)

function(table_set key value)
  set_property(GLOBAL PROPERTY "layers:${key}" "${value}")
endfunction()

function(table_append key value)
  set_property(GLOBAL APPEND PROPERTY "layers:${key}" "${value}")
endfunction()

function(table_get out key)
  get_property(value GLOBAL PROPERTY "layers:${key}")
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

function(count what)
  counted(total ${what})
  math(EXPR total "${total} + 1")
  table_set("count:${what}" ${total})
endfunction()

function(counted out what)
  table_get(total "count:${what}")
  if(total STREQUAL "")
    set(total 0)
  endif()
  set(${out} ${total} PARENT_SCOPE)
endfunction()

# ---------------------------------------------------------------------------
# Reading files line by line. CMake lists split on ';' and treat '[', ']' and
# '\' specially, all common in C++: they are replaced by placeholders while a
# line is handled, and put back in messages.

string(ASCII 1 PH_SEMICOLON)
string(ASCII 2 PH_OPEN)
string(ASCII 3 PH_CLOSE)
string(ASCII 4 PH_BACKSLASH)

function(read_lines out file)
  file(READ "${file}" text)
  string(REPLACE "\\" "${PH_BACKSLASH}" text "${text}")
  string(REPLACE ";" "${PH_SEMICOLON}" text "${text}")
  string(REPLACE "[" "${PH_OPEN}" text "${text}")
  string(REPLACE "]" "${PH_CLOSE}" text "${text}")
  string(REPLACE "\r" "" text "${text}")
  string(REPLACE "\n" ";" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

function(restore out text)
  string(REPLACE "${PH_BACKSLASH}" "\\" text "${text}")
  string(REPLACE "${PH_SEMICOLON}" ";" text "${text}")
  string(REPLACE "${PH_OPEN}" "[" text "${text}")
  string(REPLACE "${PH_CLOSE}" "]" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

function(violation text)
  restore(text "${text}")
  message("${text}")
  count(violations)
endfunction()

# The "..." includes of <file>, as a list of `line:path`.
function(quoted_includes out file)
  read_lines(lines "${file}")
  set(found)
  set(line_no 0)
  foreach(line IN LISTS lines)
    math(EXPR line_no "${line_no} + 1")
    if(line MATCHES "^[ \t]*#[ \t]*include[ \t]*\"([^\"]*)\"")
      list(APPEND found "${line_no}:${CMAKE_MATCH_1}")
    endif()
  endforeach()
  set(${out} "${found}" PARENT_SCOPE)
endfunction()

# Files whose includes and identifiers are not read: documentation and CMake.
function(is_doc_or_cmake out path)
  get_filename_component(name "${path}" NAME)
  if(name MATCHES "\\.(md|cmake)$" OR name STREQUAL "CMakeLists.txt")
    set(${out} TRUE PARENT_SCOPE)
  else()
    set(${out} FALSE PARENT_SCOPE)
  endif()
endfunction()

# The files under <dir>, relative to it, sorted; README.md files left out.
function(files_under out dir)
  file(GLOB_RECURSE files LIST_DIRECTORIES false RELATIVE "${dir}" "${dir}/*")
  list(FILTER files EXCLUDE REGEX "(^|/)README\\.md$")
  list(SORT files)
  set(${out} "${files}" PARENT_SCOPE)
endfunction()

# ---------------------------------------------------------------------------
# The table of src/README.md. It sets the properties
#   folders           the layer folders, in order (`core`, not `core/`)
#   number:<folder>   its layer number (the # column)
#   line:<folder>     its row's line in the README, for messages
#   files:<folder>    the files it lists, relative to the folder
#   public:<header>   the folder whose row lists public header <header>
#   public_headers    every listed public header

# The cells of a table row `| a | b |`, unstripped (a cell may be empty).
function(row_cells out line)
  string(REGEX REPLACE "^\\|(.*)\\|$" "\\1" inner "${line}")
  string(REPLACE "|" ";" cells "${inner}")
  set(${out} "${cells}" PARENT_SCOPE)
endfunction()

# The words in backticks of a cell.
function(backticked out cell)
  string(REGEX MATCHALL "`[^`]*`" words "${cell}")
  list(TRANSFORM words REPLACE "^`(.*)`$" "\\1")
  set(${out} "${words}" PARENT_SCOPE)
endfunction()

# `name.hpp/.cpp` -> name.hpp;name.cpp (and `name.hpp/.cpp/.inl` -> three
# names); any other name stays as it is.
function(expand_file_names out names)
  set(files)
  foreach(name IN LISTS names)
    string(FIND "${name}" "/." shorthand)
    if(shorthand GREATER 0)
      string(SUBSTRING "${name}" 0 ${shorthand} first)
      string(SUBSTRING "${name}" ${shorthand} -1 others)
      string(REGEX REPLACE "\\.[^./]+$" "" stem "${first}")
      string(REGEX MATCHALL "[^./]+" extensions "${others}")
      list(APPEND files "${first}")
      foreach(extension IN LISTS extensions)
        list(APPEND files "${stem}.${extension}")
      endforeach()
    else()
      list(APPEND files "${name}")
    endif()
  endforeach()
  set(${out} "${files}" PARENT_SCOPE)
endfunction()

function(is_table_header out line)
  row_cells(cells "${line}")
  set(expected "#" "folder" "what it is for" "files" "public headers")
  set(${out} FALSE PARENT_SCOPE)
  list(LENGTH cells count)
  if(NOT count EQUAL 5)
    return()
  endif()
  foreach(i RANGE 4)
    list(GET cells ${i} cell)
    list(GET expected ${i} name)
    string(STRIP "${cell}" cell)
    string(TOLOWER "${cell}" cell)
    if(NOT cell STREQUAL name)
      return()
    endif()
  endforeach()
  set(${out} TRUE PARENT_SCOPE)
endfunction()

function(parse_layer_row line line_no)
  row_cells(cells "${line}")
  list(LENGTH cells count)
  if(NOT count EQUAL 5)
    violation("${README}:${line_no}: a layer row has 5 cells (#, folder, what it is for, files, public headers); this one has ${count}")
    return()
  endif()
  list(GET cells 0 number)
  list(GET cells 1 folder)
  list(GET cells 3 files)
  list(GET cells 4 headers)
  string(STRIP "${number}" number)
  string(STRIP "${folder}" folder)

  if(NOT number MATCHES "^[0-9]+$")
    violation("${README}:${line_no}: the # cell of a layer row is its number, not '${number}'")
    return()
  endif()
  table_get(previous last_number)
  if(NOT previous STREQUAL "" AND NOT number GREATER previous)
    violation("${README}:${line_no}: layer ${number} comes after layer ${previous}: rows go in increasing order")
  endif()
  table_set(last_number ${number})

  if(NOT folder MATCHES "^`([^`/]+)/`$")
    violation("${README}:${line_no}: the folder cell of a layer row is one `name/` in backticks, not '${folder}'")
    return()
  endif()
  set(folder "${CMAKE_MATCH_1}")
  table_get(folders folders)
  if(folder IN_LIST folders)
    violation("${README}:${line_no}: ${folder}/ is already a layer of the table")
    return()
  endif()

  backticked(names "${files}")
  expand_file_names(files "${names}")
  backticked(headers "${headers}")
  foreach(header IN LISTS headers)
    table_get(owner "public:${header}")
    if(NOT header MATCHES "^memlimits/[^ ]+$")
      violation("${README}:${line_no}: layer ${number} (${folder}/) lists '${header}' as a public header: they are named memlimits/<name>")
    elseif(NOT owner STREQUAL "")
      violation("${README}:${line_no}: layer ${number} (${folder}/) lists ${header}, already a public header of ${owner}/")
    else()
      table_set("public:${header}" "${folder}")
      table_append(public_headers "${header}")
    endif()
  endforeach()

  table_append(folders "${folder}")
  table_set("number:${folder}" ${number})
  table_set("line:${folder}" ${line_no})
  table_set("files:${folder}" "${files}")
endfunction()

function(parse_layer_table)
  read_lines(lines "${SOURCE_DIR}/${README}")
  set(state header)  # header -> separator -> rows -> done
  set(line_no 0)
  foreach(line IN LISTS lines)
    math(EXPR line_no "${line_no} + 1")
    string(STRIP "${line}" line)
    if(state STREQUAL "header")
      is_table_header(is_header "${line}")
      if(is_header)
        set(state separator)
      endif()
    elseif(state STREQUAL "separator")
      if(NOT line MATCHES "^\\|[-:| ]+\\|$")
        violation("${README}:${line_no}: the layer table's header row is followed by |---|---|...")
        return()
      endif()
      set(state rows)
    elseif(line MATCHES "^\\|")
      parse_layer_row("${line}" ${line_no})
    else()
      set(state done)
      break()
    endif()
  endforeach()
  table_get(folders folders)
  if(state STREQUAL "header")
    violation("${README}:1: no layer table: a row | # | folder | what it is for | files | public headers |, then |---|...|, then one row per layer")
  elseif(NOT folders)
    violation("${README}:${line_no}: the layer table has no rows")
  endif()
endfunction()

# ---------------------------------------------------------------------------
# Rule 1: the files of each layer folder are the files its row lists.

function(check_layer_files)
  table_get(folders folders)
  file(GLOB entries LIST_DIRECTORIES true RELATIVE "${SRC}" "${SRC}/*")
  list(SORT entries)
  foreach(entry IN LISTS entries)
    if(IS_DIRECTORY "${SRC}/${entry}" AND NOT entry IN_LIST folders)
      violation("src/${entry}/: a folder of src/ that is not a layer of the table in ${README}")
    endif()
  endforeach()

  foreach(folder IN LISTS folders)
    table_get(number "number:${folder}")
    table_get(line "line:${folder}")
    table_get(listed "files:${folder}")
    if(NOT IS_DIRECTORY "${SRC}/${folder}")
      violation("${README}:${line}: layer ${number} is src/${folder}/, which does not exist")
      continue()
    endif()
    files_under(present "${SRC}/${folder}")
    foreach(file IN LISTS present)
      count(layer_files)
      if(NOT file IN_LIST listed)
        violation("src/${folder}/${file}: not listed in the files of layer ${number} (${folder}/) in ${README}")
      endif()
    endforeach()
    foreach(file IN LISTS listed)
      if(NOT EXISTS "${SRC}/${folder}/${file}" OR IS_DIRECTORY "${SRC}/${folder}/${file}")
        violation("${README}:${line}: layer ${number} (${folder}/) lists ${file}, but src/${folder}/${file} does not exist")
      endif()
    endforeach()
  endforeach()
endfunction()

# ---------------------------------------------------------------------------
# Rule 2: a layer includes only itself and the layers above it.

# One include <path> at <where> (`file:line`) of a file of layer <folder>.
function(check_layer_include where folder path)
  table_get(number "number:${folder}")
  set(what "${where}: #include \"${path}\"")
  if(path MATCHES "(^|/)\\.\\.?(/|$)")
    violation("${what}: include paths start at src/ or include/, without . or ..")
  elseif(path STREQUAL UMBRELLA)
    violation("${what}: the umbrella header is for users; src/ includes the headers it uses")
  elseif(path MATCHES "^memlimits/")
    table_get(owner "public:${path}")
    table_get(owner_number "number:${owner}")
    if(owner STREQUAL "")
      violation("${what}: not a public header of any layer in ${README}")
    elseif(owner_number GREATER number)
      violation("${what}: layer ${number} (${folder}/) includes a public header of layer ${owner_number} (${owner}/), which comes after it")
    endif()
  elseif(NOT path MATCHES "^([^/]+)/.")
    violation("${what}: include a layer's header as folder/file, or a public header as memlimits/file")
  else()
    set(target "${CMAKE_MATCH_1}")
    table_get(folders folders)
    table_get(target_number "number:${target}")
    if(NOT target IN_LIST folders)
      violation("${what}: ${target}/ is not a layer of ${README} (nor memlimits/)")
    elseif(NOT EXISTS "${SRC}/${path}" OR IS_DIRECTORY "${SRC}/${path}")
      violation("${what}: src/${path} does not exist")
    elseif(target_number GREATER number)
      violation("${what}: layer ${number} (${folder}/) includes layer ${target_number} (${target}/), which comes after it")
    endif()
  endif()
endfunction()

function(check_layer_includes)
  table_get(folders folders)
  foreach(folder IN LISTS folders)
    if(NOT IS_DIRECTORY "${SRC}/${folder}")
      continue()
    endif()
    files_under(present "${SRC}/${folder}")
    foreach(file IN LISTS present)
      is_doc_or_cmake(skip "${file}")
      if(skip)
        continue()
      endif()
      quoted_includes(includes "${SRC}/${folder}/${file}")
      foreach(include IN LISTS includes)
        string(REGEX MATCH "^([0-9]+):(.*)$" _ "${include}")
        check_layer_include("src/${folder}/${file}:${CMAKE_MATCH_1}" "${folder}" "${CMAKE_MATCH_2}")
        count(includes)
      endforeach()
    endforeach()
  endforeach()
endfunction()

# ---------------------------------------------------------------------------
# Rule 3: public headers include only public headers, and each is a layer's.

# Whether public header <header> (memlimits/x.hpp) exists: in include/, or as
# the template cmake/x.hpp.in that CMake generates it from (the version).
function(public_header_exists out header)
  get_filename_component(name "${header}" NAME)
  set(path "${SOURCE_DIR}/include/${header}")
  if((EXISTS "${path}" AND NOT IS_DIRECTORY "${path}") OR EXISTS "${SOURCE_DIR}/cmake/${name}.in")
    set(${out} TRUE PARENT_SCOPE)
  else()
    set(${out} FALSE PARENT_SCOPE)
  endif()
endfunction()

function(check_public_headers)
  set(include_dir "${SOURCE_DIR}/include")
  files_under(headers "${include_dir}/memlimits")
  list(TRANSFORM headers PREPEND "memlimits/")
  foreach(header IN LISTS headers)
    count(public_headers)
    table_get(owner "public:${header}")
    if(owner STREQUAL "" AND NOT header STREQUAL UMBRELLA)
      violation("include/${header}: not listed in the public headers of any layer in ${README}")
    endif()
    quoted_includes(includes "${include_dir}/${header}")
    foreach(include IN LISTS includes)
      count(includes)
      string(REGEX MATCH "^([0-9]+):(.*)$" _ "${include}")
      set(path "${CMAKE_MATCH_2}")
      set(what "include/${header}:${CMAKE_MATCH_1}: #include \"${path}\"")
      if(NOT path MATCHES "^memlimits/")
        violation("${what}: a public header includes only public headers (memlimits/...), never src/")
      else()
        public_header_exists(exists "${path}")
        if(NOT exists)
          violation("${what}: include/${path} does not exist")
        endif()
      endif()
    endforeach()
  endforeach()

  table_get(listed public_headers)
  foreach(header IN LISTS listed)
    public_header_exists(exists "${header}")
    if(NOT exists)
      table_get(owner "public:${header}")
      table_get(number "number:${owner}")
      table_get(line "line:${owner}")
      violation("${README}:${line}: layer ${number} (${owner}/) lists public header ${header}, but include/${header} does not exist")
    endif()
  endforeach()
endfunction()

# ---------------------------------------------------------------------------
# Rule 4: the core's per-thread state is named only in src/core/.

function(check_core_private_names)
  set(word_before "(^|[^A-Za-z0-9_])")
  set(word_after "([^A-Za-z0-9_]|$)")
  string(JOIN "|" any ${CORE_PRIVATE_NAMES})
  foreach(dir IN ITEMS src include tests bench examples)
    if(NOT IS_DIRECTORY "${SOURCE_DIR}/${dir}")
      continue()
    endif()
    file(GLOB_RECURSE files LIST_DIRECTORIES false RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/${dir}/*")
    list(SORT files)
    foreach(file IN LISTS files)
      is_doc_or_cmake(skip "${file}")
      if(skip OR file MATCHES "^src/core/")
        continue()
      endif()
      count(other_files)
      file(READ "${SOURCE_DIR}/${file}" text)
      if(NOT text MATCHES "${word_before}(${any})${word_after}")
        continue()
      endif()
      read_lines(lines "${SOURCE_DIR}/${file}")
      set(line_no 0)
      foreach(line IN LISTS lines)
        math(EXPR line_no "${line_no} + 1")
        set(named)
        foreach(name IN LISTS CORE_PRIVATE_NAMES)
          if(line MATCHES "${word_before}${name}${word_after}")
            list(APPEND named ${name})
          endif()
        endforeach()
        if(named)
          string(JOIN ", " named ${named})
          string(STRIP "${line}" line)
          violation("${file}:${line_no}: names ${named}, private to src/core/: ${line}")
        endif()
      endforeach()
    endforeach()
  endforeach()
endfunction()

# ---------------------------------------------------------------------------

parse_layer_table()
table_get(folders folders)
if(folders)
  check_layer_files()
  check_layer_includes()
  check_public_headers()
endif()
check_core_private_names()

counted(violations violations)
if(violations GREATER 0)
  if(violations EQUAL 1)
    set(violations "1 violation")
  else()
    set(violations "${violations} violations")
  endif()
  message(FATAL_ERROR "layers: ${violations} of the layer rules of ${README} (listed above)")
endif()
list(LENGTH folders layers)
counted(layer_files layer_files)
counted(includes includes)
counted(public_headers public_headers)
counted(other_files other_files)
string(JOIN ", " names ${CORE_PRIVATE_NAMES})
message("layers: ok: ${layers} layers, ${layer_files} files in src/ and ${public_headers} public headers "
        "(${includes} includes), ${other_files} files outside src/core/ free of ${names}")
