// schedule_worker --backup FILE (an online copy of the SQLite database) and the refusal of a
// database whose schema is newer than the program. The backup tests are SQLite's: in the pg.*
// run they pass at once, except the refusal of a PostgreSQL --database, which holds for both.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "backup.hpp"
#include "support.hpp"

using namespace sw_test;

namespace {

/// A connection of the test's own to a SQLite file, closed at the end.
class sqlite_connection {
  public:
    explicit sqlite_connection(const fs::path& file) {
        if (sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
            const std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            throw std::runtime_error("cannot open " + file.string() + ": " + message);
        }
        sqlite3_busy_timeout(db_, 5000);
    }
    sqlite_connection(const sqlite_connection&) = delete;
    sqlite_connection& operator=(const sqlite_connection&) = delete;
    ~sqlite_connection() { sqlite3_close(db_); }

    void execute(const std::string& sql) {
        if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
            throw std::runtime_error(std::string("sqlite: ") + sqlite3_errmsg(db_) + " in " + sql);
        }
    }
    [[nodiscard]] std::string text(const std::string& query) const { return sql_text(db_, query); }

  private:
    sqlite3* db_ = nullptr;
};

/// `schedule_worker --data-dir DIR` and `extra`, with nothing on stdin.
run_result run_worker_with(const fs::path& data_dir, const std::vector<std::string>& extra) {
    std::vector<std::string> command{worker_binary.string(), "--data-dir", data_dir.string()};
    command.insert(command.end(), extra.begin(), extra.end());
    return run(command, "");
}

/// Imports `count` schedules of `items` items each into the SQLite store of `data_dir`.
void import_schedules(const fs::path& data_dir, int count, std::size_t items) {
    for (int index = 0; index < count; ++index) {
        std::string name = "schedule ";
        name.append(std::to_string(index));
        const answer imported = cli(data_dir, "import-schedule", import_request(name, items));
        REQUIRE(imported.status() == "success");
    }
}

bool sqlite_run() {
    return tested_store() == store_kind::sqlite;
}

} // namespace

TEST_CASE("schedule_worker --backup copies a database in use: the copy lists and exports what the "
          "original "
          "does") {
    if (!sqlite_run()) {
        SUCCEED("SQLite only");
        return;
    }
    temp_dir dir;
    temp_dir copy_dir;
    import_schedules(dir.path(), 3, 400);
    const fs::path copy = copy_dir.path() / "schedules.db";

    // Another connection is in the middle of a write: the backup takes the committed state and
    // does not wait for it.
    sqlite_connection writer(dir.path() / "schedules.db");
    writer.execute("BEGIN IMMEDIATE");
    writer.execute("INSERT INTO schedules (name, channel, created_at, item_count, first_start, "
                   "first_offset, last_end, last_offset) VALUES ('uncommitted', 'c', 0, 0, 0, "
                   "0, 0, 0)");
    const auto started = std::chrono::steady_clock::now();
    const run_result backed_up = run_worker_with(dir.path(), {"--backup", copy.string()});
    INFO(backed_up.err);
    REQUIRE(backed_up.exit_code == 0);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(3));
    CHECK(backed_up.out.find("backed up") != std::string::npos);
    CHECK(backed_up.out.find(copy.string()) != std::string::npos);
    writer.execute("ROLLBACK");

    CHECK_FALSE(fs::exists(copy.string() + ".tmp"));
    CHECK_FALSE(fs::exists(copy.string() + ".tmp-journal"));
    {
        sqlite_connection opened(copy);
        CHECK(opened.text("PRAGMA integrity_check") == "ok");
        CHECK(opened.text("PRAGMA user_version") == "1");
        CHECK(opened.text("SELECT count(*) FROM schedules WHERE name = 'uncommitted'") == "0");
    }
    const answer original = cli(dir.path(), "schedules", "{}");
    const answer copied = cli(copy_dir.path(), "schedules", "{}");
    REQUIRE(copied.status() == "success");
    CHECK(num(copied.obj().at("count")) == 3);
    CHECK(copied.text == original.text);
    CHECK(cli(copy_dir.path(), "export-all-schedules-xml", "{}").text ==
          cli(dir.path(), "export-all-schedules-xml", "{}").text);
}

