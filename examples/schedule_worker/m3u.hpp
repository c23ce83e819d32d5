/// @file m3u.hpp
/// @brief The M3U / M3U8 playlist reader (extended M3U with `#EXTINF` and its `tvg-*` and
///        `group-title` attributes).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace schedule {

/// @brief Largest playlist accepted, in bytes.
inline constexpr std::size_t max_m3u_bytes = std::size_t{8} << 20;
/// @brief Most entries accepted in one playlist.
inline constexpr std::size_t max_m3u_entries = 100'000;

/// @brief One entry: an `#EXTINF` line (optional) and the URL line that ends it.
struct m3u_entry {
    std::string title;              ///< the `#EXTINF` title, or the URL when there is none
    std::string url;                ///< the URL line, trimmed
    std::optional<double> duration; ///< seconds; nullopt when missing, `-1` or `0`
    std::string tvg_id, tvg_name, tvg_logo, group;
    std::size_t line = 0;     ///< 1-based line where the entry starts (its `#EXTINF`, else its URL)
    std::size_t url_line = 0; ///< 1-based line of the URL
};

struct m3u_playlist {
    bool has_header = false; ///< the first line is `#EXTM3U`
    std::vector<m3u_entry> entries;
};

/// @brief Parses a playlist: `#EXTM3U` header (optional), `#EXTINF:duration key="value"
///        ...,title` followed by a URL line, bare URL lines; other `#` lines and blank lines are
///        ignored; LF or CRLF; a UTF-8 byte order mark is skipped. An empty duration
///        (`#EXTINF:,title`) is unknown, like `-1` and `0`.
/// @throws input_error (only) naming the line: invalid UTF-8, a NUL byte, a bad `#EXTINF`
///         duration or unterminated quote, an `#EXTINF` without a URL after it, more than
///         max_m3u_bytes or max_m3u_entries
[[nodiscard]] m3u_playlist parse_m3u(std::string_view text);

} // namespace schedule
