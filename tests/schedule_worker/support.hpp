// Helpers shared by the schedule_worker tests: temporary data folders, running the worker
// binary (once mode) with pipes, JSON parsing, database checks and request builders.
//
// The store under test: SQLite in each data folder, or, with SCHEDULE_TEST_STORE=postgresql
// (the ctest tests named pg.*), a database of its own for each data folder on a PostgreSQL
// server the test process starts on first use (tests/common/postgres_server.hpp). Every test
// reaches the store through database_url(), store_arguments(), test_service and database.
#pragma once

#include "../common/files.hpp"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#if SCHEDULE_TESTS_POSTGRES
#include "../common/postgres_server.hpp"
#endif

#include <boost/json.hpp>

#include "errors.hpp"
#include "m3u.hpp"
#include "schedule.hpp"
#include "service.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#ifndef SCHEDULE_WORKER_BINARY
#error "SCHEDULE_WORKER_BINARY (path of the schedule_worker executable) must be defined"
#endif
#ifndef SCHEDULE_SAMPLE_DATA
#error "SCHEDULE_SAMPLE_DATA (path of examples/schedule_server/sample-data) must be defined"
#endif

extern "C" char** environ; // NOLINT

namespace sw_test {

namespace fs = std::filesystem;
using test_files::read_file;
using test_files::write_file;
namespace json = boost::json;

inline const fs::path worker_binary{SCHEDULE_WORKER_BINARY};
inline const fs::path sample_data{SCHEDULE_SAMPLE_DATA};

/// A fresh directory for one test, removed at its end.
class temp_dir : public test_files::temp_dir {
  public:
    temp_dir() : test_files::temp_dir("btq-schedule-test") {}
};

/// Copies the sample data folder's contents into `to` (without any database it may hold).
inline void copy_sample_data(const fs::path& to) {
    for (const auto& entry : fs::directory_iterator(sample_data)) {
        const auto name = entry.path().filename().string();
        if (name.starts_with("schedules.db")) {
            continue;
        }
        fs::copy(entry.path(), to / name, fs::copy_options::recursive);
    }
}

/// The store the tests run against.
enum class store_kind { sqlite, postgresql };

/// SCHEDULE_TEST_STORE: "postgresql", or unset / "sqlite".
inline store_kind tested_store() {
    static const store_kind kind = [] {
        const char* given = std::getenv("SCHEDULE_TEST_STORE"); // NOLINT(concurrency-mt-unsafe)
        const std::string_view name = given != nullptr ? given : "sqlite";
        if (name == "postgresql") {
#if SCHEDULE_TESTS_POSTGRES
            return store_kind::postgresql;
#else
            throw std::runtime_error("SCHEDULE_TEST_STORE=postgresql, but the tests were built "
                                     "without PostgreSQL (no libpq)");
#endif
        }
        if (name != "sqlite") {
            throw std::runtime_error("SCHEDULE_TEST_STORE must be sqlite or postgresql");
        }
        return store_kind::sqlite;
    }();
    return kind;
}

#if SCHEDULE_TESTS_POSTGRES
/// This test process's PostgreSQL server, started on first use, stopped at exit.
inline btq_postgres_test::postgres_server& postgres() {
    static btq_postgres_test::postgres_server server;
    return server;
}

/// The name of the database of the data folder `data_dir` (created on first use).
inline std::string postgres_database(const fs::path& data_dir) {
    static std::mutex mutex; // concurrent writers ask for the same folder's database
    static std::map<std::string, std::string> names;
    const std::lock_guard lock(mutex);
    auto [found, added] = names.try_emplace(data_dir.string());
    if (added) {
        found->second = "schedules_" + std::to_string(names.size());
        postgres().create_database(found->second);
    }
    return found->second;
}
#endif

/// The --database URL of the store of `data_dir`: empty for SQLite (the worker's default,
/// DIR/schedules.db); for PostgreSQL a new database for each data folder.
inline std::string database_url(const fs::path& data_dir) {
#if SCHEDULE_TESTS_POSTGRES
    if (tested_store() == store_kind::postgresql) {
        return postgres().url(postgres_database(data_dir));
    }
#endif
    (void)data_dir;
    return {};
}

/// The worker's arguments naming the store of `data_dir`: none for SQLite, else --database.
inline std::vector<std::string> store_arguments(const fs::path& data_dir) {
    const std::string url = database_url(data_dir);
    if (url.empty()) {
        return {};
    }
    return {"--database", url};
}

/// The worker's arguments `--data-dir DIR [--database URL]`, and `extra` after them.
inline std::vector<std::string> worker_arguments(const fs::path& data_dir,
                                                 const std::vector<std::string>& extra) {
    std::vector<std::string> arguments{"--data-dir", data_dir.string()};
    for (std::string& argument : store_arguments(data_dir)) {
        arguments.push_back(std::move(argument));
    }
    arguments.insert(arguments.end(), extra.begin(), extra.end());
    return arguments;
}

/// `schedule_worker --data-dir DIR [--database URL]`, and `extra` after them.
inline std::vector<std::string> worker_command(const fs::path& data_dir,
                                               const std::vector<std::string>& extra) {
    std::vector<std::string> command = worker_arguments(data_dir, extra);
    command.insert(command.begin(), worker_binary.string());
    return command;
}

/// schedule::service on the store under test for `data_dir`.
class test_service : public schedule::service {
  public:
    explicit test_service(const fs::path& data_dir, const fs::path& feed = "feed.m3u")
        : schedule::service(data_dir, feed, database_url(data_dir)) {}
};

/// How a process ended and what it wrote.
struct run_result {
    std::string out;
    std::string err;
    int exit_code = -1; ///< -1 when killed by a signal
    int signal = 0;
};

/// A child process with pipes on stdin, stdout and stderr (started with posix_spawn).
class child {
  public:
    explicit child(const std::vector<std::string>& arguments) {
        int in[2];
        int out[2];
        int err[2];
        if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
            ::pipe2(err, O_CLOEXEC) != 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        posix_spawn_file_actions_t actions;
        ::posix_spawn_file_actions_init(&actions);
        ::posix_spawn_file_actions_adddup2(&actions, in[0], 0);
        ::posix_spawn_file_actions_adddup2(&actions, out[1], 1);
        ::posix_spawn_file_actions_adddup2(&actions, err[1], 2);
        std::vector<std::string> args = arguments;
        std::vector<char*> argv;
        argv.reserve(args.size() + 1);
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        // The worker must not believe it was started by a pool.
        std::vector<std::string> env;
        for (char** e = environ; *e != nullptr; ++e) {
            if (!std::string_view(*e).starts_with("BTQ_WORKER_PROTOCOL=")) {
                env.emplace_back(*e);
            }
        }
        std::vector<char*> envp;
        envp.reserve(env.size() + 1);
        for (auto& e : env) {
            envp.push_back(e.data());
        }
        envp.push_back(nullptr);
        const int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
        ::posix_spawn_file_actions_destroy(&actions);
        ::close(in[0]);
        ::close(out[1]);
        ::close(err[1]);
        stdin_ = in[1];
        stdout_ = out[0];
        stderr_ = err[0];
        if (rc != 0) {
            close_all();
            throw std::system_error(rc, std::generic_category(), "posix_spawn " + arguments[0]);
        }
    }
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    ~child() {
        if (pid_ > 0 && !reaped_) {
            close_all();
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        close_all();
    }

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }

    /// Writes `input` to stdin (then closes it) while reading stdout and stderr to their ends,
    /// then waits for the process.
    run_result communicate(std::string_view input) {
        run_result result = exchange(input);
        const int status = wait();
        if (WIFEXITED(status)) {
            result.exit_code = WEXITSTATUS(status);
        } else if (WIFSIGNALED(status)) {
            result.signal = WTERMSIG(status);
        }
        return result;
    }

    /// Writes `input` to stdin (then closes it) while reading stdout and stderr to their ends;
    /// does not wait for the process (exit_code stays -1).
    run_result exchange(std::string_view input) {
        run_result result;
        std::size_t written = 0;
        if (input.empty()) {
            close_fd(stdin_);
        }
        std::vector<char> buffer(65536);
        while (stdin_ >= 0 || stdout_ >= 0 || stderr_ >= 0) {
            pollfd fds[3];
            nfds_t count = 0;
            int* owners[3];
            if (stdin_ >= 0) {
                fds[count] = {stdin_, POLLOUT, 0};
                owners[count++] = &stdin_;
            }
            if (stdout_ >= 0) {
                fds[count] = {stdout_, POLLIN, 0};
                owners[count++] = &stdout_;
            }
            if (stderr_ >= 0) {
                fds[count] = {stderr_, POLLIN, 0};
                owners[count++] = &stderr_;
            }
            if (::poll(fds, count, -1) < 0) {
                if (errno == EINTR) {
                    continue;
                }
                throw std::system_error(errno, std::generic_category(), "poll");
            }
            for (nfds_t i = 0; i < count; ++i) {
                if (fds[i].revents == 0) {
                    continue;
                }
                int& fd = *owners[i];
                if (&fd == &stdin_) {
                    if ((fds[i].revents & (POLLERR | POLLHUP)) != 0) {
                        close_fd(stdin_); // the child stopped reading
                        continue;
                    }
                    const ssize_t n = ::write(fd, input.data() + written, input.size() - written);
                    if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN) {
                            continue;
                        }
                        close_fd(stdin_); // EPIPE: the child stopped reading
                        continue;
                    }
                    written += static_cast<std::size_t>(n);
                    if (written == input.size()) {
                        close_fd(stdin_);
                    }
                } else {
                    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
                    if (n < 0 && errno == EINTR) {
                        continue;
                    }
                    if (n <= 0) {
                        close_fd(fd);
                        continue;
                    }
                    (&fd == &stdout_ ? result.out : result.err)
                        .append(buffer.data(), static_cast<std::size_t>(n));
                }
            }
        }
        return result;
    }

    /// Waits for the process; returns the raw wait status.
    int wait() {
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        reaped_ = true;
        return status;
    }

    /// Closes our ends of the pipes (the child sees EOF / EPIPE).
    void close_all() {
        close_fd(stdin_);
        close_fd(stdout_);
        close_fd(stderr_);
    }

  private:
    static void close_fd(int& fd) {
        if (fd >= 0) {
            ::close(fd);
            fd = -1;
        }
    }

    pid_t pid_ = -1;
    bool reaped_ = false;
    int stdin_ = -1;
    int stdout_ = -1;
    int stderr_ = -1;
};