TEST_CASE("a backup in one-page steps while another process imports gives a sound copy") {
    if (!sqlite_run()) {
        SUCCEED("SQLite only");
        return;
    }
    temp_dir dir;
    temp_dir copy_dir;
    import_schedules(dir.path(), 2, 2000);
    const std::int64_t before = schedule_count(dir.path());

    std::atomic<bool> stop{false};
    std::atomic<int> imported{0};
    std::thread importer([&] {
        while (!stop.load()) {
            if (cli(dir.path(), "import-schedule", import_request("during", 50)).status() ==
                "success") {
                ++imported;
            }
        }
    });
    while (imported.load() == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    // Writes between the steps restart the copy; after 300 ms it copies the rest in one step.
    schedule::backup_summary done;
    try {
        done =
            schedule::backup_sqlite(dir.path() / "schedules.db", copy_dir.path() / "schedules.db",
                                    {.pages_per_step = 1, .step_for_ms = 300});
    } catch (...) {
        stop = true;
        importer.join();
        throw;
    }
    stop = true;
    importer.join();
    const int imported_after = imported.load();
    INFO("imported during the backup: " << imported_after);
    CHECK(done.pages > 10);
    CHECK(done.bytes == static_cast<std::int64_t>(fs::file_size(copy_dir.path() / "schedules.db")));

    database copied(copy_dir.path());
    CHECK(copied.soundness() == "ok");
    CHECK(inconsistent_rows(copy_dir.path()) == "0|0");
    const std::int64_t count = schedule_count(copy_dir.path());
    CHECK(count > before);
    CHECK(count <= before + imported_after);
}

TEST_CASE("schedule_worker --backup refuses an existing file unless --force, and a folder without "
          "a database") {
    if (!sqlite_run()) {
        SUCCEED("SQLite only");
        return;
    }
    temp_dir dir;
    temp_dir elsewhere;
    import_schedules(dir.path(), 1, 10);
    const fs::path target = elsewhere.path() / "kept.db";
    write_file(target, "keep me");

    const run_result refused = run_worker_with(dir.path(), {"--backup", target.string()});
    CHECK(refused.exit_code == 73);
    CHECK(refused.err.find("exists") != std::string::npos);
    CHECK(refused.err.find("--force") != std::string::npos);
    CHECK(read_file(target) == "keep me");
    CHECK_FALSE(fs::exists(target.string() + ".tmp"));

    const run_result forced = run_worker_with(dir.path(), {"--backup", target.string(), "--force"});
    INFO(forced.err);
    REQUIRE(forced.exit_code == 0);
    CHECK(sqlite_connection(target).text("SELECT count(*) FROM schedules") == "1");

    // Nothing to copy: an error, and neither the database nor the file is created.
    temp_dir empty;
    const fs::path nowhere = elsewhere.path() / "none.db";
    const run_result missing = run_worker_with(empty.path(), {"--backup", nowhere.string()});
    CHECK(missing.exit_code == 1);
    CHECK(missing.err.find("no database") != std::string::npos);
    CHECK_FALSE(fs::exists(nowhere));
    CHECK_FALSE(fs::exists(empty.path() / "schedules.db"));

    // The database itself is never a destination, even with --force.
    const fs::path itself = dir.path() / "schedules.db";
    const run_result onto_itself =
        run_worker_with(dir.path(), {"--backup", itself.string(), "--force"});
    CHECK(onto_itself.exit_code == 1);
    CHECK(onto_itself.err.find("the database itself") != std::string::npos);
    CHECK(schedule_count(dir.path()) == 1);
}

TEST_CASE("schedule_worker --backup of a PostgreSQL --database is refused with exit 64, pointing "
          "to pg_dump") {
    temp_dir dir;
    const fs::path target = dir.path() / "copy.db";
    const run_result refused =
        run_worker_with(dir.path(), {"--database", "postgresql://app@127.0.0.1:1/schedules",
                                     "--backup", target.string()});
    CHECK(refused.exit_code == 64);
    CHECK(refused.err.find("pg_dump") != std::string::npos);
    CHECK_FALSE(fs::exists(target));

    // --backup is an operation of its own; --force only goes with it.
    CHECK(run_worker_with(dir.path(), {"--backup", target.string(), "schedules"}).exit_code == 64);
    CHECK(run_worker_with(dir.path(), {"--backup", target.string(), "--serve"}).exit_code == 64);
    CHECK(run_worker_with(dir.path(), {"--force", "schedules"}).exit_code == 64);
    CHECK(run_worker_with(dir.path(), {"--backup"}).exit_code == 64);
}

TEST_CASE("a database whose schema version is newer than the program's is refused, unchanged") {
    temp_dir dir;
    import_schedules(dir.path(), 1, 5);
    {
        database db(dir.path());
        (void)db.text(sqlite_run() ? "PRAGMA user_version = 99"
                                   : "UPDATE schedule_store SET schema_version = 99");
    }
    for (const char* operation : {"schedules", "import-schedule"}) {
        INFO(operation);
        const answer refused =
            cli(dir.path(), operation,
                operation == std::string("schedules") ? "{}" : import_request("x", 2));
        INFO(refused.text);
        CHECK(refused.exit_code == 1);
        CHECK(refused.code() == "internal");
        CHECK(refused.text.find("schema version 99 is newer than this program knows (1)") !=
              std::string::npos);
        CHECK(refused.text.find("never downgraded") != std::string::npos);
    }
    database db(dir.path());
    CHECK(db.schema_version() == "99");
    CHECK(db.text("SELECT count(*) FROM schedules") == "1");
}
