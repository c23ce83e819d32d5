#include "backup.hpp"

#include <sqlite3.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <system_error>
#include <thread>

namespace schedule {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& message) {
    throw backup_error("backup: " + message, false);
}

[[noreturn]] void fail_exists(const fs::path& destination) {
    throw backup_error("backup: " + destination.string() +
                           " exists: name a new file, or give --force to replace it",
                       true);
}

std::string errno_text(int error) {
    return std::error_code(error, std::generic_category()).message();
}

/// One SQLite connection, closed on destruction.
class connection {
  public:
    connection(const fs::path& file, int flags) {
        const int opened =
            sqlite3_open_v2(file.c_str(), &handle_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
        if (opened != SQLITE_OK) {
            const std::string why =
                handle_ != nullptr ? sqlite3_errmsg(handle_) : sqlite3_errstr(opened);
            sqlite3_close(handle_);
            handle_ = nullptr;
            fail("cannot open " + file.string() + ": " + why);
        }
        sqlite3_extended_result_codes(handle_, 1);
        sqlite3_busy_timeout(handle_, 5000);
    }
    ~connection() { sqlite3_close(handle_); }
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    connection(connection&&) = delete;
    connection& operator=(connection&&) = delete;

    [[nodiscard]] sqlite3* get() const noexcept { return handle_; }
    [[nodiscard]] std::string error() const { return sqlite3_errmsg(handle_); }

    /// The first column of the first row of `sql`.
    [[nodiscard]] std::string text(const char* sql) const {
        sqlite3_stmt* statement = nullptr;
        if (sqlite3_prepare_v2(handle_, sql, -1, &statement, nullptr) != SQLITE_OK) {
            fail(std::string("cannot prepare '") + sql + "': " + error());
        }
        std::string out;
        const int stepped = sqlite3_step(statement);
        if (stepped == SQLITE_ROW) {
            const unsigned char* value = sqlite3_column_text(statement, 0);
            out = value != nullptr ? reinterpret_cast<const char*>(value) : "";
        }
        sqlite3_finalize(statement);
        if (stepped != SQLITE_ROW && stepped != SQLITE_DONE) {
            fail(std::string("cannot run '") + sql + "': " + error());
        }
        return out;
    }

    /// Closes now, reporting a failure (a close that cannot finish its writes).
    void close() {
        if (sqlite3_close(handle_) != SQLITE_OK) {
            fail("cannot close the copy: " + error());
        }
        handle_ = nullptr;
    }

  private:
    sqlite3* handle_ = nullptr;
};

/// Removes the temporary copy and its journals unless the copy was renamed into place.
class temporary_copy {
  public:
    explicit temporary_copy(fs::path file) : file_(std::move(file)) { remove(); }
    ~temporary_copy() {
        if (!kept_) {
            remove();
        }
    }
    temporary_copy(const temporary_copy&) = delete;
    temporary_copy& operator=(const temporary_copy&) = delete;
    temporary_copy(temporary_copy&&) = delete;
    temporary_copy& operator=(temporary_copy&&) = delete;

    [[nodiscard]] const fs::path& path() const noexcept { return file_; }
    void keep() noexcept { kept_ = true; }

  private:
    void remove() noexcept {
        for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
            std::error_code ignored;
            fs::remove(fs::path(file_.string() + suffix), ignored);
        }
    }

    fs::path file_;
    bool kept_ = false;
};

void sync_file(const fs::path& file, int flags) {
    const int descriptor = ::open(file.c_str(), flags | O_CLOEXEC);
    if (descriptor < 0) {
        fail("cannot open " + file.string() + " to sync it: " + errno_text(errno));
    }
    const int synced = ::fsync(descriptor);
    const int error = errno;
    ::close(descriptor);
    if (synced != 0) {
        fail("cannot sync " + file.string() + ": " + errno_text(error));
    }
}

