/// @file json_writer.hpp
/// @brief A minimal streaming JSON writer: the answers are built straight into one string,
///        without an intermediate document (cheap for the `schedules` listing).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace schedule {

/// @brief Appends JSON to a string. Commas are placed automatically; the caller keeps objects
///        and arrays balanced and writes a key before each value inside an object.
class json_writer {
  public:
    json_writer& begin_object();
    json_writer& end_object();
    json_writer& begin_array();
    json_writer& end_array();
    /// @brief An object key; the next call writes its value.
    json_writer& key(std::string_view name);
    /// @brief A string value; invalid UTF-8 is replaced by U+FFFD, so the output is always valid.
    json_writer& value(std::string_view text);
    json_writer& value(const char* text) { return value(std::string_view(text)); }
    json_writer& value(std::int64_t number);
    json_writer& value(std::uint64_t number);
    json_writer& value(int number) { return value(static_cast<std::int64_t>(number)); }
    /// @brief A finite number in its shortest round-trip form (`1800`, `12.5`); null if not finite.
    json_writer& value(double number);
    json_writer& value(bool flag);
    json_writer& null();

    /// @brief The text written so far.
    [[nodiscard]] const std::string& text() const noexcept { return out_; }
    /// @brief Moves the text out; the writer is then empty.
    [[nodiscard]] std::string take() noexcept { return std::move(out_); }
    void reserve(std::size_t bytes) { out_.reserve(bytes); }

  private:
    void separate();
    void append_string(std::string_view text);

    std::string out_;
    bool need_comma_ = false;
};

} // namespace schedule
