/// @file postgres_store.hpp
/// @brief Schedules in PostgreSQL, shared by every worker and server given the same URL.
#pragma once

#include <chrono>
#include <string>

#include "store.hpp"

struct pg_conn;

namespace schedule {

/// @brief The schedules in a PostgreSQL database, through libpq (loaded when the first
///        postgres_store connects, so that a worker on SQLite never pays for loading it).
///
/// Connects on the first operation, then keeps the connection. The schema version is a row of
/// `schedule_store`; missing migrations are applied in one transaction that holds a
/// transaction-level advisory lock, so instances starting at once on a new database migrate
/// once. Each import is one transaction that first bumps `schedule_store.data_version` (the
/// version() every instance's cached listing compares, and the row lock that queues imports,
/// so ids are given in commit order with no gaps, as SQLite gives them).
///
/// A dropped connection is reconnected by the next operation; after a failed attempt the next
/// one waits a back-off (100 ms, doubling to 2 s), and operations in between fail at once with
/// the last failure. An operation whose very first statement finds a stale connection (the
/// server restarted) reconnects and runs again once. libpq's connect_timeout (5 s), TCP
/// keepalives, tcp_user_timeout (10 s) and statement_timeout (30 s) are the defaults a URL may
/// override, so no operation hangs.
class postgres_store final : public store {
  public:
    /// @brief Connects on first use, not here.
    explicit postgres_store(database_location location);
    ~postgres_store() override;

    using store::insert;
    void insert(std::span<schedule> stored) override;
    [[nodiscard]] schedule find(std::int64_t id) override;
    [[nodiscard]] std::vector<schedule_summary> list() override;
    /// `schedule_store.data_version`, bumped by every import.
    [[nodiscard]] std::pair<std::int64_t, std::int64_t> version() override;
    [[nodiscard]] std::vector<schedule> all() override;

  private:
    class session;

    /// Runs `work` on a connected session (see the class comment for reconnection).
    template <class Work>
    auto with_session(Work work) -> decltype(work(std::declval<session&>()));
    void connect();
    void disconnect() noexcept;

    database_location location_;
    std::string described_;
    pg_conn* connection_ = nullptr;
    /// Statements that succeeded in the current operation: a stale connection is retried only
    /// when none did.
    int succeeded_ = 0;
    std::chrono::steady_clock::time_point next_attempt_{};
    std::chrono::milliseconds backoff_{0};
    std::string last_failure_;
};

} // namespace schedule
