/// @file request.hpp
/// @brief Reading request JSON with strict types: every error is an input_error naming the
///        field (`items[3].duration`).
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace schedule {

/// @brief Parses a request: empty (or blank) text is `{}`; otherwise one JSON object of at
///        most max_request_bytes, nested at most 32 deep, in UTF-8.
/// @throws input_error "the request is not valid UTF-8 (at byte N, line L, column C...)" naming
///         the field whose string value holds the first bad byte, when it is in one;
///         "request is not valid JSON: ..." or "the request must be a JSON object"
[[nodiscard]] boost::json::object parse_request_object(std::string_view json);

/// @brief `parent.name` or `name` (for field paths).
[[nodiscard]] std::string field_path(const std::string& parent, std::string_view name);

/// @brief A string field. Absent or null: nullopt, or an input_error "required" if `required`.
/// @throws input_error if present with another type
[[nodiscard]] std::optional<std::string_view> string_field(const boost::json::object& object,
                                                           std::string_view name,
                                                           const std::string& path, bool required);

/// @brief A whole-number field (an integer, or a number with no fraction) in
///        [minimum, maximum]. Absent or null: nullopt, or an input_error if `required`.
/// @throws input_error if of another type, fractional or out of range
[[nodiscard]] std::optional<std::int64_t> integer_field(const boost::json::object& object,
                                                        std::string_view name,
                                                        const std::string& path, bool required,
                                                        std::int64_t minimum, std::int64_t maximum);

/// @brief The JSON type of `value` in words ("a string", "an array", ...), for messages.
[[nodiscard]] const char* kind_name(const boost::json::value& value) noexcept;

} // namespace schedule
