/// @file schedule.hpp
/// @brief The schedule model, its validation rules and the import-schedule request.
#pragma once

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
/// @}

/// @name Field checks; each throws input_error naming `field` (and `line`, when not 0)
/// @{
void check_name(std::string_view name, const std::string& field, std::size_t line = 0);
void check_channel(std::string_view channel, const std::string& field, std::size_t line = 0);
void check_title(std::string_view title, const std::string& field, std::size_t line = 0);
void check_url(std::string_view url, const std::string& field, std::size_t line = 0);
void check_duration(std::int64_t seconds, const std::string& field, std::size_t line = 0);
/// @}

/// @brief Checks a whole schedule and sorts its items by start (stable).
///
/// Checks name, channel, the number of items, each item's title, url and duration, that every
/// item starts and ends in years 0001–9999, and that no two items overlap (touching is
/// allowed). Errors name `items[i]` by the index the item had before sorting; when
/// `item_lines` is given (one line per item), they name `lines_field` and that line instead.
/// @throws input_error
void validate_schedule(schedule& checked, const std::vector<std::size_t>* item_lines = nullptr,
                       const std::string& lines_field = {});

/// @brief Parses and validates a whole import-schedule request: the JSON form
///        (`name`, `channel`, `items`) or the XMLTV form (`xmltv`, optional `name`, `channel`).
/// @return the schedule, items sorted by start; id and created_at are 0
/// @throws input_error only, whatever the bytes (invalid JSON, wrong types, broken rules)
[[nodiscard]] schedule parse_schedule_request(std::string_view json);

/// @brief Writes `{"id","name","channel","created_at","items":[{"title","url"?,"start","stop",
///        "duration"}]}`, the form export-schedule-json answers and import-schedule accepts.
void write_schedule_json(json_writer& out, const schedule& written);

} // namespace schedule
