#include "schedule.hpp"

#include <algorithm>
#include <numeric>
#include <optional>
#include <unordered_map>

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

/// One schedule of an XMLTV guide: the programmes of `channel`, in document order.
schedule xmltv_schedule(const xmltv_document& document, const std::string& channel,
                        const std::vector<const xmltv_programme*>& programmes,
                        const std::optional<std::string_view>& chosen_name,
                        std::int64_t unknown_duration, std::vector<item_source>& sources,
                        std::size_t& assumed) {
    schedule result;
    result.channel = channel;
    if (const std::string problem = channel_problem(channel); !problem.empty()) {
        throw input_error("channel id " + problem, "xmltv", programmes.front()->line);
    }
    if (chosen_name) {
        result.name = *chosen_name;
    } else {
        result.name = channel;
        for (const xmltv_channel& described : document.channels) {
            if (described.id == channel && !described.display_name.empty()) {
                result.name = described.display_name;
                break;
            }
        }
        throw_if(name_problem(result.name).empty()
                     ? std::string()
                     : "the display-name of channel '" + channel + "' " + name_problem(result.name),
                 "xmltv", 0);
    }

    // A programme without stop ends where the next programme of its channel (by start time)
    // begins, as the DTD says stop usually is; the last one of the channel gets
    // unknown_duration, as a playlist entry of unknown length does.
    std::vector<std::size_t> order(programmes.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t left, std::size_t right) {
        return programmes[left]->start < programmes[right]->start;
    });
    std::vector<std::int64_t> stops(programmes.size());
    std::optional<std::int64_t> next_start; // the nearest start after the current one
    for (std::size_t position = order.size(); position-- > 0;) {
        const xmltv_programme& current = *programmes[order[position]];
        if (position + 1 < order.size() && programmes[order[position + 1]]->start > current.start) {
            next_start = programmes[order[position + 1]]->start;
        }
        if (current.stop) {
            stops[order[position]] = *current.stop;
        } else if (next_start) {
            stops[order[position]] = *next_start;
        } else {
            stops[order[position]] = current.start + unknown_duration;
            ++assumed;
        }
    }

    result.items.reserve(programmes.size());
    for (std::size_t index = 0; index < programmes.size(); ++index) {
        const xmltv_programme& programme = *programmes[index];
        if (stops[index] <= programme.start) {
            throw input_error("<programme> stop is not after its start", "xmltv", programme.line);
        }
        result.items.push_back({programme.title, programme.url, programme.start,
                                programme.start_offset, stops[index] - programme.start});
        sources.push_back({programme.line, programme.url_line});
    }
    return result;
}

/// The import-schedule request in the XMLTV form: one schedule per channel imported.
import_request parse_xmltv_request(const boost::json::object& request, std::string_view xml) {
    import_request result;
    result.from_xmltv = true;
    result.overlap = parse_overlap_policy(request);
    const std::optional<std::string_view> chosen_channel =
        string_field(request, "channel", {}, false);
    const std::optional<std::string_view> chosen_name = string_field(request, "name", {}, false);
    const std::int64_t unknown_duration =
        integer_field(request, "unknown_duration", {}, false, 1, max_duration)
            .value_or(default_unknown_duration);
    if (chosen_channel) {
        check_channel(*chosen_channel, "channel");
    }
    if (chosen_name) {
        check_name(*chosen_name, "name");
    }

    const xmltv_document document = read_xmltv(xml, "xmltv", chosen_channel);
    if (document.programmes.empty()) {
        throw input_error(chosen_channel ? "the document has no <programme> on channel '" +
                                               std::string(*chosen_channel) + "'"
                                         : std::string("the document has no <programme>"),
                          "xmltv");
    }
    // The channels in the order of their first programme.
    std::vector<std::string> channels;
    std::unordered_map<std::string_view, std::vector<const xmltv_programme*>> by_channel;
    for (const xmltv_programme& programme : document.programmes) {
        auto& programmes = by_channel[programme.channel];
        if (programmes.empty()) {
            channels.push_back(programme.channel);
        }
        programmes.push_back(&programme);
    }
    if (chosen_name && channels.size() > 1) {
        throw input_error("the document has programmes on " + std::to_string(channels.size()) +
                              " channels, which become one schedule each, named after its "
                              "channel; give \"channel\" to import one of them under this name",
                          "name");
    }
    result.schedules.reserve(channels.size());
    for (const std::string& channel : channels) {
        std::vector<item_source> sources;
        schedule imported = xmltv_schedule(document, channel, by_channel[channel], chosen_name,
                                           unknown_duration, sources, result.assumed_durations);
        const trim_counts trims = validate_schedule(imported, &sources, "xmltv", result.overlap);
        result.trims.trimmed += trims.trimmed;
        result.trims.dropped += trims.dropped;
        result.schedules.push_back(std::move(imported));
    }
    return result;
}