inline run_result run(const std::vector<std::string>& arguments, std::string_view input) {
    // The child's stdin pipe may close early; never die of SIGPIPE in the test.
    static const bool sigpipe_ignored = [] {
        ::signal(SIGPIPE, SIG_IGN);
        return true;
    }();
    (void)sigpipe_ignored;
    child c(arguments);
    return c.communicate(input);
}

/// Runs `schedule_worker --data-dir DIR [--database URL] OPERATION` with `request` on stdin.
inline run_result run_worker(const fs::path& data_dir, const std::string& operation,
                             std::string_view request) {
    return run(worker_command(data_dir, {operation}), request);
}

inline json::value parse_json(std::string_view text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec) {
        throw std::runtime_error("not JSON (" + ec.message() + "): " + std::string(text));
    }
    return v;
}

/// A once-mode answer: the parsed JSON, the exit code and the raw text.
struct answer {
    json::value body;
    int exit_code = -1;
    std::string text;

    [[nodiscard]] const json::object& obj() const { return body.as_object(); }
    [[nodiscard]] std::string status() const {
        const auto* s = obj().if_contains("status");
        return s != nullptr && s->is_string() ? std::string(s->as_string()) : "<none>";
    }
    [[nodiscard]] std::string code() const {
        const auto* s = obj().if_contains("code");
        return s != nullptr && s->is_string() ? std::string(s->as_string()) : "<none>";
    }
    [[nodiscard]] std::string field() const {
        const auto* s = obj().if_contains("field");
        return s != nullptr && s->is_string() ? std::string(s->as_string()) : "<none>";
    }
    [[nodiscard]] std::int64_t line() const {
        const auto* s = obj().if_contains("line");
        return s != nullptr && s->is_int64() ? s->as_int64() : -1;
    }
};

