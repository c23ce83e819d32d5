/// @file xmltv.hpp
/// @brief XMLTV documents (pugixml): written for export, read for import.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "schedule.hpp"

namespace schedule {

/// @brief A `<channel>` of a document read.
struct xmltv_channel {
    std::string id;
    std::string display_name; ///< the first `<display-name>`, trimmed; may be empty
};

/// @brief A `<programme>` of a document read: times are parsed, text is trimmed, nothing else
///        is checked yet.
struct xmltv_programme {
    std::string channel;
    std::string title; ///< the first `<title>`
    std::string url;   ///< the first `<url>`, or empty
    std::int64_t start = 0;
    std::int32_t start_offset = 0;
    std::int64_t stop = 0;
    std::size_t line = 0; ///< 1-based line of the `<programme>` element
};

struct xmltv_document {
    std::vector<xmltv_channel> channels;
    std::vector<xmltv_programme> programmes;
};

/// @brief Reads the channels and programmes of an XMLTV document (root `<tv>`).
/// @param field the request field the document came from, for errors (e.g. "xmltv")
/// @throws input_error naming `field` and the line: not well-formed XML, invalid UTF-8 or NUL,
///         another root, a programme without channel, start, stop or title, a bad time
[[nodiscard]] xmltv_document read_xmltv(std::string_view xml, const std::string& field = "xmltv");

/// @brief An XMLTV document of `schedules`: one `<channel id>` per distinct channel (its
///        display-name is the name of the first schedule on it), then one
///        `<programme start stop channel>` with `<title>` and, when present, `<url>` per item,
///        schedule after schedule.
[[nodiscard]] std::string write_xmltv(std::span<const schedule> schedules);

} // namespace schedule
