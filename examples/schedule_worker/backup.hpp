/// @file backup.hpp
/// @brief `schedule_worker --backup FILE`: an online copy of the SQLite database, taken while
///        servers and workers go on using it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace schedule {

/// @brief Why a backup was not made. The message says what to do; `destination_exists` tells
///        a refused overwrite (no --force) from a failure of the database or the file system.
struct backup_error : std::runtime_error {
    backup_error(const std::string& message, bool exists)
        : std::runtime_error(message), destination_exists(exists) {}
    bool destination_exists;
};

/// @brief What a finished backup copied.
struct backup_summary {
    std::int64_t pages = 0; ///< database pages in the copy
    std::int64_t bytes = 0; ///< the copy's size
};

/// @brief How a backup runs.
struct backup_options {
    bool overwrite = false; ///< replace an existing `destination` (`--force`)
    /// Pages copied per step. Between steps the source is free, so that in a database that is
    /// not in WAL mode a writer waits at most one step; in WAL mode writers never wait for a
    /// reader.
    int pages_per_step = 256;
    /// Stepping longer than this (the copy restarts whenever another connection writes between
    /// two steps) copies the rest in one step: in WAL mode that read blocks no writer either.
    std::int64_t step_for_ms = 2000;
};

/// @brief Copies the SQLite database `source` to `destination` with SQLite's online backup
///        (`sqlite3_backup_step`, in steps of `pages_per_step`), as of one committed state.
///
/// The copy is written to `destination` + ".tmp" (a stale one is replaced), checked with
/// `PRAGMA quick_check`, synced, then renamed to `destination`: an interrupted backup never
/// leaves a partial file under the destination's name. Without `overwrite` an existing
/// `destination` is refused, checked before the copy and again by the rename (which does not
/// replace a file that appeared meanwhile). `source` is opened read-only and never created.
/// @throws backup_error
backup_summary backup_sqlite(const std::filesystem::path& source,
                             const std::filesystem::path& destination,
                             const backup_options& options = {});

} // namespace schedule
