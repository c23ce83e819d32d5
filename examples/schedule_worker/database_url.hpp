/// @file database_url.hpp
/// @brief Where the schedules are kept, as the `--database` flag and `SCHEDULE_DATABASE` name
///        it: `sqlite:FILE` or `postgresql://[user[:password]@]host[:port]/dbname[?param=...]`.
///        The description shown to people never includes the user or the password.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace schedule {

/// @brief A `--database` value that is neither `sqlite:FILE` nor a PostgreSQL URL.
struct database_url_error : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

/// @brief A parsed `--database` value.
struct database_location {
    enum class kind { sqlite, postgresql };
    kind store = kind::sqlite;
    std::string url;         ///< as given (may hold a password: never print it)
    std::string sqlite_file; ///< sqlite: the database file
    std::string host;        ///< postgresql: as the URL gives it; empty: libpq's default
    std::string port;        ///< postgresql: as the URL gives it; empty: libpq's default (5432)
    std::string database;    ///< postgresql: as the URL gives it; empty: libpq's default
};

/// @brief Parses `url`; the schemes are `sqlite:` and `postgresql://` (or `postgres://`).
/// @throws database_url_error, whose message does not repeat the URL (it may hold a password)
[[nodiscard]] database_location parse_database_url(std::string_view url);

/// @brief `sqlite:FILE` or `postgresql://host:port/dbname`: without user or password, for logs,
///        error messages and /api/system-info.
[[nodiscard]] std::string describe(const database_location& location);

/// @brief The name of the store: "sqlite" or "postgresql".
[[nodiscard]] std::string_view kind_name(database_location::kind store) noexcept;

} // namespace schedule