/// Runs an operation in once mode and parses the answer (stdout must be one JSON object + '\n').
inline answer cli(const fs::path& data_dir, const std::string& operation,
                  std::string_view request) {
    run_result r = run_worker(data_dir, operation, request);
    if (r.out.empty() || r.out.back() != '\n') {
        throw std::runtime_error("answer of " + operation + " is not one line: exit " +
                                 std::to_string(r.exit_code) + ", stdout: " + r.out +
                                 ", stderr: " + r.err);
    }
    answer a{parse_json(r.out), r.exit_code, r.out};
    if (!a.body.is_object()) {
        throw std::runtime_error("answer is not an object: " + r.out);
    }
    return a;
}

inline std::string str(const json::value& v) {
    return std::string(v.as_string());
}
inline std::int64_t num(const json::value& v) {
    return v.to_number<std::int64_t>();
}

/// "title start stop duration" of each item of a schedule object.
inline std::vector<std::string> item_lines(const json::object& schedule) {
    std::vector<std::string> out;
    for (const auto& item : schedule.at("items").as_array()) {
        const auto& o = item.as_object();
        out.push_back(str(o.at("title")) + " " + str(o.at("start")) + " " + str(o.at("stop")) +
                      " " + std::to_string(num(o.at("duration"))));
    }
    return out;
}

/// Runs an operation through schedule::service::handle in-process.
inline answer in_process(schedule::service& service, std::string_view operation,
                         std::string_view request) {
    auto a = service.handle(operation, request);
    answer out{parse_json(a.json), a.exit_code, a.json};
    if (!out.body.is_object()) {
        throw std::runtime_error("answer is not an object: " + a.json);
    }
    return out;
}

/// `schedules`' count (via the CLI).
inline std::int64_t schedule_count(const fs::path& data_dir) {
    answer a = cli(data_dir, "schedules", "{}");
    if (a.status() != "success") {
        throw std::runtime_error("schedules failed: " + a.text);
    }
    return num(a.obj().at("count"));
}

/// A JSON import request with `items` back-to-back items of 60 s from 2026-11-30T08:00:00+01:00.
inline std::string import_request(const std::string& name, std::size_t items,
                                  const std::string& channel = "campus-tv") {
    std::string out = R"({"name":")" + name + R"(","channel":")" + channel + R"(","items":[)";
    for (std::size_t i = 0; i < items; ++i) {
        const std::size_t t = 8 * 3600 + i * 60;
        const std::size_t day = 30 + t / 86400; // stays inside Nov 30 / Dec for small counts
        const std::size_t s = t % 86400;
        char start[64];
        if (day <= 30) {
            std::snprintf(start, sizeof start, "2026-11-%02zuT%02zu:%02zu:%02zu+01:00", day,
                          s / 3600, s / 60 % 60, s % 60);
        } else {
            std::snprintf(start, sizeof start, "2026-12-%02zuT%02zu:%02zu:%02zu+01:00", day - 30,
                          s / 3600, s / 60 % 60, s % 60);
        }
        if (i != 0) {
            out += ',';
        }
        out += R"({"title":"Item )" + std::to_string(i) + R"(","url":"http://example.org/)" +
               std::to_string(i) + R"(.mp4","start":")" + start + R"(","duration":60})";
    }
    out += "]}";
    return out;
}

/// Runs a single-column, single-row SQL query; returns its text.
inline std::string sql_text(sqlite3* db, const std::string& query) {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db, query.c_str(), -1, &statement, nullptr) != SQLITE_OK) {
        throw std::runtime_error(std::string("sqlite prepare: ") + sqlite3_errmsg(db) + " in " +
                                 query);
    }
    std::string out;
    if (sqlite3_step(statement) == SQLITE_ROW) {
        const unsigned char* text = sqlite3_column_text(statement, 0);
        out = text != nullptr ? reinterpret_cast<const char*>(text) : "";
    }
    sqlite3_finalize(statement);
    return out;
}

