/// @file errors.hpp
/// @brief The two kinds of failure an operation reports to its caller: bad input and an
///        unknown id or file. Anything else (SQLite, I/O, memory) is an internal error.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace schedule {

/// @brief The request (or a file it names) is at fault: answered as `invalid_input`, exit 2.
///
/// `what()` is the whole message for a human, prefixed with the field and line when known
/// (`items[2].start: ...`, `m3u line 4: ...`); `field` and `line` are also kept apart for the
/// answer's `"field"` and `"line"`.
struct input_error : std::runtime_error {
    /// @param message what is wrong, without the field or line (they are prefixed here)
    /// @param field   a JSON path such as `items[2].start`, or empty
    /// @param line    the 1-based line of M3U or XML at fault, or 0
    input_error(std::string message, std::string field = {}, std::size_t line = 0);

    std::string field;
    std::size_t line;
};

/// @brief What the request names does not exist (a schedule id, a playlist): `not_found`, exit 3.
struct not_found_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

} // namespace schedule
