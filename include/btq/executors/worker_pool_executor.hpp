/// @file worker_pool_executor.hpp
/// @brief worker_pool_executor: runs tasks on persistent worker processes that speak the worker
///        protocol (docs/worker-protocol.md), one request in flight per worker.
#pragma once

#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../errors.hpp"
#include "../executor.hpp"
#include "../process/command.hpp"
#include "../process/event_loop.hpp"
#include "../process/frames.hpp"
#include "../process/spawn.hpp"
#include "../process/unique_fd.hpp"

namespace btq {

/// @brief One task for a worker: an operation name and an opaque body.
struct worker_request {
    std::string operation;
    std::string body{};
    /// Run timeout for this request; empty = worker_pool_options::task_timeout.
    std::optional<std::chrono::milliseconds> timeout{};
};

/// @brief A worker's answer to one request.
struct worker_response {
    std::string body;
    pid_t worker_pid = 0;
    std::chrono::nanoseconds wait_time{0}; ///< in the queue, before a slot was free
    std::chrono::nanoseconds run_time{0};  ///< from the request's first byte to its answer
};

/// @brief The worker answered the request with an error frame ('E'). The task ran and failed;
///        the worker goes on.
class worker_error : public std::runtime_error {
  public:
    explicit worker_error(const std::string& message) : std::runtime_error(message) {}
};

/// @brief The worker died, or broke the protocol, while it held the task. The worker has been
///        replaced. `exit_code` or `signal` tell how it ended (-1 / 0 when not applicable).
class worker_failure : public std::runtime_error {
  public:
    worker_failure(const std::string& message, int exit_code, int signal)
        : std::runtime_error(message), exit_code_(exit_code), signal_(signal) {}
    [[nodiscard]] int exit_code() const noexcept { return exit_code_; }
    [[nodiscard]] int signal() const noexcept { return signal_; }

  private:
    int exit_code_;
    int signal_;
};

/// @brief No worker could be started (spawn failed, it exited before its hello, or the hello
///        did not come in time), or the pool is shutting down. The task never ran: a
///        btq::task_not_run with reason not_started.
class worker_start_error : public task_not_run {
  public:
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
    /// Run timeout of a request without its own; then SIGTERM to the worker's process group,
    /// SIGKILL after `worker.kill_grace`, the task fails with btq::task_timeout and the worker is
    /// replaced.
    std::chrono::milliseconds task_timeout{30'000};
    /// How long a new worker has to send its hello.
    std::chrono::milliseconds handshake_timeout{10'000};
    /// Delay before restarting a worker that failed to start; doubles per consecutive failure.
    std::chrono::milliseconds restart_backoff{100};
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
    std::uint64_t starts = 0;          ///< workers spawned
    std::uint64_t start_failures = 0;  ///< spawns that failed, or workers gone before their hello
    std::uint64_t crashes = 0;         ///< workers that died while holding a task
    std::uint64_t timeouts = 0;        ///< workers stopped because a task ran past its timeout
    std::uint64_t protocol_errors = 0; ///< workers stopped for breaking the protocol
    std::uint64_t recycles = 0;        ///< workers replaced after max tasks or max memory
    std::size_t ready = 0;             ///< workers idle or busy now
};

/// @brief Runs worker_request tasks on `options.workers` persistent worker processes.
///
/// The seed's "next improvement": a line to a running worker costs microseconds where starting
/// a process costs milliseconds. Each worker has at most one request in flight. A worker that
/// crashes fails only its in-flight task and is replaced (with exponential backoff if it keeps
/// failing to start); one that exceeds its task's timeout is stopped (process group, SIGTERM then
/// SIGKILL) and replaced, its task failing with btq::task_timeout. Workers are recycled after
/// `max_tasks_per_worker` tasks or above `max_resident_bytes`.
/// @code
/// btq::worker_pool_options options{.worker = {.program = "./my_worker"}, .workers = 4};
/// btq::bounded_task_queue<btq::worker_request, btq::worker_pool_executor> queue(
///     {.max_concurrency = 4, .capacity = 100}, options);
/// btq::worker_response r = queue.submit({.operation = "echo", .body = "hi"}).get();
/// @endcode
class worker_pool_executor {
  public:
    template <class Task>
    using result_type = worker_response;
    /// Stops running work by force: see btq::cancellable_executor.
    static constexpr bool stops_running_tasks = true;

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
        slots_.resize(options_.workers);
        for (std::size_t i = 0; i < slots_.size(); ++i) {
            slots_[i] = std::make_unique<worker>();
            slots_[i]->index = i;
        }
        loop_ = std::thread([this] { run_loop(); });
    }

    worker_pool_executor(const worker_pool_executor&) = delete;
    worker_pool_executor& operator=(const worker_pool_executor&) = delete;
    worker_pool_executor(worker_pool_executor&&) = delete;
    worker_pool_executor& operator=(worker_pool_executor&&) = delete;

    /// @brief Shuts the pool down: waiting requests fail with worker_start_error, in-flight ones
    ///        get `shutdown_grace` to finish, then the workers' input is closed (they exit at end
    ///        of input), then SIGTERM, then SIGKILL. Every worker is reaped.
    ~worker_pool_executor() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        poller_.wake();
        loop_.join();
    }

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
        {
            std::lock_guard lock(mutex_);
            cancel_requested_ = true;
            // Handed over but not yet seen by the event loop: cancelled too, and nothing later.
            for (auto& job : incoming_) {
                cancelled_.push_back(std::move(job));
            }
            incoming_.clear();
        }
        poller_.wake();
    }

