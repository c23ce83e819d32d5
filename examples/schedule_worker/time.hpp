/// @file time.hpp
/// @brief Times as the worker reads and writes them: ISO 8601 with an offset
///        (`2026-11-30T08:00:00+01:00`) and XMLTV (`20261130080000 +0100`).
///
/// The arithmetic is done here on the proleptic Gregorian calendar (days_from_civil), so it
/// depends on neither the locale nor the time zone database nor timegm().
#pragma once

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

/// @brief Days from 1970-01-01 to the given date of the proleptic Gregorian calendar.
[[nodiscard]] constexpr std::int64_t days_from_civil(std::int64_t year, unsigned month,
                                                     unsigned day) noexcept {
    // Howard Hinnant's algorithm: years start in March, so the leap day is the last of its year.
    year -= month <= 2 ? 1 : 0;
    const std::int64_t era = (year >= 0 ? year : year - 399) / 400;
    const auto year_of_era = static_cast<unsigned>(year - era * 400);
    const unsigned day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    const unsigned day_of_era =
        year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + static_cast<std::int64_t>(day_of_era) - 719468;
}

/// @brief A calendar date.
struct civil_date {
    std::int64_t year = 1970;
    unsigned month = 1;
    unsigned day = 1;
};

/// @brief The date `days` after 1970-01-01 (the inverse of days_from_civil).
[[nodiscard]] civil_date civil_from_days(std::int64_t days) noexcept;

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

/// @brief Parses an XMLTV time: `YYYYMMDDhhmm[ss]`, optionally followed by spaces and
///        `±hhmm`; without an offset the time is UTC (as the XMLTV DTD says).
/// @throws input_error naming `field` and `line`
[[nodiscard]] zoned_time parse_xmltv_time(std::string_view text, const std::string& field = {},
                                          std::size_t line = 0);

/// @brief `YYYYMMDDhhmmss ±hhmm`.
/// @pre is_writable(utc, utc_offset)
[[nodiscard]] std::string format_xmltv_time(std::int64_t utc, std::int32_t utc_offset);

} // namespace schedule
