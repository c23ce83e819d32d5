#include "time.hpp"

#include <array>

#include "errors.hpp"

namespace schedule {

namespace {

constexpr std::int64_t seconds_per_day = 86400;

/// Floor division: the day of a negative time is the one before, not after, zero.
constexpr std::int64_t floor_divide(std::int64_t value, std::int64_t divisor) noexcept {
    const std::int64_t quotient = value / divisor;
    return (value % divisor != 0 && (value < 0) != (divisor < 0)) ? quotient - 1 : quotient;
}

constexpr bool is_leap_year(std::int64_t year) noexcept {
    return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

constexpr unsigned days_in_month(std::int64_t year, unsigned month) noexcept {
    constexpr std::array<unsigned, 12> lengths{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && is_leap_year(year) ? 29 : lengths[month - 1];
}

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
};

/// What is wrong with the fields, or nullptr.
const char* check_fields(const local_fields& fields) noexcept {
    if (fields.year < 1) {
        return "the year must be 0001 to 9999";
    }
    if (fields.month < 1 || fields.month > 12) {
        return "the month must be 01 to 12";
    }
    if (fields.day < 1 || fields.day > days_in_month(fields.year, fields.month)) {
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

std::int64_t local_seconds(const local_fields& fields) noexcept {
    return days_from_civil(fields.year, fields.month, fields.day) * seconds_per_day +
           std::int64_t{fields.hour} * 3600 + std::int64_t{fields.minute} * 60 + fields.second;
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

/// The local date and time of `utc + utc_offset`: (date, seconds into the day).
std::pair<civil_date, std::int64_t> local_parts(std::int64_t utc, std::int32_t utc_offset) {
    const std::int64_t local = utc + std::int64_t{utc_offset} * 60;
    const std::int64_t days = floor_divide(local, seconds_per_day);
    return {civil_from_days(days), local - days * seconds_per_day};
}

} // namespace

civil_date civil_from_days(std::int64_t days) noexcept {
    days += 719468;
    const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    const auto day_of_era = static_cast<unsigned>(days - era * 146097);
    const unsigned year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    const unsigned day_of_year =
        day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    const unsigned month_index = (5 * day_of_year + 2) / 153;
    const unsigned day = day_of_year - (153 * month_index + 2) / 5 + 1;
    const unsigned month = month_index < 10 ? month_index + 3 : month_index - 9;
    const std::int64_t year =
        static_cast<std::int64_t>(year_of_era) + era * 400 + (month <= 2 ? 1 : 0);
    return {year, month, day};
}

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
    const auto [date, seconds] = local_parts(utc, utc_offset);
    std::string out;
    out.reserve(25);
    append_digits(out, date.year, 4);
    out.push_back('-');
    append_digits(out, date.month, 2);
    out.push_back('-');
    append_digits(out, date.day, 2);
    out.push_back('T');
    append_digits(out, seconds / 3600, 2);
    out.push_back(':');
    append_digits(out, seconds / 60 % 60, 2);
    out.push_back(':');
    append_digits(out, seconds % 60, 2);
    if (utc_offset == 0 && z_for_utc) {
        out.push_back('Z');
        return out;
    }
    const std::int32_t magnitude = utc_offset < 0 ? -utc_offset : utc_offset;
    out.push_back(utc_offset < 0 ? '-' : '+');
    append_digits(out, magnitude / 60, 2);
    out.push_back(':');
    append_digits(out, magnitude % 60, 2);
    return out;
}

zoned_time parse_xmltv_time(std::string_view text, const std::string& field, std::size_t line) {
    const auto fail = [&](const std::string& why) -> zoned_time {
        throw input_error(why + " (expected an XMLTV time YYYYMMDDhhmmss +hhmm, e.g. "
                                "20261130080000 +0100)",
                          field, line);
    };
    local_fields fields;
    if (!read_digits(text, 0, 4, fields.year) || !read_digits(text, 4, 2, fields.month) ||
        !read_digits(text, 6, 2, fields.day) || !read_digits(text, 8, 2, fields.hour) ||
        !read_digits(text, 10, 2, fields.minute)) {
        return fail("not an XMLTV time");
    }
    std::size_t position = 12;
    if (read_digits(text, 12, 2, fields.second)) {
        position = 14;
    }
    if (const char* problem = check_fields(fields)) {
        return fail(problem);
    }
    while (position < text.size() && text[position] == ' ') {
        ++position;
    }
    std::int32_t offset = 0;
    const std::string_view zone = text.substr(position);
    if (!zone.empty()) {
        unsigned hours = 0;
        unsigned minutes = 0;
        if (zone.size() != 5 || (zone[0] != '+' && zone[0] != '-') ||
            !read_digits(zone, 1, 2, hours) || !read_digits(zone, 3, 2, minutes) || hours > 23 ||
            minutes > 59) {
            return fail("the UTC offset must be ±hhmm");
        }
        offset = static_cast<std::int32_t>(hours * 60 + minutes) * (zone[0] == '-' ? -1 : 1);
    }
    return {local_seconds(fields) - std::int64_t{offset} * 60, offset};
}

std::string format_xmltv_time(std::int64_t utc, std::int32_t utc_offset) {
    const auto [date, seconds] = local_parts(utc, utc_offset);
    std::string out;
    out.reserve(20);
    append_digits(out, date.year, 4);
    append_digits(out, date.month, 2);
    append_digits(out, date.day, 2);
    append_digits(out, seconds / 3600, 2);
    append_digits(out, seconds / 60 % 60, 2);
    append_digits(out, seconds % 60, 2);
    const std::int32_t magnitude = utc_offset < 0 ? -utc_offset : utc_offset;
    out.push_back(' ');
    out.push_back(utc_offset < 0 ? '-' : '+');
    append_digits(out, magnitude / 60, 2);
    append_digits(out, magnitude % 60, 2);
    return out;
}

} // namespace schedule
