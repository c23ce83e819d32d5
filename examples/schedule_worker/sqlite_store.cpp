#include "sqlite_store.hpp"

#include <sqlite3.h>

#include <array>
#include <chrono>
#include <ctime>
#include <string_view>
#include <thread>

#include "errors.hpp"

namespace schedule {

namespace {

/// Migration n (1-based) brings the schema from version n-1 to n. Append, never edit.
constexpr std::array<const char*, 1> migrations{
    // 1: schedules with their summary columns, and their items.
    "CREATE TABLE schedules ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  channel TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  item_count INTEGER NOT NULL,"
    "  first_start INTEGER NOT NULL,"
    "  first_offset INTEGER NOT NULL,"
    "  last_end INTEGER NOT NULL,"
    "  last_offset INTEGER NOT NULL"
    ");"
    "CREATE TABLE schedule_items ("
    "  schedule_id INTEGER NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,"
    "  position INTEGER NOT NULL,"
    "  title TEXT NOT NULL,"
    "  url TEXT,"
    "  start INTEGER NOT NULL,"
    "  utc_offset INTEGER NOT NULL,"
    "  duration INTEGER NOT NULL,"
    "  PRIMARY KEY (schedule_id, position)"
    ") WITHOUT ROWID;",
};

[[noreturn]] void fail(sqlite3* database, const std::string& what) {
    throw database_error("database: " + what + ": " +
                             (database != nullptr ? sqlite3_errmsg(database) : "out of memory"),
                         database != nullptr ? sqlite3_extended_errcode(database) & 0xFF
                                             : SQLITE_NOMEM);
}

/// A prepared statement, finalized on destruction.
class statement {
  public:
    statement(sqlite3* database, std::string_view sql) : database_(database) {
        if (sqlite3_prepare_v2(database, sql.data(), static_cast<int>(sql.size()), &handle_,
                               nullptr) != SQLITE_OK) {
            fail(database, "cannot prepare '" + std::string(sql) + "'");
        }
    }
    ~statement() { sqlite3_finalize(handle_); }
    statement(const statement&) = delete;
    statement& operator=(const statement&) = delete;
    statement(statement&&) = delete;
    statement& operator=(statement&&) = delete;

    void bind(int index, std::int64_t value) { check(sqlite3_bind_int64(handle_, index, value)); }
    void bind(int index, std::string_view text) {
        // SQLITE_STATIC: the text outlives the step that reads it.
        check(sqlite3_bind_text(handle_, index, text.data(), static_cast<int>(text.size()),
                                SQLITE_STATIC));
    }
    void bind_null(int index) { check(sqlite3_bind_null(handle_, index)); }

    /// Steps once: true if a row is ready, false when done.
    bool step() {
        const int result = sqlite3_step(handle_);
        if (result == SQLITE_ROW) {
            return true;
        }
        if (result == SQLITE_DONE) {
            return false;
        }
        fail(database_, "cannot run '" + std::string(sqlite3_sql(handle_)) + "'");
    }
    void reset() {
        sqlite3_reset(handle_);
        sqlite3_clear_bindings(handle_);
    }

    [[nodiscard]] std::int64_t integer(int column) const {
        return sqlite3_column_int64(handle_, column);
    }
    [[nodiscard]] std::int32_t integer32(int column) const {
        return sqlite3_column_int(handle_, column);
    }
    [[nodiscard]] std::string text(int column) const {
        const auto* bytes = sqlite3_column_text(handle_, column);
        const int size = sqlite3_column_bytes(handle_, column);
        return bytes == nullptr ? std::string()
                                : std::string(reinterpret_cast<const char*>(bytes),
                                              static_cast<std::size_t>(size));
    }

  private:
    void check(int result) {
        if (result != SQLITE_OK) {
            fail(database_, "cannot bind a value");
        }
    }

    sqlite3* database_;
    sqlite3_stmt* handle_ = nullptr;
};

/// Rolls back a transaction that was not committed (an exception left the scope).
class transaction {
  public:
    transaction(sqlite3* database, const char* begin) : database_(database) {
        if (sqlite3_exec(database, begin, nullptr, nullptr, nullptr) != SQLITE_OK) {
            fail(database, std::string("cannot start a transaction (") + begin + ")");
        }
    }
    ~transaction() {
        if (!committed_) {
            sqlite3_exec(database_, "ROLLBACK", nullptr, nullptr, nullptr);
        }
    }
    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;
    transaction(transaction&&) = delete;
    transaction& operator=(transaction&&) = delete;

