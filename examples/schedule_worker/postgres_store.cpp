#include "postgres_store.hpp"

#include <libpq-fe.h>

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <ctime>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "errors.hpp"

namespace schedule {

namespace {

// --- libpq, loaded on first use ---------------------------------------------------------------
// Linking libpq would make every start of the worker load it and its two dozen libraries
// (Kerberos, LDAP, OpenSSL, ...): about 8 ms here, eight times the whole start of a worker on
// SQLite. So it is opened with dlopen() by the first PostgreSQL connection only.

#define SCHEDULE_LIBPQ_FUNCTIONS(X)                                                                \
    X(PQconnectdbParams)                                                                           \
    X(PQstatus)                                                                                    \
    X(PQerrorMessage)                                                                              \
    X(PQfinish)                                                                                    \
    X(PQsetNoticeProcessor)                                                                        \
    X(PQexec)                                                                                      \
    X(PQexecParams)                                                                                \
    X(PQresultStatus)                                                                              \
    X(PQresultErrorField)                                                                          \
    X(PQclear)                                                                                     \
    X(PQntuples)                                                                                   \
    X(PQgetvalue)                                                                                  \
    X(PQgetlength)                                                                                 \
    X(PQgetisnull)                                                                                 \
    X(PQputCopyData)                                                                               \
    X(PQputCopyEnd)                                                                                \
    X(PQgetResult)

struct libpq_api {
#define SCHEDULE_LIBPQ_POINTER(name) decltype(&::name) name = nullptr;
    SCHEDULE_LIBPQ_FUNCTIONS(SCHEDULE_LIBPQ_POINTER)
#undef SCHEDULE_LIBPQ_POINTER
};

const libpq_api& libpq() {
    static const libpq_api loaded = [] {
        // Opened once, never closed: the process keeps it to its end.
        void* library = ::dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
        if (library == nullptr) {
            const char* why = ::dlerror();
            throw database_error(std::string("database: PostgreSQL needs libpq (Debian: libpq5), "
                                             "which cannot be loaded: ") +
                                 (why != nullptr ? why : "dlopen failed"));
        }
        libpq_api api;
#define SCHEDULE_LIBPQ_LOAD(name)                                                                  \
    api.name = std::bit_cast<decltype(api.name)>(::dlsym(library, #name));                         \
    if (api.name == nullptr) {                                                                     \
        throw database_error("database: libpq.so.5 has no " #name);                                \
    }
        SCHEDULE_LIBPQ_FUNCTIONS(SCHEDULE_LIBPQ_LOAD)
#undef SCHEDULE_LIBPQ_LOAD
        return api;
    }();
    return loaded;
}

// --- schema -----------------------------------------------------------------------------------

/// The schema as SQLite's (sqlite_store.cpp), in PostgreSQL's types. Migration n (1-based)
/// brings the schema from version n-1 to n. Append, never edit.
constexpr std::array<const char*, 1> migrations{
    // 1: schedules with their summary columns, and their items.
    "CREATE TABLE schedules ("
    "  id BIGINT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  channel TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  item_count BIGINT NOT NULL,"
    "  first_start BIGINT NOT NULL,"
    "  first_offset INTEGER NOT NULL,"
    "  last_end BIGINT NOT NULL,"
    "  last_offset INTEGER NOT NULL"
    ");"
    "CREATE TABLE schedule_items ("
    "  schedule_id BIGINT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,"
    "  position INTEGER NOT NULL,"
    "  title TEXT NOT NULL,"
    "  url TEXT,"
    "  start BIGINT NOT NULL,"
    "  utc_offset INTEGER NOT NULL,"
    "  duration BIGINT NOT NULL,"
    "  PRIMARY KEY (schedule_id, position)"
    ");",
};

/// The advisory lock the migration holds ("schedule" in ASCII): one migration at a time per
/// database.
constexpr std::string_view migration_lock = "SELECT pg_advisory_xact_lock(126879179634789)";

/// The one row of store state: the schema version, and the data version every import bumps.
constexpr std::string_view state_table =
    "CREATE TABLE IF NOT EXISTS schedule_store ("
    "  singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),"
    "  schema_version INTEGER NOT NULL,"
    "  data_version BIGINT NOT NULL"
    ")";

/// libpq's message on one line, without its trailing newline.
std::string one_line(const char* message) {
    std::string text = message != nullptr ? message : "";
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
        text.pop_back();
    }
    std::string out;
    out.reserve(text.size());
    for (const char letter : text) {
        const bool space = letter == '\n' || letter == '\t';
        if (!space) {
            out.push_back(letter);
        } else if (!out.empty() && out.back() != ' ') {
            out.push_back(' ');
        }
    }
    return out;
}

std::int64_t to_integer(std::string_view text) {
    std::int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size()) {
        throw database_error("database: not an integer: '" + std::string(text) + "'");
    }
    return value;
}

/// Appends `text` as one field of COPY's text format.
void append_copy_text(std::string& out, std::string_view text) {
    for (const char letter : text) {
        switch (letter) {
        case '\\':
            out += "\\\\";
            break;
        case '\t':
            out += "\\t";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        default:
            out.push_back(letter);
        }
    }
}

/// Appends the fields of one COPY row, tab-separated, then the newline.
template <class... Fields>
void append_copy_row(std::string& out, const Fields&... fields) {
    bool first = true;
    const auto field = [&](const auto& value) {
        if (!first) {
            out.push_back('\t');
        }
        first = false;
        using type = std::decay_t<decltype(value)>;
        if constexpr (std::is_integral_v<type>) {
            out += std::to_string(value);
        } else if constexpr (std::is_same_v<type, std::optional<std::string_view>>) {
            if (value) {
                append_copy_text(out, *value);
            } else {
                out += "\\N";
            }
        } else {
            append_copy_text(out, std::string_view(value));
        }
    };
    (field(fields), ...);
    out.push_back('\n');
}

/// A result, cleared on destruction.
class result {
  public:
    explicit result(PGresult* handle) noexcept : handle_(handle) {}
    ~result() {
        if (handle_ != nullptr) {
            libpq().PQclear(handle_);
        }
    }
    result(const result&) = delete;
    result& operator=(const result&) = delete;
    result(result&&) = delete;
    result& operator=(result&&) = delete;

    [[nodiscard]] PGresult* handle() const noexcept { return handle_; }
    [[nodiscard]] int rows() const { return libpq().PQntuples(handle_); }
    [[nodiscard]] std::string_view view(int row, int column) const {
        return {libpq().PQgetvalue(handle_, row, column),
                static_cast<std::size_t>(libpq().PQgetlength(handle_, row, column))};
    }
    [[nodiscard]] std::string text(int row, int column) const {
        return std::string(view(row, column)); // NULL reads as "", as in SQLite
    }
    [[nodiscard]] std::int64_t integer(int row, int column) const {
        return to_integer(view(row, column));
    }
    [[nodiscard]] std::int32_t integer32(int row, int column) const {
        return static_cast<std::int32_t>(integer(row, column));
    }

  private:
    PGresult* handle_;
};

} // namespace

// --- session: the statements of one operation on the open connection -------------------------

class postgres_store::session {
  public:
    session(pg_conn* connection, int& succeeded) : connection_(connection), succeeded_(succeeded) {}

