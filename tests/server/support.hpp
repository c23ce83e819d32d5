// Helpers of the server tests: temporary folders, the schedule_server child process (started
// with posix_spawn on a free port, its stderr in a file, killed in the destructor), /proc
// scanning for its schedule_worker children, JSON parsing, bounded waits.
#pragma once

#include "../common/files.hpp"
#include "../common/sanitizers.hpp"
#include "http_client.hpp"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#ifndef SCHEDULE_SERVER_BINARY
#error "SCHEDULE_SERVER_BINARY (path of the schedule_server executable) must be defined"
#endif
#ifndef SCHEDULE_WORKER_BINARY
#error "SCHEDULE_WORKER_BINARY (path of the schedule_worker executable) must be defined"
#endif
#ifndef BTQ_SANITIZER_SUPPRESSIONS
#error "BTQ_SANITIZER_SUPPRESSIONS (path of tests/sanitizers) must be defined"
#endif
#ifndef SCHEDULE_SAMPLE_DATA
#error "SCHEDULE_SAMPLE_DATA (path of examples/schedule_server/sample-data) must be defined"
#endif

extern "C" char** environ; // NOLINT

namespace srv_test {

namespace fs = std::filesystem;
using test_files::read_file;
using test_files::write_file;
namespace json = boost::json;
using namespace std::chrono_literals;

inline const fs::path server_binary{SCHEDULE_SERVER_BINARY};
inline const fs::path worker_binary{SCHEDULE_WORKER_BINARY};
inline const fs::path sample_data{SCHEDULE_SAMPLE_DATA};
/// tests/sanitizers: the suppressions files, each entry justified there.
inline const fs::path sanitizer_suppressions{BTQ_SANITIZER_SUPPRESSIONS};

/// A fresh directory for one test, removed at its end.
class temp_dir : public test_files::temp_dir {
  public:
    temp_dir() : test_files::temp_dir("btq-server-test") {}
};

/// Whether `text` contains `part`.
inline bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

inline json::value parse_json(std::string_view text) {
    boost::system::error_code error;
    json::value value = json::parse(text, error);
    if (error) {
        throw std::runtime_error("not JSON (" + error.message() + "): " + std::string(text));
    }
    return value;
}

/// The body of `response` as a JSON object (throws if it is not one).
inline json::object json_body(const http_response& response) {
    json::value value = parse_json(response.body);
    if (!value.is_object()) {
        throw std::runtime_error("not a JSON object: " + response.body);
    }
    return std::move(value.as_object());
}

inline std::string text_of(const json::object& object, std::string_view key) {
    const json::value* value = object.if_contains(key);
    return value != nullptr && value->is_string() ? std::string(value->get_string())
                                                  : std::string("<missing>");
}

inline std::int64_t int_of(const json::object& object, std::string_view key) {
    const json::value* value = object.if_contains(key);
    if (value == nullptr || !(value->is_int64() || value->is_uint64())) {
        throw std::runtime_error("no integer '" + std::string(key) + "' in " +
                                 json::serialize(object));
    }
    return value->to_number<std::int64_t>();
}

/// Polls `condition` every `step` until it holds or `limit` passes; returns the last result.
inline bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds limit,
                       std::chrono::milliseconds step = 10ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        if (condition()) {
            return true;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(step);
    }
}

// --- /proc --------------------------------------------------------------------------------

struct process_info {
    pid_t pid = 0;
    pid_t parent = 0;
    char state = '?';
    std::string comm;
};

/// /proc/PID/stat of one process, if it still exists.
inline std::optional<process_info> read_process(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line)) {
        return std::nullopt;
    }
    const std::size_t open = line.find('(');
    const std::size_t close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close + 2 >= line.size()) {
        return std::nullopt;
    }
    process_info info;
    info.pid = pid;
    info.comm = line.substr(open + 1, close - open - 1);
    std::istringstream rest(line.substr(close + 2));
    long parent = 0;
    rest >> info.state >> parent;
    info.parent = static_cast<pid_t>(parent);
    return info;
}

