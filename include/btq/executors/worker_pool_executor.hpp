/// @file worker_pool_executor.hpp
/// @brief worker_pool_executor: runs tasks on persistent worker processes that speak the worker
///        protocol (docs/worker-protocol.md), one request in flight per worker.
///
/// This header holds the class, its documentation and its declarations; the definitions are in
/// impl/worker_pool_executor.hpp (included at the end), in the order a request travels. What a
/// request and its answer are, the errors and the options are in worker_pool_types.hpp.
#pragma once

#include <sys/epoll.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../executor.hpp"
#include "../process/deadline_heap.hpp"
#include "../process/event_loop.hpp"
#include "../process/event_thread.hpp"
#include "../process/frames.hpp"
#include "../process/line_splitter.hpp"
#include "../process/memory_limit.hpp"
#include "../process/unique_fd.hpp"
#include "worker_pool_types.hpp"

namespace btq {

/// @brief Runs worker_request tasks on `options.workers` persistent worker processes.
///
/// The seed's "next improvement": a line to a running worker costs microseconds where starting
/// a process costs milliseconds. Each worker has at most one request in flight. A worker that
/// crashes fails only its in-flight task and is replaced (with exponential backoff if it keeps
/// failing to start); one that exceeds its task's timeout is stopped (process group, SIGTERM then
/// SIGKILL) and replaced, its task failing with btq::task_timeout. Workers are recycled after
/// `max_tasks_per_worker` tasks or above `max_resident_bytes`. With `memory_limit`, a worker is
/// held to it while a request runs too (RLIMIT_DATA from its start, and a look at its resident
/// size every btq::memory_check_interval): above it the worker is killed and replaced, and the
/// request fails with btq::worker_failure saying "memory limit".
///
/// Failed starts. A start fails when the worker cannot be spawned; when it exits, closes its
/// response descriptor or breaks the protocol before its hello; when no hello comes within
/// `handshake_timeout`; and also when, after its hello, it exits, closes its response descriptor
/// or breaks the protocol (an unrequested result, a second hello) before it has answered its
/// first request. Only an answered request ends a run of failed starts, so a program that greets
/// and dies is restarted with the back-off of worker_pool_options::restart_backoff, not in a
/// loop. Each failed start answers one request: the one its worker held (btq::worker_failure),
/// or else the oldest waiting one (btq::worker_start_error, saying what happened: "exited with
/// code 0 after its hello, before answering a request"). Once more starts in a row have failed
/// than the pool has workers, and while no worker is idle or busy, every waiting request, and
/// every one handed over later, fails at once with btq::worker_start_error carrying the last
/// failure, until a worker says hello. So a request never waits on a pool that cannot start a
/// worker longer than two rounds of attempts: at most about 2 × (`handshake_timeout` +
/// `max_restart_backoff`) for workers that never say hello, a fraction of a second for ones that
/// fail at once. (A request sent to a worker is bounded by its run timeout.)
///
/// A worker whose response descriptor reaches end of file is noticed at once, idle or busy: it
/// can answer nothing more, so it is killed (SIGKILL to its process group) and replaced, and gets
/// no further request. If it was still running it counts as a protocol error; one that closed
/// the descriptor by exiting is an ordinary exit (a crash if it held a task).
///
/// A stop requested on a task's completion::stop_token() (submit_options::stop, or the queue's
/// run timeout):
/// - while its request is in flight: the worker's process group is killed (SIGKILL: a worker's
///   state is opaque, and it is replaced anyway), the worker is replaced, and the task fails
///   with btq::worker_failure saying it was stopped while running (it started, so it is no
///   task_not_run);
/// - while the request was handed over but not yet sent to a worker: it is never sent and fails
///   with btq::task_cancelled.
/// @code
/// btq::worker_pool_options options{.worker = {.program = "./my_worker"}, .workers = 4};
/// btq::bounded_task_queue<btq::worker_request, btq::worker_pool_executor> queue(
///     {.max_concurrency = 4, .capacity = 100}, options);
/// btq::worker_response r = queue.submit({.operation = "echo", .body = "hi"}).get();
/// @endcode
class worker_pool_executor {
  public:
    /// A request yields the worker's answer.
    template <class Task>
    using result_type = worker_response;
    /// Stops running work by force: see btq::cancellable_executor.
    static constexpr bool stops_running_tasks = true;

