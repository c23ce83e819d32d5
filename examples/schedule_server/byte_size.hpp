/// @file byte_size.hpp
/// @brief The memory flags' values: sizes (`256M`, `1GiB`, `1048576`) and percentages, read
///        strictly, and sizes written back for people. Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace schedule_server {

/// @brief A size in bytes: a whole number, optionally followed by K, M or G (or KiB, MiB,
///        GiB; any case), which are powers of 1024. No sign, fraction, space or other unit.
/// @return the bytes, or why the text is not a size (empty, garbage, a sign, too large for
///         64 bits)
[[nodiscard]] std::variant<std::uint64_t, std::string> parse_byte_size(std::string_view text);

/// @brief A percentage from 0 to 100 (a decimal number such as `10` or `12.5`).
/// @return the number, or why the text is not one (garbage, out of range, not finite)
[[nodiscard]] std::variant<double, std::string> parse_percent(std::string_view text);

/// @brief A size for people: in the largest of GiB, MiB, KiB that divides it exactly
///        (`256 MiB`), otherwise in bytes (`1000 bytes`).
[[nodiscard]] std::string describe_byte_size(std::uint64_t bytes);

} // namespace schedule_server
