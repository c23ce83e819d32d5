/// @file subprocess_executor.hpp
/// @brief subprocess_executor: runs each task (a btq::command) as a child process, supervised by
///        one event thread for all children.
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
#include <ctime>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../executor.hpp"
#include "../process/command.hpp"
#include "../process/deadline_heap.hpp"
#include "../process/event_loop.hpp"
#include "../process/event_thread.hpp"
#include "../process/memory_limit.hpp"
#include "../process/spawn.hpp"
#include "../process/unique_fd.hpp"

namespace btq {

/// @brief Options of a subprocess_executor.
struct subprocess_options {
    /// After a child exits, how long its output pipes are still read. A grandchild that inherited
    /// them and keeps them open cannot hold the task longer than this.
    std::chrono::milliseconds drain_grace{100};
};

/// @brief Runs tasks of type btq::command as child processes and reports a btq::process_result.
///
/// - Started with posix_spawn (never fork: its cost grows with the parent's memory), in a new
///   process group, with every descriptor above 2 closed and a default signal mask and
///   dispositions.
/// - One event thread supervises every child: epoll over pidfds and pipes, a timer heap for
///   deadlines. No thread per child, no SIGCHLD handler, never `waitpid(-1)`: children that the
///   host program starts elsewhere are left alone.
/// - A run timeout sends SIGTERM to the child's process group, then SIGKILL after the grace.
/// - A stop requested on the task's completion::stop_token() (submit_options::stop, or the
///   queue's run timeout) stops the child the same way, SIGTERM then SIGKILL after
///   `command::kill_grace`; the result's ending is `cancelled`, its output is kept. A task whose
///   token is already stopped when it reaches the executor is not spawned: it fails with
///   btq::task_cancelled.
/// - When the child exits, whatever is left of its process group is killed, and its pipes are
///   read for at most `drain_grace` more; the task completes only once the child is reaped and
///   its pipes are closed. With a bounded_task_queue, the number of live children therefore
///   never exceeds max_concurrency.
/// - A command that cannot be started fails its task with btq::spawn_error (errno and path).
/// - A command with a memory_limit runs in a memory cgroup of its own (where this process may make
///   them) or else under RLIMIT_DATA, set before its program starts, and the event thread looks
///   at its resident size every btq::memory_check_interval: above the limit its process group is
///   killed (SIGKILL) and the ending is `memory_limit`. So is a child the OOM killer killed in its
///   cgroup, and one under RLIMIT_DATA that fails within a quarter of its limit (the kernel
///   refused it memory). See btq::active_memory_limit_mechanism().
///   Every result carries the child's peak_resident_bytes. See the README, "Memory limit".
///
/// @code
/// btq::bounded_task_queue<btq::command, btq::subprocess_executor> queue({.max_concurrency = 4});
/// btq::process_result r = queue.submit(btq::command{.program = "python3",
///                                                   .arguments = {"tool.py", "--op", "list"},
///                                                   .timeout = std::chrono::seconds(30)}).get();
/// if (r.succeeded()) use(r.standard_output);
/// @endcode
///
/// @warning The host program must not set SIGCHLD to SIG_IGN (the kernel would then reap the
///          children before the executor can report how they ended).
class subprocess_executor {
  public:
    /// A command yields a process_result.
    template <class Task>
    using result_type = process_result;
    /// Stops running work by force: see btq::cancellable_executor.
    static constexpr bool stops_running_tasks = true;

    /// @brief True on the executor's event thread, where completions (and so callbacks) run: a
    ///        queue's drain() there would wait for itself.
    [[nodiscard]] bool owns_this_thread() const noexcept { return events_.owns_this_thread(); }

    /// @brief Starts the executor's event thread, which spawns and watches every child.
    explicit subprocess_executor(subprocess_options options = {}) : options_(options) {
        events_.start([this] { run_loop(); });
    }

    subprocess_executor(const subprocess_executor&) = delete;
    subprocess_executor& operator=(const subprocess_executor&) = delete;
    subprocess_executor(subprocess_executor&&) = delete;
    subprocess_executor& operator=(subprocess_executor&&) = delete;

    /// @brief Kills (SIGKILL to the process group) and reaps every child still running, answers
    ///        their tasks (ending `signaled`, signal SIGKILL), then stops the event thread.
    ~subprocess_executor() { events_.stop_and_join(); }