    /// @brief True on the executor's event thread, where completions (and so callbacks) run: a
    ///        queue's drain() there would wait for itself.
    [[nodiscard]] bool owns_this_thread() const noexcept { return events_.owns_this_thread(); }

    /// @brief Starts the event thread, which starts the workers.
    /// @throws std::invalid_argument when `options.workers` is 0
    explicit worker_pool_executor(worker_pool_options options) : options_(std::move(options)) {
        if (options_.workers == 0) {
            throw std::invalid_argument("btq: a worker pool needs at least one worker");
        }
        if (!options_.log) {
            options_.log = [](pid_t pid, std::string_view line) {
                std::fprintf(stderr, "[worker %d] %.*s\n", static_cast<int>(pid),
                             static_cast<int>(line.size()), line.data());
            };
        }
        options_.worker.environment["BTQ_WORKER_PROTOCOL"] = "1";
        options_.worker.memory_limit = options_.memory_limit;
        options_.worker.oom_score_adj = options_.oom_score_adj;
        slots_.resize(options_.workers);
        for (std::size_t i = 0; i < slots_.size(); ++i) {
            slots_[i] = std::make_unique<worker>();
            slots_[i]->index = i;
        }
        events_.start([this] { run_loop(); });
    }

    worker_pool_executor(const worker_pool_executor&) = delete;
    worker_pool_executor& operator=(const worker_pool_executor&) = delete;
    worker_pool_executor(worker_pool_executor&&) = delete;
    worker_pool_executor& operator=(worker_pool_executor&&) = delete;

    /// @brief Shuts the pool down: waiting requests fail with worker_start_error, in-flight ones
    ///        get `shutdown_grace` to finish, then the workers' input is closed (they exit at end
    ///        of input), then SIGTERM, then SIGKILL. Every worker is reaped.
    ~worker_pool_executor() { events_.stop_and_join(); }

    /// @brief Cancels every request handed to the pool so far: workers busy with one are killed
    ///        (SIGKILL to the process group) and replaced, and requests not yet sent to a worker
    ///        are dropped; all of them fail with btq::worker_failure ("cancelled"). Idle workers
    ///        and requests handed over later are not affected. A queue's destructor calls this
    ///        (btq::cancellable_executor), so destroying a queue never waits for a long request;
    ///        to let running requests finish, drain() or shutdown() the queue first.
    /// @code
    /// if (!queue.drain(std::chrono::seconds(10))) {
    ///     queue.executor().cancel_running(); // the grace is over
    /// }
    /// @endcode
    void cancel_running() {
        // Handed over but not yet seen by the event loop: cancelled too, and nothing later.
        events_.request_cancel();
    }

    /// @brief Queues `request` for the next idle worker. A request whose stop token is already
    ///        stopped is not queued: it fails at once with btq::task_cancelled.
    template <class Task>
        requires std::same_as<std::remove_cvref_t<Task>, worker_request>
    void execute(Task&& request, completion<worker_response> done);

    /// @brief Counters (each read atomically; not one snapshot).
    [[nodiscard]] worker_pool_stats stats() const noexcept {
        worker_pool_stats out;
        out.starts = starts_.load();
        out.start_failures = start_failures_.load();
        out.crashes = crashes_.load();
        out.timeouts = timeouts_.load();
        out.protocol_errors = protocol_errors_.load();
        out.recycles = recycles_.load();
        out.memory_limit_kills = memory_limit_kills_.load();
        out.ready = ready_.load();
        out.start_failures_in_a_row = start_failures_in_a_row_.load();
        return out;
    }

  private:
    using clock_type = std::chrono::steady_clock;

    struct pending_request {
        worker_request request;
        completion<worker_response> done;
        std::chrono::nanoseconds waited{0};
        process::stop_watch stop; // on done's stop token
    };

