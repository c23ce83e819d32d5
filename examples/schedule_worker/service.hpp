/// @file service.hpp
/// @brief The eight operations of docs/schedule-worker.md (and the memory probe), request JSON
///        in, answer JSON out.
#pragma once

#include <array>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "database_url.hpp"

namespace schedule {

class store;

/// @brief Answers requests for one data folder. The same object serves one request (once
///        mode) or many (persistent mode): the database is opened on the first operation that
///        needs it and kept open (a PostgreSQL store reconnects by itself). Not thread-safe.
class service {
  public:
    /// @brief The operations, as named on the command line and in worker requests.
    static constexpr std::array<std::string_view, 8> operations{
        "import-schedule",
        "schedules",
        "playlists",
        "export-schedule-xml",
        "export-schedule-json",
        "export-all-schedules-xml",
        "schedule-playlist",
        "infowars-videos",
    };
    /// @brief The test operation beside them (memory_probe.hpp): memory touched on request.
    static constexpr std::string_view memory_probe_operation = "memory_probe";

    /// @param data_dir the data folder (`schedules.db`, `playlists/`, the feed)
    /// @param feed     the video feed, a path relative to `data_dir` that stays inside it
    /// @param database_url where the schedules are (database_url.hpp); empty:
    ///                 `sqlite:DATA_DIR/schedules.db`
    /// @throws database_url_error for a `database` that is not a database URL
    explicit service(std::filesystem::path data_dir, std::filesystem::path feed = "feed.m3u",
                     std::string_view database_url = {});
    ~service();
    service(const service&) = delete;
    service& operator=(const service&) = delete;
    service(service&&) = delete;
    service& operator=(service&&) = delete;

    /// @brief One answer: the JSON (no trailing newline) and the once mode's exit status.
    struct answer {
        std::string json;
        int exit_code;
    };

    /// @brief Runs `operation` on `request_json`. Never throws: bad input is
    ///        `invalid_input` (exit 2), an unknown id or file `not_found` (3), anything else
    ///        `internal` (1); an unknown operation is `invalid_input`.
    [[nodiscard]] answer handle(std::string_view operation, std::string_view request_json) noexcept;

  private:
    /// The database, opened (and migrated) on first use.
    store& database();

    std::string import_schedule(std::string_view request);
    std::string list_schedules(std::string_view request);
    std::string list_playlists(std::string_view request);
    std::string export_schedule_xml(std::string_view request);
    std::string export_schedule_json(std::string_view request);
    std::string export_all_schedules_xml(std::string_view request);
    std::string schedule_playlist(std::string_view request);
    std::string list_videos(std::string_view request);

    std::filesystem::path data_dir_;
    std::filesystem::path feed_;
    database_location database_;
    std::unique_ptr<store> store_;
    /// The last `schedules` answer and the database version it was computed at.
    std::optional<std::string> schedules_answer_;
    std::pair<std::int64_t, std::int64_t> schedules_version_{};
};

} // namespace schedule