    /// Runs `sql` (no parameters; several statements allowed), expecting no rows.
    void execute(std::string_view sql) {
        result done(libpq().PQexec(connection_, std::string(sql).c_str()));
        check(done, PGRES_COMMAND_OK, sql);
    }

    /// Runs `sql` with text parameters, expecting rows.
    std::unique_ptr<result> query(std::string_view sql,
                                  std::initializer_list<std::string> parameters = {}) {
        std::vector<const char*> values;
        values.reserve(parameters.size());
        for (const std::string& parameter : parameters) {
            values.push_back(parameter.c_str());
        }
        auto rows = std::make_unique<result>(libpq().PQexecParams(
            connection_, std::string(sql).c_str(), static_cast<int>(values.size()), nullptr,
            values.data(), nullptr, nullptr, 0));
        check(*rows, PGRES_TUPLES_OK, sql);
        return rows;
    }

    /// `COPY ... FROM STDIN` of `data`, rows in COPY's text format.
    void copy_in(std::string_view sql, std::string_view data) {
        {
            result started(libpq().PQexec(connection_, std::string(sql).c_str()));
            check(started, PGRES_COPY_IN, sql);
        }
        constexpr std::size_t chunk = std::size_t{1} << 20;
        for (std::size_t offset = 0; offset < data.size(); offset += chunk) {
            const std::size_t size = std::min(chunk, data.size() - offset);
            if (libpq().PQputCopyData(connection_, data.data() + offset, static_cast<int>(size)) !=
                1) {
                fail("cannot send the rows of '" + std::string(sql) + "'");
            }
        }
        if (libpq().PQputCopyEnd(connection_, nullptr) != 1) {
            fail("cannot end '" + std::string(sql) + "'");
        }
        result ended(libpq().PQgetResult(connection_));
        // Drain: a COPY has one result, then none.
        while (PGresult* extra = libpq().PQgetResult(connection_)) {
            libpq().PQclear(extra);
        }
        check(ended, PGRES_COMMAND_OK, sql);
    }

