/// @file text.hpp
/// @brief UTF-8 checks and small string helpers shared by the parsers and validators.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace schedule {

/// @brief The byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates and
///        code points above U+10FFFF are invalid), or nullopt when all of `text` is valid.
[[nodiscard]] std::optional<std::size_t> find_invalid_utf8(std::string_view text) noexcept;

/// @brief Whether valid UTF-8 `text` contains a control character: C0 (U+0000–U+001F), DEL or
///        C1 (U+0080–U+009F).
[[nodiscard]] bool has_control_character(std::string_view text) noexcept;

/// @brief `text` without leading and trailing spaces, tabs, carriage returns and line feeds.
[[nodiscard]] std::string_view trim(std::string_view text) noexcept;

/// @brief The 1-based line of byte `offset` in `text`.
[[nodiscard]] std::size_t line_at(std::string_view text, std::size_t offset) noexcept;

} // namespace schedule