    /// @brief Queues `request` for the next idle worker.
    template <class Task>
    requires std::same_as<std::remove_cvref_t<Task>, worker_request>
    void execute(Task&& request, completion<worker_response> done) {
        if (request.operation.size() > 0xFFFFU) {
            done.set_exception(std::make_exception_ptr(
                std::invalid_argument("btq: worker operation name longer than 65535 bytes")));
            return;
        }
        auto job = std::make_unique<pending_request>();
        job->request = std::forward<Task>(request);
        job->waited = done.waited();
        job->done = std::move(done);
        std::unique_lock lock(mutex_);
        if (stopping_) {
            lock.unlock(); // answered outside the lock: the answer may submit again
            job->done.set_exception(
                std::make_exception_ptr(worker_start_error("btq: worker pool is shutting down")));
            return;
        }
        incoming_.push_back(std::move(job));
        lock.unlock();
        if (std::this_thread::get_id() != loop_id_.load(std::memory_order_relaxed)) {
            poller_.wake();
        }
    }

    /// @brief Counters (each read atomically; not one snapshot).
    [[nodiscard]] worker_pool_stats stats() const noexcept {
        worker_pool_stats out;
        out.starts = starts_.load();
        out.start_failures = start_failures_.load();
        out.crashes = crashes_.load();
        out.timeouts = timeouts_.load();
        out.protocol_errors = protocol_errors_.load();
        out.recycles = recycles_.load();
        out.ready = ready_.load();
        return out;
    }

  private:
    using clock_type = std::chrono::steady_clock;

    struct pending_request {
        worker_request request;
        completion<worker_response> done;
        std::chrono::nanoseconds waited{0};
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
    enum class stop_reason : std::uint8_t { none, recycle, timeout, protocol, shutdown, cancel };

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
        std::string partial_output;
        std::string partial_error;
        clock_type::time_point restart_at;
        std::array<watch, 5> watches{};
    };

    enum class deadline_kind : std::uint8_t { handshake, task, terminate, kill, restart };
    struct deadline {
        clock_type::time_point at;
        std::size_t slot;
        std::uint64_t generation;
        deadline_kind kind;
        bool operator>(const deadline& other) const noexcept { return at > other.at; }
    };

    void schedule(const worker& w, clock_type::duration after, deadline_kind kind) {
        deadlines_.push({clock_type::now() + after, w.index, w.generation, kind});
    }

    // ---- the event thread ----------------------------------------------------------------

