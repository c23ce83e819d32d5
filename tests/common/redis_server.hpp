// A redis-server of a test's own (tests/redis, tests/server): a temporary folder, child processes
// that die with the test (PR_SET_PDEATHSIG), a free loopback port. Needs hiredis and the
// redis-server program's path as BTQ_REDIS_SERVER.
#pragma once

#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace btq_redis_test {

using namespace std::chrono_literals;

/// A folder of its own under the system's temporary folder, removed at the end.
class temporary_folder {
  public:
    temporary_folder() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "btq-redis-test-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = pattern;
    }
    temporary_folder(const temporary_folder&) = delete;
    temporary_folder& operator=(const temporary_folder&) = delete;
    ~temporary_folder() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }

  private:
    std::string path_;
};

/// Starts `argv` with its output appended to `log`; it gets SIGKILL if the test dies.
inline pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
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
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) {
            ::_exit(127);
        }
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            ::dup2(fd, 1);
            ::dup2(fd, 2);
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
        const pid_t done = ::waitpid(pid, &status, WNOHANG);
        if (done == pid) {
            return status;
        }
        if (std::chrono::steady_clock::now() >= until) {
            return std::nullopt;
        }
        std::this_thread::sleep_for(5ms);
    }
}

/// Sends `signal` to the child `pid`; nothing for a pid that is not one (never kill(-1) or
/// kill(0), which would signal every process of the user or the whole process group).
inline void signal_child(pid_t pid, int signal) {
    if (pid > 0) {
        ::kill(pid, signal);
    }
}

/// Kills and reaps `pid` (no-op for -1).
inline void kill_and_reap(pid_t pid) {
    if (pid > 0) {
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
    }
}

/// A loopback port nothing listens on right now (bound to port 0, then closed).
inline int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
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

/// True if the Redis at 127.0.0.1:port answers within `timeout` and is the process `pid`: two
/// tests may pick the same free port at once, and the one whose server lost the race must not
/// take the other's server for its own.
inline bool answers_as(int port, pid_t pid, std::chrono::milliseconds timeout) {
    const timeval limit{static_cast<time_t>(timeout.count() / 1000),
                        static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    redisContext* context = redisConnectWithTimeout("127.0.0.1", port, limit);
    bool ok = false;
    if (context != nullptr && context->err == 0 && redisSetTimeout(context, limit) == REDIS_OK) {
        auto* reply = static_cast<redisReply*>(redisCommand(context, "INFO server"));
        if (reply != nullptr && reply->type == REDIS_REPLY_STRING) {
            const std::string info(reply->str, reply->len);
            ok = info.find("process_id:" + std::to_string(pid) + "\r\n") != std::string::npos;
        }
        if (reply != nullptr) {
            freeReplyObject(reply);
        }
    }
    if (context != nullptr) {
        redisFree(context);
    }
    return ok;
}

/// A redis-server of the test's own: 127.0.0.1, a free port, its own folder; killed (SIGKILL)
/// and reaped when it goes out of scope, whatever happened.
class redis_server {
  public:
    /// `append_only`: AOF with fsync on every write (the restart tests), else no persistence.
    explicit redis_server(bool append_only = false) : append_only_(append_only) {
        for (int attempt = 0; attempt < 20; ++attempt) {
            port_ = free_port();
            if (try_start()) {
                return;
            }
        }
        throw std::runtime_error("redis-server did not start; see its log in " + folder_.path());
    }
    redis_server(const redis_server&) = delete;
    redis_server& operator=(const redis_server&) = delete;
    ~redis_server() {
        if (paused_) {
            signal_child(pid_, SIGCONT);
        }
        kill_and_reap(pid_);
    }

    /// SIGKILL, reaped.
    void kill_hard() {
        kill_and_reap(pid_);
        pid_ = -1;
    }
    /// Starts it again on the same port and folder (its AOF, if any, is loaded).
    void restart() {
        for (int attempt = 0; attempt < 50; ++attempt) {
            if (try_start()) {
                return;
            }
            std::this_thread::sleep_for(100ms);
        }
        throw std::runtime_error("redis-server did not restart on its port");
    }
    void pause() {
        signal_child(pid_, SIGSTOP);
        paused_ = true;
    }
    void resume() {
        signal_child(pid_, SIGCONT);
        paused_ = false;
    }

    [[nodiscard]] int port() const noexcept { return port_; }
    [[nodiscard]] const std::string& folder() const noexcept { return folder_.path(); }
    /// The URL of a pool named `prefix` on this server.
    [[nodiscard]] std::string url(const std::string& prefix) const {
        return "redis://127.0.0.1:" + std::to_string(port_) + "/" + prefix;
    }

  private:
    bool try_start() {
        std::vector<std::string> argv{BTQ_REDIS_SERVER,
                                      "--port",
                                      std::to_string(port_),
                                      "--bind",
                                      "127.0.0.1",
                                      "--dir",
                                      folder_.path(),
                                      "--save",
                                      "",
                                      "--daemonize",
                                      "no",
                                      "--appendonly",
                                      append_only_ ? "yes" : "no"};
        if (append_only_) {
            argv.insert(argv.end(), {"--appendfsync", "always"});
        }
        pid_ = spawn(argv, folder_.path() + "/redis.log");
        const auto until = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < until) {
            if (wait_exit(pid_, 0ms)) {
                pid_ = -1; // exited: the port was taken meanwhile, or a bad option
                return false;
            }
            if (answers_as(port_, pid_, 200ms)) {
                return true;
            }
            std::this_thread::sleep_for(10ms);
        }
        kill_and_reap(pid_);
        pid_ = -1;
        return false;
    }

    temporary_folder folder_;
    bool append_only_;
    int port_ = 0;
    pid_t pid_ = -1;
    bool paused_ = false;
};

/// Waits up to `timeout` for `condition()`; its last value.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout = 20s) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= until) {
            return condition();
        }
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

} // namespace btq_redis_test