    /// @brief Starts `cmd` on the calling thread and hands the child to the event thread, which
    ///        completes `done` once the child is reaped. A command that cannot be started
    ///        completes `done` with btq::spawn_error; one whose stop token is already stopped is
    ///        not started and completes `done` with btq::task_cancelled.
    template <class Task>
        requires std::same_as<std::remove_cvref_t<Task>, command>
    void execute(Task&& cmd, completion<process_result> done) {
        auto watched = std::make_unique<child>();
        watched->result.wait_time = done.waited();
        watched->done = std::move(done);
        if (watched->done.stop_token().stop_requested()) {
            watched->done.set_exception(std::make_exception_ptr(task_cancelled()));
            return;
        }
        if (events_.stopping()) { // answered outside the lock: the answer may submit again
            watched->done.set_exception(std::make_exception_ptr(
                spawn_error(ECANCELED, cmd.program, "executor is shutting down")));
            return;
        }
        try {
            watched->process = process::spawn(cmd);
        } catch (...) {
            watched->done.set_exception(std::current_exception());
            return;
        }
        watched->started = watched->process.started; // the child may run before spawn returns
        watched->result.pid = watched->process.pid;
        watched->result.spawn_time = watched->process.spawn_time;
        watched->input = std::move(cmd.standard_input);
        watched->stdout_limit = cmd.stdout_limit;
        watched->stderr_limit = cmd.stderr_limit;
        watched->on_output_limit = cmd.on_output_limit;
        watched->kill_grace = cmd.kill_grace;
        if (cmd.timeout) {
            watched->timeout_at = watched->started + *cmd.timeout;
        }
        if (cmd.memory_limit) {
            watched->memory.emplace();
            watched->memory->limit = *cmd.memory_limit;
            watched->memory->cgroup = std::move(watched->process.cgroup);
        }
        events_.watch_stop(*watched, watched->done.stop_token());
        running_.fetch_add(1, std::memory_order_relaxed);
        // Even once stopping: the child runs, and the event thread kills and answers it.
        events_.hand_over(std::move(watched));
    }

    /// @brief Kills (SIGKILL to the process group) every child running now; their tasks complete
    ///        as `signaled` with SIGKILL. Children started afterwards are not affected. A queue's
    ///        destructor calls this, so destroying a queue never waits for a child that would run
    ///        for a long time.
    void cancel_running() { events_.request_cancel(); }

    /// @brief Children started and not yet reaped.
    [[nodiscard]] std::size_t running() const noexcept {
        return running_.load(std::memory_order_relaxed);
    }

  private:
    using clock_type = std::chrono::steady_clock;

    enum class stream : std::uint8_t { pidfd, input, output, error };

    struct child;

    /// Identifies a descriptor in epoll: which child, which stream.
    struct watch {
        child* owner;
        stream which;
    };

    struct child {
        process::child_process process;
        completion<process_result> done;
        process_result result;
        std::string input;
        std::size_t input_written = 0;
        std::size_t stdout_limit = 0;
        std::size_t stderr_limit = 0;
        output_limit_action on_output_limit = output_limit_action::truncate;
        std::chrono::milliseconds kill_grace{0};
        clock_type::time_point started;
        std::optional<clock_type::time_point> timeout_at;
        std::optional<process_ending> stopped_for;   // timed_out, output_limit, cancelled, memory
        std::optional<process::memory_watch> memory; // with a memory limit
        bool reaped = false;
        siginfo_t exit_info{};
        rusage usage{};
        std::array<watch, 4> watches{};
        std::uint64_t id = 0;
        process::stop_watch stop; // on done's stop token
    };

    enum class deadline_kind : std::uint8_t { timeout, kill, drain, memory_check };

    // ---- the event thread ----------------------------------------------------------------

    void run_loop() {
        std::array<epoll_event, 64> events{};
        for (;;) {
            // Deadlines of children that are gone are dropped lazily.
            const int timeout =
                deadlines_.timeout_ms([this](std::uint64_t id) { return !children_.contains(id); });
            const int ready = events_.wait(events, timeout);
            for (int i = 0; i < ready; ++i) {
                const epoll_event& event = events[static_cast<std::size_t>(i)];
                auto* target = static_cast<watch*>(event.data.ptr);
                handle(*target->owner, target->which);
            }
            if (take_incoming()) {
                kill_everything();
            }
            run_due_deadlines();
            // Completing a task can start the next one from this thread (the queue hands the
            // freed slot over): register it before waiting again.
            if (complete_finished() && take_incoming()) {
                kill_everything();
            }
            if (stopping_seen_ && children_.empty() && !events_.pending()) {
                return;
            }
        }
    }

