/// @file time.hpp
/// @brief Times as the worker reads and writes them: ISO 8601 with an offset
///        (`2026-11-30T08:00:00+01:00`) and XMLTV (`20261130080000 +0100`).
///
/// The calendar arithmetic is std::chrono's (proleptic Gregorian `year_month_day`, `sys_days`),
/// so it depends on neither the locale nor the time zone database nor timegm().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace schedule {

/// @brief An instant with the UTC offset it was written in.
struct zoned_time {
    std::int64_t utc = 0;        ///< seconds since 1970-01-01T00:00:00Z
    std::int32_t utc_offset = 0; ///< minutes east of UTC
};

/// @brief Earliest and latest local times accepted and written: years 0001 to 9999, so every
///        time has a four-digit year in both formats.
inline constexpr std::int64_t earliest_local = -62135596800; // 0001-01-01T00:00:00
inline constexpr std::int64_t latest_local = 253402300799;   // 9999-12-31T23:59:59

/// @brief Whether a local time (`utc + utc_offset`) lies in years 0001–9999.
[[nodiscard]] bool is_writable(std::int64_t utc, std::int32_t utc_offset) noexcept;

/// @brief Parses `YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm)`. The offset is required and the
///        fraction, if any, must be zero (one-second resolution).
/// @throws input_error naming `field` with what is wrong
[[nodiscard]] zoned_time parse_iso8601(std::string_view text, const std::string& field = {});

/// @brief `YYYY-MM-DDThh:mm:ss±hh:mm` (`Z` for offset 0 when `z_for_utc`).
/// @pre is_writable(utc, utc_offset)
[[nodiscard]] std::string format_iso8601(std::int64_t utc, std::int32_t utc_offset,
                                         bool z_for_utc = false);

/// @brief Parses an XMLTV time as the XMLTV DTD defines it: `YYYYMMDDhhmmss` or an initial
///        substring of it (`YYYYMMDDhhmm`, `YYYYMMDDhh`, `YYYYMMDD`, `YYYYMM`, `YYYY`; the
///        missing fields are the first month, day, hour...), then optionally spaces and a time
///        zone: `±hhmm` or one of the names in xmltv_zone_names. Without a zone the time is UTC.
/// @throws input_error naming `field` and `line`
[[nodiscard]] zoned_time parse_xmltv_time(std::string_view text, const std::string& field = {},
                                          std::size_t line = 0);

/// @brief A time zone name an XMLTV time may end with, and its offset.
struct xmltv_zone_name {
    std::string_view name;
    std::int32_t utc_offset; ///< minutes east of UTC
};

/// @brief The zone names parse_xmltv_time accepts (in any case): UTC and Z; the names of
///        RFC 5322 section 4.3 (UT, GMT, EST, EDT, CST, CDT, MST, MDT, PST, PDT, with its
///        North American meanings); BST, the XMLTV DTD's own example (+0100); and the
///        European WET, WEST, CET, CEST, EET, EEST. Other abbreviations are ambiguous (IST is
///        India, Ireland or Israel) and are refused: such a guide must give `±hhmm`.
inline constexpr std::array<xmltv_zone_name, 19> xmltv_zone_names{{
    {"UTC", 0},    {"Z", 0},      {"UT", 0},     {"GMT", 0},    {"EST", -300},
    {"EDT", -240}, {"CST", -360}, {"CDT", -300}, {"MST", -420}, {"MDT", -360},
    {"PST", -480}, {"PDT", -420}, {"BST", 60},   {"WET", 0},    {"WEST", 60},
    {"CET", 60},   {"CEST", 120}, {"EET", 120},  {"EEST", 180},
}};

/// @brief `YYYYMMDDhhmmss ±hhmm`.
/// @pre is_writable(utc, utc_offset)
[[nodiscard]] std::string format_xmltv_time(std::int64_t utc, std::int32_t utc_offset);

} // namespace schedule
