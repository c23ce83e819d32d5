// A PostgreSQL server of a test's own (tests/schedule_worker, tests/server): initdb into a
// temporary folder, `postgres` on a free loopback port with its Unix socket in that folder,
// stopped and the folder removed when the object goes (and killed with the test, through
// PR_SET_PDEATHSIG, if the test dies first; a folder left by a test that died is removed by the
// next one). PostgreSQL refuses to run as root: as root (CI), the folder is given to the
// `postgres` user of Debian's package and the server runs as that user.
//
// The programs come from the newest /usr/lib/postgresql/<version>/bin (Debian's layout), or the
// folder BTQ_POSTGRES_BIN names. Needs libpq (to wait for the server and to create databases).
#pragma once

#include <libpq-fe.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace btq_postgres_test {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

/// The folder with initdb and postgres: BTQ_POSTGRES_BIN, else the newest
/// /usr/lib/postgresql/<version>/bin that has both; empty if none.
inline fs::path programs_folder() {
    if (const char* given = std::getenv("BTQ_POSTGRES_BIN"); given != nullptr && *given != 0) {
        return given;
    }
    fs::path best;
    long best_version = -1;
    std::error_code ignored;
    for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ignored)) {
        const fs::path bin = entry.path() / "bin";
        const std::string name = entry.path().filename().string();
        char* end = nullptr;
        const long version = std::strtol(name.c_str(), &end, 10);
        if (end == name.c_str() || !fs::exists(bin / "initdb") || !fs::exists(bin / "postgres")) {
            continue;
        }
        if (version > best_version) {
            best_version = version;
            best = bin;
        }
    }
    return best;
}

/// True when a PostgreSQL server can be started here.
inline bool available() {
    return !programs_folder().empty();
}

/// The user the server runs as: ourselves, or `postgres` when we are root.
struct server_user {
    uid_t uid = 0;
    gid_t gid = 0;
    bool switch_to = false;
};

inline server_user unprivileged_user() {
    server_user user{::getuid(), ::getgid(), false};
    if (::geteuid() != 0) {
        return user;
    }
    const passwd* entry = ::getpwnam("postgres");
    if (entry == nullptr) {
        throw std::runtime_error("running as root, and there is no 'postgres' user to run "
                                 "PostgreSQL as (Debian's postgresql package creates it)");
    }
    return {entry->pw_uid, entry->pw_gid, true};
}

/// Starts `argv` as `user` in the folder of `log`, with its output appended to `log`; it gets
/// SIGKILL if the test dies.
inline pid_t spawn_as(const server_user& user, const std::vector<std::string>& argv,
                      const std::string& log) {
    std::vector<char*> pointers;
    for (const std::string& arg : argv) {
        pointers.push_back(const_cast<char*>(arg.c_str()));
    }
    pointers.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            if (user.switch_to) {
                (void)::fchown(fd, user.uid, user.gid);
            }
            ::dup2(fd, 1);
            ::dup2(fd, 2);
        }
        if (user.switch_to &&
            (::setgroups(0, nullptr) != 0 || ::setgid(user.gid) != 0 || ::setuid(user.uid) != 0)) {
            ::_exit(126);
        }
        // Where the user can be whatever the test's folder is (initdb needs its current one).
        if (::chdir(fs::path(log).parent_path().c_str()) != 0) {
            ::_exit(125);
        }
        // After the change of user, which clears the parent-death signal.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) {
            ::_exit(127);
        }
        ::execv(pointers[0], pointers.data());
        ::_exit(127);
    }
    return pid;
}

/// Waits up to `timeout` for `pid` to exit; its wait status, or empty if it still runs.
inline std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            return status;
        }
        if (std::chrono::steady_clock::now() >= until) {
            return std::nullopt;
        }
        std::this_thread::sleep_for(5ms);
    }
}

/// A loopback port nothing listens on right now (bound to port 0, then closed).
inline int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
        if (fd >= 0) {
            ::close(fd);
        }
        throw std::runtime_error("no free port");
    }
    ::close(fd);
    return ntohs(address.sin_port);
}

/// Removes the folders of servers whose test died (the owner pid written into each is gone).
inline void remove_abandoned_folders() {
    std::error_code ignored;
    for (const auto& entry : fs::directory_iterator(fs::temp_directory_path(), ignored)) {
        if (!entry.path().filename().string().starts_with("btq-postgres-test-")) {
            continue;
        }
        std::ifstream owner(entry.path() / "owner.pid");
        long pid = 0;
        if (owner >> pid && pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
            fs::remove_all(entry.path(), ignored);
        }
    }
}