    enum class state : std::uint8_t {
        empty,    // no process; restart due at restart_at
        starting, // spawned, waiting for the hello
        idle,     // ready for a request
        busy,     // a request in flight
        stopping, // input closed or signalled; waiting for it to exit
    };
    enum class stream : std::uint8_t { pidfd, requests, responses, output, error };
    /// Why a worker is being stopped: decides what its in-flight task is told.
    enum class stop_reason : std::uint8_t {
        none,
        recycle,
        timeout,
        protocol,
        shutdown,
        cancel,       // cancel_running()
        requested,    // its task's stop token
        hang_up,      // its response descriptor reached end of file: it can answer nothing more
        memory_limit, // above worker_pool_options::memory_limit while a request ran
    };

    /// What a worker's task is told it failed of, when the pool stopped the worker for `reason`.
    static worker_failure_cause failure_cause_of(stop_reason reason) noexcept {
        switch (reason) {
        case stop_reason::protocol:
        case stop_reason::hang_up:
            return worker_failure_cause::protocol_error;
        case stop_reason::memory_limit:
            return worker_failure_cause::memory_limit;
        case stop_reason::requested:
            return worker_failure_cause::stop_requested;
        case stop_reason::cancel:
            return worker_failure_cause::cancelled;
        case stop_reason::shutdown:
            return worker_failure_cause::shutdown;
        default:
            return worker_failure_cause::crashed;
        }
    }

    struct worker;
    struct watch {
        worker* owner;
        stream which;
    };

    struct worker {
        std::size_t index = 0;
        state current = state::empty;
        std::uint64_t generation = 0; // distinguishes deadlines of successive processes
        pid_t pid = 0;
        process::unique_fd pidfd;
        process::unique_fd requests;  // we write
        process::unique_fd responses; // we read
        process::unique_fd output;
        process::unique_fd error;
        protocol::frame_reader reader;
        std::string to_send;
        std::size_t sent = 0;
        std::unique_ptr<pending_request> task;
        clock_type::time_point task_started;
        std::size_t tasks_done = 0;
        bool said_hello = false;
        stop_reason stopping_for = stop_reason::none;
        std::string stop_message;
        process::line_splitter output_lines;
        process::line_splitter error_lines;
        clock_type::time_point restart_at;
        std::array<watch, 5> watches{};
        std::optional<process::memory_watch> memory; // with a memory limit
    };

    enum class deadline_kind : std::uint8_t {
        handshake,
        task,
        terminate,
        kill,
        restart,
        memory_check
    };
    /// Whose a deadline is: a slot, and which of its successive processes.
    struct deadline_key {
        std::size_t slot;
        std::uint64_t generation;
    };

    /// While a request is in flight the event thread polls this long before it sleeps.
    static constexpr std::chrono::microseconds busy_poll{50};

    // A request's way (all on the event thread but execute()).
    /// Moves requests from execute() into waiting_ (and those a cancel_running() withdrew into
    /// cancelled_); sets `stop_some` when a request's stop token was requested since the last
    /// call. Returns true once the pool is stopping.
    bool take_incoming(bool& stop_some);
    /// Answers the requests whose stop token was requested: never sent ones with
    /// task_cancelled; in-flight ones by killing their worker.
    void stop_requested_tasks();
    void assign_waiting();
    void send_request(worker& w);
    void write_requests(worker& w);
    void read_responses(worker& w);
    void on_frame(worker& w, protocol::frame frame);
    [[nodiscard]] bool should_recycle(const worker& w) const;

    // The event loop.
    void run_loop();
    /// epoll_wait, after polling for busy_poll while a request is in flight.
    int wait_for_events(std::array<epoll_event, 64>& events);
    void handle(worker& w, stream which);
    /// After a cancel_running() call: the requests it withdrew from the hand-over list (the
    /// caller adds the loop's own waiting ones); otherwise nothing.
    std::optional<std::vector<std::unique_ptr<pending_request>>> take_cancel_request();
    void fail_all_waiting(const std::string& message);

