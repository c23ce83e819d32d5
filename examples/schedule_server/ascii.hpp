/// @file ascii.hpp
/// @brief The ASCII helpers of HTTP's text (field values, media types, charset names): case-
///        insensitive comparison and trimming of spaces and tabs (RFC 9110's optional
///        whitespace). Header-only; used by api.cpp, byte_size.cpp, query.cpp and
///        xml_charset.cpp.
#pragma once

#include <algorithm>
#include <cctype>
#include <string_view>

namespace schedule_server::ascii {

/// True if `a` and `b` are equal ignoring ASCII case.
[[nodiscard]] inline bool iequals(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

/// `text` without leading and trailing spaces and tabs.
[[nodiscard]] inline std::string_view trim(std::string_view text) noexcept {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
        text.remove_suffix(1);
    }
    return text;
}

} // namespace schedule_server::ascii
