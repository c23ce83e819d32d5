/// @file utf8.hpp
/// @brief UTF-8 checks for text the server hands to schedule_worker inside JSON (which must be
///        UTF-8): query values, JSON bodies, decoded XMLTV guides. Pure functions, no Beast.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace schedule_server {

/// The offset of the first byte that is not part of a well-formed UTF-8 sequence (RFC 3629: no
/// overlong forms, no surrogates, nothing above U+10FFFF), or nothing when all of `text` is.
[[nodiscard]] std::optional<std::size_t> find_invalid_utf8(std::string_view text) noexcept;

/// The 1-based line of byte `offset` of `text` (a line ends with LF).
[[nodiscard]] std::size_t line_at(std::string_view text, std::size_t offset) noexcept;

/// Appends `code_point` (at most U+10FFFF, not a surrogate) in UTF-8.
void append_utf8(std::string& out, char32_t code_point);

} // namespace schedule_server
