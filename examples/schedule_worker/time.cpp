#include "time.hpp"

#include <array>
#include <chrono>

#include "errors.hpp"

namespace schedule {

namespace {

namespace chrono = std::chrono;

constexpr std::int64_t seconds_per_day = 86400;

// The range constants of time.hpp are the calendar's first and last second of years 1 and 9999.
static_assert(
    chrono::sys_seconds(chrono::sys_days(chrono::year(1) / 1 / 1)).time_since_epoch().count() ==
    earliest_local);
static_assert((chrono::sys_seconds(chrono::sys_days(chrono::year(10000) / 1 / 1)) -
               chrono::seconds(1))
                  .time_since_epoch()
                  .count() == latest_local);

/// Reads `count` decimal digits at `position`; false if any is not a digit.
bool read_digits(std::string_view text, std::size_t position, std::size_t count,
                 unsigned& value) noexcept {
    if (position + count > text.size()) {
        return false;
    }
    value = 0;
    for (std::size_t index = 0; index < count; ++index) {
        const char digit = text[position + index];
        if (digit < '0' || digit > '9') {
            return false;
        }
        value = value * 10 + static_cast<unsigned>(digit - '0');
    }
    return true;
}

/// The fields of a local time, checked for range.
struct local_fields {
    unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;

    [[nodiscard]] chrono::year_month_day date() const noexcept {
        return {chrono::year(static_cast<int>(year)), chrono::month(month), chrono::day(day)};
    }
};

/// What is wrong with the fields, or nullptr.
const char* check_fields(const local_fields& fields) noexcept {
    if (fields.year < 1) {
        return "the year must be 0001 to 9999";
    }
    if (fields.month < 1 || fields.month > 12) {
        return "the month must be 01 to 12";
    }
    if (!fields.date().ok()) {
        return "the day does not exist in that month";
    }
    if (fields.hour > 23) {
        return "the hour must be 00 to 23";
    }
    if (fields.minute > 59) {
        return "the minute must be 00 to 59";
    }
    if (fields.second > 59) {
        return "the second must be 00 to 59";
    }
    return nullptr;
}

/// Seconds from 1970-01-01T00:00:00 to the (checked) local time, as if it were UTC.
std::int64_t local_seconds(const local_fields& fields) noexcept {
    const chrono::sys_seconds time =
        chrono::sys_days(fields.date()) + chrono::hours(std::int64_t{fields.hour}) +
        chrono::minutes(std::int64_t{fields.minute}) + chrono::seconds(std::int64_t{fields.second});
    return time.time_since_epoch().count();
}

/// Appends `value` as exactly `width` decimal digits.
void append_digits(std::string& out, std::int64_t value, int width) {
    std::array<char, 8> digits{};
    for (int index = width - 1; index >= 0; --index) {
        digits[static_cast<std::size_t>(index)] = static_cast<char>('0' + value % 10);
        value /= 10;
    }
    out.append(digits.data(), static_cast<std::size_t>(width));
}

/// The local date and time of day of `utc + utc_offset`.
struct local_parts {
    chrono::year_month_day date{};
    chrono::hh_mm_ss<chrono::seconds> time{};
};

local_parts split_local(std::int64_t utc, std::int32_t utc_offset) {
    const chrono::sys_seconds local{chrono::seconds(utc + std::int64_t{utc_offset} * 60)};
    // floor, not truncation: a time before 1970 belongs to the day before, not after, zero.
    const chrono::sys_days day = chrono::floor<chrono::days>(local);
    return {chrono::year_month_day(day), chrono::hh_mm_ss<chrono::seconds>(local - day)};
}

/// Appends `YYYY`, `MM` and `DD` of `date` with `separator` between them (none if '\0').
void append_date(std::string& out, const chrono::year_month_day& date, char separator) {
    append_digits(out, static_cast<int>(date.year()), 4);
    if (separator != '\0') {
        out.push_back(separator);
    }
    append_digits(out, static_cast<unsigned>(date.month()), 2);
    if (separator != '\0') {
        out.push_back(separator);
    }
    append_digits(out, static_cast<unsigned>(date.day()), 2);
}

/// Appends `hh`, `mm` and `ss` with `separator` between them (none if '\0').
void append_time_of_day(std::string& out, const chrono::hh_mm_ss<chrono::seconds>& time,
                        char separator) {
    append_digits(out, time.hours().count(), 2);
    if (separator != '\0') {
        out.push_back(separator);
    }
    append_digits(out, time.minutes().count(), 2);
    if (separator != '\0') {
        out.push_back(separator);
    }
    append_digits(out, time.seconds().count(), 2);
}

/// Appends `±hh` `separator` `mm`.
void append_offset(std::string& out, std::int32_t utc_offset, char separator) {
    const std::int32_t magnitude = utc_offset < 0 ? -utc_offset : utc_offset;
    out.push_back(utc_offset < 0 ? '-' : '+');
    append_digits(out, magnitude / 60, 2);
    if (separator != '\0') {
        out.push_back(separator);
    }
    append_digits(out, magnitude % 60, 2);
}

/// The offset of an XMLTV zone name (any case), or nullptr.
const xmltv_zone_name* find_zone_name(std::string_view text) noexcept {
    for (const xmltv_zone_name& zone : xmltv_zone_names) {
        if (zone.name.size() != text.size()) {
            continue;
        }
        bool same = true;
        for (std::size_t index = 0; index < text.size() && same; ++index) {
            char letter = text[index];
            if (letter >= 'a' && letter <= 'z') {
                letter = static_cast<char>(letter - 'a' + 'A');
            }
            same = letter == zone.name[index];
        }
        if (same) {
            return &zone;
        }
    }
    return nullptr;
}

} // namespace

bool is_writable(std::int64_t utc, std::int32_t utc_offset) noexcept {
    // Far outside the range the sum below could overflow; such times are not writable anyway.
    if (utc < earliest_local - seconds_per_day || utc > latest_local + seconds_per_day) {
        return false;
    }
    const std::int64_t local = utc + std::int64_t{utc_offset} * 60;
    return local >= earliest_local && local <= latest_local;
}

zoned_time parse_iso8601(std::string_view text, const std::string& field) {
    const auto fail = [&](const std::string& why) -> zoned_time {
        throw input_error(why + " (expected YYYY-MM-DDThh:mm:ss with Z or an offset such as "
                                "+01:00, e.g. 2026-11-30T08:00:00+01:00)",
                          field);
    };
    local_fields fields;
    // YYYY-MM-DDThh:mm:ss is 19 characters with fixed separators.
    if (text.size() < 19 || !read_digits(text, 0, 4, fields.year) || text[4] != '-' ||
        !read_digits(text, 5, 2, fields.month) || text[7] != '-' ||
        !read_digits(text, 8, 2, fields.day) || text[10] != 'T' ||
        !read_digits(text, 11, 2, fields.hour) || text[13] != ':' ||
        !read_digits(text, 14, 2, fields.minute) || text[16] != ':' ||
        !read_digits(text, 17, 2, fields.second)) {
        return fail("not an ISO 8601 date and time");
    }
    if (const char* problem = check_fields(fields)) {
        return fail(problem);
    }
    std::size_t position = 19;
    if (position < text.size() && text[position] == '.') {
        ++position;
        const std::size_t digits_start = position;
        while (position < text.size() && text[position] >= '0' && text[position] <= '9') {
            if (text[position] != '0') {
                return fail("fractions of a second are not supported (schedules have one-second "
                            "resolution)");
            }
            ++position;
        }
        if (position == digits_start) {
            return fail("a '.' must be followed by digits");
        }
    }
    std::int32_t offset = 0;
    const std::string_view zone = text.substr(position);
    if (zone == "Z") {
        offset = 0;
    } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
        unsigned hours = 0;
        unsigned minutes = 0;
        if (!read_digits(zone, 1, 2, hours) || !read_digits(zone, 4, 2, minutes) || hours > 23 ||
            minutes > 59) {
            return fail("the UTC offset must be ±hh:mm with hh 00 to 23 and mm 00 to 59");
        }
        offset = static_cast<std::int32_t>(hours * 60 + minutes) * (zone[0] == '-' ? -1 : 1);
    } else if (zone.empty()) {
        return fail("the UTC offset is missing");
    } else {
        return fail("the UTC offset must be Z or ±hh:mm");
    }
    return {local_seconds(fields) - std::int64_t{offset} * 60, offset};
}

