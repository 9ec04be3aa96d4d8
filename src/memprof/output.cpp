// memprof/output.cpp — the sinks of memprof/output.hpp. Layer 6.
#include "memprof/output.hpp"

#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

namespace memlimits::memprof::detail {

void file_sink::put(std::string_view data) {
  if (failed_) return;
  if (std::fwrite(data.data(), 1, data.size(), out_) != data.size()) {
    failed_ = true;
    error_ = errno != 0 ? errno : EIO;
  }
}

void file_sink::finish(const char* what) {
  if (std::fflush(out_) != 0 && !failed_) {
    failed_ = true;
    error_ = errno != 0 ? errno : EIO;
  }
  if (failed_ || std::ferror(out_) != 0) {
    throw std::system_error(error_ != 0 ? error_ : EIO, std::generic_category(), what);
  }
}

atomic_file::atomic_file(std::string path, const char* what)
    : path_(std::move(path)), temporary_(path_ + ".tmp." + std::to_string(::getpid())), what_(what) {
  // "e": O_CLOEXEC, so that a program that execs meanwhile does not inherit it.
  file_ = std::fopen(temporary_.c_str(), "we");
  if (file_ == nullptr) {
    throw std::system_error(errno, std::generic_category(),
                            std::string(what_) + ": cannot write " + path_ + " (opening " +
                                temporary_ + ")");
  }
}

atomic_file::~atomic_file() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(temporary_.c_str());
  }
}

void atomic_file::commit() {
  std::FILE* file = std::exchange(file_, nullptr);
  if (std::fclose(file) != 0) {
    const int error = errno;
    std::remove(temporary_.c_str());
    throw std::system_error(error, std::generic_category(),
                            std::string(what_) + ": cannot write " + path_ + " (writing " +
                                temporary_ + ")");
  }
  if (std::rename(temporary_.c_str(), path_.c_str()) != 0) {
    const int error = errno;
    std::remove(temporary_.c_str());
    throw std::system_error(error, std::generic_category(),
                            std::string(what_) + ": cannot write " + path_ + " (renaming " +
                                temporary_ + ")");
  }
}

}  // namespace memlimits::memprof::detail
