/// @file command.hpp
/// @brief btq::command (what to run as a child process), btq::process_result (how it ended) and
///        btq::spawn_error (why it could not start). Shared by the process executors.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "../errors.hpp"

namespace btq {

/// @brief Where a child's environment comes from.
enum class environment_mode {
    inherit, ///< the parent's environment, with command::environment applied on top
    replace, ///< exactly command::environment, nothing inherited
};

/// @brief What happens when a child writes more than its output limit.
enum class output_limit_action {
    truncate, ///< keep the first `limit` bytes, flag the stream as truncated, let the child run
    kill,     ///< kill the child's process group; the result's ending is output_limit
};

/// @brief A program to run as a child process. Never a shell string: `program` and `arguments`
///        reach execve() unchanged, byte for byte.
/// @code
/// btq::command cmd{.program = "python3", .arguments = {"tool.py", "--op", "schedules"}};
/// cmd.standard_input = request_json;
/// cmd.timeout = std::chrono::seconds(30);
/// @endcode
struct command {
    /// Path of the program, or a name looked up in the parent's PATH when it has no '/'.
    std::string program;
    /// argv[1...]; argv[0] is `program`.
    std::vector<std::string> arguments{};
    /// inherit (default): the parent's environment plus `environment`; replace: `environment` only.
    environment_mode environment_source = environment_mode::inherit;
    /// Variables to set (with inherit: added or overriding).
    std::map<std::string, std::string> environment{};
    /// Variables to remove from the inherited environment.
    std::vector<std::string> unset_environment{};
    /// Working directory of the child; empty = the parent's.
    std::string working_directory{};
    /// Bytes written to the child's standard input, which is then closed. Empty: stdin is at
    /// end of file from the start.
    std::string standard_input{};
    /// Run timeout, from the moment the child is started: then SIGTERM to its process group,
    /// and SIGKILL `kill_grace` later. Empty = no limit.
    std::optional<std::chrono::milliseconds> timeout{};
    /// Time between SIGTERM and SIGKILL when the child is stopped.
    std::chrono::milliseconds kill_grace{2000};
    /// Most bytes kept of standard output.
    std::size_t stdout_limit = std::size_t{16} << 20;
    /// Most bytes kept of standard error.
    std::size_t stderr_limit = std::size_t{1} << 20;
    /// What exceeding a limit does.
    output_limit_action on_output_limit = output_limit_action::truncate;
    /// Most memory the child may use, in bytes; empty = no limit. Held two ways (README, "Memory
    /// limit"): RLIMIT_DATA set in the child before its program runs, so the kernel refuses
    /// private writable memory past it, and a look at the child's resident size every
    /// btq::memory_check_interval, which kills its process group above it. The result's ending
    /// is then process_ending::memory_limit.
    std::optional<std::size_t> memory_limit{};
    /// Written to the child's /proc/self/oom_score_adj before its program runs; empty = the
    /// parent's, inherited. The default, 1000, makes the child the OOM killer's first choice
    /// under host-wide memory pressure, before the service that started it. Raising needs no
    /// privilege; a value below the parent's needs CAP_SYS_RESOURCE, and without it the command
    /// fails to start with btq::spawn_error (EACCES, step "oom_score_adj").
    std::optional<int> oom_score_adj = default_oom_score_adj;

    /// The default of oom_score_adj (and worker_pool_options::oom_score_adj).
    static constexpr int default_oom_score_adj = 1000;
};

/// @brief How a child process ended.
enum class process_ending {
    exited,       ///< it exited by itself; see exit_code
    signaled,     ///< a signal killed it (not one of ours); see signal
    timed_out,    ///< it ran past command::timeout and was stopped
    output_limit, ///< it wrote past a limit with output_limit_action::kill and was killed
    cancelled,    ///< its task's stop token was requested while it ran, and it was stopped
    memory_limit, ///< it went above command::memory_limit and was stopped (or the kernel refused
                  ///< it)
};

/// @brief The ending's name as written in the enum ("exited", "signaled", ...), for logs.
/// @code
/// std::printf("%s\n", btq::to_string(result.ending).data()); // "timed_out"
/// @endcode
[[nodiscard]] constexpr std::string_view to_string(process_ending ending) noexcept {
    switch (ending) {
    case process_ending::exited:
        return "exited";
    case process_ending::signaled:
        return "signaled";
    case process_ending::timed_out:
        return "timed_out";
    case process_ending::output_limit:
        return "output_limit";
    case process_ending::cancelled:
        return "cancelled";
    case process_ending::memory_limit:
        return "memory_limit";
    }
    return "unknown";
}

/// @brief The outcome of a command that started.
struct process_result {
    process_ending ending = process_ending::exited; ///< how it ended
    int exit_code = -1;                             ///< with ending == exited; otherwise -1
    int signal = 0;                ///< the signal that ended it (every ending but exited); else 0
    std::string standard_output;   ///< what it wrote, up to stdout_limit
    std::string standard_error;    ///< what it wrote, up to stderr_limit
    bool stdout_truncated = false; ///< more was written than kept
    bool stderr_truncated = false; ///< more was written than kept
    pid_t pid = 0;                 ///< its process id (and process group id)
    std::chrono::nanoseconds wait_time{0};  ///< in the queue, before a slot was free
    std::chrono::nanoseconds spawn_time{0}; ///< inside posix_spawn
    std::chrono::nanoseconds run_time{0};   ///< from spawn until reaped and its pipes closed
    /// The most resident memory the child had at once, in bytes, from its final accounting
    /// (ru_maxrss of its rusage). Linux counts the parent's own peak into that figure for a child
    /// smaller than its parent; then the largest peak the event thread saw is reported, for a
    /// child with a memory limit, and ru_maxrss (an upper bound) otherwise.
    std::size_t peak_resident_bytes = 0;

    /// @brief Exited by itself with status 0.
    [[nodiscard]] bool succeeded() const noexcept {
        return ending == process_ending::exited && exit_code == 0;
    }
};

/// @brief The program could not be started (not found, not executable, bad working directory,
///        out of processes...). The task never ran, so this is a btq::task_not_run (reason
///        not_started); code() holds the errno.
class spawn_error : public task_not_run {
  public:
    /// @param error_number the errno of the failure
    /// @param program the program that could not be started
    /// @param step what failed, when it is not the start itself (e.g. "chdir"); may be empty
    spawn_error(int error_number, std::string program, const std::string& step = {})
        : task_not_run(not_run_reason::not_started,
                       "btq: cannot start '" + program + "'" +
                           (step.empty() ? std::string() : " (" + step + ")") + ": " +
                           std::generic_category().message(error_number)),
          code_(error_number, std::generic_category()), program_(std::move(program)) {}

    /// @brief The errno of the failure.
    [[nodiscard]] const std::error_code& code() const noexcept { return code_; }
    /// @brief The program that could not be started.
    [[nodiscard]] const std::string& program() const noexcept { return program_; }

  private:
    std::error_code code_;
    std::string program_;
};

} // namespace btq
