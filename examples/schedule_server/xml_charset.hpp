/// @file xml_charset.hpp
/// @brief An XML document's bytes as UTF-8, for the JSON the server hands to schedule_worker.
///
/// The encoding is found as RFC 7303 section 3 and XML 1.0 Appendix F say: a byte order mark,
/// the Content-Type's `charset`, the UTF-16/UTF-32 byte pattern of `<?xml`, the XML
/// declaration's `encoding`, else UTF-8. Only what the worker's XML parser (pugixml) reads is
/// accepted: UTF-8, UTF-16LE/BE, UTF-32LE/BE, ISO-8859-1, and US-ASCII as a subset. Decoding
/// keeps every line break, so the worker's line numbers stay those of the document sent. The
/// declaration is left as it was: the worker parses its input as UTF-8 whatever it says.
/// Pure functions, no Beast.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace schedule_server {

/// The encodings accepted.
enum class xml_encoding { utf8, utf16le, utf16be, utf32le, utf32be, latin1, ascii };

/// Why a document cannot be decoded: a message for the client and, for bytes that are not valid
/// in the encoding, the 1-based line where they are (0: not about one line).
struct xml_charset_error {
    std::string message;
    std::size_t line = 0;
};

/// The `charset` parameter of a Content-Type value (unquoted), if it has one.
[[nodiscard]] std::optional<std::string> charset_parameter(std::string_view content_type);

/// The encoding an encoding name stands for, case-insensitively (`utf-16` without an order:
/// `utf16be`); nothing for a name that is not accepted.
[[nodiscard]] std::optional<xml_encoding> encoding_named(std::string_view name) noexcept;

/// An encoding found, the size of the byte order mark it was found from (0: none) and what
/// named it (for messages: "its XML declaration", ...).
struct detected_encoding {
    xml_encoding encoding = xml_encoding::utf8;
    std::size_t bom_size = 0;
    std::string_view source;
};

/// The display name of an encoding ("UTF-16LE", "ISO-8859-1").
[[nodiscard]] std::string_view encoding_name(xml_encoding encoding) noexcept;

/// The encoding of `document` sent with `content_type`, or why it cannot be decoded.
[[nodiscard]] std::variant<detected_encoding, xml_charset_error>
detect_xml_encoding(std::string_view document, std::string_view content_type);

/// `document` as UTF-8, without a byte order mark, or why it cannot be.
[[nodiscard]] std::variant<std::string, xml_charset_error>
xml_to_utf8(std::string_view document, std::string_view content_type);

} // namespace schedule_server
