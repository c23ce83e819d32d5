// schedule_worker: the work behind the example server's eight queued endpoints
// (docs/schedule-worker.md). Once per request: the request JSON on stdin, the answer on
// stdout. Persistent: the btq worker protocol on descriptors 3 and 4 (--serve).
#include <btq/worker.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "backup.hpp"
#include "database_url.hpp"
#include "files.hpp"
#include "schedule.hpp"
#include "service.hpp"
#include "store.hpp"

namespace {

constexpr int usage_error = 64;        // EX_USAGE
constexpr int backup_file_exists = 73; // EX_CANTCREAT

constexpr const char* usage_text =
    "usage: schedule_worker --data-dir DIR [--feed FILE] [--database URL] OPERATION\n"
    "                                                   (request JSON on stdin)\n"
    "       schedule_worker --data-dir DIR [--feed FILE] [--database URL] --serve\n"
    "                                                   (btq worker protocol on fd 3/4)\n"
    "       schedule_worker --data-dir DIR [--database URL] --backup FILE [--force]\n"
    "                                                   (an online copy of the SQLite database)\n"
    "\n"
    "  --data-dir DIR  the data folder: schedules.db, playlists/, feed.m3u\n"
    "  --feed FILE     the video feed, a path inside DIR (default feed.m3u)\n"
    "  --database URL  where the schedules are: sqlite:FILE or\n"
    "                  postgresql://[user[:password]@]host[:port]/dbname[?param=value...]\n"
    "                  (default: SCHEDULE_DATABASE if set, else sqlite:DIR/schedules.db)\n"
    "  --serve         serve the btq worker protocol (also the default with no OPERATION when\n"
    "                  BTQ_WORKER_PROTOCOL=1)\n"
    "  --backup FILE   copy the SQLite database to FILE while it is in use (through FILE.tmp,\n"
    "                  renamed when complete); PostgreSQL: use pg_dump\n"
    "  --force         with --backup: replace FILE if it exists\n"
    "\n"
    "operations: import-schedule, schedules, playlists, export-schedule-xml,\n"
    "            export-schedule-json, export-all-schedules-xml, schedule-playlist,\n"
    "            infowars-videos; memory_probe (a test: touches the memory it is asked to)\n"
    "exit status: 0 success, 2 invalid input, 3 not found, 1 internal error, 64 bad command line,\n"
    "             73 --backup FILE exists (without --force)\n";

/// SCHEDULE_WORKER_DELAY_MS: milliseconds to wait before each operation (0 to 60,000), so that
/// the queue in front of the worker can be watched at work — and tested. Unset: no delay.
std::chrono::milliseconds configured_delay() {
    const char* text = std::getenv("SCHEDULE_WORKER_DELAY_MS"); // NOLINT(concurrency-mt-unsafe)
    if (text == nullptr) {
        return std::chrono::milliseconds(0);
    }
    long value = 0;
    const std::string_view digits(text);
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (error != std::errc{} || end != digits.data() + digits.size() || value < 0 ||
        value > 60'000) {
        throw std::invalid_argument("SCHEDULE_WORKER_DELAY_MS must be 0 to 60000, not '" +
                                    std::string(digits) + "'");
    }
    return std::chrono::milliseconds(value);
}

int bad_command_line(const std::string& message) {
    std::fprintf(stderr, "schedule_worker: %s\n%s", message.c_str(), usage_text);
    return usage_error;
}

/// Standard input, up to one byte more than a request may be (so an oversized request is
/// detected without reading all of it); the service answers that with invalid_input.
std::string read_request() {
    std::string request;
    const std::size_t cap = schedule::max_request_bytes + 1;
    std::size_t used = 0;
    request.resize(std::size_t{64} << 10U);
    for (;;) {
        if (used == request.size()) {
            if (request.size() >= cap) {
                break;
            }
            request.resize(std::min(request.size() * 2, cap));
        }
        const ssize_t got = ::read(STDIN_FILENO, request.data() + used, request.size() - used);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            break;
        }
        used += static_cast<std::size_t>(got);
    }
    request.resize(used);
    return request;
}

/// --backup FILE: SQLite only (PostgreSQL has pg_dump for that).
int backup(const schedule::database_location& location, const std::string& file, bool force) {
    if (location.store != schedule::database_location::kind::sqlite) {
        return bad_command_line("--backup copies a SQLite database; " +
                                schedule::describe(location) +
                                " is PostgreSQL: back it up with pg_dump (or pg_basebackup)");
    }
    try {
        const schedule::backup_summary done =
            schedule::backup_sqlite(location.sqlite_file, file, {.overwrite = force});
        std::printf("schedule_worker: backed up %s to %s (%lld pages, %lld bytes)\n",
                    location.sqlite_file.c_str(), file.c_str(), static_cast<long long>(done.pages),
                    static_cast<long long>(done.bytes));
        return std::fflush(stdout) == 0 ? 0 : 1;
    } catch (const schedule::backup_error& error) {
        std::fprintf(stderr, "schedule_worker: %s\n", error.what());
        return error.destination_exists ? backup_file_exists : 1;
    }
}

