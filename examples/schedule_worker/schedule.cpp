#include "schedule.hpp"

#include <algorithm>
#include <numeric>

#include "errors.hpp"
#include "json_writer.hpp"
#include "request.hpp"
#include "text.hpp"
#include "time.hpp"
#include "xmltv.hpp"

namespace schedule {

namespace {

// Each check returns what is wrong, or an empty string.

std::string name_problem(std::string_view name) {
    if (name.empty()) {
        return "must not be empty";
    }
    if (name.size() > max_name_bytes) {
        return "is " + std::to_string(name.size()) + " bytes, more than " +
               std::to_string(max_name_bytes);
    }
    if (find_invalid_utf8(name)) {
        return "is not valid UTF-8";
    }
    if (has_control_character(name)) {
        return "must not contain control characters";
    }
    return {};
}

std::string channel_problem(std::string_view channel) {
    if (channel.empty()) {
        return "must not be empty";
    }
    if (channel.size() > max_channel_bytes) {
        return "is " + std::to_string(channel.size()) + " bytes, more than " +
               std::to_string(max_channel_bytes);
    }
    const bool allowed = std::all_of(channel.begin(), channel.end(), [](char letter) {
        return (letter >= 'a' && letter <= 'z') || (letter >= 'A' && letter <= 'Z') ||
               (letter >= '0' && letter <= '9') || letter == '.' || letter == '_' || letter == '-';
    });
    if (!allowed) {
        return "'" + std::string(channel) +
               "' may contain only letters A-Z and a-z, digits, '.', '_' and '-'";
    }
    return {};
}

std::string title_problem(std::string_view title) {
    if (title.empty()) {
        return "must not be empty";
    }
    if (title.size() > max_title_bytes) {
        return "is " + std::to_string(title.size()) + " bytes, more than " +
               std::to_string(max_title_bytes);
    }
    if (find_invalid_utf8(title)) {
        return "is not valid UTF-8";
    }
    if (has_control_character(title)) {
        return "must not contain control characters";
    }
    return {};
}

std::string url_problem(std::string_view url) {
    if (url.size() > max_url_bytes) {
        return "is " + std::to_string(url.size()) + " bytes, more than " +
               std::to_string(max_url_bytes);
    }
    if (find_invalid_utf8(url)) {
        return "is not valid UTF-8";
    }
    if (url.find(' ') != std::string_view::npos || has_control_character(url)) {
        return "must not contain whitespace or control characters";
    }
    return {};
}

std::string duration_problem(std::int64_t seconds) {
    if (seconds < 1 || seconds > max_duration) {
        return "must be 1 to " + std::to_string(max_duration) + " seconds, not " +
               std::to_string(seconds);
    }
    return {};
}

void throw_if(const std::string& problem, const std::string& field, std::size_t line) {
    if (!problem.empty()) {
        throw input_error(problem, field, line);
    }
}

/// The import-schedule request in the XMLTV form.
schedule parse_xmltv_request(const boost::json::object& request, std::string_view xml) {
    xmltv_document document = read_xmltv(xml, "xmltv");
    const std::optional<std::string_view> chosen_channel =
        string_field(request, "channel", {}, false);
    const std::optional<std::string_view> chosen_name = string_field(request, "name", {}, false);

    schedule result;
    if (chosen_channel) {
        check_channel(*chosen_channel, "channel");
        result.channel = *chosen_channel;
        std::erase_if(document.programmes, [&](const xmltv_programme& programme) {
            return programme.channel != result.channel;
        });
        if (document.programmes.empty()) {
            throw input_error("the document has no <programme> on channel '" + result.channel + "'",
                              "xmltv");
        }
    } else {
        if (document.programmes.empty()) {
            throw input_error("the document has no <programme>", "xmltv");
        }
        result.channel = document.programmes.front().channel;
        for (const xmltv_programme& programme : document.programmes) {
            if (programme.channel != result.channel) {
                throw input_error("the programmes are on several channels ('" + result.channel +
                                      "', '" + programme.channel +
                                      "'): give \"channel\" to pick one",
                                  "xmltv", programme.line);
            }
        }
        throw_if(channel_problem(result.channel).empty()
                     ? std::string()
                     : "channel id " + channel_problem(result.channel),
                 "xmltv", document.programmes.front().line);
    }

    if (chosen_name) {
        check_name(*chosen_name, "name");
        result.name = *chosen_name;
    } else {
        result.name = result.channel;
        for (const xmltv_channel& channel : document.channels) {
            if (channel.id == result.channel && !channel.display_name.empty()) {
                result.name = channel.display_name;
                break;
            }
        }
        throw_if(name_problem(result.name).empty()
                     ? std::string()
                     : "the channel's display-name " + name_problem(result.name),
                 "xmltv", 0);
    }

    std::vector<std::size_t> lines;
    lines.reserve(document.programmes.size());
    result.items.reserve(document.programmes.size());
    for (xmltv_programme& programme : document.programmes) {
        if (programme.stop <= programme.start) {
            throw input_error("<programme> stop is not after its start", "xmltv", programme.line);
        }
        result.items.push_back({std::move(programme.title), std::move(programme.url),
                                programme.start, programme.start_offset,
                                programme.stop - programme.start});
        lines.push_back(programme.line);
    }
    validate_schedule(result, &lines, "xmltv");
    return result;
}

/// The import-schedule request in the JSON form.
schedule parse_json_request(const boost::json::object& request) {
    schedule result;
    result.name = *string_field(request, "name", {}, true);
    check_name(result.name, "name");
    result.channel = *string_field(request, "channel", {}, true);
    check_channel(result.channel, "channel");

    const boost::json::value* items = request.if_contains("items");
    if (items == nullptr || items->is_null()) {
        throw input_error("required (an array of 1 to " + std::to_string(max_items) + " items)",
                          "items");
    }
    if (!items->is_array()) {
        throw input_error(std::string("must be an array, not ") + kind_name(*items), "items");
    }
    const boost::json::array& array = items->get_array();
    if (array.empty() || array.size() > max_items) {
        throw input_error("must have 1 to " + std::to_string(max_items) + " items, not " +
                              std::to_string(array.size()),
                          "items");
    }
    result.items.reserve(array.size());
    for (std::size_t index = 0; index < array.size(); ++index) {
        const std::string path = "items[" + std::to_string(index) + "]";
        if (!array[index].is_object()) {
            throw input_error(std::string("must be an object, not ") + kind_name(array[index]),
                              path);
        }
        const boost::json::object& item = array[index].get_object();
        schedule_item parsed;
        parsed.title = *string_field(item, "title", path, true);
        parsed.url = string_field(item, "url", path, false).value_or(std::string_view());
        const zoned_time start =
            parse_iso8601(*string_field(item, "start", path, true), field_path(path, "start"));
        parsed.start = start.utc;
        parsed.utc_offset = start.utc_offset;
        parsed.duration = *integer_field(item, "duration", path, true, 1, max_duration);
        result.items.push_back(std::move(parsed));
    }
    validate_schedule(result);
    return result;
}

} // namespace

void check_name(std::string_view name, const std::string& field, std::size_t line) {
    throw_if(name_problem(name), field, line);
}

void check_channel(std::string_view channel, const std::string& field, std::size_t line) {
    throw_if(channel_problem(channel), field, line);
}

void check_title(std::string_view title, const std::string& field, std::size_t line) {
    throw_if(title_problem(title), field, line);
}

void check_url(std::string_view url, const std::string& field, std::size_t line) {
    throw_if(url_problem(url), field, line);
}

void check_duration(std::int64_t seconds, const std::string& field, std::size_t line) {
    throw_if(duration_problem(seconds), field, line);
}

void validate_schedule(schedule& checked, const std::vector<std::size_t>* item_lines,
                       const std::string& lines_field) {
    check_name(checked.name, "name");
    check_channel(checked.channel, "channel");
    if (checked.items.empty() || checked.items.size() > max_items) {
        throw input_error("must have 1 to " + std::to_string(max_items) + " items, not " +
                              std::to_string(checked.items.size()),
                          item_lines != nullptr ? lines_field : "items");
    }
    // Errors name the item as the caller knows it: items[i].field, or a line of the source.
    const auto fail = [&](std::size_t index, std::string_view member, const std::string& problem) {
        if (item_lines != nullptr && index < item_lines->size()) {
            throw input_error(std::string(member) + " " + problem, lines_field,
                              (*item_lines)[index]);
        }
        throw input_error(problem, "items[" + std::to_string(index) + "]." + std::string(member));
    };
    for (std::size_t index = 0; index < checked.items.size(); ++index) {
        const schedule_item& item = checked.items[index];
        if (std::string problem = title_problem(item.title); !problem.empty()) {
            fail(index, "title", problem);
        }
        if (std::string problem = url_problem(item.url); !problem.empty()) {
            fail(index, "url", problem);
        }
        if (std::string problem = duration_problem(item.duration); !problem.empty()) {
            fail(index, "duration", problem);
        }
        if (!is_writable(item.start, item.utc_offset)) {
            fail(index, "start", "must be in the years 0001 to 9999");
        }
        if (!is_writable(item.end(), item.utc_offset)) {
            fail(index, "duration", "makes the item end after the year 9999");
        }
    }

    // Sort by start, remembering where each item was, then compare neighbours.
    std::vector<std::size_t> order(checked.items.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t left, std::size_t right) {
        return checked.items[left].start < checked.items[right].start;
    });
    for (std::size_t position = 1; position < order.size(); ++position) {
        const schedule_item& previous = checked.items[order[position - 1]];
        const schedule_item& current = checked.items[order[position]];
        if (current.start < previous.end()) {
            const std::string other =
                item_lines != nullptr && order[position - 1] < item_lines->size()
                    ? "the item of line " + std::to_string((*item_lines)[order[position - 1]])
                    : "items[" + std::to_string(order[position - 1]) + "]";
            fail(order[position], "start",
                 "overlaps " + other + " ('" + previous.title + "', " +
                     format_iso8601(previous.start, previous.utc_offset) + " to " +
                     format_iso8601(previous.end(), previous.utc_offset) + ")");
        }
    }
    std::vector<schedule_item> sorted;
    sorted.reserve(order.size());
    for (const std::size_t index : order) {
        sorted.push_back(std::move(checked.items[index]));
    }
    checked.items = std::move(sorted);
}

schedule parse_schedule_request(std::string_view json) {
    const boost::json::object request = parse_request_object(json);
    const std::optional<std::string_view> xml = string_field(request, "xmltv", {}, false);
    if (xml) {
        if (const auto* items = request.if_contains("items");
            items != nullptr && !items->is_null()) {
            throw input_error(R"(give either "items" or "xmltv", not both)", "items");
        }
        return parse_xmltv_request(request, *xml);
    }
    return parse_json_request(request);
}

void write_schedule_json(json_writer& out, const schedule& written) {
    out.begin_object();
    out.key("id").value(written.id);
    out.key("name").value(written.name);
    out.key("channel").value(written.channel);
    out.key("created_at").value(format_iso8601(written.created_at, 0, true));
    out.key("items").begin_array();
    for (const schedule_item& item : written.items) {
        out.begin_object();
        out.key("title").value(item.title);
        if (!item.url.empty()) {
            out.key("url").value(item.url);
        }
        out.key("start").value(format_iso8601(item.start, item.utc_offset));
        out.key("stop").value(format_iso8601(item.end(), item.utc_offset));
        out.key("duration").value(item.duration);
        out.end_object();
    }
    out.end_array();
    out.end_object();
}

} // namespace schedule
