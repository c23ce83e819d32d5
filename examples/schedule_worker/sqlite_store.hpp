/// @file sqlite_store.hpp
/// @brief Schedules in SQLite: `DIR/schedules.db`, created and migrated on first use.
#pragma once

#include <filesystem>

#include "store.hpp"

struct sqlite3;

namespace schedule {

/// @brief The schedule database of one data folder; one connection, opened once per process.
///
/// WAL journal, busy timeout 5 s, foreign keys on. The schema version is `PRAGMA user_version`;
/// missing migrations are applied in one `BEGIN IMMEDIATE` transaction, so two processes
/// opening a new folder at once do not both migrate. Every write is a `BEGIN IMMEDIATE`
/// transaction, so concurrent writers queue on the lock (up to the timeout) instead of failing
/// halfway.
class sqlite_store final : public store {
  public:
    /// @brief Opens (creating if needed) and migrates the database.
    /// @throws database_error
    explicit sqlite_store(const std::filesystem::path& database_file);
    ~sqlite_store() override;

    using store::insert;
    void insert(std::span<schedule> stored) override;
    [[nodiscard]] schedule find(std::int64_t id) override;
    [[nodiscard]] std::vector<schedule_summary> list() override;
    /// SQLite's `PRAGMA data_version` with this connection's own change count.
    [[nodiscard]] std::pair<std::int64_t, std::int64_t> version() override;
    [[nodiscard]] std::vector<schedule> all() override;
    [[nodiscard]] bool read_only() const noexcept override;

  private:
    void execute(const char* sql);
    void migrate();

    sqlite3* database_ = nullptr;
};

} // namespace schedule
