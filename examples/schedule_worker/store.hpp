/// @file store.hpp
/// @brief Where schedules are kept: the operations every store offers (SQLite in the data
///        folder, sqlite_store.hpp; PostgreSQL shared by many instances, postgres_store.hpp),
///        and open_store(), which picks one by its `--database` URL.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "database_url.hpp"
#include "schedule.hpp"

namespace schedule {

/// @brief A database failure (cannot open or connect, busy past the timeout, disk full, the
///        connection lost): an internal error. The message starts with "database: ".
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

/// @brief The schedules of one service. Every store gives the same answers: ids 1, 2, 3, ...
///        in the order imports commit, each import all or nothing. Not thread-safe: one store
///        per thread.
class store {
  public:
    store() = default;
    virtual ~store() = default;
    store(const store&) = delete;
    store& operator=(const store&) = delete;
    store(store&&) = delete;
    store& operator=(store&&) = delete;

    /// @brief Stores a validated schedule (items sorted, not overlapping) in one transaction;
    ///        sets its id and created_at.
    /// @throws database_error
    void insert(schedule& stored) { insert(std::span<schedule>(&stored, 1)); }

    /// @brief Stores validated schedules in one transaction (all of them or none), in order;
    ///        sets their ids and created_at.
    /// @throws database_error
    virtual void insert(std::span<schedule> stored) = 0;

    /// @brief The schedule `id`, items sorted by start.
    /// @throws not_found_error, database_error
    [[nodiscard]] virtual schedule find(std::int64_t id) = 0;

    /// @brief Every schedule's summary, in id order.
    /// @throws database_error
    [[nodiscard]] virtual std::vector<schedule_summary> list() = 0;

    /// @brief A value that changes whenever the schedules may have changed, through this store
    ///        or any other process or instance. Equal values mean an answer computed from the
    ///        data is still right.
    /// @throws database_error
    [[nodiscard]] virtual std::pair<std::int64_t, std::int64_t> version() = 0;

    /// @brief Every schedule with its items, in id order (one consistent snapshot).
    /// @throws database_error
    [[nodiscard]] virtual std::vector<schedule> all() = 0;

    /// @brief Whether this connection can only read although the store may be writable again:
    ///        SQLite opened read-only (a read-only file system or file) stays so until it is
    ///        opened anew. The service then opens a new store for the next request.
    [[nodiscard]] virtual bool read_only() const noexcept { return false; }
};

/// @brief True when this program was built with PostgreSQL support (libpq's header found).
[[nodiscard]] bool postgresql_available() noexcept;

/// @brief The store `location` names. SQLite is opened and migrated here; PostgreSQL connects
///        (and migrates) on its first operation.
/// @throws database_error (SQLite cannot be opened; PostgreSQL support not built in)
[[nodiscard]] std::unique_ptr<store> open_store(const database_location& location);

} // namespace schedule
