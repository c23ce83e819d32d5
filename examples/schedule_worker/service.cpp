#include "service.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "errors.hpp"
#include "files.hpp"
#include "json_writer.hpp"
#include "m3u.hpp"
#include "memory_probe.hpp"
#include "request.hpp"
#include "schedule.hpp"
#include "store.hpp"
#include "time.hpp"
#include "xmltv.hpp"

namespace schedule {

namespace {

constexpr std::int64_t default_video_limit = 50;
constexpr std::int64_t max_video_limit = 500;

/// A writer with `{"status":"success"` already written.
json_writer success() {
    json_writer out;
    out.begin_object();
    out.key("status").value("success");
    return out;
}

service::answer error_answer(std::string_view code, std::string_view message,
                             std::string_view field, std::size_t line, int exit_code) noexcept {
    try {
        json_writer out;
        out.begin_object();
        out.key("status").value("error");
        out.key("code").value(code);
        out.key("message").value(message);
        if (!field.empty()) {
            out.key("field").value(field);
        }
        if (line != 0) {
            out.key("line").value(static_cast<std::uint64_t>(line));
        }
        out.end_object();
        return {out.take(), exit_code};
    } catch (...) {
        return {R"({"status":"error","code":"internal","message":"out of memory"})", 1};
    }
}

/// The same error, attributed to `field` (an M3U error comes without one).
input_error attributed(const input_error& error, const std::string& field) {
    std::string_view message = error.what();
    if (error.field.empty() && error.line != 0) {
        // what() is "line N: message": keep only the message; the line is kept apart.
        const std::string prefix = "line " + std::to_string(error.line) + ": ";
        if (message.substr(0, prefix.size()) == prefix) {
            message.remove_prefix(prefix.size());
        }
    } else if (!error.field.empty() || error.line != 0) {
        return error;
    }
    return {std::string(message), field, error.line};
}

bool ends_with_ignoring_case(std::string_view text, std::string_view suffix) noexcept {
    if (text.size() < suffix.size()) {
        return false;
    }
    return std::equal(suffix.begin(), suffix.end(),
                      text.end() - static_cast<std::ptrdiff_t>(suffix.size()),
                      [](char left, char right) {
                          const auto lower = [](char letter) {
                              return letter >= 'A' && letter <= 'Z'
                                         ? static_cast<char>(letter - 'A' + 'a')
                                         : letter;
                          };
                          return lower(left) == lower(right);
                      });
}

/// The name of a playlist file without its extension, or empty if it is not a playlist.
std::string_view playlist_stem(std::string_view file_name) noexcept {
    for (const std::string_view extension : {std::string_view(".m3u8"), std::string_view(".m3u")}) {
        if (file_name.size() > extension.size() && ends_with_ignoring_case(file_name, extension)) {
            return file_name.substr(0, file_name.size() - extension.size());
        }
    }
    return {};
}

/// The playlists folder of the data folder.
directory open_playlists(const std::filesystem::path& data_dir) {
    // Messages name files relative to the data folder: answers do not reveal where it is.
    return directory(data_dir, {}).child("playlists");
}

/// Reads a playlist named by a request (with or without its extension).
/// @return (file name, contents)
std::pair<std::string, std::string> read_named_playlist(const std::filesystem::path& data_dir,
                                                        std::string_view name) {
    if (!is_plain_file_name(name)) {
        throw input_error("must be the name of a file in the playlists folder (no '/', no '..', "
                          "not starting with '.', no control characters)",
                          "playlist");
    }
    directory playlists = [&] {
        try {
            return open_playlists(data_dir);
        } catch (const file_error& error) {
            if (error.why == file_error::reason::missing) {
                throw not_found_error("no playlist '" + std::string(name) +
                                      "': the data folder has no playlists folder");
            }
            throw;
        }
    }();
    std::vector<std::string> candidates;
    if (!playlist_stem(name).empty()) {
        candidates.emplace_back(name);
    } else {
        candidates.push_back(std::string(name) + ".m3u");
        candidates.push_back(std::string(name) + ".m3u8");
    }
    for (const std::string& candidate : candidates) {
        try {
            return {candidate, playlists.read_file(candidate, max_m3u_bytes)};
        } catch (const file_error& error) {
            switch (error.why) {
            case file_error::reason::missing:
                continue;
            case file_error::reason::symbolic_link:
            case file_error::reason::not_regular:
            case file_error::reason::too_large:
                throw input_error(error.what(), "playlist");
            case file_error::reason::other:
                throw;
            }
        }
    }
    throw not_found_error("no playlist '" + std::string(name) + "' in the playlists folder");
}

} // namespace

service::service(std::filesystem::path data_dir, std::filesystem::path feed,
                 std::string_view database_url)
    : data_dir_(std::move(data_dir)), feed_(std::move(feed)),
      database_(parse_database_url(database_url.empty()
                                       ? "sqlite:" + (data_dir_ / "schedules.db").string()
                                       : std::string(database_url))) {}

service::~service() = default;

store& service::database() {
    // A connection SQLite opened read-only is opened anew for each request, so that a persistent
    // worker writes again once the data folder is writable. It is closed first: while it is
    // open, a new connection would share its read-only WAL index.
    if (store_ && store_->read_only()) {
        store_.reset();
    }
    if (!store_) {
        store_ = open_store(database_);
    }
    return *store_;
}

service::answer service::handle(std::string_view operation,
                                std::string_view request_json) noexcept {
    try {
        std::string json;
        if (operation == "import-schedule") {
            json = import_schedule(request_json);
        } else if (operation == "schedules") {
            json = list_schedules(request_json);
        } else if (operation == "playlists") {
            json = list_playlists(request_json);
        } else if (operation == "export-schedule-xml") {
            json = export_schedule_xml(request_json);
        } else if (operation == "export-schedule-json") {
            json = export_schedule_json(request_json);
        } else if (operation == "export-all-schedules-xml") {
            json = export_all_schedules_xml(request_json);
        } else if (operation == "schedule-playlist") {
            json = schedule_playlist(request_json);
        } else if (operation == "infowars-videos") {
            json = list_videos(request_json);
        } else if (operation == memory_probe_operation) {
            json = run_memory_probe(request_json);
        } else {
            std::string known;
            for (const std::string_view name : operations) {
                known += known.empty() ? "" : ", ";
                known += name;
            }
            throw input_error("unknown operation '" + std::string(operation) +
                              "' (the operations are " + known + ")");
        }
        return {std::move(json), 0};
    } catch (const input_error& error) {
        return error_answer("invalid_input", error.what(), error.field, error.line, 2);
    } catch (const not_found_error& error) {
        return error_answer("not_found", error.what(), {}, 0, 3);
    } catch (const std::exception& error) {
        return error_answer("internal", error.what(), {}, 0, 1);
    } catch (...) {
        return error_answer("internal", "unexpected exception", {}, 0, 1);
    }
}

std::string service::import_schedule(std::string_view request) {
    import_request imported = parse_import_request(request);
    database().insert(imported.schedules); // one transaction: all of them or none
    // What was derived on the way, when it could have been anything but nothing.
    const auto write_counts = [&](json_writer& out) {
        if (imported.from_xmltv) {
            out.key("assumed_durations")
                .value(static_cast<std::uint64_t>(imported.assumed_durations));
        }
        if (imported.overlap == overlap_policy::trim) {
            out.key("trimmed").value(static_cast<std::uint64_t>(imported.trims.trimmed));
            out.key("dropped").value(static_cast<std::uint64_t>(imported.trims.dropped));
        }
    };
    json_writer out = success();
    if (imported.schedules.size() == 1) {
        // One schedule: the answer of a single import, as before guides could hold several.
        const schedule& stored = imported.schedules.front();
        out.key("id").value(stored.id);
        write_counts(out);
        out.key("schedule");
        write_schedule_json(out, stored);
    } else {
        out.key("count").value(static_cast<std::uint64_t>(imported.schedules.size()));
        out.key("ids").begin_array();
        for (const schedule& stored : imported.schedules) {
            out.value(stored.id);
        }
        out.end_array();
        write_counts(out);
        out.key("schedules").begin_array();
        for (const schedule& stored : imported.schedules) {
            write_schedule_json(out, stored);
        }
        out.end_array();
    }
    out.end_object();
    return out.take();
}

std::string service::list_schedules(std::string_view request) {
    (void)parse_request_object(request); // only checks it is a JSON object
    // A persistent worker answers a repeated listing from its last answer while the database
    // is unchanged. The version is read before the rows, so a write that lands in between
    // only makes the next request rebuild.
    const auto version = database().version();
    if (schedules_answer_ && schedules_version_ == version) {
        return *schedules_answer_;
    }
    const std::vector<schedule_summary> summaries = database().list();
    json_writer out = success();
    out.reserve(64 + summaries.size() * 160);
    out.key("count").value(static_cast<std::uint64_t>(summaries.size()));
    out.key("schedules").begin_array();
    for (const schedule_summary& summary : summaries) {
        out.begin_object();
        out.key("id").value(summary.id);
        out.key("name").value(summary.name);
        out.key("channel").value(summary.channel);
        out.key("item_count").value(summary.item_count);
        out.key("first_start").value(format_iso8601(summary.first_start, summary.first_offset));
        out.key("last_end").value(format_iso8601(summary.last_end, summary.last_offset));
        out.end_object();
    }
    out.end_array();
    out.end_object();
    schedules_answer_ = out.take();
    schedules_version_ = version;
    return *schedules_answer_;
}

std::string service::list_playlists(std::string_view request) {
    (void)parse_request_object(request);
    struct listed {
        std::string name, file;
        std::size_t entries = 0;
        std::int64_t total_duration = 0;
        std::size_t unknown_durations = 0;
        std::string error;
    };
    std::vector<listed> found;
    std::optional<directory> playlists;
    try {
        playlists.emplace(open_playlists(data_dir_));
    } catch (const file_error& error) {
        if (error.why != file_error::reason::missing) {
            throw;
        }
    }
    if (playlists) {
        for (std::string& file : playlists->entries()) {
            const std::string_view stem = playlist_stem(file);
            if (stem.empty() || file.front() == '.') {
                continue;
            }
            listed entry;
            entry.name = stem;
            try {
                const m3u_playlist playlist = parse_m3u(playlists->read_file(file, max_m3u_bytes));
                entry.entries = playlist.entries.size();
                for (const m3u_entry& item : playlist.entries) {
                    if (item.duration) {
                        entry.total_duration += static_cast<std::int64_t>(
                            std::ceil(std::min(*item.duration, static_cast<double>(max_duration))));
                    } else {
                        ++entry.unknown_durations;
                    }
                }
            } catch (const std::exception& error) {
                entry.error = error.what();
            }
            entry.file = std::move(file);
            found.push_back(std::move(entry));
        }
    }
    std::sort(found.begin(), found.end(), [](const listed& left, const listed& right) {
        return std::tie(left.name, left.file) < std::tie(right.name, right.file);
    });

    json_writer out = success();
    out.key("count").value(static_cast<std::uint64_t>(found.size()));
    out.key("playlists").begin_array();
    for (const listed& entry : found) {
        out.begin_object();
        out.key("name").value(entry.name);
        out.key("file").value(entry.file);
        if (entry.error.empty()) {
            out.key("entries").value(static_cast<std::uint64_t>(entry.entries));
            out.key("total_duration").value(entry.total_duration);
            out.key("unknown_durations").value(static_cast<std::uint64_t>(entry.unknown_durations));
        } else {
            out.key("error").value(entry.error);
        }
        out.end_object();
    }
    out.end_array();
    out.end_object();
    return out.take();
}

namespace {

std::int64_t requested_id(std::string_view request) {
    const boost::json::object object = parse_request_object(request);
    return *integer_field(object, "id", {}, true, 1, std::numeric_limits<std::int64_t>::max());
}

std::string xml_answer(std::span<const schedule> schedules) {
    json_writer out = success();
    out.key("content_type").value("application/xml");
    out.key("xml").value(write_xmltv(schedules));
    out.end_object();
    return out.take();
}

} // namespace

std::string service::export_schedule_xml(std::string_view request) {
    const std::int64_t id = requested_id(request);
    const schedule found = database().find(id);
    return xml_answer(std::span<const schedule>(&found, 1));
}

std::string service::export_schedule_json(std::string_view request) {
    const std::int64_t id = requested_id(request);
    const schedule found = database().find(id);
    json_writer out = success();
    out.key("schedule");
    write_schedule_json(out, found);
    out.end_object();
    return out.take();
}

std::string service::export_all_schedules_xml(std::string_view request) {
    (void)parse_request_object(request);
    const std::vector<schedule> schedules = database().all();
    return xml_answer(schedules);
}

std::string service::schedule_playlist(std::string_view request) {
    const boost::json::object object = parse_request_object(request);
    const std::optional<std::string_view> playlist_name =
        string_field(object, "playlist", {}, false);
    const std::optional<std::string_view> inline_text = string_field(object, "m3u", {}, false);
    if (playlist_name && inline_text) {
        throw input_error(R"(give either "playlist" or "m3u", not both)", "m3u");
    }
    if (!playlist_name && !inline_text) {
        throw input_error("required: the name of a playlist (or \"m3u\" with its text)",
                          "playlist");
    }

    schedule scheduled;
    scheduled.channel = *string_field(object, "channel", {}, true);
    check_channel(scheduled.channel, "channel");
    const zoned_time start = parse_iso8601(*string_field(object, "start", {}, true), "start");
    const std::optional<std::string_view> name = string_field(object, "name", {}, false);
    if (name) {
        check_name(*name, "name");
    }
    const std::int64_t unknown_duration =
        integer_field(object, "unknown_duration", {}, false, 1, max_duration)
            .value_or(default_unknown_duration);

    // The playlist's text, and the field its errors are reported against.
    std::string text;
    std::string source_field;
    if (playlist_name) {
        auto [file, contents] = read_named_playlist(data_dir_, *playlist_name);
        scheduled.name = name ? std::string(*name) : std::string(playlist_stem(file));
        text = std::move(contents);
        source_field = "playlist";
    } else {
        scheduled.name = name ? std::string(*name) : std::string("playlist");
        text = *inline_text;
        source_field = "m3u";
    }
    m3u_playlist playlist;
    try {
        playlist = parse_m3u(text);
    } catch (const input_error& error) {
        throw attributed(error, source_field);
    }
    if (playlist.entries.empty()) {
        throw input_error("the playlist has no entries", source_field);
    }
    if (playlist.entries.size() > max_items) {
        throw input_error("the playlist has " + std::to_string(playlist.entries.size()) +
                              " entries; a schedule has at most " + std::to_string(max_items),
                          source_field);
    }

    // Back to back from the start, in playlist order.
    std::vector<item_source> sources;
    sources.reserve(playlist.entries.size());
    scheduled.items.reserve(playlist.entries.size());
    std::int64_t next_start = start.utc;
    std::size_t assumed = 0;
    for (m3u_entry& entry : playlist.entries) {
        std::int64_t duration = unknown_duration;
        if (entry.duration) {
            if (*entry.duration > static_cast<double>(max_duration)) {
                throw input_error("the #EXTINF duration is more than " +
                                      std::to_string(max_duration) + " seconds",
                                  source_field, entry.line);
            }
            duration = static_cast<std::int64_t>(std::ceil(*entry.duration));
        } else {
            ++assumed;
        }
        scheduled.items.push_back(
            {std::move(entry.title), std::move(entry.url), next_start, start.utc_offset, duration});
        sources.push_back({entry.line, entry.url_line});
        next_start += duration;
    }
    (void)validate_schedule(scheduled, &sources, source_field);
    database().insert(scheduled);

    json_writer out = success();
    out.key("id").value(scheduled.id);
    out.key("assumed_durations").value(static_cast<std::uint64_t>(assumed));
    out.key("schedule");
    write_schedule_json(out, scheduled);
    out.end_object();
    return out.take();
}

std::string service::list_videos(std::string_view request) {
    const boost::json::object object = parse_request_object(request);
    const std::int64_t offset =
        integer_field(object, "offset", {}, false, 0, std::numeric_limits<std::int64_t>::max())
            .value_or(0);
    const std::int64_t limit =
        integer_field(object, "limit", {}, false, 1, max_video_limit).value_or(default_video_limit);

    const std::string feed = feed_.string();
    std::string text;
    try {
        text = directory(data_dir_, {}).read_file(feed, max_m3u_bytes);
    } catch (const file_error& error) {
        if (error.why == file_error::reason::missing) {
            throw not_found_error("no video feed: " + std::string(error.what()));
        }
        throw std::runtime_error("the video feed cannot be read: " + std::string(error.what()));
    }
    m3u_playlist videos;
    try {
        videos = parse_m3u(text);
    } catch (const input_error& error) {
        // The feed is the server's file, not the request: an internal error.
        throw std::runtime_error("the video feed " + feed + " does not parse: " + error.what());
    }

    const auto total = static_cast<std::int64_t>(videos.entries.size());
    const std::int64_t first = std::min(offset, total);
    const std::int64_t last = std::min(total, first + limit);
    json_writer out = success();
    out.key("total").value(total);
    out.key("offset").value(offset);
    out.key("limit").value(limit);
    out.key("videos").begin_array();
    for (std::int64_t index = first; index < last; ++index) {
        const m3u_entry& video = videos.entries[static_cast<std::size_t>(index)];
        out.begin_object();
        out.key("title").value(video.title);
        out.key("url").value(video.url);
        out.key("duration");
        if (video.duration) {
            out.value(*video.duration);
        } else {
            out.null();
        }
        out.key("group").value(video.group);
        out.key("tvg_id").value(video.tvg_id);
        out.key("tvg_name").value(video.tvg_name);
        out.key("tvg_logo").value(video.tvg_logo);
        out.end_object();
    }
    out.end_array();
    out.end_object();
    return out.take();
}

} // namespace schedule