/// Every process now (threads are not listed in /proc's top level).
inline std::vector<process_info> list_processes() {
    std::vector<process_info> out;
    std::error_code error;
    for (fs::directory_iterator it("/proc", error), end; !error && it != end; it.increment(error)) {
        const std::string name = it->path().filename().string();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
            continue;
        }
        if (auto info = read_process(static_cast<pid_t>(std::stol(name)))) {
            out.push_back(std::move(*info));
        }
    }
    return out;
}

/// Whether the process runs schedule_worker (its comm, or the file name of /proc/PID/exe).
inline bool runs_worker(const process_info& info) {
    if (info.comm == "schedule_worker") {
        return true;
    }
    std::error_code error;
    const fs::path exe = fs::read_symlink("/proc/" + std::to_string(info.pid) + "/exe", error);
    return !error && exe.filename() == "schedule_worker";
}

/// The CPU time (user and system) that process `pid` has used so far, in seconds; -1 if it
/// is gone.
inline double cpu_seconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line) || line.rfind(')') == std::string::npos) {
        return -1;
    }
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    unsigned long long user = 0;
    unsigned long long system = 0;
    for (int index = 3; index <= 15 && rest >> field; ++index) { // fields 14, 15: utime, stime
        if (index == 14) {
            user = std::stoull(field);
        } else if (index == 15) {
            system = std::stoull(field);
        }
    }
    return static_cast<double>(user + system) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

inline bool alive(const process_info& info) {
    return info.state != 'Z' && info.state != 'X';
}

/// The pids of `parent`'s children now, from /proc/PARENT/task/TID/children (a few small reads,
/// so a sampler can run at hundreds of hertz on a loaded machine); empty if the kernel has no
/// such files (CONFIG_PROC_CHILDREN) or `parent` is gone.
inline std::optional<std::vector<pid_t>> child_pids(pid_t parent) {
    std::vector<pid_t> out;
    std::error_code error;
    bool found = false;
    const fs::path tasks = "/proc/" + std::to_string(parent) + "/task";
    for (fs::directory_iterator it(tasks, error), end; !error && it != end; it.increment(error)) {
        std::ifstream in(it->path() / "children");
        found = found || in.is_open();
        long pid = 0;
        while (in >> pid) {
            out.push_back(static_cast<pid_t>(pid));
        }
    }
    if (!found) {
        return std::nullopt;
    }
    return out;
}

/// The children of `parent` now (zombies included, until reaped).
inline std::vector<process_info> children_of(pid_t parent) {
    std::vector<process_info> out;
    if (const auto pids = child_pids(parent)) {
        for (const pid_t pid : *pids) {
            if (auto info = read_process(pid); info && info->parent == parent) {
                out.push_back(std::move(*info));
            }
        }
        return out;
    }
    for (auto& info : list_processes()) {
        if (info.parent == parent) {
            out.push_back(std::move(info));
        }
    }
    return out;
}

/// The pids of the alive schedule_worker children of `parent` now.
inline std::vector<pid_t> worker_pids(pid_t parent) {
    std::vector<pid_t> pids;
    for (const auto& info : children_of(parent)) {
        if (alive(info) && runs_worker(info)) {
            pids.push_back(info.pid);
        }
    }
    return pids;
}

/// Alive schedule_worker children of `parent` now.
inline std::size_t worker_children(pid_t parent) {
    return worker_pids(parent).size();
}

// --- Sanitizer builds ----------------------------------------------------------------------

using btq_test::under_sanitizer;

/// How much longer the tests' waits for the server (its start, its stop) may be:
/// BTQ_TEST_TIME_SCALE if set (a whole number, 1 to 20), else 5 under a sanitizer, else 1.
/// Waits for the server stretch (and a test may scale a delay it injects with it); no
/// assertion about how fast the server is does.
inline int time_scale() {
    if (const char* text = std::getenv("BTQ_TEST_TIME_SCALE"); text != nullptr) {
        const int value = std::atoi(text);
        if (value >= 1 && value <= 20) {
            return value;
        }
    }
    return under_sanitizer() ? 5 : 1;
}

// --- The server process --------------------------------------------------------------------

