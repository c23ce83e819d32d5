/// @file worker_pool_types.hpp
/// @brief What travels through a worker_pool_executor: worker_request and worker_response, the
///        three ways a request can fail (worker_error, worker_failure, worker_start_error), the
///        pool's options and its counters.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "../errors.hpp"
#include "../process/command.hpp"
#include "../process/frames.hpp"

namespace btq {

/// @brief One task for a worker: an operation name and an opaque body.
struct worker_request {
    std::string operation; ///< what to do, as the worker names it
    std::string body{};    ///< its input, opaque to btq
    /// Run timeout for this request; empty = worker_pool_options::task_timeout.
    std::optional<std::chrono::milliseconds> timeout{};
};

/// @brief A worker's answer to one request.
struct worker_response {
    std::string body;                      ///< the result frame's payload
    pid_t worker_pid = 0;                  ///< the worker that answered
    std::chrono::nanoseconds wait_time{0}; ///< in the queue, before a slot was free
    std::chrono::nanoseconds run_time{0};  ///< from the request's first byte to its answer
};

/// @brief The worker answered the request with an error frame ('E'). The task ran and failed;
///        the worker goes on.
class worker_error : public std::runtime_error {
  public:
    /// @brief An error whose what() is the error frame's `message`.
    explicit worker_error(const std::string& message) : std::runtime_error(message) {}
};

/// @brief Why a worker failed the task it held (btq::worker_failure::cause()).
enum class worker_failure_cause : std::uint8_t {
    crashed,        ///< it exited or was killed by a signal of its own
    protocol_error, ///< it broke the protocol, or closed its response descriptor
    memory_limit,   ///< above worker_pool_options::memory_limit (killed, or refused memory)
    stop_requested, ///< the task's stop token was requested while it ran
    cancelled,      ///< cancel_running()
    shutdown,       ///< the pool is being destroyed
};

/// @brief The worker died, broke the protocol, or was stopped (its memory limit, the task's stop
///        token requested while it ran, cancel_running(), shutdown) while it held the task; the
///        task started, so this is not a task_not_run. The worker has been replaced. `cause()`
///        says which; `exit_code` or `signal` tell how it ended (-1 / 0 when not applicable).
class worker_failure : public std::runtime_error {
  public:
    /// @brief A failure whose what() is `message`; `exit_code` and `signal` as the worker ended.
    worker_failure(const std::string& message, int exit_code, int signal,
                   worker_failure_cause cause = worker_failure_cause::crashed)
        : std::runtime_error(message), exit_code_(exit_code), signal_(signal), cause_(cause) {}
    /// @brief The worker's exit status when it exited, else -1.
    [[nodiscard]] int exit_code() const noexcept { return exit_code_; }
    /// @brief The signal that ended the worker, else 0.
    [[nodiscard]] int signal() const noexcept { return signal_; }
    /// @brief Why the worker failed the task.
    [[nodiscard]] worker_failure_cause cause() const noexcept { return cause_; }

  private:
    int exit_code_;
    int signal_;
    worker_failure_cause cause_;
};

/// @brief No worker could be started (spawn failed; it exited or broke the protocol before its
///        hello, or after it but before answering a request; or the hello did not come in
///        time), or the pool is shutting down. The task never ran: a btq::task_not_run with
///        reason not_started. The message says which (worker_pool_executor, "Failed starts").
class worker_start_error : public task_not_run {
  public:
    /// @brief A start error whose what() is `message`.
    explicit worker_start_error(const std::string& message)
        : task_not_run(not_run_reason::not_started, message) {}
};

/// @brief Configuration of a worker_pool_executor.
struct worker_pool_options {
    /// How to start a worker. Its standard_input, timeout and output limits are not used: the
    /// protocol runs on descriptors 3 and 4, and stdout/stderr go to `log`.
    command worker;
    /// Number of worker processes; give the queue the same max_concurrency.
    std::size_t workers = 4;
    /// Replace a worker after this many tasks (0 = never).
    std::size_t max_tasks_per_worker = 0;
    /// Replace a worker whose resident memory passes this many bytes after a task (0 = never).
    std::size_t max_resident_bytes = 0;
    /// Most memory a worker may use, in bytes, at any time, also while a request runs; empty =
    /// no limit. Held as command::memory_limit is: a memory cgroup per worker (or RLIMIT_DATA)
    /// set before its program runs, and a look at its resident size every
    /// btq::memory_check_interval while a request runs. A worker above it is killed (SIGKILL to
    /// its process group) and replaced; its request fails with btq::worker_failure whose message
    /// says "memory limit" (worker_pool_stats::memory_limit_kills). So is a worker the OOM killer
    /// killed in its cgroup while it handled a request, and one under RLIMIT_DATA that died
    /// handling a request within a quarter of its limit. Replaces worker.memory_limit.
    std::optional<std::size_t> memory_limit{};
    /// Written to each worker's /proc/self/oom_score_adj before its program runs; empty = the
    /// parent's. Default 1000: under host-wide memory pressure the OOM killer takes a worker (which
    /// the pool replaces) before the service. See command::oom_score_adj. Replaces
    /// worker.oom_score_adj.
    std::optional<int> oom_score_adj = command::default_oom_score_adj;
    /// Run timeout of a request without its own; then SIGTERM to the worker's process group,
    /// SIGKILL after `worker.kill_grace`, the task fails with btq::task_timeout and the worker is
    /// replaced.
    std::chrono::milliseconds task_timeout{30'000};
    /// How long a new worker has to send its hello.
    std::chrono::milliseconds handshake_timeout{10'000};
    /// Delay before restarting a worker that failed to start (also after its hello, before its
    /// first answer); doubles with each failed start in a row, pool-wide, until a worker answers
    /// a request.
    std::chrono::milliseconds restart_backoff{100};
    /// The most restart_backoff grows to.
    std::chrono::milliseconds max_restart_backoff{5'000};
    /// On shutdown: how long in-flight tasks may take before the workers' input is closed.
    std::chrono::milliseconds shutdown_grace{5'000};
    /// Largest frame accepted from a worker.
    std::size_t max_frame = protocol::default_max_frame;
    /// Receives each line a worker writes to stdout or stderr (capped at 4 KiB a line). Default:
    /// written to the parent's stderr, prefixed with the worker's pid.
    std::function<void(pid_t worker, std::string_view line)> log{};
};

/// @brief Counters of a worker pool.
struct worker_pool_stats {
    /// Workers spawned.
    std::uint64_t starts = 0;
    /// Spawns that failed, or workers gone (or stopped for breaking the protocol) before their
    /// first answer, hello or not.
    std::uint64_t start_failures = 0;
    /// Workers that died while holding a task.
    std::uint64_t crashes = 0;
    /// Workers stopped because a task ran past its timeout.
    std::uint64_t timeouts = 0;
    /// Workers stopped for breaking the protocol, including a worker that closed its response
    /// descriptor while still running.
    std::uint64_t protocol_errors = 0;
    /// Workers replaced after max tasks or max memory.
    std::uint64_t recycles = 0;
    /// Workers killed (or dead) above worker_pool_options::memory_limit while handling a request.
    std::uint64_t memory_limit_kills = 0;
    /// Workers idle or busy now.
    std::size_t ready = 0;
    /// Failed starts in a row, pool-wide (a worker answering its first request ends the run):
    /// the restart delay grows with it (worker_pool_options::restart_backoff). Above `workers`,
    /// with no worker ready, requests fail at once.
    std::size_t start_failures_in_a_row = 0;
};

} // namespace btq