    void run_loop() {
        loop_id_.store(std::this_thread::get_id());
        process::block_sigpipe_on_this_thread();

        for (auto& slot : slots_) {
            start_worker(*slot);
        }
        std::array<epoll_event, 64> events{};
        bool shutdown_begun = false;
        clock_type::time_point shutdown_deadline;
        for (;;) {
            const int ready = wait_for_events(events);
            for (int i = 0; i < ready; ++i) {
                const epoll_event& event = events[static_cast<std::size_t>(i)];
                auto* target = static_cast<watch*>(event.data.ptr);
                handle(*target->owner, target->which);
            }
            run_due_deadlines();
            const bool stopping = take_incoming();
            if (auto cancelled = take_cancel_request()) {
                // Requests the loop had taken in but not sent, then those still in transit.
                while (!waiting_.empty()) {
                    cancelled->push_back(std::move(waiting_.front()));
                    waiting_.pop_front();
                }
                for (auto& job : *cancelled) {
                    job->done.set_exception(std::make_exception_ptr(worker_failure(
                        "btq: the request was cancelled (cancel_running) before it started", -1,
                        0)));
                }
                for (auto& slot : slots_) {
                    if (slot->current == state::busy) {
                        begin_stop(*slot, stop_reason::cancel,
                                   "btq: the request was cancelled (cancel_running)");
                        ::kill(-slot->pid, SIGKILL); // no grace: cancelling means now
                    }
                }
            }
            if (stopping && !shutdown_begun) {
                shutdown_begun = true;
                shutdown_deadline = clock_type::now() + options_.shutdown_grace;
                // An entry for no slot: it only wakes the loop when the grace is over.
                deadlines_.push({shutdown_deadline, slots_.size(), 0, deadline_kind::restart});
                fail_all_waiting("btq: worker pool is shutting down");
            }
            if (shutdown_begun) {
                const bool grace_over = clock_type::now() >= shutdown_deadline;
                bool all_gone = true;
                for (auto& slot : slots_) {
                    worker& w = *slot;
                    if (w.current == state::idle || w.current == state::starting ||
                        (w.current == state::busy && grace_over)) {
                        begin_stop(w, stop_reason::shutdown, "btq: worker pool shut down");
                    }
                    if (w.current == state::empty) {
                        continue;
                    }
                    all_gone = false;
                }
                if (all_gone) {
                    return;
                }
            } else {
                assign_waiting();
            }
        }
    }

    /// epoll_wait, but while a request is in flight it first polls for a short while: an answer
    /// usually comes within tens of microseconds, and catching it without sleeping saves a
    /// wake-up on every task.
    int wait_for_events(std::array<epoll_event, 64>& events) {
        const bool in_flight = std::any_of(slots_.begin(), slots_.end(), [](const auto& slot) {
            return slot->current == state::busy;
        });
        if (in_flight) {
            const auto until = clock_type::now() + busy_poll;
            do {
                bool woken = false; // new requests: the caller must look at them now
                const int ready = poller_.wait(events, 0, &woken);
                if (ready != 0 || woken) {
                    return ready;
                }
            } while (clock_type::now() < until);
        }
        return poller_.wait(events, next_timeout_ms());
    }

    static constexpr std::chrono::microseconds busy_poll{50};

    /// After a cancel_running() call: the requests it took from the hand-over list (the
    ///        caller adds the loop's own waiting ones); otherwise nothing.
    std::optional<std::vector<std::unique_ptr<pending_request>>> take_cancel_request() {
        std::lock_guard lock(mutex_);
        if (!std::exchange(cancel_requested_, false)) {
            return std::nullopt;
        }
        return std::exchange(cancelled_, {});
    }

    /// Moves requests from execute() into waiting_. Returns true once the pool is stopping.
    bool take_incoming() {
        std::lock_guard lock(mutex_);
        for (auto& job : incoming_) {
            waiting_.push_back(std::move(job));
        }
        incoming_.clear();
        return stopping_;
    }

    void fail_all_waiting(const std::string& message) {
        while (!waiting_.empty()) {
            std::unique_ptr<pending_request> job = std::move(waiting_.front());
            waiting_.pop_front();
            job->done.set_exception(std::make_exception_ptr(worker_start_error(message)));
        }
    }

    void assign_waiting() {
        for (auto& slot : slots_) {
            if (waiting_.empty()) {
                return;
            }
            worker& w = *slot;
            if (w.current != state::idle) {
                continue;
            }
            w.task = std::move(waiting_.front());
            waiting_.pop_front();
            send_request(w);
        }
    }