    /// Opens a transaction (`begin`), rolled back on destruction unless committed.
    class transaction {
      public:
        transaction(session& on, std::string_view begin) : on_(on) { on_.execute(begin); }
        ~transaction() {
            if (!committed_ && libpq().PQstatus(on_.connection_) == CONNECTION_OK) {
                result ignored(libpq().PQexec(on_.connection_, "ROLLBACK"));
            }
        }
        transaction(const transaction&) = delete;
        transaction& operator=(const transaction&) = delete;
        transaction(transaction&&) = delete;
        transaction& operator=(transaction&&) = delete;

        void commit() {
            on_.execute("COMMIT");
            committed_ = true;
        }

      private:
        session& on_;
        bool committed_ = false;
    };

    [[noreturn]] void fail(const std::string& what) const {
        throw database_error("database: " + what + ": " +
                             one_line(libpq().PQerrorMessage(connection_)));
    }

  private:
    void check(const result& done, ExecStatusType expected, std::string_view sql) {
        if (done.handle() == nullptr) {
            fail("cannot run '" + std::string(sql) + "'");
        }
        if (libpq().PQresultStatus(done.handle()) != expected) {
            fail("cannot run '" + std::string(sql.substr(0, 60)) +
                 (sql.size() > 60 ? "...'" : "'"));
        }
        ++succeeded_;
    }