    void commit() {
        if (sqlite3_exec(database_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
            fail(database_, "cannot commit");
        }
        committed_ = true;
    }

  private:
    sqlite3* database_;
    bool committed_ = false;
};

std::int64_t user_version(sqlite3* database) {
    statement query(database, "PRAGMA user_version");
    return query.step() ? query.integer(0) : 0;
}

/// Migrations only go forward: a database a newer schedule_worker migrated is refused, not
/// read or written with a schema this program does not know.
void refuse_newer(sqlite3* database, std::int64_t version, std::int64_t latest) {
    if (version > latest) {
        throw database_error("database: " + std::string(sqlite3_db_filename(database, "main")) +
                             ": schema version " + std::to_string(version) +
                             " is newer than this program knows (" + std::to_string(latest) +
                             "): it was upgraded by a newer schedule_worker, and schemas are "
                             "never downgraded; run the newer program, or restore a backup "
                             "taken before the upgrade");
    }
}

/// How long a statement waits for another process's lock.
constexpr int busy_timeout_ms = 5000;

/// Runs `step` again while SQLite reports the database busy or locked, for up to the busy
/// timeout: for the statements that fail at once instead of waiting (changing the journal mode,
/// reading the schema of a database another process is creating).
template <class Step>
auto retrying_while_busy(Step step) -> decltype(step()) {
    const auto give_up =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_timeout_ms);
    for (;;) {
        try {
            return step();
        } catch (const database_error& error) {
            const bool busy =
                error.sqlite_code == SQLITE_BUSY || error.sqlite_code == SQLITE_LOCKED;
            if (!busy || std::chrono::steady_clock::now() >= give_up) {
                throw;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }
}

} // namespace

sqlite_store::sqlite_store(const std::filesystem::path& database_file) {
    const int opened =
        sqlite3_open_v2(database_file.c_str(), &database_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (opened != SQLITE_OK) {
        const std::string message =
            "database: cannot open " + database_file.string() + ": " +
            (database_ != nullptr ? sqlite3_errmsg(database_) : sqlite3_errstr(opened));
        sqlite3_close(database_);
        database_ = nullptr;
        throw database_error(message);
    }
    try {
        sqlite3_extended_result_codes(database_, 1);
        sqlite3_busy_timeout(database_, busy_timeout_ms);
        execute("PRAGMA foreign_keys = ON");
        migrate();
    } catch (...) {
        sqlite3_close(database_);
        database_ = nullptr;
        throw;
    }
}

bool sqlite_store::read_only() const noexcept {
    return sqlite3_db_readonly(database_, "main") == 1;
}

sqlite_store::~sqlite_store() {
    sqlite3_close(database_);
}

void sqlite_store::execute(const char* sql) {
    if (sqlite3_exec(database_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
        fail(database_, std::string("cannot run '") + sql + "'");
    }
}

void sqlite_store::migrate() {
    const auto latest = static_cast<std::int64_t>(migrations.size());
    // The common case, an up-to-date database, costs one read of the header page.
    const std::int64_t found = retrying_while_busy([this] { return user_version(database_); });
    refuse_newer(database_, found, latest);
    if (found == latest) {
        return;
    }
    // WAL mode is persistent in the file and cannot be switched inside a transaction. Switching
    // answers SQLITE_BUSY at once, without the busy timeout, while another process starting on
    // the same new folder holds the file: retried like the timeout would.
    retrying_while_busy([this] {
        execute("PRAGMA journal_mode = WAL");
        return 0;
    });
    transaction migration(database_, "BEGIN IMMEDIATE");
    // Another process may have migrated while this one waited for the lock.
    std::int64_t version = user_version(database_);
    refuse_newer(database_, version, latest);
    for (; version < latest; ++version) {
        execute(migrations[static_cast<std::size_t>(version)]);
    }
    execute(("PRAGMA user_version = " + std::to_string(latest)).c_str());
    migration.commit();
}

void sqlite_store::insert(std::span<schedule> stored) {
    transaction write(database_, "BEGIN IMMEDIATE");
    const auto created_at = static_cast<std::int64_t>(std::time(nullptr));
    statement schedule_row(database_,
                           "INSERT INTO schedules (name, channel, created_at, item_count, "
                           "first_start, first_offset, last_end, last_offset) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    statement item_row(database_,
                       "INSERT INTO schedule_items (schedule_id, position, title, url, start, "
                       "utc_offset, duration) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    std::vector<std::int64_t> ids;
    ids.reserve(stored.size());
    for (const schedule& one : stored) {
        const schedule_item& first = one.items.front();
        const schedule_item& last = one.items.back();
        schedule_row.bind(1, one.name);
        schedule_row.bind(2, one.channel);
        schedule_row.bind(3, created_at);
        schedule_row.bind(4, static_cast<std::int64_t>(one.items.size()));
        schedule_row.bind(5, first.start);
        schedule_row.bind(6, std::int64_t{first.utc_offset});
        schedule_row.bind(7, last.end());
        schedule_row.bind(8, std::int64_t{last.utc_offset});
        schedule_row.step();
        schedule_row.reset();
        const std::int64_t id = sqlite3_last_insert_rowid(database_);
        ids.push_back(id);

        std::int64_t position = 0;
        for (const schedule_item& item : one.items) {
            item_row.bind(1, id);
            item_row.bind(2, position++);
            item_row.bind(3, item.title);
            if (item.url.empty()) {
                item_row.bind_null(4);
            } else {
                item_row.bind(4, item.url);
            }
            item_row.bind(5, item.start);
            item_row.bind(6, std::int64_t{item.utc_offset});
            item_row.bind(7, item.duration);
            item_row.step();
            item_row.reset();
        }
    }
    write.commit();
    // Only a committed schedule has an id.
    for (std::size_t index = 0; index < stored.size(); ++index) {
        stored[index].id = ids[index];
        stored[index].created_at = created_at;
    }
}

schedule sqlite_store::find(std::int64_t id) {
    // A read transaction: the schedule row and its items come from the same snapshot.
    transaction read(database_, "BEGIN");
    statement schedule_row(database_,
                           "SELECT name, channel, created_at FROM schedules WHERE id = ?1");
    schedule_row.bind(1, id);
    if (!schedule_row.step()) {
        throw not_found_error("no schedule with id " + std::to_string(id));
    }
    schedule found;
    found.id = id;
    found.name = schedule_row.text(0);
    found.channel = schedule_row.text(1);
    found.created_at = schedule_row.integer(2);
    statement item_rows(database_,
                        "SELECT title, url, start, utc_offset, duration FROM schedule_items "
                        "WHERE schedule_id = ?1 ORDER BY position");
    item_rows.bind(1, id);
    while (item_rows.step()) {
        found.items.push_back({item_rows.text(0), item_rows.text(1), item_rows.integer(2),
                               item_rows.integer32(3), item_rows.integer(4)});
    }
    read.commit();
    return found;
}

std::pair<std::int64_t, std::int64_t> sqlite_store::version() {
    statement pragma(database_, "PRAGMA data_version");
    const std::int64_t data_version = pragma.step() ? pragma.integer(0) : 0;
    return {data_version, sqlite3_total_changes64(database_)};
}

std::vector<schedule_summary> sqlite_store::list() {
    statement rows(database_, "SELECT id, name, channel, item_count, first_start, first_offset, "
                              "last_end, last_offset FROM schedules ORDER BY id");
    std::vector<schedule_summary> summaries;
    while (rows.step()) {
        summaries.push_back({rows.integer(0), rows.text(1), rows.text(2), rows.integer(3),
                             rows.integer(4), rows.integer32(5), rows.integer(6),
                             rows.integer32(7)});
    }
    return summaries;
}

std::vector<schedule> sqlite_store::all() {
    transaction read(database_, "BEGIN");
    std::vector<schedule> schedules;
    {
        statement rows(database_,
                       "SELECT id, name, channel, created_at FROM schedules ORDER BY id");
        while (rows.step()) {
            schedule found;
            found.id = rows.integer(0);
            found.name = rows.text(1);
            found.channel = rows.text(2);
            found.created_at = rows.integer(3);
            schedules.push_back(std::move(found));
        }
    }
    // One pass over all items in (schedule, position) order, matched against the schedules.
    statement item_rows(database_, "SELECT schedule_id, title, url, start, utc_offset, duration "
                                   "FROM schedule_items ORDER BY schedule_id, position");
    std::size_t current = 0;
    while (item_rows.step()) {
        const std::int64_t schedule_id = item_rows.integer(0);
        while (current < schedules.size() && schedules[current].id < schedule_id) {
            ++current;
        }
        if (current == schedules.size() || schedules[current].id != schedule_id) {
            continue; // cannot happen with foreign keys on; skip rather than misattribute
        }
        schedules[current].items.push_back({item_rows.text(1), item_rows.text(2),
                                            item_rows.integer(3), item_rows.integer32(4),
                                            item_rows.integer(5)});
    }
    read.commit();
    return schedules;
}

} // namespace schedule