    void send_request(worker& w) {
        w.current = state::busy;
        w.task_started = clock_type::now();
        try {
            w.to_send = protocol::encode(
                protocol::frame_type::request,
                protocol::encode_request(w.task->request.operation, w.task->request.body));
        } catch (const std::exception&) {
            std::unique_ptr<pending_request> job = std::move(w.task);
            w.current = state::idle;
            job->done.set_exception(std::current_exception());
            return;
        }
        w.sent = 0;
        const auto timeout = w.task->request.timeout.value_or(options_.task_timeout);
        if (timeout.count() > 0) {
            schedule(w, timeout, deadline_kind::task);
        }
        write_requests(w);
    }

    void start_worker(worker& w) {
        ++w.generation;
        w.reader = protocol::frame_reader(options_.max_frame);
        w.tasks_done = 0;
        w.said_hello = false;
        w.stopping_for = stop_reason::none;
        w.partial_output.clear();
        w.partial_error.clear();
        starts_.fetch_add(1, std::memory_order_relaxed);
        try {
            process::pipe_ends requests = process::make_pipe();
            process::pipe_ends responses = process::make_pipe();
            const std::array<int, 2> channels{requests.read.get(), responses.write.get()};
            process::child_process child = process::spawn(options_.worker, channels);
            w.pid = child.pid;
            w.pidfd = std::move(child.pidfd);
            w.output = std::move(child.standard_output);
            w.error = std::move(child.standard_error);
            w.requests = std::move(requests.write);
            w.responses = std::move(responses.read);
            process::set_nonblocking(w.requests.get());
            process::set_nonblocking(w.responses.get()); // reap() drains it without blocking
        } catch (const std::exception& e) {
            start_failed(w, e.what());
            return;
        }
        w.current = state::starting;
        add_watch(w, stream::pidfd, w.pidfd.get(), EPOLLIN);
        add_watch(w, stream::responses, w.responses.get(), EPOLLIN);
        add_watch(w, stream::output, w.output.get(), EPOLLIN);
        add_watch(w, stream::error, w.error.get(), EPOLLIN);
        schedule(w, options_.handshake_timeout, deadline_kind::handshake);
    }

    /// A worker could not be started or did not get to its hello: back off, and tell the
    /// oldest waiting request, so callers get an answer instead of a hang.
    void start_failed(worker& w, const std::string& why) {
        start_failures_.fetch_add(1, std::memory_order_relaxed);
        ++consecutive_start_failures_;
        close_all(w);
        w.current = state::empty;
        const auto backoff = std::min<std::chrono::milliseconds>(
            options_.restart_backoff *
                (std::int64_t{1} << std::min<std::size_t>(consecutive_start_failures_ - 1, 20)),
            options_.max_restart_backoff);
        ++w.generation;
        schedule(w, backoff, deadline_kind::restart);
        if (!waiting_.empty()) {
            std::unique_ptr<pending_request> job = std::move(waiting_.front());
            waiting_.pop_front();
            job->done.set_exception(
                std::make_exception_ptr(worker_start_error("btq: cannot start a worker: " + why)));
        }
    }

    void add_watch(worker& w, stream which, int fd, std::uint32_t interest) {
        watch& slot = w.watches[static_cast<std::size_t>(which)];
        slot = watch{&w, which};
        poller_.add(fd, interest, &slot);
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
        process::unique_fd& fd = descriptor(w, which);
        if (fd) {
            poller_.remove(fd.get());
            fd.reset();
        }
    }

    void close_all(worker& w) {
        for (stream which :
             {stream::requests, stream::responses, stream::output, stream::error, stream::pidfd}) {
            close_stream(w, which);
        }
    }

    void handle(worker& w, stream which) {
        if (!descriptor(w, which)) {
            return; // closed earlier in this batch of events
        }
        switch (which) {
        case stream::pidfd:
            reap(w);
            break;
        case stream::requests:
            write_requests(w);
            break;
        case stream::responses:
            read_responses(w);
            break;
        case stream::output:
        case stream::error:
            read_log(w, which);
            break;
        }
    }