/// How to start schedule_server; empty/zero fields keep the server's defaults.
struct server_config {
    std::string mode = "pool";
    unsigned pool_size = 0;
    long queue_capacity = -1;
    long queue_timeout_ms = 0;
    long task_timeout_ms = 0;
    long body_limit = 0;
    long shutdown_grace_ms = 0;
    std::string auth_token;
    std::string worker;       ///< default: the built schedule_worker
    long worker_delay_ms = 0; ///< SCHEDULE_WORKER_DELAY_MS in the server's environment
    /// The server's RLIMIT_NOFILE (soft and hard), set in the child before exec; 0: inherited.
    unsigned descriptor_limit = 0;
    std::vector<std::string> extra_arguments;
};

/// The raw wait status of a process, or nothing if it did not end within `limit`.
inline std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds limit) {
    std::optional<int> result;
    wait_until(
        [&] {
            int status = 0;
            const pid_t done = ::waitpid(pid, &status, WNOHANG);
            if (done == pid) {
                result = status;
                return true;
            }
            return done < 0 && errno != EINTR; // not our child any more: give up
        },
        limit, 5ms);
    return result;
}

/// schedule_server as a child process, with its own data folder (filled from the sample data)
/// and its stderr in a file. The destructor kills it (and its workers) if it still runs.
class server_process {
  public:
    /// Starts the server; with `wait_listening`, waits (at most 15 s) for its "listening on"
    /// line and throws with its log if it exits or does not get there.
    explicit server_process(const server_config& config, bool wait_listening = true) {
        log_path_ = dir_.path() / "server.log";
        data_dir_ = dir_.path() / "data";
        std::vector<std::string> args{server_binary.string(),
                                      "--port",
                                      "0",
                                      "--mode",
                                      config.mode,
                                      "--data-dir",
                                      data_dir_.string(),
                                      "--sample-data",
                                      sample_data.string(),
                                      "--worker",
                                      config.worker.empty() ? worker_binary.string()
                                                            : config.worker};
        auto option = [&args](const char* name, long value, long unset) {
            if (value != unset) {
                args.emplace_back(name);
                args.push_back(std::to_string(value));
            }
        };
        option("--pool-size", static_cast<long>(config.pool_size), 0);
        option("--queue-capacity", config.queue_capacity, -1);
        option("--queue-timeout-ms", config.queue_timeout_ms, 0);
        option("--task-timeout-ms", config.task_timeout_ms, 0);
        option("--body-limit", config.body_limit, 0);
        option("--shutdown-grace-ms", config.shutdown_grace_ms, 0);
        if (!config.auth_token.empty()) {
            args.emplace_back("--auth-token");
            args.push_back(config.auth_token);
        }
        args.insert(args.end(), config.extra_arguments.begin(), config.extra_arguments.end());

        std::vector<std::string> env;
        for (char** e = environ; *e != nullptr; ++e) {
            const std::string_view entry(*e);
            if (!entry.starts_with("BTQ_WORKER_PROTOCOL=") &&
                !entry.starts_with("SCHEDULE_WORKER_DELAY_MS=") &&
                !entry.starts_with("SCHEDULE_SERVER_TOKEN=")) {
                env.emplace_back(entry);
            }
        }
        if (config.worker_delay_ms > 0) {
            env.push_back("SCHEDULE_WORKER_DELAY_MS=" + std::to_string(config.worker_delay_ms));
        }
        if (config.descriptor_limit > 0) {
            // Out of descriptors on purpose: UBSan's vptr check cannot probe memory then (see
            // the file), so this one process gets its suppressions.
            const std::string suppressions =
                "suppressions=" +
                (sanitizer_suppressions / "ubsan_out_of_descriptors.supp").string();
            bool found = false;
            for (std::string& entry : env) {
                if (entry.starts_with("UBSAN_OPTIONS=")) {
                    entry += ":" + suppressions;
                    found = true;
                }
            }
            if (!found) {
                env.push_back("UBSAN_OPTIONS=" + suppressions);
            }
        }
        start(args, env, config.descriptor_limit);
        if (wait_listening) {
            wait_listening_line();
        }
    }

    server_process(const server_process&) = delete;
    server_process& operator=(const server_process&) = delete;
    server_process(server_process&&) = delete;
    server_process& operator=(server_process&&) = delete;