/// The store of a data folder, for the tests' own queries: DIR/schedules.db, or the folder's
/// PostgreSQL database.
class database {
  public:
    explicit database(const fs::path& data_dir) : data_dir_(data_dir) {
        if (tested_store() != store_kind::sqlite) {
            return;
        }
        const auto path = (data_dir / "schedules.db").string();
        if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
            std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            throw std::runtime_error("cannot open " + path + ": " + message);
        }
        sqlite3_busy_timeout(db_, 5000);
    }
    database(const database&) = delete;
    database& operator=(const database&) = delete;
    ~database() { sqlite3_close(db_); }

    /// The first column of the first row of `query` (in either store's SQL).
    [[nodiscard]] std::string text(const std::string& query) const {
#if SCHEDULE_TESTS_POSTGRES
        if (db_ == nullptr) {
            return postgres().query(postgres_database(data_dir_), query);
        }
#endif
        return sql_text(db_, query);
    }

    /// The tables of the schedules, in name order.
    [[nodiscard]] std::vector<std::string> tables() const {
        std::vector<std::string> names;
        if (db_ == nullptr) {
            const std::string list =
                text("SELECT string_agg(table_name, ',' ORDER BY table_name) FROM "
                     "information_schema.tables WHERE table_schema = 'public'");
            std::stringstream in(list);
            for (std::string name; std::getline(in, name, ',');) {
                names.push_back(name);
            }
            return names;
        }
        sqlite3_stmt* statement = nullptr;
        if (sqlite3_prepare_v2(db_,
                               "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
                               "LIKE 'sqlite_%' ORDER BY name",
                               -1, &statement, nullptr) != SQLITE_OK) {
            throw std::runtime_error("sqlite_master");
        }
        while (sqlite3_step(statement) == SQLITE_ROW) {
            names.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(statement, 0)));
        }
        sqlite3_finalize(statement);
        return names;
    }

    /// "ok" when the store is sound by its own checks: SQLite's integrity and foreign key
    /// checks and its WAL journal; PostgreSQL's schema version row (PostgreSQL itself checks
    /// the foreign keys on every write).
    [[nodiscard]] std::string soundness() const {
        if (db_ == nullptr) {
            const std::string version = text("SELECT schema_version FROM schedule_store");
            return version == "1" ? "ok" : "schema version '" + version + "'";
        }
        const std::string integrity = text("PRAGMA integrity_check");
        const std::string foreign_keys = text("PRAGMA foreign_key_check");
        const std::string journal = text("PRAGMA journal_mode");
        if (integrity == "ok" && foreign_keys.empty() && journal == "wal") {
            return "ok";
        }
        return "integrity " + integrity + ", foreign keys '" + foreign_keys + "', journal " +
               journal;
    }

    /// The schema version the store records ("0" or "" before the first migration).
    [[nodiscard]] std::string schema_version() const {
        return text(db_ == nullptr ? "SELECT schema_version FROM schedule_store"
                                   : "PRAGMA user_version");
    }

  private:
    fs::path data_dir_;
    sqlite3* db_ = nullptr;
};

/// Row counts of every table of the store, "name=count;..." in name order: a failed import
/// must leave it unchanged.
inline std::string table_counts(const fs::path& data_dir) {
    database db(data_dir);
    std::string out;
    for (const auto& t : db.tables()) {
        out += t + "=" + db.text("SELECT count(*) FROM \"" + t + "\"") + ";";
    }
    return out;
}

/// Schedules whose item_count disagrees with their item rows, and item rows without a schedule
/// (the schema of examples/schedule_worker's stores: schedules, schedule_items); "0|0" when
/// sound.
inline std::string inconsistent_rows(const fs::path& data_dir) {
    database db(data_dir);
    return db.text("SELECT (SELECT count(*) FROM schedules s WHERE s.item_count != "
                   "(SELECT count(*) FROM schedule_items i WHERE i.schedule_id = s.id)) || '|' || "
                   "(SELECT count(*) FROM schedule_items i WHERE NOT EXISTS "
                   "(SELECT 1 FROM schedules s WHERE s.id = i.schedule_id))");
}

/// Runs an operation somewhere (once mode, in-process, persistent worker) and gives its answer.
using runner = std::function<answer(const std::string& operation, std::string_view request)>;

} // namespace sw_test