    // A worker's life.
    void start_worker(worker& w);
    /// A worker could not be started, or ended before answering its first request: back off,
    /// and answer one request with the failure, so callers get an answer instead of a hang:
    /// the worker's own (`held_task`, already answered), or else the oldest waiting one.
    void start_failed(worker& w, const std::string& why, bool held_task = false);
    /// More than `workers` starts in a row have failed and no worker is idle or busy: every
    /// waiting request fails at once with the last failure instead of waiting for a worker.
    [[nodiscard]] bool failing() const;
    /// The worker's response descriptor reached end of file: it can answer nothing more.
    void hung_up(worker& w);
    void protocol_failure(worker& w, const std::string& why);
    /// Starts stopping a worker: closes its input (it exits at end of input), then SIGTERM and
    /// SIGKILL on deadlines. Its in-flight task, if any, is answered when it is reaped.
    void begin_stop(worker& w, stop_reason reason, std::string message);
    void reap(worker& w);
    /// Reads what an exited worker left in its response pipe: the answer of a busy one, or the
    /// hello of a starting one (so its failure is told as coming after its hello).
    void drain_responses(worker& w);

    // Output and deadlines.
    void read_log(worker& w, stream which);
    void flush_log(worker& w) const;
    void run_due_deadlines();

    // Plumbing, small enough to be defined here.
    void add_watch(worker& w, stream which, int fd, std::uint32_t interest) {
        watch& slot = w.watches[static_cast<std::size_t>(which)];
        slot = watch{&w, which};
        events_.poller().add(fd, interest, &slot);
    }

    static process::unique_fd& descriptor(worker& w, stream which) {
        switch (which) {
        case stream::pidfd:
            return w.pidfd;
        case stream::requests:
            return w.requests;
        case stream::responses:
            return w.responses;
        case stream::output:
            return w.output;
        case stream::error:
            return w.error;
        }
        return w.pidfd;
    }

    void close_stream(worker& w, stream which) {
        events_.poller().remove_and_close(descriptor(w, which));
    }

    void close_all(worker& w) {
        for (stream which :
             {stream::requests, stream::responses, stream::output, stream::error, stream::pidfd}) {
            close_stream(w, which);
        }
    }

    void schedule(const worker& w, clock_type::duration after, deadline_kind kind) {
        deadlines_.push(clock_type::now() + after, {w.index, w.generation}, kind);
    }

    void set_start_failures_in_a_row(std::size_t count) {
        consecutive_start_failures_ = count;
        start_failures_in_a_row_.store(count, std::memory_order_relaxed);
    }

    worker_pool_options options_;
    // The thread, poller and hand-over list; before what holds requests (their stop watches
    // point into it). Started last in the constructor, joined first in the destructor.
    process::event_thread<pending_request> events_;

    // Owned by the event thread.
    process::event_thread<pending_request>::taken taken_; ///< reused by every take()
    std::vector<std::unique_ptr<worker>> slots_;
    std::deque<std::unique_ptr<pending_request>> waiting_;
    bool cancel_seen_ = false; ///< cancel_running() was called: not yet answered
    std::vector<std::unique_ptr<pending_request>> cancelled_; ///< withdrawn by it
    process::deadline_heap<deadline_key, deadline_kind> deadlines_;
    std::size_t consecutive_start_failures_ = 0;
    std::string last_start_failure_; ///< the message of the last failed start

    std::atomic<std::uint64_t> starts_{0};
    std::atomic<std::uint64_t> start_failures_{0};
    std::atomic<std::uint64_t> crashes_{0};
    std::atomic<std::uint64_t> timeouts_{0};
    std::atomic<std::uint64_t> protocol_errors_{0};
    std::atomic<std::uint64_t> recycles_{0};
    std::atomic<std::uint64_t> memory_limit_kills_{0};
    std::atomic<std::size_t> ready_{0};
    std::atomic<std::size_t> start_failures_in_a_row_{0};
};

} // namespace btq

#include "impl/worker_pool_executor.hpp"