std::string format_iso8601(std::int64_t utc, std::int32_t utc_offset, bool z_for_utc) {
    const local_parts local = split_local(utc, utc_offset);
    std::string out;
    out.reserve(25);
    append_date(out, local.date, '-');
    out.push_back('T');
    append_time_of_day(out, local.time, ':');
    if (utc_offset == 0 && z_for_utc) {
        out.push_back('Z');
        return out;
    }
    append_offset(out, utc_offset, ':');
    return out;
}

zoned_time parse_xmltv_time(std::string_view text, const std::string& field, std::size_t line) {
    const auto fail = [&](const std::string& why) -> zoned_time {
        throw input_error(why + " (expected an XMLTV time YYYYMMDDhhmmss, or its first 4, 6, 8, "
                                "10 or 12 digits, optionally followed by +hhmm, -hhmm or a zone "
                                "name such as UTC, e.g. 20261130080000 +0100)",
                          field, line);
    };
    // The DTD: "'YYYYMMDDhhmmss' or some initial substring"; the fields left out are the
    // first of their kind (month 01, day 01, 00:00:00).
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
        ++digits;
    }
    if (digits < 4 || digits > 14 || digits % 2 != 0) {
        return fail("not an XMLTV time");
    }
    local_fields fields;
    fields.month = 1;
    fields.day = 1;
    (void)read_digits(text, 0, 4, fields.year);
    const std::array<unsigned*, 5> rest{&fields.month, &fields.day, &fields.hour, &fields.minute,
                                        &fields.second};
    for (std::size_t position = 4; position < digits; position += 2) {
        (void)read_digits(text, position, 2, *rest[(position - 4) / 2]);
    }
    if (const char* problem = check_fields(fields)) {
        return fail(problem);
    }
    std::size_t position = digits;
    while (position < text.size() && text[position] == ' ') {
        ++position;
    }
    // "You can also append a timezone to the end; if no explicit timezone is given, UTC is
    // assumed": a numeric offset or a name.
    std::int32_t offset = 0;
    const std::string_view zone = text.substr(position);
    if (!zone.empty() && (zone[0] == '+' || zone[0] == '-')) {
        unsigned hours = 0;
        unsigned minutes = 0;
        if (zone.size() != 5 || !read_digits(zone, 1, 2, hours) ||
            !read_digits(zone, 3, 2, minutes) || hours > 23 || minutes > 59) {
            return fail("the UTC offset must be ±hhmm with hh 00 to 23 and mm 00 to 59");
        }
        offset = static_cast<std::int32_t>(hours * 60 + minutes) * (zone[0] == '-' ? -1 : 1);
    } else if (!zone.empty()) {
        const xmltv_zone_name* named = find_zone_name(zone);
        if (named == nullptr) {
            std::string known;
            for (const xmltv_zone_name& candidate : xmltv_zone_names) {
                known += known.empty() ? "" : " ";
                known += candidate.name;
            }
            return fail("unknown time zone '" + std::string(zone) +
                        "'; give it as ±hhmm (the names known are " + known + ")");
        }
        offset = named->utc_offset;
    }
    return {local_seconds(fields) - std::int64_t{offset} * 60, offset};
}

std::string format_xmltv_time(std::int64_t utc, std::int32_t utc_offset) {
    const local_parts local = split_local(utc, utc_offset);
    std::string out;
    out.reserve(20);
    append_date(out, local.date, '\0');
    append_time_of_day(out, local.time, '\0');
    out.push_back(' ');
    append_offset(out, utc_offset, '\0');
    return out;
}

} // namespace schedule
