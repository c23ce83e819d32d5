#include "byte_size.hpp"
#include "ascii.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <utility>

namespace schedule_server {
namespace {

/// The units a size may carry, and the power of 1024 each stands for.
constexpr std::array<std::pair<std::string_view, unsigned>, 6> size_units{{
    {"K", 10},
    {"M", 20},
    {"G", 30},
    {"KiB", 10},
    {"MiB", 20},
    {"GiB", 30},
}};

constexpr std::string_view size_grammar =
    "a whole number of bytes, optionally with K, M or G (KiB, MiB, GiB: powers of 1024), "
    "e.g. 256M";

} // namespace

std::variant<std::uint64_t, std::string> parse_byte_size(std::string_view text) {
    const std::string quoted = "'" + std::string(text) + "'";
    const std::size_t digits = std::min(text.find_first_not_of("0123456789"), text.size());
    if (digits == 0) {
        return quoted + " is not a size: give " + std::string(size_grammar);
    }
    std::uint64_t number = 0;
    const auto [stop, error] = std::from_chars(text.data(), text.data() + digits, number);
    if (error != std::errc{}) {
        return quoted + " is too large";
    }
    const std::string_view unit = text.substr(digits);
    unsigned shift = 0;
    if (!unit.empty()) {
        const auto* const found =
            std::find_if(size_units.begin(), size_units.end(),
                         [&](const auto& known) { return ascii::iequals(known.first, unit); });
        if (found == size_units.end()) {
            return quoted + " is not a size: give " + std::string(size_grammar);
        }
        shift = found->second;
    }
    if (number > (std::numeric_limits<std::uint64_t>::max() >> shift)) {
        return quoted + " is too large";
    }
    return number << shift;
}

std::variant<double, std::string> parse_percent(std::string_view text) {
    double number = 0;
    const auto [stop, error] =
        std::from_chars(text.data(), text.data() + text.size(), number, std::chars_format::fixed);
    if (text.empty() || error != std::errc{} || stop != text.data() + text.size() ||
        !std::isfinite(number)) {
        return "'" + std::string(text) + "' is not a percentage: give a number from 0 to 100";
    }
    if (number < 0 || number > 100) {
        return "'" + std::string(text) + "' is outside 0 to 100";
    }
    return number;
}

std::string describe_byte_size(std::uint64_t bytes) {
    for (const auto& [unit, shift] :
         {std::pair<const char*, unsigned>{"GiB", 30}, {"MiB", 20}, {"KiB", 10}}) {
        const std::uint64_t size = std::uint64_t{1} << shift;
        if (bytes != 0 && bytes % size == 0) {
            return std::to_string(bytes / size) + " " + unit;
        }
    }
    return std::to_string(bytes) + (bytes == 1 ? " byte" : " bytes");
}

} // namespace schedule_server
