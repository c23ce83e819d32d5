#include "xml_charset.hpp"

#include "ascii.hpp"
#include "utf8.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <utility>

namespace schedule_server {
namespace {

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

using ascii::trim;

/// An encoding name the client sent, fit for a message: printable ASCII, at most 40 characters.
std::string quoted_name(std::string_view name) {
    std::string out;
    for (const char c : name.substr(0, 40)) {
        const auto byte = static_cast<unsigned char>(c);
        out += byte >= 0x20U && byte < 0x7FU ? c : '?';
    }
    return "'" + out + "'";
}

xml_charset_error unsupported(std::string_view name) {
    return {"encoding " + quoted_name(name) +
            " is not supported: send UTF-8, UTF-16, UTF-32 or ISO-8859-1"};
}

/// Bytes per code unit.
std::size_t unit_size(xml_encoding encoding) noexcept {
    switch (encoding) {
    case xml_encoding::utf16le:
    case xml_encoding::utf16be:
        return 2;
    case xml_encoding::utf32le:
    case xml_encoding::utf32be:
        return 4;
    default:
        return 1;
    }
}

bool big_endian(xml_encoding encoding) noexcept {
    return encoding == xml_encoding::utf16be || encoding == xml_encoding::utf32be;
}

/// An encoding name looked up: the encoding, and whether the name leaves the byte order open
/// (`UTF-16`, `UTF-32`).
struct named_encoding {
    xml_encoding encoding;
    bool any_order = false;
};

std::optional<named_encoding> look_up(std::string_view name) {
    struct entry {
        std::string_view name;
        named_encoding named;
    };
    static constexpr std::array<entry, 16> names{{
        {"utf-8", {xml_encoding::utf8}},
        {"utf8", {xml_encoding::utf8}},
        {"utf-16", {xml_encoding::utf16be, true}},
        {"utf-16le", {xml_encoding::utf16le}},
        {"utf-16be", {xml_encoding::utf16be}},
        {"utf-32", {xml_encoding::utf32be, true}},
        {"utf-32le", {xml_encoding::utf32le}},
        {"utf-32be", {xml_encoding::utf32be}},
        {"iso-8859-1", {xml_encoding::latin1}},
        {"iso_8859-1", {xml_encoding::latin1}},
        {"iso_8859-1:1987", {xml_encoding::latin1}},
        {"latin1", {xml_encoding::latin1}},
        {"l1", {xml_encoding::latin1}},
        {"us-ascii", {xml_encoding::ascii}},
        {"ascii", {xml_encoding::ascii}},
        {"iso646-us", {xml_encoding::ascii}},
    }};
    const std::string wanted = lower(trim(name));
    const auto* const found =
        std::find_if(names.begin(), names.end(), [&](const entry& e) { return e.name == wanted; });
    if (found == names.end()) {
        return std::nullopt;
    }
    return found->named;
}

/// The encoding and size of a byte order mark at the start of `document`.
std::optional<std::pair<xml_encoding, std::size_t>> byte_order_mark(std::string_view document) {
    const auto starts = [&](std::string_view prefix) { return document.starts_with(prefix); };
    using namespace std::string_view_literals;
    if (starts("\x00\x00\xFE\xFF"sv)) {
        return std::pair{xml_encoding::utf32be, std::size_t{4}};
    }
    if (starts("\xFF\xFE\x00\x00"sv)) {
        return std::pair{xml_encoding::utf32le, std::size_t{4}};
    }
    if (starts("\xEF\xBB\xBF"sv)) {
        return std::pair{xml_encoding::utf8, std::size_t{3}};
    }
    if (starts("\xFE\xFF"sv)) {
        return std::pair{xml_encoding::utf16be, std::size_t{2}};
    }
    if (starts("\xFF\xFE"sv)) {
        return std::pair{xml_encoding::utf16le, std::size_t{2}};
    }
    return std::nullopt;
}

/// UTF-16 or UTF-32 told by the bytes of "<?" without a byte order mark (XML 1.0 Appendix F.1).
std::optional<xml_encoding> wide_pattern(std::string_view document) {
    using namespace std::string_view_literals;
    if (document.starts_with("\x00\x00\x00\x3C"sv)) {
        return xml_encoding::utf32be;
    }
    if (document.starts_with("\x3C\x00\x00\x00"sv)) {
        return xml_encoding::utf32le;
    }
    if (document.starts_with("\x00\x3C\x00\x3F"sv)) {
        return xml_encoding::utf16be;
    }
    if (document.starts_with("\x3C\x00\x3F\x00"sv)) {
        return xml_encoding::utf16le;
    }
    return std::nullopt;
}

/// The ASCII characters at the start of `document` read in code units of `unit` bytes, up to
/// the first that is not ASCII (enough to hold an XML declaration).
std::string ascii_prefix(std::string_view document, xml_encoding encoding) {
    const std::size_t unit = unit_size(encoding);
    const std::size_t low = big_endian(encoding) ? unit - 1 : 0;
    std::string out;
    for (std::size_t at = 0; at + unit <= document.size() && out.size() < 512; at += unit) {
        for (std::size_t i = 0; i < unit; ++i) {
            if (i != low && document[at + i] != '\0') {
                return out;
            }
        }
        const auto c = static_cast<unsigned char>(document[at + low]);
        if (c == 0 || c >= 0x80U) {
            return out;
        }
        out += static_cast<char>(c);
    }
    return out;
}

/// The `encoding` of an XML declaration at the start of `prefix` (XML 1.0 section 4.3.3).
std::optional<std::string> declared_encoding(std::string_view prefix) {
    if (!prefix.starts_with("<?xml") || prefix.size() < 6 ||
        std::string_view(" \t\r\n").find(prefix[5]) == std::string_view::npos) {
        return std::nullopt;
    }
    const std::string_view declaration = prefix.substr(0, prefix.find("?>"));
    std::size_t at = declaration.find("encoding");
    if (at == std::string_view::npos) {
        return std::nullopt;
    }
    at += 8;
    const auto skip_space = [&] {
        while (at < declaration.size() &&
               std::string_view(" \t\r\n").find(declaration[at]) != std::string_view::npos) {
            ++at;
        }
    };
    skip_space();
    if (at >= declaration.size() || declaration[at] != '=') {
        return std::nullopt;
    }
    ++at;
    skip_space();
    if (at >= declaration.size() || (declaration[at] != '"' && declaration[at] != '\'')) {
        return std::nullopt;
    }
    const char quote = declaration[at];
    const std::size_t end = declaration.find(quote, at + 1);
    if (end == std::string_view::npos) {
        return std::nullopt;
    }
    return std::string(declaration.substr(at + 1, end - at - 1));
}

/// Whether a name that does not fix the byte order, or fixes it as `found`, agrees with it.
bool agrees(const named_encoding& named, xml_encoding found) noexcept {
    return named.encoding == found ||
           (named.any_order && unit_size(named.encoding) == unit_size(found) &&
            unit_size(found) > 1);
}

struct decoder {
    std::string_view input;
    xml_encoding encoding;
    std::string_view source;
    std::string out;
    std::size_t line = 1;