    /// Stops the server as an operator would (SIGTERM, so it stops and reaps its workers); if
    /// it has not ended after 3 s, kills it and its children.
    /// Under a sanitizer, a report in the log (the server's, or a pool worker's, whose lines
    /// the server copies to its stderr) or a stop that did not exit 0 fails the test.
    ~server_process() {
        std::optional<int> status;
        if (pid_ > 0 && !reaped_) {
            const auto workers = children_of(pid_);
            ::kill(pid_, SIGTERM);
            status = wait_for_exit(pid_, 3s * time_scale());
            if (!status) {
                ::kill(pid_, SIGKILL);
                for (const auto& info : workers) {
                    ::kill(info.pid, SIGKILL);
                }
                wait_for_exit(pid_, 5s);
            }
        }
        if (pid_ > 0) {
            check_sanitizer_log(status);
        }
    }

    [[nodiscard]] unsigned short port() const noexcept { return port_; }
    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    [[nodiscard]] const fs::path& data_dir() const noexcept { return data_dir_; }
    [[nodiscard]] const fs::path& scratch() const noexcept { return dir_.path(); }
    [[nodiscard]] std::string log() const { return read_file(log_path_); }

    /// Waits (at most `limit`) for `text` to appear in the log.
    bool wait_for_log(const std::string& text, std::chrono::milliseconds limit) const {
        return wait_until([&] { return log().find(text) != std::string::npos; }, limit);
    }

    /// Waits (at most `limit`) for the server to end; its raw wait status.
    std::optional<int> wait_exit(std::chrono::milliseconds limit) {
        auto status = wait_for_exit(pid_, limit);
        if (status) {
            reaped_ = true;
        }
        return status;
    }

    void signal(int number) const { ::kill(pid_, number); }

    http_response get(const std::string& target) const { return request(port_, "GET", target); }
    http_response post_json(const std::string& target, const std::string& body,
                            header_list headers = {}) const {
        headers.emplace_back("Content-Type", "application/json");
        return request(port_, "POST", target, body, headers);
    }

    /// /api/queue-stats' processPool object.
    [[nodiscard]] json::object pool_stats() const {
        const json::object stats = json_body(get("/api/queue-stats"));
        return stats.at("processPool").as_object();
    }
    /// /api/queue-stats' queue object (btq's counters beside the seed's).
    [[nodiscard]] json::object queue_stats() const {
        const json::object stats = json_body(get("/api/queue-stats"));
        return stats.at("queue").as_object();
    }

  private:
    /// Fails the test (without throwing: this runs in the destructor) when the log holds a
    /// sanitizer's report, or when a server the destructor stopped with SIGTERM did not exit 0
    /// (LeakSanitizer exits 23 and ThreadSanitizer 66 after a report at exit).
    void check_sanitizer_log(std::optional<int> status) const {
        const std::string text = log();
        bool reported = false;
        for (const std::string_view marker :
             {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
              "ThreadSanitizer: ", "runtime error: ", "SUMMARY: UndefinedBehaviorSanitizer"}) {
            reported = reported || contains(text, marker);
        }
        const bool bad_exit = status && !(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
        if (reported || (bad_exit && under_sanitizer())) {
            std::fprintf(stderr,
                         "schedule_server (pid %d) log with a sanitizer report or a bad "
                         "exit (status %d):\n%s\n",
                         static_cast<int>(pid_), status ? *status : -1, text.c_str());
            if (std::uncaught_exceptions() == 0) {
                FAIL_CHECK("schedule_server: a sanitizer report or a bad exit (its log above)");
            }
        }
    }

    void start(std::vector<std::string>& args, std::vector<std::string>& env,
               unsigned descriptor_limit) {
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        std::vector<char*> envp;
        for (auto& e : env) {
            envp.push_back(e.data());
        }
        envp.push_back(nullptr);
        if (descriptor_limit > 0) {
            start_limited(argv, envp, descriptor_limit);
            return;
        }
        posix_spawn_file_actions_t actions;
        ::posix_spawn_file_actions_init(&actions);
        ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        ::posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(),
                                           O_WRONLY | O_CREAT | O_APPEND, 0644);
        ::posix_spawn_file_actions_addopen(&actions, 2, log_path_.c_str(),
                                           O_WRONLY | O_CREAT | O_APPEND, 0644);
        const int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
        ::posix_spawn_file_actions_destroy(&actions);
        if (rc != 0) {
            pid_ = -1;
            throw std::system_error(rc, std::generic_category(), "posix_spawn schedule_server");
        }
    }

