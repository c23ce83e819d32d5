#include "request.hpp"

#include <boost/json/parse_options.hpp>
#include <boost/json/stream_parser.hpp>

#include <cmath>
#include <optional>
#include <vector>

#include "errors.hpp"
#include "schedule.hpp"
#include "text.hpp"

namespace schedule {

namespace {

/// The path (`items[2].title`) of the string value that byte `offset` of `json` lies in, or
/// empty when it lies elsewhere (in a key, between values) or the text before it is not JSON
/// enough to tell. One pass over the text before `offset`, remembering only the open
/// containers and their current key or index.
std::string string_field_at(std::string_view json, std::size_t offset) {
    struct container {
        bool is_object = false;
        bool expecting_key = true; ///< objects: the next string is a key
        std::string key;           ///< objects: the current member
        std::size_t index = 0;     ///< arrays: the current element
    };
    std::vector<container> open;
    bool in_string = false;
    bool escaped = false;
    bool is_key = false;
    std::string key;
    for (std::size_t position = 0; position < offset && position < json.size(); ++position) {
        const char letter = json[position];
        if (in_string) {
            if (escaped) {
                escaped = false;
                if (is_key) {
                    return {}; // an escape in a key: not worth decoding for a message
                }
            } else if (letter == '\\') {
                escaped = true;
            } else if (letter == '"') {
                in_string = false;
                if (is_key) {
                    open.back().key = std::move(key);
                    key.clear();
                }
            } else if (is_key) {
                key.push_back(letter);
            }
            continue;
        }
        switch (letter) {
        case '"':
            in_string = true;
            is_key = !open.empty() && open.back().is_object && open.back().expecting_key;
            break;
        case '{':
        case '[':
            open.push_back({letter == '{', true, {}, 0});
            break;
        case '}':
        case ']':
            if (open.empty()) {
                return {};
            }
            open.pop_back();
            break;
        case ':':
            if (!open.empty()) {
                open.back().expecting_key = false;
            }
            break;
        case ',':
            if (!open.empty()) {
                open.back().expecting_key = true;
                ++open.back().index;
            }
            break;
        default:
            break;
        }
    }
    if (!in_string || is_key || open.empty()) {
        return {};
    }
    std::string path;
    for (const container& level : open) {
        if (level.is_object) {
            path = field_path(path, level.key);
        } else {
            // Appended piece by piece: "[" + std::string&& trips GCC 12's false -Wrestrict.
            path += '[';
            path += std::to_string(level.index);
            path += ']';
        }
    }
    return path;
}

} // namespace

boost::json::object parse_request_object(std::string_view json) {
    if (json.size() > max_request_bytes) {
        throw input_error("the request is larger than " + std::to_string(max_request_bytes >> 20U) +
                          " MiB");
    }
    if (trim(json).empty()) {
        return {};
    }
    // Checked before parsing: the JSON parser would call a byte that is not UTF-8 a syntax
    // error. A query value or a body the server copied into the request lands here too.
    if (const std::optional<std::size_t> invalid = find_invalid_utf8(json)) {
        const std::size_t line = line_at(json, *invalid);
        const std::size_t line_start = json.rfind('\n', *invalid);
        const std::size_t column =
            line_start == std::string_view::npos ? *invalid + 1 : *invalid - line_start;
        const std::string field = string_field_at(json, *invalid);
        throw input_error(
            "the request is not valid UTF-8 (at byte " + std::to_string(*invalid + 1) + ", line " +
                std::to_string(line) + ", column " + std::to_string(column) +
                (field.empty() ? std::string(")") : "; in the string value of this field)"),
            field);
    }
    boost::json::parse_options options;
    options.max_depth = 32; // requests are shallow; bounds the parser's stack
    boost::json::stream_parser parser({}, options);
    boost::system::error_code error;
    const std::size_t used = parser.write(json.data(), json.size(), error);
    if (!error) {
        parser.finish(error);
    }
    if (error) {
        throw input_error("request is not valid JSON: " + error.message() + " (at byte " +
                          std::to_string(used + 1) + ")");
    }
    boost::json::value root = parser.release();
    if (!root.is_object()) {
        throw input_error(std::string("the request must be a JSON object, not ") + kind_name(root));
    }
    return std::move(root.get_object());
}

std::string field_path(const std::string& parent, std::string_view name) {
    if (parent.empty()) {
        return std::string(name);
    }
    std::string path = parent;
    path += '.';
    path += name;
    return path;
}

std::optional<std::string_view> string_field(const boost::json::object& object,
                                             std::string_view name, const std::string& path,
                                             bool required) {
    const boost::json::value* found = object.if_contains(name);
    if (found == nullptr || found->is_null()) {
        if (required) {
            throw input_error("required (a string)", field_path(path, name));
        }
        return std::nullopt;
    }
    if (!found->is_string()) {
        throw input_error(std::string("must be a string, not ") + kind_name(*found),
                          field_path(path, name));
    }
    const boost::json::string& text = found->get_string();
    return std::string_view(text.data(), text.size());
}

std::optional<std::int64_t> integer_field(const boost::json::object& object, std::string_view name,
                                          const std::string& path, bool required,
                                          std::int64_t minimum, std::int64_t maximum) {
    const boost::json::value* found = object.if_contains(name);
    if (found == nullptr || found->is_null()) {
        if (required) {
            throw input_error("required (a whole number)", field_path(path, name));
        }
        return std::nullopt;
    }
    const auto out_of_range = [&]() -> input_error {
        return {"must be " + std::to_string(minimum) + " to " + std::to_string(maximum),
                field_path(path, name)};
    };
    if (found->is_int64()) {
        const std::int64_t number = found->get_int64();
        if (number < minimum || number > maximum) {
            throw out_of_range();
        }
        return number;
    }
    if (found->is_uint64()) {
        throw out_of_range(); // above INT64_MAX
    }
    if (found->is_double()) {
        const double number = found->get_double();
        if (std::trunc(number) != number) {
            throw input_error("must be a whole number", field_path(path, name));
        }
        if (number < static_cast<double>(minimum) || number > static_cast<double>(maximum)) {
            throw out_of_range();
        }
        return static_cast<std::int64_t>(number);
    }
    throw input_error(std::string("must be a whole number, not ") + kind_name(*found),
                      field_path(path, name));
}

const char* kind_name(const boost::json::value& value) noexcept {
    switch (value.kind()) {
    case boost::json::kind::null:
        return "null";
    case boost::json::kind::bool_:
        return "a boolean";
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_:
        return "a number";
    case boost::json::kind::string:
        return "a string";
    case boost::json::kind::array:
        return "an array";
    case boost::json::kind::object:
        return "an object";
    }
    return "a value";
}

} // namespace schedule
