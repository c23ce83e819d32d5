#include "text.hpp"

#include <algorithm>

namespace schedule {

namespace {

/// Decodes one UTF-8 sequence at `text[position]`; returns its length, or 0 if invalid.
std::size_t sequence_length(std::string_view text, std::size_t position,
                            char32_t& code_point) noexcept {
    const auto byte = [&](std::size_t index) {
        return static_cast<unsigned char>(text[position + index]);
    };
    const unsigned char lead = byte(0);
    if (lead < 0x80U) {
        code_point = lead;
        return 1;
    }
    std::size_t length = 0;
    char32_t minimum = 0;
    if ((lead & 0xE0U) == 0xC0U) {
        length = 2;
        minimum = 0x80;
        code_point = lead & 0x1FU;
    } else if ((lead & 0xF0U) == 0xE0U) {
        length = 3;
        minimum = 0x800;
        code_point = lead & 0x0FU;
    } else if ((lead & 0xF8U) == 0xF0U) {
        length = 4;
        minimum = 0x10000;
        code_point = lead & 0x07U;
    } else {
        return 0;
    }
    if (text.size() - position < length) {
        return 0;
    }
    for (std::size_t index = 1; index < length; ++index) {
        if ((byte(index) & 0xC0U) != 0x80U) {
            return 0;
        }
        code_point = (code_point << 6U) | (byte(index) & 0x3FU);
    }
    const bool surrogate = code_point >= 0xD800 && code_point <= 0xDFFF;
    if (code_point < minimum || surrogate || code_point > 0x10FFFF) {
        return 0;
    }
    return length;
}

} // namespace

std::optional<std::size_t> find_invalid_utf8(std::string_view text) noexcept {
    std::size_t position = 0;
    while (position < text.size()) {
        // Fast path: a run of ASCII.
        if (static_cast<unsigned char>(text[position]) < 0x80U) {
            ++position;
            continue;
        }
        char32_t code_point = 0;
        const std::size_t length = sequence_length(text, position, code_point);
        if (length == 0) {
            return position;
        }
        position += length;
    }
    return std::nullopt;
}

bool has_control_character(std::string_view text) noexcept {
    for (std::size_t position = 0; position < text.size(); ++position) {
        const auto byte = static_cast<unsigned char>(text[position]);
        if (byte < 0x20U || byte == 0x7FU) {
            return true;
        }
        // C1 controls are U+0080–U+009F: encoded as C2 80 – C2 9F.
        if (byte == 0xC2U && position + 1 < text.size()) {
            const auto next = static_cast<unsigned char>(text[position + 1]);
            if (next >= 0x80U && next <= 0x9FU) {
                return true;
            }
        }
    }
    return false;
}

std::string_view trim(std::string_view text) noexcept {
    constexpr std::string_view blanks = " \t\r\n";
    const std::size_t first = text.find_first_not_of(blanks);
    if (first == std::string_view::npos) {
        return {};
    }
    const std::size_t last = text.find_last_not_of(blanks);
    return text.substr(first, last - first + 1);
}

std::size_t line_at(std::string_view text, std::size_t offset) noexcept {
    const std::size_t end = std::min(offset, text.size());
    return 1 + static_cast<std::size_t>(
                   std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(end), '\n'));
}

} // namespace schedule
