/// @file schedule.hpp
/// @brief The schedule model, its validation rules and the import-schedule request.
#pragma once

#include <boost/json/object.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace schedule {

class json_writer;

/// @brief One programme of a schedule.
struct schedule_item {
    std::string title;
    std::string url;             ///< empty when the item has none
    std::int64_t start = 0;      ///< UTC seconds
    std::int32_t utc_offset = 0; ///< minutes east of UTC the start was given in (kept for export)
    std::int64_t duration = 0;   ///< seconds

    [[nodiscard]] std::int64_t end() const noexcept { return start + duration; }
};

/// @brief A named schedule of one channel: items sorted by start, not overlapping.
struct schedule {
    std::int64_t id = 0; ///< 0 until stored
    std::string name, channel;
    std::int64_t created_at = 0; ///< UTC seconds; 0 until stored
    std::vector<schedule_item> items;
};

/// @name Limits of the import-schedule rules (docs/schedule-worker.md)
/// @{
inline constexpr std::size_t max_name_bytes = 200;
inline constexpr std::size_t max_channel_bytes = 100;
inline constexpr std::size_t max_title_bytes = 500;
inline constexpr std::size_t max_url_bytes = 2048;
inline constexpr std::size_t max_items = 10'000;
inline constexpr std::int64_t max_duration = 604'800; ///< a week, in seconds
inline constexpr std::size_t max_request_bytes = std::size_t{8} << 20;
/// The duration given to an entry or programme whose length is unknown, unless the request
/// gives `unknown_duration`.
inline constexpr std::int64_t default_unknown_duration = 1800;
/// @}

/// @name Field checks; each throws input_error naming `field` (and `line`, when not 0)
/// @{
void check_name(std::string_view name, const std::string& field, std::size_t line = 0);
void check_channel(std::string_view channel, const std::string& field, std::size_t line = 0);
void check_title(std::string_view title, const std::string& field, std::size_t line = 0);
void check_url(std::string_view url, const std::string& field, std::size_t line = 0);
void check_duration(std::int64_t seconds, const std::string& field, std::size_t line = 0);
/// @}

/// @brief Where an item came from in a text source (M3U or XMLTV), for its errors.
struct item_source {
    std::size_t line = 0;     ///< the item's line: its `#EXTINF` or `<programme>`
    std::size_t url_line = 0; ///< the line of its URL (a URL line, a `<url>`); 0: `line`
};

/// @brief What to do with items of a schedule that overlap (the request field `overlap`).
enum class overlap_policy {
    reject, ///< an overlap is an error naming the later item (the default)
    /// Items are taken in start order (ties in request order); an item that overlaps the next
    /// is shortened to end where the next begins, and an item that starts at the same instant
    /// as the one kept before it is dropped (the first of a clump is kept). An item inside
    /// another thus cuts the outer one short; nothing is split or moved.
    trim,
};

/// @brief Reads the optional `overlap` field ("reject" or "trim"; default reject).
/// @throws input_error naming `overlap`
[[nodiscard]] overlap_policy parse_overlap_policy(const boost::json::object& request);

/// @brief What validate_schedule changed under overlap_policy::trim.
struct trim_counts {
    std::size_t trimmed = 0; ///< items shortened
    std::size_t dropped = 0; ///< items removed (they started with the item kept before them)
};

/// @brief Checks a whole schedule and sorts its items by start (stable).
///
/// Checks name, channel, the number of items, each item's title, url and duration, that every
/// item starts and ends in years 0001–9999, and that no two items overlap (touching is
/// allowed) or, with overlap_policy::trim, shortens and drops items until none do. Errors name
/// `items[i]` by the index the item had before sorting; when `sources` is given (one per item),
/// they name `source_field` and the item's line instead (its URL's line for a URL error).
/// @throws input_error
trim_counts validate_schedule(schedule& checked, const std::vector<item_source>* sources = nullptr,
                              const std::string& source_field = {},
                              overlap_policy overlap = overlap_policy::reject);

/// @brief An import-schedule request, parsed and validated.
struct import_request {
    /// One schedule (the JSON form; an XMLTV guide with one channel or `channel` given), or
    /// one per channel of an XMLTV guide, in the order of each channel's first programme.
    std::vector<schedule> schedules;
    bool from_xmltv = false;
    overlap_policy overlap = overlap_policy::reject;
    std::size_t assumed_durations = 0; ///< XMLTV programmes given `unknown_duration`
    trim_counts trims;                 ///< over every schedule
};

/// @brief Parses and validates a whole import-schedule request: the JSON form
///        (`name`, `channel`, `items`) or the XMLTV form (`xmltv`, optional `name`, `channel`,
///        `unknown_duration`), either with optional `overlap`.
/// @return the schedules, items sorted by start; ids and created_at are 0
/// @throws input_error only, whatever the bytes (invalid JSON, wrong types, broken rules)
[[nodiscard]] import_request parse_import_request(std::string_view json);

/// @brief Writes `{"id","name","channel","created_at","items":[{"title","url"?,"start","stop",
///        "duration"}]}`, the form export-schedule-json answers and import-schedule accepts.
void write_schedule_json(json_writer& out, const schedule& written);

} // namespace schedule