    pg_conn* connection_;
    int& succeeded_;
};

// --- the store --------------------------------------------------------------------------------

postgres_store::postgres_store(database_location location)
    : location_(std::move(location)), described_(describe(location_)) {}

postgres_store::~postgres_store() {
    disconnect();
}

void postgres_store::disconnect() noexcept {
    if (connection_ != nullptr) {
        libpq().PQfinish(connection_);
        connection_ = nullptr;
    }
}

void postgres_store::connect() {
    const libpq_api& api = libpq();
    // Defaults first: what the URL says (expanded from dbname) overrides them.
    constexpr std::array<const char*, 11> keywords{"connect_timeout",
                                                   "keepalives",
                                                   "keepalives_idle",
                                                   "keepalives_interval",
                                                   "keepalives_count",
                                                   "tcp_user_timeout",
                                                   "application_name",
                                                   "client_encoding",
                                                   "options",
                                                   "dbname",
                                                   nullptr};
    const std::array<const char*, 11> values{"5",
                                             "1",
                                             "10",
                                             "5",
                                             "3",
                                             "10000",
                                             "schedule_worker",
                                             "UTF8",
                                             "-c statement_timeout=30000",
                                             location_.url.c_str(),
                                             nullptr};
    connection_ = api.PQconnectdbParams(keywords.data(), values.data(), 1);
    if (connection_ == nullptr) {
        throw database_error("database: cannot connect to " + described_ + ": out of memory");
    }
    if (api.PQstatus(connection_) != CONNECTION_OK) {
        const std::string why = one_line(api.PQerrorMessage(connection_));
        disconnect();
        throw database_error("database: cannot connect to " + described_ + ": " + why);
    }
    // NOTICEs (such as "relation already exists, skipping") are not the caller's business.
    api.PQsetNoticeProcessor(
        connection_, [](void*, const char*) {}, nullptr);

    // The common case, an up-to-date schema, costs one query.
    session on(connection_, succeeded_);
    const auto latest = static_cast<std::int64_t>(migrations.size());
    {
        result current(api.PQexec(connection_, "SELECT schema_version FROM schedule_store"));
        if (current.handle() != nullptr &&
            api.PQresultStatus(current.handle()) == PGRES_TUPLES_OK && current.rows() == 1 &&
            current.integer(0, 0) == latest) {
            return;
        }
    }
    session::transaction migration(on, "BEGIN");
    (void)on.query(migration_lock);
    on.execute(state_table);
    // Another instance may have migrated while this one waited for the lock.
    const auto state = on.query("SELECT schema_version FROM schedule_store");
    std::int64_t version = state->rows() == 1 ? state->integer(0, 0) : 0;
    if (version > latest) {
        throw database_error("database: " + described_ + ": schema version " +
                             std::to_string(version) + " is newer than this program knows (" +
                             std::to_string(latest) +
                             "): it was upgraded by a newer schedule_worker, and schemas are "
                             "never downgraded; run the newer program, or restore a backup "
                             "taken before the upgrade");
    }
    for (; version < latest; ++version) {
        on.execute(migrations[static_cast<std::size_t>(version)]);
    }
    on.execute(state->rows() == 1
                   ? "UPDATE schedule_store SET schema_version = " + std::to_string(latest)
                   : "INSERT INTO schedule_store (schema_version, data_version) VALUES (" +
                         std::to_string(latest) + ", 0)");
    migration.commit();
}

template <class Work>
auto postgres_store::with_session(Work work) -> decltype(work(std::declval<session&>())) {
    for (int attempt = 0;; ++attempt) {
        bool reused = connection_ != nullptr;
        if (connection_ != nullptr && libpq().PQstatus(connection_) != CONNECTION_OK) {
            disconnect();
            reused = false;
        }
        if (connection_ == nullptr) {
            const auto now = std::chrono::steady_clock::now();
            if (now < next_attempt_) {
                const auto wait =
                    std::chrono::duration_cast<std::chrono::milliseconds>(next_attempt_ - now);
                throw database_error(last_failure_ + " (next connection attempt in " +
                                     std::to_string(wait.count()) + " ms)");
            }
            try {
                connect();
                backoff_ = std::chrono::milliseconds(0);
            } catch (const database_error& failure) {
                disconnect();
                last_failure_ = failure.what();
                backoff_ = std::clamp(backoff_ * 2, std::chrono::milliseconds(100),
                                      std::chrono::milliseconds(2000));
                next_attempt_ = std::chrono::steady_clock::now() + backoff_;
                throw;
            }
        }
        succeeded_ = 0;
        session on(connection_, succeeded_);
        try {
            return work(on);
        } catch (const database_error&) {
            if (libpq().PQstatus(connection_) == CONNECTION_OK) {
                throw;
            }
            // The connection is gone. If it had been open before this operation and nothing
            // of the operation ran, the server dropped it in between (a restart): once more on
            // a new connection.
            disconnect();
            if (!reused || succeeded_ != 0 || attempt != 0) {
                throw;
            }
        }
    }
}

void postgres_store::insert(std::span<schedule> stored) {
    const auto created_at = static_cast<std::int64_t>(std::time(nullptr));
    const std::int64_t first_id = with_session([&](session& on) {
        session::transaction write(on, "BEGIN");
        // The row lock queues concurrent imports until this one commits; the next statement's
        // snapshot, taken after the lock, sees every import committed before.
        on.execute("UPDATE schedule_store SET data_version = data_version + 1");
        const std::int64_t first =
            on.query("SELECT coalesce(max(id), 0) + 1 FROM schedules")->integer(0, 0);
        std::string schedule_rows;
        std::string item_rows;
        std::int64_t id = first;
        for (const schedule& one : stored) {
            const schedule_item& head = one.items.front();
            const schedule_item& tail = one.items.back();
            append_copy_row(schedule_rows, id, one.name, one.channel, created_at,
                            static_cast<std::int64_t>(one.items.size()), head.start,
                            head.utc_offset, tail.end(), tail.utc_offset);
            std::int64_t position = 0;
            for (const schedule_item& item : one.items) {
                const std::optional<std::string_view> url =
                    item.url.empty() ? std::nullopt : std::optional<std::string_view>(item.url);
                append_copy_row(item_rows, id, position++, item.title, url, item.start,
                                item.utc_offset, item.duration);
            }
            ++id;
        }
        on.copy_in("COPY schedules (id, name, channel, created_at, item_count, first_start, "
                   "first_offset, last_end, last_offset) FROM STDIN",
                   schedule_rows);
        on.copy_in("COPY schedule_items (schedule_id, position, title, url, start, utc_offset, "
                   "duration) FROM STDIN",
                   item_rows);
        write.commit();
        return first;
    });
    // Only a committed schedule has an id.
    for (std::size_t index = 0; index < stored.size(); ++index) {
        stored[index].id = first_id + static_cast<std::int64_t>(index);
        stored[index].created_at = created_at;
    }
}

schedule postgres_store::find(std::int64_t id) {
    return with_session([&](session& on) {
        // No transaction: a schedule and its items are committed together and never change, so
        // once its row is seen, all its items are.
        const std::string key = std::to_string(id);
        const auto row =
            on.query("SELECT name, channel, created_at FROM schedules WHERE id = $1", {key});
        if (row->rows() == 0) {
            throw not_found_error("no schedule with id " + key);
        }
        schedule found;
        found.id = id;
        found.name = row->text(0, 0);
        found.channel = row->text(0, 1);
        found.created_at = row->integer(0, 2);
        const auto items = on.query("SELECT title, url, start, utc_offset, duration FROM "
                                    "schedule_items WHERE schedule_id = $1 ORDER BY position",
                                    {key});
        found.items.reserve(static_cast<std::size_t>(items->rows()));
        for (int index = 0; index < items->rows(); ++index) {
            found.items.push_back({items->text(index, 0), items->text(index, 1),
                                   items->integer(index, 2), items->integer32(index, 3),
                                   items->integer(index, 4)});
        }
        return found;
    });
}

std::pair<std::int64_t, std::int64_t> postgres_store::version() {
    return with_session([](session& on) {
        const auto row = on.query("SELECT data_version FROM schedule_store");
        return std::pair<std::int64_t, std::int64_t>{row->rows() == 1 ? row->integer(0, 0) : 0, 0};
    });
}

std::vector<schedule_summary> postgres_store::list() {
    return with_session([](session& on) {
        const auto rows =
            on.query("SELECT id, name, channel, item_count, first_start, "
                     "first_offset, last_end, last_offset FROM schedules ORDER BY id");
        std::vector<schedule_summary> summaries;
        summaries.reserve(static_cast<std::size_t>(rows->rows()));
        for (int row = 0; row < rows->rows(); ++row) {
            summaries.push_back({rows->integer(row, 0), rows->text(row, 1), rows->text(row, 2),
                                 rows->integer(row, 3), rows->integer(row, 4),
                                 rows->integer32(row, 5), rows->integer(row, 6),
                                 rows->integer32(row, 7)});
        }
        return summaries;
    });
}

std::vector<schedule> postgres_store::all() {
    return with_session([](session& on) {
        session::transaction read(on, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        std::vector<schedule> schedules;
        {
            const auto rows =
                on.query("SELECT id, name, channel, created_at FROM schedules ORDER BY id");
            schedules.reserve(static_cast<std::size_t>(rows->rows()));
            for (int row = 0; row < rows->rows(); ++row) {
                schedule found;
                found.id = rows->integer(row, 0);
                found.name = rows->text(row, 1);
                found.channel = rows->text(row, 2);
                found.created_at = rows->integer(row, 3);
                schedules.push_back(std::move(found));
            }
        }
        const auto items = on.query("SELECT schedule_id, title, url, start, utc_offset, duration "
                                    "FROM schedule_items ORDER BY schedule_id, position");
        std::size_t current = 0;
        for (int row = 0; row < items->rows(); ++row) {
            const std::int64_t schedule_id = items->integer(row, 0);
            while (current < schedules.size() && schedules[current].id < schedule_id) {
                ++current;
            }
            if (current == schedules.size() || schedules[current].id != schedule_id) {
                continue; // cannot happen with the foreign key; skip rather than misattribute
            }
            schedules[current].items.push_back({items->text(row, 1), items->text(row, 2),
                                                items->integer(row, 3), items->integer32(row, 4),
                                                items->integer(row, 5)});
        }
        read.commit();
        return schedules;
    });
}

} // namespace schedule
