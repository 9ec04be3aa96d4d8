// memprof/output.hpp — where the heap profile's writers put their output: a
// stream, a C FILE, or a file written whole under a temporary name and then
// renamed. Layer 6.
#pragma once

#include <cstdio>
#include <ostream>
#include <string>
#include <string_view>

namespace memlimits::memprof::detail {

// Where a writer's text or bytes go.
class output_sink {
 public:
  virtual void put(std::string_view data) = 0;

 protected:
  ~output_sink() = default;
};

// Errors are reported through the stream's state.
class ostream_sink final : public output_sink {
 public:
  explicit ostream_sink(std::ostream& out) : out_(out) {}
  void put(std::string_view data) override {
    out_.write(data.data(), static_cast<std::streamsize>(data.size()));
  }

 private:
  std::ostream& out_;
};

// Remembers the first failed write; finish() reports it.
class file_sink final : public output_sink {
 public:
  explicit file_sink(std::FILE* out) : out_(out) {}
  void put(std::string_view data) override;
  // Flushes; throws std::system_error (`what`: the writer's name) when a
  // write failed.
  void finish(const char* what);

 private:
  std::FILE* out_;
  bool failed_ = false;
  int error_ = 0;
};

// Opens a temporary file beside `path`, lets `write` fill it, and renames it
// over `path`: a reader never sees half a profile, and of processes that
// write the same path (a forked child) the last one wins. Throws
// std::system_error naming `path` when it cannot be written; the temporary
// file is removed then.
class atomic_file {
 public:
  atomic_file(std::string path, const char* what);
  ~atomic_file();  // removes the temporary file unless commit() succeeded
  atomic_file(const atomic_file&) = delete;
  atomic_file& operator=(const atomic_file&) = delete;
  std::FILE* file() const noexcept { return file_; }
  void commit();

 private:
  std::string path_;
  std::string temporary_;
  const char* what_;
  std::FILE* file_ = nullptr;
};

template <class Write>
void write_file_atomically(const std::string& path, const char* what, Write&& write) {
  atomic_file out(path, what);
  write(out.file());
  out.commit();
}

}  // namespace memlimits::memprof::detail