    /// Registers newly started children and stops those whose stop token was requested.
    /// Returns true when every running child must be killed (the executor is stopping, or
    /// cancel_running() was called).
    bool take_incoming() {
        events_.take(taken_);
        stopping_seen_ = taken_.stopping;
        // The children of a cancel_running() are killed with the rest: register them first.
        for (std::unique_ptr<child>& started : taken_.cancelled) {
            add_child(std::move(started));
        }
        for (std::unique_ptr<child>& started : taken_.arrived) {
            add_child(std::move(started));
        }
        if (taken_.stop_requested) {
            const auto now = clock_type::now();
            for (auto& [id, c] : children_) {
                if (c->stop.requested()) {
                    begin_stop(*c, process_ending::cancelled, now);
                }
            }
        }
        return stopping_seen_ || taken_.cancel;
    }

    void add_child(std::unique_ptr<child> started) {
        child& c = *started;
        c.id = ++last_id_;
        add_watch(c, stream::pidfd, c.process.pidfd.get(), EPOLLIN);
        if (c.process.standard_input) {
            add_watch(c, stream::input, c.process.standard_input.get(), EPOLLOUT);
        }
        add_watch(c, stream::output, c.process.standard_output.get(), EPOLLIN);
        add_watch(c, stream::error, c.process.standard_error.get(), EPOLLIN);
        if (c.timeout_at) {
            deadlines_.push(*c.timeout_at, c.id, deadline_kind::timeout);
        }
        if (c.memory) {
            deadlines_.push(c.started + memory_check_interval, c.id, deadline_kind::memory_check);
        }
        children_.emplace(c.id, std::move(started));
    }

    void add_watch(child& c, stream which, int fd, std::uint32_t interest) {
        watch& slot = c.watches[static_cast<std::size_t>(which)];
        slot = watch{&c, which};
        events_.poller().add(fd, interest, &slot);
    }

    static process::unique_fd& descriptor(child& c, stream which) {
        switch (which) {
        case stream::pidfd:
            return c.process.pidfd;
        case stream::input:
            return c.process.standard_input;
        case stream::output:
            return c.process.standard_output;
        case stream::error:
            return c.process.standard_error;
        }
        return c.process.pidfd;
    }

    void close_stream(child& c, stream which) {
        events_.poller().remove_and_close(descriptor(c, which));
    }

    void handle(child& c, stream which) {
        switch (which) {
        case stream::pidfd:
            reap(c);
            break;
        case stream::input:
            write_input(c);
            break;
        case stream::output:
        case stream::error:
            read_output(c, which);
            break;
        }
    }

    void reap(child& c) {
        // Whatever is left of the child's process group (grandchildren) goes with it. The
        // child is not reaped yet, so its pid (the group id) cannot have been reused.
        ::kill(-c.process.pid, SIGKILL);
        if (!process::try_reap(c.process.pidfd.get(), c.exit_info, &c.usage)) {
            return; // not yet (spurious readiness)
        }
        c.reaped = true;
        close_stream(c, stream::pidfd);
        close_stream(c, stream::input);
        if (c.process.standard_output || c.process.standard_error) {
            deadlines_.push(clock_type::now() + options_.drain_grace, c.id, deadline_kind::drain);
        }
    }

    void write_input(child& c) {
        if (process::write_some(c.process.standard_input.get(), c.input, c.input_written) ==
            process::write_status::would_block) {
            return;
        }
        // All written, or the child stopped reading: the rest of the input is dropped.
        close_stream(c, stream::input);
        c.input.clear();
        c.input.shrink_to_fit();
    }

    /// One read per readiness event (the descriptor is blocking; epoll is level-triggered, so
    /// whatever is left is reported again).
    void read_output(child& c, stream which) {
        const bool is_stdout = which == stream::output;
        std::string& sink = is_stdout ? c.result.standard_output : c.result.standard_error;
        bool& truncated = is_stdout ? c.result.stdout_truncated : c.result.stderr_truncated;
        const std::size_t limit = is_stdout ? c.stdout_limit : c.stderr_limit;
        std::array<char, 65536> buffer; // NOLINT(cppcoreguidelines-pro-type-member-init)
        const ssize_t got = ::read(descriptor(c, which).get(), buffer.data(), buffer.size());
        if (got < 0 && errno == EINTR) {
            return;
        }
        if (got <= 0) {
            close_stream(c, which); // end of file, or an error
            return;
        }
        const auto bytes = static_cast<std::size_t>(got);
        const std::size_t room = limit > sink.size() ? limit - sink.size() : 0;
        sink.append(buffer.data(), std::min(room, bytes));
        if (bytes > room) {
            truncated = true;
            if (c.on_output_limit == output_limit_action::kill && !c.stopped_for) {
                c.stopped_for = process_ending::output_limit;
                ::kill(-c.process.pid, SIGKILL);
            }
        }
    }

