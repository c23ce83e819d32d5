#include "errors.hpp"

#include <utility>

namespace schedule {

namespace {

/// "items[2].start: message", "m3u line 4: message", "line 4: message" or "message".
std::string located(std::string message, const std::string& field, std::size_t line) {
    std::string where = field;
    if (line != 0) {
        where += where.empty() ? "line " : " line ";
        where += std::to_string(line);
    }
    if (where.empty()) {
        return message;
    }
    return where + ": " + message;
}

} // namespace

input_error::input_error(std::string message, std::string field_, std::size_t line_)
    : std::runtime_error(located(std::move(message), field_, line_)), field(std::move(field_)),
      line(line_) {}

} // namespace schedule