    xml_charset_error invalid(std::string_view what) const {
        return {"not valid " + std::string(encoding_name(encoding)) + " (" + std::string(what) +
                    "; the encoding " + std::string(source) + ")",
                line};
    }

    std::uint32_t unit_at(std::size_t at, std::size_t size) const noexcept {
        std::uint32_t value = 0;
        for (std::size_t i = 0; i < size; ++i) {
            const auto byte = static_cast<unsigned char>(input[at + i]);
            value |= static_cast<std::uint32_t>(byte)
                     << (8U * (big_endian(encoding) ? size - 1 - i : i));
        }
        return value;
    }

    void put(char32_t code_point) {
        if (code_point == U'\n') {
            ++line;
        }
        append_utf8(out, code_point);
    }

    std::optional<xml_charset_error> run() {
        switch (encoding) {
        case xml_encoding::utf8:
            if (const auto bad = find_invalid_utf8(input)) {
                line = line_at(input, *bad);
                return invalid("byte " + std::to_string(*bad) + " starts no UTF-8 sequence");
            }
            out = std::string(input);
            return std::nullopt;
        case xml_encoding::ascii:
        case xml_encoding::latin1:
            out.reserve(input.size());
            for (const char c : input) {
                const auto byte = static_cast<unsigned char>(c);
                if (byte >= 0x80U && encoding == xml_encoding::ascii) {
                    return invalid("a byte above 0x7F");
                }
                put(byte);
            }
            return std::nullopt;
        case xml_encoding::utf16le:
        case xml_encoding::utf16be:
            return run_utf16();
        case xml_encoding::utf32le:
        case xml_encoding::utf32be:
            return run_utf32();
        }
        return std::nullopt;
    }

    std::optional<xml_charset_error> run_utf16() {
        out.reserve(input.size());
        std::size_t at = 0;
        for (; at + 2 <= input.size(); at += 2) {
            const std::uint32_t unit = unit_at(at, 2);
            if (unit >= 0xDC00U && unit <= 0xDFFFU) {
                return invalid("a low surrogate without a high one");
            }
            if (unit >= 0xD800U && unit <= 0xDBFFU) {
                const std::uint32_t next = at + 4 <= input.size() ? unit_at(at + 2, 2) : 0;
                if (next < 0xDC00U || next > 0xDFFFU) {
                    return invalid("a high surrogate without a low one");
                }
                put(static_cast<char32_t>(0x10000U + ((unit - 0xD800U) << 10U) + (next - 0xDC00U)));
                at += 2;
                continue;
            }
            put(static_cast<char32_t>(unit));
        }
        if (at != input.size()) {
            return invalid("an odd number of bytes");
        }
        return std::nullopt;
    }

