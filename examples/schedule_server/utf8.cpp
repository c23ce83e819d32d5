#include "utf8.hpp"

#include <algorithm>
#include <cstdint>

namespace schedule_server {
namespace {

/// The length of the well-formed sequence that starts at `text[at]`, or 0 (RFC 3629 section 4).
std::size_t sequence_length(std::string_view text, std::size_t at) noexcept {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[at + i]); };
    const unsigned char lead = byte(0);
    std::size_t length = 0;
    unsigned char low = 0x80U; // the second byte's range, narrowed for E0, ED, F0, F4
    unsigned char high = 0xBFU;
    if (lead < 0x80U) {
        return 1;
    }
    if (lead >= 0xC2U && lead <= 0xDFU) {
        length = 2;
    } else if (lead >= 0xE0U && lead <= 0xEFU) {
        length = 3;
        low = lead == 0xE0U ? 0xA0U : 0x80U;  // no overlong forms
        high = lead == 0xEDU ? 0x9FU : 0xBFU; // no surrogates
    } else if (lead >= 0xF0U && lead <= 0xF4U) {
        length = 4;
        low = lead == 0xF0U ? 0x90U : 0x80U;  // no overlong forms
        high = lead == 0xF4U ? 0x8FU : 0xBFU; // nothing above U+10FFFF
    } else {
        return 0;
    }
    if (text.size() - at < length || byte(1) < low || byte(1) > high) {
        return 0;
    }
    for (std::size_t i = 2; i < length; ++i) {
        if (byte(i) < 0x80U || byte(i) > 0xBFU) {
            return 0;
        }
    }
    return length;
}

} // namespace

std::optional<std::size_t> find_invalid_utf8(std::string_view text) noexcept {
    std::size_t at = 0;
    while (at < text.size()) {
        const std::size_t length = sequence_length(text, at);
        if (length == 0) {
            return at;
        }
        at += length;
    }
    return std::nullopt;
}

std::size_t line_at(std::string_view text, std::size_t offset) noexcept {
    const auto end = text.begin() + static_cast<std::ptrdiff_t>(std::min(offset, text.size()));
    return 1 + static_cast<std::size_t>(std::count(text.begin(), end, '\n'));
}

void append_utf8(std::string& out, char32_t code_point) {
    const auto unit = [&](std::uint32_t bits) { out += static_cast<char>(bits); };
    const auto value = static_cast<std::uint32_t>(code_point);
    if (value < 0x80U) {
        unit(value);
    } else if (value < 0x800U) {
        unit(0xC0U | (value >> 6U));
        unit(0x80U | (value & 0x3FU));
    } else if (value < 0x10000U) {
        unit(0xE0U | (value >> 12U));
        unit(0x80U | ((value >> 6U) & 0x3FU));
        unit(0x80U | (value & 0x3FU));
    } else {
        unit(0xF0U | (value >> 18U));
        unit(0x80U | ((value >> 12U) & 0x3FU));
        unit(0x80U | ((value >> 6U) & 0x3FU));
        unit(0x80U | (value & 0x3FU));
    }
}

} // namespace schedule_server