/// The import-schedule request in the JSON form.
import_request parse_json_request(const boost::json::object& request) {
    const overlap_policy overlap = parse_overlap_policy(request);
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
    import_request parsed;
    parsed.overlap = overlap;
    parsed.trims = validate_schedule(result, nullptr, {}, overlap);
    parsed.schedules.push_back(std::move(result));
    return parsed;
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

overlap_policy parse_overlap_policy(const boost::json::object& request) {
    const std::optional<std::string_view> given = string_field(request, "overlap", {}, false);
    if (!given || *given == "reject") {
        return overlap_policy::reject;
    }
    if (*given == "trim") {
        return overlap_policy::trim;
    }
    throw input_error(R"(must be "reject" or "trim", not ')" + std::string(*given) + "'",
                      "overlap");
}

trim_counts validate_schedule(schedule& checked, const std::vector<item_source>* sources,
                              const std::string& source_field, overlap_policy overlap) {
    check_name(checked.name, "name");
    check_channel(checked.channel, "channel");
    if (checked.items.empty() || checked.items.size() > max_items) {
        throw input_error("must have 1 to " + std::to_string(max_items) + " items, not " +
                              std::to_string(checked.items.size()),
                          sources != nullptr ? source_field : "items");
    }
    const auto has_source = [&](std::size_t index) {
        return sources != nullptr && index < sources->size();
    };
    // Errors name the item as the caller knows it: items[i].field, or a line of the source.
    const auto fail = [&](std::size_t index, std::string_view member, const std::string& problem) {
        if (has_source(index)) {
            const item_source& source = (*sources)[index];
            const std::size_t line =
                member == "url" && source.url_line != 0 ? source.url_line : source.line;
            throw input_error(std::string(member) + " " + problem, source_field, line);
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
    trim_counts trims;
    if (overlap == overlap_policy::trim) {
        std::vector<std::size_t> kept;
        kept.reserve(order.size());
        for (const std::size_t index : order) {
            const schedule_item& current = checked.items[index];
            if (!kept.empty()) {
                schedule_item& previous = checked.items[kept.back()];
                if (previous.start == current.start) {
                    ++trims.dropped;
                    continue;
                }
                if (previous.end() > current.start) {
                    previous.duration = current.start - previous.start;
                    ++trims.trimmed;
                }
            }
            kept.push_back(index);
        }
        order = std::move(kept);
    }
    for (std::size_t position = 1; position < order.size(); ++position) {
        const schedule_item& previous = checked.items[order[position - 1]];
        const schedule_item& current = checked.items[order[position]];
        if (current.start < previous.end()) {
            const std::string other =
                has_source(order[position - 1])
                    ? "the item of line " + std::to_string((*sources)[order[position - 1]].line)
                    : "items[" + std::to_string(order[position - 1]) + "]";
            fail(order[position], "start",
                 "overlaps " + other + " ('" + previous.title + "', " +
                     format_iso8601(previous.start, previous.utc_offset) + " to " +
                     format_iso8601(previous.end(), previous.utc_offset) +
                     R"(); give "overlap": "trim" to shorten the earlier item)");
        }
    }
    std::vector<schedule_item> sorted;
    sorted.reserve(order.size());
    for (const std::size_t index : order) {
        sorted.push_back(std::move(checked.items[index]));
    }
    checked.items = std::move(sorted);
    return trims;
}

import_request parse_import_request(std::string_view json) {
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