    void write_requests(worker& w) {
        while (w.sent < w.to_send.size()) {
            const ssize_t written =
                ::write(w.requests.get(), w.to_send.data() + w.sent, w.to_send.size() - w.sent);
            if (written > 0) {
                w.sent += static_cast<std::size_t>(written);
                continue;
            }
            if (written < 0 && errno == EINTR) {
                continue;
            }
            if (written < 0 && errno == EAGAIN) {
                watch& slot = w.watches[static_cast<std::size_t>(stream::requests)];
                slot = watch{&w, stream::requests};
                poller_.watch(w.requests.get(), EPOLLOUT, &slot);
                return;
            }
            if (written < 0 && errno == EPIPE) {
                process::discard_pending_sigpipe();
            }
            // The worker stopped reading: it is exiting; reap() reports the task.
            return;
        }
        w.to_send.clear();
        poller_.remove(w.requests.get());
    }

    void read_responses(worker& w) {
        std::array<char, 65536> buffer; // NOLINT(cppcoreguidelines-pro-type-member-init)
        const ssize_t got = ::read(w.responses.get(), buffer.data(), buffer.size());
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
            return;
        }
        if (got > 0 && w.current == state::stopping) {
            return; // a late answer from a worker being stopped: its task is already decided
        }
        if (got <= 0) {
            close_stream(w, stream::responses); // the worker closed it: exit follows
            if (w.reader.pending() > 0 && w.current != state::stopping) {
                protocol_failure(w, "end of output in the middle of a frame");
            }
            return;
        }
        w.reader.feed(buffer.data(), static_cast<std::size_t>(got));
        try {
            while (auto frame = w.reader.next()) {
                on_frame(w, std::move(*frame));
                if (w.current == state::stopping || w.current == state::empty) {
                    return;
                }
            }
        } catch (const protocol::protocol_error& e) {
            protocol_failure(w, e.what());
        }
    }

    void on_frame(worker& w, protocol::frame frame) {
        using protocol::frame_type;
        if (w.current == state::starting) {
            if (frame.type != frame_type::hello || frame.payload != protocol::hello_text) {
                protocol_failure(w, "expected the hello '" + std::string(protocol::hello_text) +
                                        "' as the first frame");
                return;
            }
            w.current = state::idle;
            w.said_hello = true;
            ++w.generation; // cancels the handshake deadline
            consecutive_start_failures_ = 0;
            ready_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        if (w.current != state::busy ||
            (frame.type != frame_type::result && frame.type != frame_type::error)) {
            protocol_failure(w, "unexpected frame '" +
                                    std::string(1, static_cast<char>(frame.type)) +
                                    "' with no request in flight");
            return;
        }
        std::unique_ptr<pending_request> job = std::move(w.task);
        w.current = state::idle;
        ++w.generation; // cancels the task deadline
        ++w.tasks_done;
        if (frame.type == frame_type::result) {
            worker_response response;
            response.body = std::move(frame.payload);
            response.worker_pid = w.pid;
            response.wait_time = job->waited;
            response.run_time = clock_type::now() - w.task_started;
            job->done.set_value(std::move(response));
        } else {
            job->done.set_exception(std::make_exception_ptr(worker_error(frame.payload)));
        }
        if (should_recycle(w)) {
            recycles_.fetch_add(1, std::memory_order_relaxed);
            begin_stop(w, stop_reason::recycle, {});
        }
    }

    [[nodiscard]] bool should_recycle(const worker& w) const {
        if (options_.max_tasks_per_worker > 0 && w.tasks_done >= options_.max_tasks_per_worker) {
            return true;
        }
        if (options_.max_resident_bytes > 0) {
            std::ifstream statm("/proc/" + std::to_string(w.pid) + "/statm");
            std::size_t size_pages = 0;
            std::size_t resident_pages = 0;
            if (statm >> size_pages >> resident_pages) {
                const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
                return resident_pages * page > options_.max_resident_bytes;
            }
        }
        return false;
    }

    void protocol_failure(worker& w, const std::string& why) {
        protocol_errors_.fetch_add(1, std::memory_order_relaxed);
        if (w.current == state::starting) {
            ::kill(-w.pid, SIGKILL);
            w.stopping_for = stop_reason::protocol;
            w.stop_message = why + " (during the handshake)";
            w.current = state::stopping;
            return;
        }
        begin_stop(w, stop_reason::protocol, why);
        ::kill(-w.pid, SIGKILL);
    }

    /// Starts stopping a worker: closes its input (it exits at end of input), then SIGTERM and
    /// SIGKILL on deadlines. Its in-flight task, if any, is answered when it is reaped.
    void begin_stop(worker& w, stop_reason reason, std::string message) {
        if (w.current == state::stopping || w.current == state::empty) {
            return;
        }
        if (w.current == state::idle || w.current == state::busy) {
            ready_.fetch_sub(1, std::memory_order_relaxed);
        }
        w.current = state::stopping;
        w.stopping_for = reason;
        w.stop_message = std::move(message);
        ++w.generation; // cancels handshake and task deadlines
        close_stream(w, stream::requests);
        schedule(w, options_.worker.kill_grace, deadline_kind::terminate);
    }

    void reap(worker& w) {
        ::kill(-w.pid, SIGKILL); // whatever is left of its process group
        siginfo_t info{};
        if (!process::try_reap(w.pidfd.get(), info)) {
            return;
        }
        flush_log(w);
        if (w.current == state::busy) {
            drain_responses(w); // an answer written just before the exit still counts
        }
        const bool exited = info.si_code == CLD_EXITED;
        const std::string how = exited ? "exited with code " + std::to_string(info.si_status)
                                       : "was killed by signal " + std::to_string(info.si_status);
        const state was = w.current;
        if (was == state::idle || was == state::busy) {
            ready_.fetch_sub(1, std::memory_order_relaxed);
        }
        if (w.task) {
            std::unique_ptr<pending_request> job = std::move(w.task);
            std::exception_ptr error;
            switch (w.stopping_for) {
            case stop_reason::timeout:
                error = std::make_exception_ptr(task_timeout(w.stop_message));
                break;
            case stop_reason::protocol:
            case stop_reason::shutdown:
            case stop_reason::cancel:
                error = std::make_exception_ptr(
                    worker_failure(w.stop_message + "; the worker " + how,
                                   exited ? info.si_status : -1, exited ? 0 : info.si_status));
                break;
            default:
                crashes_.fetch_add(1, std::memory_order_relaxed);
                error = std::make_exception_ptr(
                    worker_failure("btq: the worker " + how + " while handling the request",
                                   exited ? info.si_status : -1, exited ? 0 : info.si_status));
                break;
            }
            job->done.set_exception(std::move(error));
        }
        close_all(w);
        w.current = state::empty;
        if (!w.said_hello) {
            start_failed(w, w.stopping_for == stop_reason::protocol
                                ? w.stop_message
                                : "the worker " + how + " before its hello");
            return;
        }
        if (!stopping_seen()) {
            // Restarted after this batch of events: later events of the batch may still name
            // the old process's descriptors, and must find them closed, not reused.
            ++w.generation;
            deadlines_.push({clock_type::now(), w.index, w.generation, deadline_kind::restart});
        }
    }

    /// Reads whatever the (exited) worker left in its response pipe, and handles those frames.
    void drain_responses(worker& w) {
        std::array<char, 65536> buffer; // NOLINT(cppcoreguidelines-pro-type-member-init)
        while (w.responses && w.current == state::busy) {
            const ssize_t got = ::read(w.responses.get(), buffer.data(), buffer.size());
            if (got < 0 && errno == EINTR) {
                continue;
            }
            if (got <= 0) {
                return;
            }
            w.reader.feed(buffer.data(), static_cast<std::size_t>(got));
            try {
                while (w.current == state::busy) {
                    auto frame = w.reader.next();
                    if (!frame) {
                        break;
                    }
                    on_frame(w, std::move(*frame));
                }
            } catch (const protocol::protocol_error& e) {
                protocol_failure(w, e.what());
                return;
            }
        }
    }

    bool stopping_seen() {
        std::lock_guard lock(mutex_);
        return stopping_;
    }

    void read_log(worker& w, stream which) {
        std::array<char, 16384> buffer; // NOLINT(cppcoreguidelines-pro-type-member-init)
        const ssize_t got = ::read(descriptor(w, which).get(), buffer.data(), buffer.size());
        if (got < 0 && errno == EINTR) {
            return;
        }
        std::string& partial = which == stream::output ? w.partial_output : w.partial_error;
        if (got <= 0) {
            close_stream(w, which);
            if (!partial.empty()) {
                options_.log(w.pid, partial);
                partial.clear();
            }
            return;
        }
        constexpr std::size_t line_limit = 4096;
        for (char c : std::string_view(buffer.data(), static_cast<std::size_t>(got))) {
            if (c == '\n') {
                options_.log(w.pid, partial);
                partial.clear();
            } else if (partial.size() < line_limit) {
                partial.push_back(c);
            }
        }
    }

    void flush_log(worker& w) const {
        for (std::string* partial : {&w.partial_output, &w.partial_error}) {
            if (!partial->empty()) {
                options_.log(w.pid, *partial);
                partial->clear();
            }
        }
    }

    int next_timeout_ms() {
        if (deadlines_.empty()) {
            return -1;
        }
        const auto left = deadlines_.top().at - clock_type::now();
        if (left <= clock_type::duration::zero()) {
            return 0;
        }
        return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
    }

    void run_due_deadlines() {
        const auto now = clock_type::now();
        while (!deadlines_.empty() && deadlines_.top().at <= now) {
            const deadline due = deadlines_.top();
            deadlines_.pop();
            if (due.slot >= slots_.size()) {
                continue; // the shutdown grace: only wakes the loop
            }
            worker& w = *slots_[due.slot];
            const bool current = due.generation == w.generation;
            switch (due.kind) {
            case deadline_kind::handshake:
                if (current && w.current == state::starting) {
                    // reap() reports it as a failed start; until then it is no candidate for
                    // work, even if its hello arrives now.
                    w.current = state::stopping;
                    w.stopping_for = stop_reason::protocol;
                    w.stop_message = "btq: no hello from the worker within " +
                                     std::to_string(options_.handshake_timeout.count()) + " ms";
                    ::kill(-w.pid, SIGKILL);
                }
                break;
            case deadline_kind::task:
                if (current && w.current == state::busy) {
                    timeouts_.fetch_add(1, std::memory_order_relaxed);
                    const std::string message = "btq: worker request '" +
                                                w.task->request.operation +
                                                "' exceeded its run timeout";
                    begin_stop(w, stop_reason::timeout, message);
                    ::kill(-w.pid, SIGTERM);
                    schedule(w, options_.worker.kill_grace, deadline_kind::kill);
                }
                break;
            case deadline_kind::terminate:
                if (current && w.current == state::stopping) {
                    ::kill(-w.pid, SIGTERM);
                    schedule(w, options_.worker.kill_grace, deadline_kind::kill);
                }
                break;
            case deadline_kind::kill:
                if (current && w.current == state::stopping) {
                    ::kill(-w.pid, SIGKILL);
                }
                break;
            case deadline_kind::restart:
                if (current && w.current == state::empty && !stopping_seen()) {
                    start_worker(w);
                }
                break;
            }
        }
    }

    worker_pool_options options_;
    process::poller poller_;

    std::mutex mutex_; // guards incoming_ and stopping_
    std::vector<std::unique_ptr<pending_request>> incoming_;
    bool stopping_ = false;
    bool cancel_requested_ = false; ///< cancel_running() was called; guarded by mutex_
    std::vector<std::unique_ptr<pending_request>> cancelled_; ///< taken from incoming_ by it

    // Owned by the event thread.
    std::vector<std::unique_ptr<worker>> slots_;
    std::deque<std::unique_ptr<pending_request>> waiting_;
    std::priority_queue<deadline, std::vector<deadline>, std::greater<>> deadlines_;
    std::size_t consecutive_start_failures_ = 0;

    std::atomic<std::uint64_t> starts_{0};
    std::atomic<std::uint64_t> start_failures_{0};
    std::atomic<std::uint64_t> crashes_{0};
    std::atomic<std::uint64_t> timeouts_{0};
    std::atomic<std::uint64_t> protocol_errors_{0};
    std::atomic<std::uint64_t> recycles_{0};
    std::atomic<std::size_t> ready_{0};
    std::atomic<std::thread::id> loop_id_{};
    std::thread loop_; // last: started once everything above exists
};

} // namespace btq
