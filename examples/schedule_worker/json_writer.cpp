#include "json_writer.hpp"

#include <array>
#include <charconv>
#include <cmath>

#include "text.hpp"

namespace schedule {

void json_writer::separate() {
    if (need_comma_) {
        out_.push_back(',');
    }
}

json_writer& json_writer::begin_object() {
    separate();
    out_.push_back('{');
    need_comma_ = false;
    return *this;
}

json_writer& json_writer::end_object() {
    out_.push_back('}');
    need_comma_ = true;
    return *this;
}

json_writer& json_writer::begin_array() {
    separate();
    out_.push_back('[');
    need_comma_ = false;
    return *this;
}

json_writer& json_writer::end_array() {
    out_.push_back(']');
    need_comma_ = true;
    return *this;
}

json_writer& json_writer::key(std::string_view name) {
    separate();
    append_string(name);
    out_.push_back(':');
    need_comma_ = false;
    return *this;
}

json_writer& json_writer::value(std::string_view text) {
    separate();
    append_string(text);
    need_comma_ = true;
    return *this;
}

json_writer& json_writer::value(std::int64_t number) {
    separate();
    std::array<char, 24> digits{};
    const auto result = std::to_chars(digits.data(), digits.data() + digits.size(), number);
    out_.append(digits.data(), result.ptr);
    need_comma_ = true;
    return *this;
}

json_writer& json_writer::value(std::uint64_t number) {
    separate();
    std::array<char, 24> digits{};
    const auto result = std::to_chars(digits.data(), digits.data() + digits.size(), number);
    out_.append(digits.data(), result.ptr);
    need_comma_ = true;
    return *this;
}

json_writer& json_writer::value(double number) {
    if (!std::isfinite(number)) {
        return null();
    }
    separate();
    std::array<char, 32> digits{};
    const auto result = std::to_chars(digits.data(), digits.data() + digits.size(), number);
    out_.append(digits.data(), result.ptr);
    need_comma_ = true;
    return *this;
}

json_writer& json_writer::value(bool flag) {
    separate();
    out_.append(flag ? "true" : "false");
    need_comma_ = true;
    return *this;
}

json_writer& json_writer::null() {
    separate();
    out_.append("null");
    need_comma_ = true;
    return *this;
}

void json_writer::append_string(std::string_view text) {
    static constexpr std::string_view hex = "0123456789abcdef";
    out_.push_back('"');
    std::size_t position = 0;
    while (position < text.size()) {
        // Copy the longest run that needs no escaping in one append.
        std::size_t run = position;
        while (run < text.size()) {
            const auto byte = static_cast<unsigned char>(text[run]);
            if (byte < 0x20U || byte == '"' || byte == '\\' || byte >= 0x80U) {
                break;
            }
            ++run;
        }
        out_.append(text.data() + position, run - position);
        position = run;
        if (position == text.size()) {
            break;
        }
        const auto byte = static_cast<unsigned char>(text[position]);
        if (byte >= 0x80U) {
            // Valid multi-byte sequences are copied; an invalid byte becomes U+FFFD.
            const std::string_view rest = text.substr(position, 4);
            const auto invalid = find_invalid_utf8(rest);
            std::size_t length = 1;
            if (byte >= 0xF0U) {
                length = 4;
            } else if (byte >= 0xE0U) {
                length = 3;
            } else if (byte >= 0xC0U) {
                length = 2;
            }
            if (length > 1 && length <= rest.size() &&
                (!invalid.has_value() || *invalid >= length)) {
                out_.append(text.data() + position, length);
                position += length;
            } else {
                out_.append("\xEF\xBF\xBD");
                ++position;
            }
            continue;
        }
        switch (byte) {
        case '"':
            out_.append("\\\"");
            break;
        case '\\':
            out_.append("\\\\");
            break;
        case '\n':
            out_.append("\\n");
            break;
        case '\r':
            out_.append("\\r");
            break;
        case '\t':
            out_.append("\\t");
            break;
        default:
            out_.append("\\u00");
            out_.push_back(hex[byte >> 4U]);
            out_.push_back(hex[byte & 0x0FU]);
            break;
        }
        ++position;
    }
    out_.push_back('"');
}

} // namespace schedule
