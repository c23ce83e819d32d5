/// @file store.hpp
/// @brief Schedules in SQLite: `DIR/schedules.db`, created and migrated on first use.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "schedule.hpp"

struct sqlite3;

namespace schedule {

/// @brief A SQLite failure (cannot open, busy past the timeout, disk full): an internal error.
struct database_error : std::runtime_error {
    explicit database_error(const std::string& message, int code = 0)
        : std::runtime_error(message), sqlite_code(code) {}
    int sqlite_code; ///< SQLite's primary result code (SQLITE_BUSY, ...); 0 if not from SQLite
};

/// @brief One row of the `schedules` listing (kept in the schedules table itself, so listing
///        reads one row per schedule).
struct schedule_summary {
    std::int64_t id = 0;
    std::string name, channel;
    std::int64_t item_count = 0;
    std::int64_t first_start = 0;  ///< UTC seconds
    std::int32_t first_offset = 0; ///< minutes, the first item's offset
    std::int64_t last_end = 0;     ///< UTC seconds
    std::int32_t last_offset = 0;  ///< minutes, the last item's offset
};

/// @brief The schedule database of one data folder; one connection, opened once per process.
///
/// WAL journal, busy timeout 5 s, foreign keys on. The schema version is `PRAGMA user_version`;
/// missing migrations are applied in one `BEGIN IMMEDIATE` transaction, so two processes
/// opening a new folder at once do not both migrate. Every write is a `BEGIN IMMEDIATE`
/// transaction, so concurrent writers queue on the lock (up to the timeout) instead of failing
/// halfway. Not thread-safe: one store per thread.
class store {
  public:
    /// @brief Opens (creating if needed) and migrates the database.
    /// @throws database_error
    explicit store(const std::filesystem::path& database_file);
    ~store();
    store(const store&) = delete;
    store& operator=(const store&) = delete;
    store(store&&) = delete;
    store& operator=(store&&) = delete;

    /// @brief Stores a validated schedule (items sorted, not overlapping) in one transaction;
    ///        sets its id and created_at.
    /// @throws database_error
    void insert(schedule& stored);

    /// @brief Stores validated schedules in one transaction (all of them or none), in order;
    ///        sets their ids and created_at.
    /// @throws database_error
    void insert(std::span<schedule> stored);

    /// @brief The schedule `id`, items sorted by start.
    /// @throws not_found_error, database_error
    [[nodiscard]] schedule find(std::int64_t id);

    /// @brief Every schedule's summary, in id order.
    /// @throws database_error
    [[nodiscard]] std::vector<schedule_summary> list();

    /// @brief A value that changes whenever the database may have changed, by this connection
    ///        or another process (SQLite's `PRAGMA data_version` with this connection's own
    ///        change count). Equal values mean an answer computed from the data is still right.
    /// @throws database_error
    [[nodiscard]] std::pair<std::int64_t, std::int64_t> version();

    /// @brief Every schedule with its items, in id order (one consistent snapshot).
    /// @throws database_error
    [[nodiscard]] std::vector<schedule> all();

    /// @brief Whether SQLite could open the database only for reading (a read-only file system
    ///        or file): such a connection stays read-only after the folder is writable again.
    [[nodiscard]] bool read_only() const noexcept;

  private:
    void execute(const char* sql);
    void migrate();

    sqlite3* database_ = nullptr;
};

} // namespace schedule