/// A PostgreSQL server of the test's own; superuser `postgres`, trust authentication on
/// 127.0.0.1 only, fsync off.
class postgres_server {
  public:
    postgres_server() : programs_(programs_folder()), user_(unprivileged_user()) {
        if (programs_.empty()) {
            throw std::runtime_error("no PostgreSQL programs (initdb, postgres) in "
                                     "/usr/lib/postgresql/*/bin: install Debian's postgresql");
        }
        remove_abandoned_folders();
        std::string pattern = (fs::temp_directory_path() / "btq-postgres-test-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        folder_ = pattern;
        std::ofstream(folder_ / "owner.pid") << ::getpid() << '\n';
        if (user_.switch_to && ::chown(folder_.c_str(), user_.uid, user_.gid) != 0) {
            fs::remove_all(folder_);
            throw std::runtime_error("cannot give " + folder_.string() + " to postgres");
        }
        try {
            initdb();
            for (int attempt = 0; attempt < 20; ++attempt) {
                port_ = free_port();
                if (try_start()) {
                    return;
                }
            }
        } catch (...) {
            remove();
            throw;
        }
        remove();
        throw std::runtime_error("postgres did not start");
    }
    postgres_server(const postgres_server&) = delete;
    postgres_server& operator=(const postgres_server&) = delete;
    ~postgres_server() { remove(); }

    /// Stops the server (fast shutdown: sessions are ended) and waits for it.
    void stop() { end_server(SIGINT, 20s); }

    /// Starts it again on the same port and folder.
    void start() {
        for (int attempt = 0; attempt < 50; ++attempt) {
            if (try_start()) {
                return;
            }
            std::this_thread::sleep_for(100ms);
        }
        throw std::runtime_error("postgres did not restart on its port; see " +
                                 (folder_ / "postgres.log").string());
    }

    [[nodiscard]] int port() const noexcept { return port_; }
    /// The URL of `database` on this server.
    [[nodiscard]] std::string url(const std::string& database) const {
        return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + database;
    }

    /// Runs `sql` on `database`; the first column of the first row ("" if none).
    /// @throws std::runtime_error on any failure
    [[nodiscard]] std::string query(const std::string& database, const std::string& sql) const {
        PGconn* connection = PQconnectdb((url(database) + "?connect_timeout=5").c_str());
        std::string out;
        std::string error;
        if (PQstatus(connection) != CONNECTION_OK) {
            error = PQerrorMessage(connection);
        } else {
            PGresult* result = PQexec(connection, sql.c_str());
            const ExecStatusType status = PQresultStatus(result);
            if (status == PGRES_TUPLES_OK) {
                if (PQntuples(result) > 0) {
                    out = PQgetvalue(result, 0, 0);
                }
            } else if (status != PGRES_COMMAND_OK) {
                error = PQresultErrorMessage(result);
            }
            PQclear(result);
        }
        PQfinish(connection);
        if (!error.empty()) {
            throw std::runtime_error("PostgreSQL: " + sql + ": " + error);
        }
        return out;
    }

    /// Creates the empty database `name`.
    void create_database(const std::string& name) const {
        (void)query("postgres", "CREATE DATABASE \"" + name + "\"");
    }

  private:
    void initdb() {
        const std::string log = (folder_ / "initdb.log").string();
        const pid_t pid =
            spawn_as(user_,
                     {(programs_ / "initdb").string(), "-D", (folder_ / "data").string(), "-U",
                      "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "-N"},
                     log);
        const std::optional<int> status = wait_exit(pid, 120s);
        if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
            if (!status) {
                ::kill(pid, SIGKILL);
                int ignored = 0;
                ::waitpid(pid, &ignored, 0);
            }
            std::ifstream in(log);
            const std::string text((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
            throw std::runtime_error("initdb failed: " + text);
        }
    }

    /// Starts `postgres` from a thread of its own that lives until the server is reaped: the
    /// parent-death signal follows the thread that forked, and the test may ask for the server
    /// from a short-lived thread.
    void spawn_server() {
        std::promise<pid_t> started;
        std::future<pid_t> pid = started.get_future();
        keeper_release_ = std::promise<void>();
        keeper_ = std::thread([this, &started, release = keeper_release_.get_future()] {
            try {
                started.set_value(
                    spawn_as(user_,
                             {(programs_ / "postgres").string(), "-D", (folder_ / "data").string(),
                              "-p", std::to_string(port_), "-k", folder_.string(), "-c",
                              "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                              "synchronous_commit=off", "-c", "full_page_writes=off", "-c",
                              "max_connections=200"},
                             (folder_ / "postgres.log").string()));
            } catch (...) {
                started.set_exception(std::current_exception());
                return;
            }
            release.wait();
        });
        try {
            pid_ = pid.get();
        } catch (...) {
            keeper_.join();
            throw;
        }
    }

    /// After the server was reaped: its thread may end.
    void release_keeper() noexcept {
        if (keeper_.joinable()) {
            keeper_release_.set_value();
            keeper_.join();
        }
    }

    bool try_start() {
        spawn_server();
        const std::string ping = "host=127.0.0.1 port=" + std::to_string(port_) +
                                 " user=postgres dbname=postgres connect_timeout=2";
        const auto until = std::chrono::steady_clock::now() + 30s;
        while (std::chrono::steady_clock::now() < until) {
            if (wait_exit(pid_, 0ms)) {
                pid_ = -1; // exited: the port was taken meanwhile, or a bad setting
                release_keeper();
                return false;
            }
            if (PQping(ping.c_str()) == PQPING_OK && owns_port()) {
                return true;
            }
            std::this_thread::sleep_for(20ms);
        }
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        release_keeper();
        return false;
    }

    /// Whether the server on the port is ours (another test may have taken the same port).
    bool owns_port() const {
        try {
            return query("postgres", "SELECT setting FROM pg_settings WHERE name = "
                                     "'unix_socket_directories'") == folder_.string();
        } catch (const std::exception&) {
            return false;
        }
    }

    /// Sends `signal` to the server, then SIGKILL if it has not ended within `grace`; reaps it.
    void end_server(int signal, std::chrono::milliseconds grace) noexcept {
        if (pid_ > 0) {
            ::kill(pid_, signal);
            if (!wait_exit(pid_, grace)) {
                ::kill(pid_, SIGKILL);
                int status = 0;
                ::waitpid(pid_, &status, 0);
            }
            pid_ = -1;
        }
        release_keeper();
    }

    void remove() noexcept {
        end_server(SIGQUIT, 10s); // immediate shutdown: nothing to keep
        std::error_code ignored;
        fs::remove_all(folder_, ignored);
    }

    fs::path programs_;
    server_user user_;
    fs::path folder_;
    int port_ = 0;
    pid_t pid_ = -1;
    std::thread keeper_;
    std::promise<void> keeper_release_;
};

} // namespace btq_postgres_test