    /// fork, then in the child (async-signal-safe calls only) the descriptor limit, the log as
    /// stdout and stderr, and exec: posix_spawn cannot set a limit.
    void start_limited(std::vector<char*>& argv, std::vector<char*>& envp, unsigned limit) {
        const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        const int log_fd =
            ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (null_fd < 0 || log_fd < 0) {
            throw std::system_error(errno, std::generic_category(), "open the server's log");
        }
        pid_ = ::fork();
        if (pid_ == 0) {
            const rlimit wanted{limit, limit};
            if (::setrlimit(RLIMIT_NOFILE, &wanted) == 0 && ::dup2(null_fd, 0) == 0 &&
                ::dup2(log_fd, 1) == 1 && ::dup2(log_fd, 2) == 2) {
                ::execve(argv[0], argv.data(), envp.data());
            }
            ::_exit(127);
        }
        const int fork_error = errno;
        ::close(null_fd);
        ::close(log_fd);
        if (pid_ < 0) {
            throw std::system_error(fork_error, std::generic_category(), "fork schedule_server");
        }
    }

    void wait_listening_line() {
        constexpr std::string_view marker = "listening on http://127.0.0.1:";
        std::optional<int> ended;
        const bool listening = wait_until(
            [&] {
                const std::string text = log();
                const std::size_t at = text.find(marker);
                if (at != std::string::npos) {
                    const std::size_t digits = at + marker.size();
                    const std::size_t stop = text.find_first_not_of("0123456789", digits);
                    if (stop != std::string::npos && stop > digits) {
                        port_ = static_cast<unsigned short>(
                            std::stoul(text.substr(digits, stop - digits)));
                        return true;
                    }
                }
                ended = wait_for_exit(pid_, 0ms);
                return ended.has_value();
            },
            15s * time_scale());
        if (ended) {
            reaped_ = true;
        }
        if (!listening || ended) {
            throw std::runtime_error("schedule_server did not start listening; log:\n" + log());
        }
    }

    temp_dir dir_;
    fs::path log_path_;
    fs::path data_dir_;
    pid_t pid_ = -1;
    bool reaped_ = false;
    unsigned short port_ = 0;
};

/// How the server ended when started with `flags`: its exit status (-1 if it did not exit within
/// 10 s or was killed) and its log.
inline std::pair<int, std::string> start_refused(const std::vector<std::string>& flags) {
    server_config config;
    config.extra_arguments = flags;
    server_process server(config, false);
    const auto status = server.wait_exit(10s);
    const int code = status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
    return {code, server.log()};
}

/// Checks that the server refuses `flags` at start as it refuses other bad flags: exit status
/// `usual` (that of a bad --pool-size), `message` in its log, never listening. Returns the log.
inline std::string check_refused_at_start(const std::vector<std::string>& flags,
                                          std::string_view message, int usual) {
    CAPTURE(flags);
    const auto [code, log] = start_refused(flags);
    INFO(log);
    CHECK(code == usual);
    CHECK(contains(log, message));
    CHECK_FALSE(contains(log, "listening on"));
    return log;
}

/// Runs schedule_worker once (`--data-dir DIR OPERATION`, `input` on stdin) with a 10 s limit;
/// its standard output.
inline std::string run_worker_once(const fs::path& data_dir, const std::string& operation,
                                   std::string_view input) {
    temp_dir scratch;
    const fs::path in = scratch.path() / "in";
    const fs::path out = scratch.path() / "out";
    write_file(in, input);
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_addopen(&actions, 0, in.c_str(), O_RDONLY, 0);
    ::posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                       0644);
    std::vector<std::string> args{worker_binary.string(), "--data-dir", data_dir.string(),
                                  operation};
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string_view entry(*e);
        if (!entry.starts_with("BTQ_WORKER_PROTOCOL=") &&
            !entry.starts_with("SCHEDULE_WORKER_DELAY_MS=")) {
            env.emplace_back(entry);
        }
    }
    std::vector<char*> envp;
    for (auto& e : env) {
        envp.push_back(e.data());
    }
    envp.push_back(nullptr);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
    ::posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        throw std::system_error(rc, std::generic_category(), "posix_spawn schedule_worker");
    }
    if (!wait_for_exit(pid, 10s)) {
        ::kill(pid, SIGKILL);
        wait_for_exit(pid, 5s);
        throw std::runtime_error("schedule_worker " + operation + " did not finish in 10 s");
    }
    return read_file(out);
}