    void run_due_deadlines() {
        const auto now = clock_type::now();
        deadlines_.pop_due(now, [this, now](std::uint64_t id, deadline_kind kind) {
            const auto found = children_.find(id);
            if (found == children_.end()) {
                return;
            }
            child& c = *found->second;
            switch (kind) {
            case deadline_kind::timeout:
                begin_stop(c, process_ending::timed_out, now);
                break;
            case deadline_kind::kill:
                if (!c.reaped) {
                    ::kill(-c.process.pid, SIGKILL);
                }
                break;
            case deadline_kind::drain:
                close_stream(c, stream::output);
                close_stream(c, stream::error);
                break;
            case deadline_kind::memory_check:
                check_memory(c, now);
                break;
            }
        });
    }

    /// Stops a running child for `why` (timed_out, cancelled): SIGTERM to its process group now,
    /// SIGKILL `kill_grace` later. A child already being stopped, or already reaped, is left
    /// alone: the first reason is the one reported.
    void begin_stop(child& c, process_ending why, clock_type::time_point now) {
        if (c.reaped || c.stopped_for) {
            return;
        }
        c.stopped_for = why;
        ::kill(-c.process.pid, SIGTERM);
        deadlines_.push(now + c.kill_grace, c.id, deadline_kind::kill);
    }

    /// The watchdog's look at a limited child: above its limit, SIGKILL to its process group at
    /// once (no grace: it would go on allocating); otherwise another look an interval later.
    void check_memory(child& c, clock_type::time_point now) {
        if (c.reaped || c.stopped_for) {
            return;
        }
        if (c.memory->check(c.process.pid)) {
            c.stopped_for = process_ending::memory_limit;
            ::kill(-c.process.pid, SIGKILL);
            return;
        }
        deadlines_.push(now + memory_check_interval, c.id, deadline_kind::memory_check);
    }

    void kill_everything() {
        for (auto& [id, c] : children_) {
            if (!c->reaped) {
                ::kill(-c->process.pid, SIGKILL);
            }
        }
    }

    /// Completes every child that is reaped and whose pipes are closed.
    /// Returns whether any was completed.
    bool complete_finished() {
        bool any = false;
        for (auto it = children_.begin(); it != children_.end();) {
            child& c = *it->second;
            if (!c.reaped || c.process.standard_output || c.process.standard_error) {
                ++it;
                continue;
            }
            std::unique_ptr<child> done = std::move(it->second);
            it = children_.erase(it);
            finish(*done);
            any = true;
        }
        return any;
    }

    void finish(child& c) {
        process_result& result = c.result;
        const siginfo_t& info = c.exit_info;
        const bool exited = info.si_code == CLD_EXITED;
        result.peak_resident_bytes =
            process::peak_resident_of(c.usage, c.memory ? c.memory->largest_resident : 0);
        if (c.stopped_for) {
            // Stopped by us: report why, and the signal that ended it (a child that handled
            // SIGTERM and then exited still ended because of the SIGTERM we sent).
            result.ending = *c.stopped_for;
            const bool killed = *c.stopped_for == process_ending::output_limit ||
                                *c.stopped_for == process_ending::memory_limit;
            result.signal = exited ? (killed ? SIGKILL : SIGTERM) : info.si_status;
        } else if (c.memory && !(exited && info.si_status == 0) &&
                   process::ended_at_limit(c.memory->limit, result.peak_resident_bytes,
                                           *c.memory)) {
            // Refused memory by the kernel limit, it failed: an exit code or a signal of its own.
            result.ending = process_ending::memory_limit;
            result.signal = exited ? 0 : info.si_status;
        } else if (exited) {
            result.ending = process_ending::exited;
            result.exit_code = info.si_status;
        } else {
            result.ending = process_ending::signaled;
            result.signal = info.si_status;
        }
        result.run_time = clock_type::now() - c.started;
        running_.fetch_sub(1, std::memory_order_relaxed);
        c.stop.reset();   // a stop requested from now on has nothing left to stop
        c.memory.reset(); // its cgroup is removed before the task is answered
        c.done.set_value(std::move(result));
    }

    subprocess_options options_;
    std::atomic<std::size_t> running_{0};
    // The thread, poller and hand-over list; before what holds children (their stop watches
    // point into it). Started last in the constructor, joined first in the destructor.
    process::event_thread<child> events_;

    // Owned by the event thread.
    process::event_thread<child>::taken taken_; // reused by every take()
    std::unordered_map<std::uint64_t, std::unique_ptr<child>> children_;
    process::deadline_heap<std::uint64_t, deadline_kind> deadlines_;
    std::uint64_t last_id_ = 0;
    bool stopping_seen_ = false;
};

} // namespace btq