int run(int argc, char** argv) {
    std::string data_dir;
    std::string feed = "feed.m3u";
    std::string database;
    std::string operation;
    std::string backup_file;
    bool serve = false;
    bool force = false;
    for (int index = 1; index < argc; ++index) {
        const std::string_view argument = argv[index];
        // The value of an option given as two arguments; nullptr if it is the last one.
        const auto next_value = [&]() -> const char* {
            return index + 1 < argc ? argv[++index] : nullptr;
        };
        if (argument == "--help" || argument == "-h") {
            std::fputs(usage_text, stdout);
            return 0;
        }
        if (argument == "--data-dir" || argument == "--feed" || argument == "--database" ||
            argument == "--backup") {
            const char* given = next_value();
            if (given == nullptr || *given == '\0') {
                return bad_command_line(std::string(argument) + " needs a value");
            }
            (argument == "--data-dir" ? data_dir
             : argument == "--feed"   ? feed
             : argument == "--backup" ? backup_file
                                      : database) = given;
        } else if (argument.starts_with("--backup=")) {
            backup_file = argument.substr(9);
            if (backup_file.empty()) {
                return bad_command_line("--backup needs a value");
            }
        } else if (argument == "--force") {
            force = true;
        } else if (argument.starts_with("--data-dir=")) {
            data_dir = argument.substr(11);
        } else if (argument.starts_with("--feed=")) {
            feed = argument.substr(7);
        } else if (argument.starts_with("--database=")) {
            database = argument.substr(11);
        } else if (argument == "--serve") {
            serve = true;
        } else if (argument.starts_with("-")) {
            return bad_command_line("unknown option " + std::string(argument));
        } else if (operation.empty()) {
            operation = argument;
        } else {
            return bad_command_line("one operation only (got '" + operation + "' and '" +
                                    std::string(argument) + "')");
        }
    }
    if (data_dir.empty()) {
        return bad_command_line("--data-dir DIR is required");
    }
    struct stat status {};
    if (::stat(data_dir.c_str(), &status) != 0 || !S_ISDIR(status.st_mode)) {
        return bad_command_line("--data-dir " + data_dir + " is not a directory");
    }
    if (!schedule::is_confined_path(feed)) {
        return bad_command_line("--feed " + feed +
                                " must be a relative path inside the data folder (no '..')");
    }
    const char* protocol = std::getenv("BTQ_WORKER_PROTOCOL"); // NOLINT(concurrency-mt-unsafe)
    if (operation.empty() && protocol != nullptr && std::string_view(protocol) == "1") {
        serve = true;
    }
    if (force && backup_file.empty()) {
        return bad_command_line("--force goes with --backup FILE");
    }
    if (!backup_file.empty() && (serve || !operation.empty())) {
        return bad_command_line("--backup takes no OPERATION and no --serve");
    }
    if (serve && !operation.empty()) {
        return bad_command_line("--serve takes no OPERATION");
    }
    if (!serve && operation.empty() && backup_file.empty()) {
        return bad_command_line("an OPERATION (or --serve) is required");
    }

    // The flag, else the environment (where a password stays out of the process list).
    if (database.empty()) {
        const char* from_environment = std::getenv("SCHEDULE_DATABASE"); // NOLINT
        database = from_environment != nullptr ? from_environment : "";
    }
    if (database.empty()) {
        database = "sqlite:" + (std::filesystem::path(data_dir) / "schedules.db").string();
    }
    try {
        const schedule::database_location location = schedule::parse_database_url(database);
        if (!backup_file.empty()) {
            return backup(location, backup_file, force);
        }
        if (location.store == schedule::database_location::kind::postgresql &&
            !schedule::postgresql_available()) {
            return bad_command_line("--database " + schedule::describe(location) +
                                    ": this schedule_worker was built without PostgreSQL "
                                    "support (libpq's header was not found at build time)");
        }
    } catch (const schedule::database_url_error& error) {
        return bad_command_line(error.what());
    }

    std::chrono::milliseconds delay{0};
    try {
        delay = configured_delay();
    } catch (const std::invalid_argument& error) {
        return bad_command_line(error.what());
    }
    schedule::service service(data_dir, feed, database);
    if (serve) {
        btq::worker worker;
        std::vector<std::string_view> names(schedule::service::operations.begin(),
                                            schedule::service::operations.end());
        names.push_back(schedule::service::memory_probe_operation);
        for (const std::string_view name : names) {
            // Every answer, errors included, is a result frame with the once mode's JSON.
            worker.on(std::string(name), [&service, name, delay](std::string_view body) {
                std::this_thread::sleep_for(delay);
                return service.handle(name, body).json;
            });
        }
        return worker.run();
    }

    const std::string request = read_request();
    std::this_thread::sleep_for(delay);
    schedule::service::answer answer = service.handle(operation, request);
    answer.json.push_back('\n');
    std::fwrite(answer.json.data(), 1, answer.json.size(), stdout);
    if (std::fflush(stdout) != 0) {
        return 1;
    }
    return answer.exit_code;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& error) {
        // Only resource exhaustion gets here: service::handle never throws.
        std::fprintf(stderr, "schedule_worker: %s\n", error.what());
        return 1;
    }
}