    std::optional<xml_charset_error> run_utf32() {
        out.reserve(input.size() / 2);
        std::size_t at = 0;
        for (; at + 4 <= input.size(); at += 4) {
            const std::uint32_t value = unit_at(at, 4);
            if (value > 0x10FFFFU || (value >= 0xD800U && value <= 0xDFFFU)) {
                return invalid("a value that is no Unicode scalar value");
            }
            put(static_cast<char32_t>(value));
        }
        if (at != input.size()) {
            return invalid("a length that is not a multiple of 4 bytes");
        }
        return std::nullopt;
    }
};

} // namespace

std::string_view encoding_name(xml_encoding encoding) noexcept {
    switch (encoding) {
    case xml_encoding::utf8:
        return "UTF-8";
    case xml_encoding::utf16le:
        return "UTF-16LE";
    case xml_encoding::utf16be:
        return "UTF-16BE";
    case xml_encoding::utf32le:
        return "UTF-32LE";
    case xml_encoding::utf32be:
        return "UTF-32BE";
    case xml_encoding::latin1:
        return "ISO-8859-1";
    case xml_encoding::ascii:
        return "US-ASCII";
    }
    return "?";
}

std::optional<std::string> charset_parameter(std::string_view content_type) {
    std::size_t at = content_type.find(';');
    while (at != std::string_view::npos) {
        std::string_view rest = content_type.substr(at + 1);
        const std::size_t equals = rest.find('=');
        if (equals == std::string_view::npos) {
            return std::nullopt;
        }
        const std::string name = lower(trim(rest.substr(0, equals)));
        rest = rest.substr(equals + 1);
        while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) {
            rest.remove_prefix(1);
        }
        std::string value;
        std::size_t consumed = 0;
        if (!rest.empty() && rest.front() == '"') { // quoted-string (RFC 9110 section 5.6.4)
            consumed = 1;
            while (consumed < rest.size() && rest[consumed] != '"') {
                if (rest[consumed] == '\\' && consumed + 1 < rest.size()) {
                    ++consumed;
                }
                value += rest[consumed++];
            }
            ++consumed;
        } else {
            consumed = std::min(rest.find(';'), rest.size());
            value = std::string(trim(rest.substr(0, consumed)));
        }
        if (name == "charset") {
            return value;
        }
        const std::size_t next = consumed < rest.size() ? rest.find(';', consumed) : rest.npos;
        at = next == std::string_view::npos
                 ? next
                 : static_cast<std::size_t>(rest.data() + next - content_type.data());
    }
    return std::nullopt;
}

std::optional<xml_encoding> encoding_named(std::string_view name) noexcept {
    try {
        const auto named = look_up(name);
        return named ? std::optional(named->encoding) : std::nullopt;
    } catch (...) {
        return std::nullopt;
    }
}

std::variant<detected_encoding, xml_charset_error>
detect_xml_encoding(std::string_view document, std::string_view content_type) {
    const auto mark = byte_order_mark(document);
    const std::optional<std::string> charset = charset_parameter(content_type);
    // RFC 7303 (section 3): a byte order mark outranks the charset parameter (RFC 3023 had it
    // first), since a mark cannot be wrong about the bytes that follow it.
    if (charset && mark) {
        return detected_encoding{mark->first, mark->second, "its byte order mark names"};
    }
    if (charset) {
        const auto named = look_up(*charset);
        if (!named) {
            return unsupported(*charset);
        }
        const auto pattern = wide_pattern(document);
        if (pattern && agrees(*named, *pattern)) {
            return detected_encoding{*pattern, 0, "the Content-Type charset names"};
        }
        return detected_encoding{named->encoding, 0, "the Content-Type charset names"};
    }

    const auto pattern = wide_pattern(document);
    const xml_encoding family = mark ? mark->first : pattern.value_or(xml_encoding::utf8);
    const std::size_t bom_size = mark ? mark->second : 0;
    const auto declared = declared_encoding(ascii_prefix(document.substr(bom_size), family));
    if (!declared) {
        return detected_encoding{family, bom_size,
                                 mark      ? "its byte order mark names"
                                 : pattern ? "its first bytes show"
                                           : "assumed without a charset, byte order mark or "
                                             "declaration"};
    }
    const auto named = look_up(*declared);
    if (!named) {
        return unsupported(*declared);
    }
    if (mark || pattern) {
        if (!agrees(*named, family)) {
            return xml_charset_error{"the XML declaration names encoding " +
                                     quoted_name(*declared) + " but the document is " +
                                     std::string(encoding_name(family))};
        }
        return detected_encoding{family, bom_size,
                                 mark ? "its byte order mark names" : "its first bytes show"};
    }
    if (unit_size(named->encoding) > 1) {
        return xml_charset_error{"the XML declaration names encoding " + quoted_name(*declared) +
                                 " but the document has no byte order mark and does not begin "
                                 "with '<?xml' in that encoding"};
    }
    return detected_encoding{named->encoding, 0, "its XML declaration names"};
}

std::variant<std::string, xml_charset_error> xml_to_utf8(std::string_view document,
                                                         std::string_view content_type) {
    auto detected = detect_xml_encoding(document, content_type);
    if (auto* error = std::get_if<xml_charset_error>(&detected)) {
        return std::move(*error);
    }
    const auto& found = std::get<detected_encoding>(detected);
    decoder run{document.substr(found.bom_size), found.encoding, found.source, {}};
    if (auto error = run.run()) {
        return std::move(*error);
    }
    return std::move(run.out);
}

} // namespace schedule_server
