/// @file xmltv.hpp
/// @brief XMLTV documents (pugixml): written for export, read for import.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "schedule.hpp"

namespace schedule {

/// @brief Most programmes one import reads from a document (each channel's schedule still
///        holds at most max_items).
inline constexpr std::size_t max_xmltv_programmes = 100'000;

/// @brief A `<channel>` of a document read.
struct xmltv_channel {
    std::string id;
    std::string display_name; ///< the first `<display-name>` (the DTD's most canonical), trimmed
};

/// @brief A `<programme>` of a document read: times are parsed, text is trimmed, nothing else
///        is checked yet.
struct xmltv_programme {
    std::string channel;
    std::string title; ///< the first `<title>`, whatever its `lang`
    std::string url;   ///< the first `<url>` (the DTD's most authoritative), or empty
    std::int64_t start = 0;
    std::int32_t start_offset = 0;
    std::optional<std::int64_t> stop; ///< nullopt when the programme has no `stop`
    std::size_t line = 0;             ///< 1-based line of the `<programme>` element
    std::size_t url_line = 0;         ///< 1-based line of its `<url>`, 0 without one
};

struct xmltv_document {
    std::vector<xmltv_channel> channels;
    std::vector<xmltv_programme> programmes; ///< in document order
};

/// @brief Reads the channels and programmes of an XMLTV document (root `<tv>`). The text is
///        read as UTF-8 whatever its XML declaration names (the server decodes other encodings
///        before the document reaches the worker); other elements and attributes the DTD allows
///        are ignored.
/// @param field        the request field the document came from, for errors (e.g. "xmltv")
/// @param only_channel when given, the programmes of other channels are skipped unread: only
///                     the document's well-formedness is checked for them
/// @throws input_error naming `field` and the line: not well-formed XML, invalid UTF-8 or NUL,
///         another root, a programme read without channel, start or title, a bad time, more
///         than max_xmltv_programmes programmes read
[[nodiscard]] xmltv_document read_xmltv(std::string_view xml, const std::string& field = "xmltv",
                                        std::optional<std::string_view> only_channel = {});

/// @brief An XMLTV document of `schedules`: one `<channel id>` per distinct channel (its
///        display-name is the name of the first schedule on it), then one
///        `<programme start stop channel>` with `<title>` and, when present, `<url>` per item,
///        schedule after schedule.
[[nodiscard]] std::string write_xmltv(std::span<const schedule> schedules);

} // namespace schedule
