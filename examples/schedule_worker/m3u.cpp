#include "m3u.hpp"

#include <charconv>
#include <cmath>

#include "errors.hpp"
#include "text.hpp"

namespace schedule {

namespace {

constexpr std::string_view byte_order_mark = "\xEF\xBB\xBF";
constexpr std::string_view extinf_prefix = "#EXTINF:";
constexpr std::string_view blanks = " \t";

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) noexcept {
    if (text.size() < prefix.size()) {
        return false;
    }
    for (std::size_t index = 0; index < prefix.size(); ++index) {
        char letter = text[index];
        if (letter >= 'a' && letter <= 'z') {
            letter = static_cast<char>(letter - 'a' + 'A');
        }
        if (letter != prefix[index]) {
            return false;
        }
    }
    return true;
}

/// Parses the part of an `#EXTINF` line after the colon into `entry`.
void parse_extinf(std::string_view rest, std::size_t line, m3u_entry& entry) {
    // The duration: up to the first blank or comma. Empty (`#EXTINF:,Title`, common in IPTV
    // playlists) is a missing duration, so unknown, like -1; so is a first word that is
    // already an attribute (`#EXTINF: tvg-id="x",Title`).
    std::size_t position = rest.find_first_not_of(blanks);
    if (position == std::string_view::npos) {
        position = rest.size();
    }
    std::size_t duration_end = std::min(rest.find_first_of(" \t,", position), rest.size());
    std::string_view duration_text = rest.substr(position, duration_end - position);
    if (duration_text.find('=') != std::string_view::npos) {
        duration_text = {};
        duration_end = position;
    }
    if (!duration_text.empty()) {
        double duration = 0;
        const auto [stop, error] = std::from_chars(
            duration_text.data(), duration_text.data() + duration_text.size(), duration);
        if (error != std::errc{} || stop != duration_text.data() + duration_text.size() ||
            !std::isfinite(duration) || (duration < 0 && duration != -1)) {
            throw input_error("#EXTINF duration '" + std::string(duration_text) +
                                  "' is not a number of seconds (-1 or nothing for unknown)",
                              {}, line);
        }
        if (duration > 0) {
            entry.duration = duration;
        }
    }
    position = duration_end;

    // Attributes key="value" (or key=value), until the comma outside quotes.
    for (;;) {
        position = rest.find_first_not_of(blanks, position);
        if (position == std::string_view::npos) {
            return; // no comma: no title
        }
        if (rest[position] == ',') {
            entry.title = std::string(trim(rest.substr(position + 1)));
            return;
        }
        const std::size_t equals = rest.find_first_of("=, \t", position);
        if (equals == std::string_view::npos || rest[equals] != '=') {
            // A bare word: skip it.
            position = equals == std::string_view::npos ? rest.size() : equals;
            continue;
        }
        const std::string_view key = rest.substr(position, equals - position);
        std::string_view value;
        position = equals + 1;
        if (position < rest.size() && rest[position] == '"') {
            const std::size_t closing = rest.find('"', position + 1);
            if (closing == std::string_view::npos) {
                throw input_error("#EXTINF attribute " + std::string(key) +
                                      " has an unterminated quote",
                                  {}, line);
            }
            value = rest.substr(position + 1, closing - position - 1);
            position = closing + 1;
        } else {
            const std::size_t end = std::min(rest.find_first_of(" \t,", position), rest.size());
            value = rest.substr(position, end - position);
            position = end;
        }
        if (key == "tvg-id") {
            entry.tvg_id = value;
        } else if (key == "tvg-name") {
            entry.tvg_name = value;
        } else if (key == "tvg-logo") {
            entry.tvg_logo = value;
        } else if (key == "group-title") {
            entry.group = value;
        }
    }
}

} // namespace

m3u_playlist parse_m3u(std::string_view text) {
    if (text.size() > max_m3u_bytes) {
        throw input_error("the playlist is " + std::to_string(text.size()) +
                          " bytes, more than the limit of " + std::to_string(max_m3u_bytes));
    }
    if (const auto invalid = find_invalid_utf8(text)) {
        throw input_error("invalid UTF-8", {}, line_at(text, *invalid));
    }
    if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos) {
        throw input_error("a NUL byte", {}, line_at(text, nul));
    }
    if (text.substr(0, byte_order_mark.size()) == byte_order_mark) {
        text.remove_prefix(byte_order_mark.size());
    }

    m3u_playlist playlist;
    std::optional<m3u_entry> pending; // an #EXTINF waiting for its URL
    bool first_content_line = true;
    std::size_t line_number = 0;
    std::size_t position = 0;
    while (position < text.size()) {
        ++line_number;
        std::size_t end = text.find('\n', position);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        const std::string_view line = trim(text.substr(position, end - position));
        position = end + 1;
        if (line.empty()) {
            continue;
        }
        const bool first = first_content_line;
        first_content_line = false;
        if (line[0] == '#') {
            if (starts_with_ignoring_case(line, extinf_prefix)) {
                if (pending) {
                    throw input_error("#EXTINF is not followed by a URL (another #EXTINF "
                                      "follows on line " +
                                          std::to_string(line_number) + ")",
                                      {}, pending->line);
                }
                pending.emplace();
                pending->line = line_number;
                parse_extinf(line.substr(extinf_prefix.size()), line_number, *pending);
            } else if (first && starts_with_ignoring_case(line, "#EXTM3U")) {
                playlist.has_header = true;
            }
            continue; // other directives and comments are ignored
        }
        if (playlist.entries.size() == max_m3u_entries) {
            throw input_error("more than " + std::to_string(max_m3u_entries) + " entries", {},
                              line_number);
        }
        m3u_entry entry = pending ? std::move(*pending) : m3u_entry{};
        if (!pending) {
            entry.line = line_number;
        }
        pending.reset();
        entry.url = line;
        entry.url_line = line_number;
        if (entry.title.empty()) {
            entry.title = entry.url;
        }
        playlist.entries.push_back(std::move(entry));
    }
    if (pending) {
        throw input_error("#EXTINF is not followed by a URL (the file ends)", {}, pending->line);
    }
    return playlist;
}

} // namespace schedule