/// Lines of `log` that contain `text`.
inline std::vector<std::string> log_lines_with(const std::string& log, std::string_view text) {
    std::vector<std::string> out;
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);) {
        if (line.find(text) != std::string::npos) {
            out.push_back(line);
        }
    }
    return out;
}

/// The number of log lines containing `text`, once it reaches `expected` or `limit` passed. (A
/// request's access-log line is written after its response, so a client may see the answer
/// before the line is there.)
inline std::size_t log_count(const server_process& server, std::string_view text,
                             std::size_t expected, std::chrono::milliseconds limit = 3s) {
    std::size_t count = 0;
    wait_until(
        [&] {
            count = log_lines_with(server.log(), text).size();
            return count >= expected;
        },
        limit);
    return count;
}

/// A request that gives an error instead of throwing: status 0 and the message in the body.
inline http_response try_request(unsigned short port, const std::string& method,
                                 const std::string& target, const std::string& body = "",
                                 const header_list& headers = {},
                                 std::chrono::milliseconds timeout = default_timeout) {
    try {
        return request(port, method, target, body, headers, timeout);
    } catch (const std::exception& failure) {
        http_response broken;
        broken.body = failure.what();
        return broken;
    }
}

/// `count` requests at once, each on its own connection from its own thread; answers in order.
inline std::vector<http_response>
concurrent_requests(std::size_t count, const std::function<http_response(std::size_t)>& send) {
    std::vector<http_response> answers(count);
    std::vector<std::thread> threads;
    threads.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        threads.emplace_back([&answers, &send, i] { answers[i] = send(i); });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    return answers;
}

/// The request of the sample schedule: campus-news on campus-tv.
inline const std::string schedule_playlist_body =
    R"({"playlist":"campus-news","channel":"campus-tv","start":"2026-11-30T08:00:00+01:00"})";

/// A valid JSON import request with two items.
inline std::string import_body(const std::string& name) {
    return R"({"name":")" + name +
           R"(","channel":"campus-tv","items":[)"
           R"({"title":"News","url":"http://example.org/news.mp4","start":"2026-12-01T08:00:00+01:00","duration":1800},)"
           R"({"title":"Weather","start":"2026-12-01T08:30:00+01:00","duration":600}]})";
}

/// A small XMLTV document with one channel and two programmes.
inline const std::string xmltv_body =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<tv>\n"
    "  <channel id=\"radio-x\"><display-name>Radio X</display-name></channel>\n"
    "  <programme start=\"20261202090000 +0100\" stop=\"20261202093000 +0100\" "
    "channel=\"radio-x\"><title>Morning Show</title></programme>\n"
    "  <programme start=\"20261202093000 +0100\" stop=\"20261202100000 +0100\" "
    "channel=\"radio-x\"><title>Talk</title><url>http://example.org/talk.mp3</url></programme>\n"
    "</tv>\n";

/// The value of the sample line `name value` in Prometheus text, or -1 when there is none.
inline double metric_value(const std::string& metrics, const std::string& name) {
    const std::string prefix = "\n" + name + " ";
    const std::size_t at = metrics.find(prefix);
    if (at == std::string::npos) {
        return -1;
    }
    return std::stod(metrics.substr(at + prefix.size()));
}

/// The number of schedules /api/schedules lists.
inline std::int64_t schedule_count(const server_process& server) {
    const http_response response = server.get("/api/schedules");
    if (response.status != 200) {
        throw std::runtime_error("/api/schedules: " + std::to_string(response.status) + " " +
                                 response.body);
    }
    return int_of(json_body(response), "count");
}

} // namespace srv_test
