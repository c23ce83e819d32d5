#include "json_text.hpp"

#include <boost/json/serialize.hpp>

#include <array>
#include <charconv>
#include <cmath>

namespace schedule_server {
namespace {

namespace json = boost::json;

void append(std::string& out, const json::value& value) {
    switch (value.kind()) {
    case json::kind::object: {
        out += '{';
        bool first = true;
        for (const auto& [key, member] : value.get_object()) {
            if (!first) {
                out += ',';
            }
            first = false;
            out += json::serialize(json::string(key));
            out += ':';
            append(out, member);
        }
        out += '}';
        return;
    }
    case json::kind::array: {
        out += '[';
        bool first = true;
        for (const json::value& element : value.get_array()) {
            if (!first) {
                out += ',';
            }
            first = false;
            append(out, element);
        }
        out += ']';
        return;
    }
    case json::kind::double_: {
        const double number = value.get_double();
        if (!std::isfinite(number)) {
            out += "null";
            return;
        }
        std::array<char, 32> buffer{};
        const auto written = std::to_chars(buffer.data(), buffer.data() + buffer.size(), number);
        out.append(buffer.data(), written.ptr);
        return;
    }
    default:
        out += json::serialize(value);
        return;
    }
}

} // namespace

std::string to_json_text(const json::value& value) {
    std::string out;
    append(out, value);
    return out;
}

} // namespace schedule_server
