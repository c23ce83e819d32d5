/// @file json_text.hpp
/// @brief The server's one way of writing JSON: a boost::json value in, its text out, with
///        numbers as people read them (`25.5`, `0.412`), where Boost 1.81's serializer writes
///        `2.55E1` and `4.12E-1`.
#pragma once

#include <boost/json/value.hpp>

#include <string>

namespace schedule_server {

/// The JSON text of `value`: Boost.JSON's own for everything but doubles, which are written in
/// their shortest round-trip form (std::to_chars); a non-finite double is written `null`.
[[nodiscard]] std::string to_json_text(const boost::json::value& value);

} // namespace schedule_server
