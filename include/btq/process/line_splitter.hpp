/// @file line_splitter.hpp
/// @brief Cuts what a child process writes into lines of capped length, for logging it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace btq::process {

/// Splits a byte stream into lines (without their '\n'). A line longer than `limit` bytes keeps
/// its first `limit` bytes; the rest of it, up to its newline, is dropped.
class line_splitter {
  public:
    /// @brief A splitter that keeps at most `limit` bytes of a line.
    explicit line_splitter(std::size_t limit = 4096) : limit_(limit) {}

    /// Calls `emit(std::string_view line)` for every line that `bytes` completes.
    template <class Emit>
    void feed(std::string_view bytes, Emit&& emit) {
        for (const char c : bytes) {
            if (c == '\n') {
                emit(std::string_view(partial_));
                partial_.clear();
            } else if (partial_.size() < limit_) {
                partial_.push_back(c);
            }
        }
    }

    /// At the end of the stream: calls `emit(line)` for a last line without its newline, if any.
    template <class Emit>
    void flush(Emit&& emit) {
        if (!partial_.empty()) {
            emit(std::string_view(partial_));
            partial_.clear();
        }
    }

    /// Forgets an unfinished line.
    void clear() noexcept { partial_.clear(); }

  private:
    std::string partial_;
    std::size_t limit_;
};

} // namespace btq::process