/// Renames `from` to `to`, failing with fail_exists() if `to` exists (checked atomically by the
/// rename itself where the file system can, else by link()).
void rename_no_replace(const fs::path& from, const fs::path& to) {
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
        return;
    }
    if (errno == EEXIST) {
        fail_exists(to);
    }
    if (errno != EINVAL && errno != ENOSYS) {
        fail("cannot rename " + from.string() + " to " + to.string() + ": " + errno_text(errno));
    }
    // A file system without RENAME_NOREPLACE: a hard link is just as exclusive.
    if (::link(from.c_str(), to.c_str()) != 0) {
        if (errno == EEXIST) {
            fail_exists(to);
        }
        fail("cannot link " + from.string() + " to " + to.string() + ": " + errno_text(errno));
    }
    ::unlink(from.c_str());
}

} // namespace

backup_summary backup_sqlite(const fs::path& source, const fs::path& destination,
                             const backup_options& options) {
    std::error_code error;
    if (!fs::is_regular_file(source, error)) {
        fail("no database at " + source.string() + " (nothing to back up)");
    }
    const bool exists = fs::symlink_status(destination, error).type() != fs::file_type::not_found;
    if (exists && fs::equivalent(source, destination, error)) {
        fail(destination.string() + " is the database itself");
    }
    if (exists && !options.overwrite) {
        fail_exists(destination);
    }
    if (exists && !fs::is_regular_file(fs::symlink_status(destination, error))) {
        fail(destination.string() + " is not a regular file: it is never replaced");
    }

    // Read-only: a backup never creates, migrates or writes the database it copies.
    connection from(source, SQLITE_OPEN_READONLY);
    temporary_copy copy(destination.string() + ".tmp");
    {
        connection to(copy.path(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
        sqlite3_backup* backup = sqlite3_backup_init(to.get(), "main", from.get(), "main");
        if (backup == nullptr) {
            fail("cannot start the backup: " + to.error());
        }
        const auto started = std::chrono::steady_clock::now();
        const auto busy_until = started + std::chrono::seconds(5);
        int stepped = SQLITE_OK;
        for (;;) {
            const bool in_steps = std::chrono::steady_clock::now() - started <
                                  std::chrono::milliseconds(options.step_for_ms);
            stepped = sqlite3_backup_step(backup, in_steps ? options.pages_per_step : -1);
            if (stepped == SQLITE_DONE) {
                break;
            }
            const int primary = stepped & 0xFF;
            if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
                if (std::chrono::steady_clock::now() >= busy_until) {
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            } else if (primary != SQLITE_OK) {
                break;
            }
        }
        const std::int64_t pages = sqlite3_backup_pagecount(backup);
        sqlite3_backup_finish(backup);
        if (stepped != SQLITE_DONE) {
            fail("copying " + source.string() + " failed: " + sqlite3_errstr(stepped));
        }
        const std::string check = to.text("PRAGMA quick_check");
        if (check != "ok") {
            fail("the copy does not pass quick_check: " + check);
        }
        to.close();
        copy.keep(); // from here on the file is the backup, whatever its name
        try {
            sync_file(copy.path(), O_RDONLY);
            if (options.overwrite) {
                if (std::rename(copy.path().c_str(), destination.c_str()) != 0) {
                    fail("cannot rename " + copy.path().string() + " to " + destination.string() +
                         ": " + errno_text(errno));
                }
            } else {
                rename_no_replace(copy.path(), destination);
            }
        } catch (...) {
            std::error_code ignored;
            fs::remove(copy.path(), ignored);
            throw;
        }
        backup_summary summary;
        summary.pages = pages;
        summary.bytes = static_cast<std::int64_t>(fs::file_size(destination, error));
        fs::path folder = destination.parent_path();
        sync_file(folder.empty() ? fs::path(".") : folder, O_RDONLY | O_DIRECTORY);
        return summary;
    }
}

} // namespace schedule
