/// @file impl/worker_pool_executor.hpp
/// @brief The definitions of btq::worker_pool_executor (declared in ../worker_pool_executor.hpp,
///        which includes this file at its end), in the order a request travels: execute() hands
///        it over, the event thread takes it in, assigns it to an idle worker, writes it, reads
///        the answer and completes the task. Then the event loop, a worker's life (start, stop,
///        reap), its log lines and the deadlines. (The smallest plumbing, for descriptors and
///        deadlines, is defined in the class.)
#pragma once

#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "../../errors.hpp"
#include "../../process/spawn.hpp"
#include "../worker_pool_executor.hpp"

namespace btq {

// ---- a request's way ----------------------------------------------------------------------------

template <class Task>
    requires std::same_as<std::remove_cvref_t<Task>, worker_request>
void worker_pool_executor::execute(Task&& request, completion<worker_response> done) {
    if (request.operation.size() > 0xFFFFU) {
        done.set_exception(std::make_exception_ptr(
            std::invalid_argument("btq: worker operation name longer than 65535 bytes")));
        return;
    }
    if (done.stop_token().stop_requested()) {
        done.set_exception(std::make_exception_ptr(task_cancelled()));
        return;
    }
    auto job = std::make_unique<pending_request>();
    job->request = std::forward<Task>(request);
    job->waited = done.waited();
    job->done = std::move(done);
    events_.watch_stop(*job, job->done.stop_token());
    if (!events_.try_hand_over(job)) { // answered outside the lock: the answer may submit again
        job->done.set_exception(
            std::make_exception_ptr(worker_start_error("btq: worker pool is shutting down")));
    }
}

inline bool worker_pool_executor::take_incoming(bool& stop_some) {
    events_.take(taken_);
    for (auto& job : taken_.arrived) {
        waiting_.push_back(std::move(job));
    }
    if (taken_.cancel) {
        cancel_seen_ = true;
        for (auto& job : taken_.cancelled) {
            cancelled_.push_back(std::move(job));
        }
    }
    stop_some = taken_.stop_requested;
    return taken_.stopping;
}

inline void worker_pool_executor::stop_requested_tasks() {
    std::vector<std::unique_ptr<pending_request>> unsent;
    for (auto it = waiting_.begin(); it != waiting_.end();) {
        if ((*it)->stop.requested()) {
            unsent.push_back(std::move(*it));
            it = waiting_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto& slot : slots_) {
        worker& w = *slot;
        if (w.current == state::busy && w.task->stop.requested()) {
            begin_stop(w, stop_reason::requested,
                       "btq: worker request '" + w.task->request.operation +
                           "' was stopped while running (its stop token was requested)");
            ::kill(-w.pid, SIGKILL); // no grace: the worker is replaced anyway
        }
    }
    for (auto& job : unsent) {
        job->done.set_exception(std::make_exception_ptr(task_cancelled()));
    }
}

inline void worker_pool_executor::assign_waiting() {
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

inline void worker_pool_executor::send_request(worker& w) {
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
    if (w.memory) {
        schedule(w, memory_check_interval, deadline_kind::memory_check);
    }
    write_requests(w);
}

inline void worker_pool_executor::write_requests(worker& w) {
    switch (process::write_some(w.requests.get(), w.to_send, w.sent)) {
    case process::write_status::would_block: {
        watch& slot = w.watches[static_cast<std::size_t>(stream::requests)];
        slot = watch{&w, stream::requests};
        events_.poller().watch(w.requests.get(), EPOLLOUT, &slot);
        return;
    }
    case process::write_status::closed:
        return; // the worker stopped reading: it is exiting; reap() reports the task
    case process::write_status::done:
        break;
    }
    w.to_send.clear();
    events_.poller().remove(w.requests.get());
}

inline void worker_pool_executor::read_responses(worker& w) {
    std::array<char, 65536> buffer; // NOLINT(cppcoreguidelines-pro-type-member-init)
    const ssize_t got = ::read(w.responses.get(), buffer.data(), buffer.size());
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
        return;
    }
    if (got > 0 && w.current == state::stopping) {
        return; // a late answer from a worker being stopped: its task is already decided
    }
    if (got <= 0) {
        close_stream(w, stream::responses);
        if (w.current == state::stopping) {
            return;
        }
        if (w.reader.pending() > 0) {
            protocol_failure(w, "end of output in the middle of a frame");
            return;
        }
        hung_up(w);
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

inline void worker_pool_executor::on_frame(worker& w, protocol::frame frame) {
    using protocol::frame_type;
    if (w.current == state::starting) {
        if (frame.type != frame_type::hello || frame.payload != protocol::hello_text) {
            protocol_failure(w, "expected the hello '" + std::string(protocol::hello_text) +
                                    "' as the first frame");
            return;
        }
        // The run of failed starts goes on until this worker answers a request: a worker that
        // says hello and then dies or misbehaves has not started either.
        w.current = state::idle;
        w.said_hello = true;
        ++w.generation; // cancels the handshake deadline
        ready_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    if (frame.type == frame_type::hello) {
        protocol_failure(w, "the worker sent a second hello");
        return;
    }
    if (frame.type == frame_type::request) {
        protocol_failure(w, "the worker sent a request frame ('Q'), which only btq sends");
        return;
    }
    if (w.current != state::busy) {
        protocol_failure(
            w, std::string("the worker sent ") +
                   (frame.type == frame_type::result ? "a result ('R')" : "an error ('E')") +
                   " with no request in flight");
        return;
    }
    std::unique_ptr<pending_request> job = std::move(w.task);
    w.current = state::idle;
    ++w.generation; // cancels the task deadline
    if (w.tasks_done == 0) {
        set_start_failures_in_a_row(0); // its first answer: the worker has started
    }
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

inline bool worker_pool_executor::should_recycle(const worker& w) const {
    if (options_.max_tasks_per_worker > 0 && w.tasks_done >= options_.max_tasks_per_worker) {
        return true;
    }
    if (options_.max_resident_bytes > 0) {
        if (const auto sample = process::sample_memory(w.pid)) {
            return sample->resident > options_.max_resident_bytes;
        }
    }
    return false;
}

// ---- the pool and its event thread --------------------------------------------------------------

inline void worker_pool_executor::run_loop() {
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
        bool stop_some = false;
        bool stopping = take_incoming(stop_some);
        while (stop_some) {
            // Answering a stopped request can hand this thread the queue's next one: take it in.
            stop_requested_tasks();
            stopping = take_incoming(stop_some);
        }
        if (auto cancelled = take_cancel_request()) {
            // Requests the loop had taken in but not sent, then those still in transit.
            while (!waiting_.empty()) {
                cancelled->push_back(std::move(waiting_.front()));
                waiting_.pop_front();
            }
            for (auto& job : *cancelled) {
                job->done.set_exception(std::make_exception_ptr(worker_failure(
                    "btq: the request was cancelled (cancel_running) before it started", -1, 0,
                    worker_failure_cause::cancelled)));
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
            deadlines_.push(shutdown_deadline, {slots_.size(), 0}, deadline_kind::restart);
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
        } else if (failing()) {
            if (!waiting_.empty()) {
                fail_all_waiting(last_start_failure_);
                // Those answers may have handed this thread the queue's next requests: look at
                // them now rather than at the next deadline.
                events_.poller().wake();
            }
        } else {
            assign_waiting();
        }
    }
}

inline int worker_pool_executor::wait_for_events(std::array<epoll_event, 64>& events) {
    const bool in_flight = std::any_of(slots_.begin(), slots_.end(), [](const auto& slot) {
        return slot->current == state::busy;
    });
    if (in_flight) {
        const auto until = clock_type::now() + busy_poll;
        do {
            bool woken = false; // new requests: the caller must look at them now
            const int ready = events_.wait(events, 0, &woken);
            if (ready != 0 || woken) {
                return ready;
            }
        } while (clock_type::now() < until);
    }
    return events_.wait(events, deadlines_.timeout_ms());
}

inline void worker_pool_executor::handle(worker& w, stream which) {
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

inline auto worker_pool_executor::take_cancel_request()
    -> std::optional<std::vector<std::unique_ptr<pending_request>>> {
    if (!std::exchange(cancel_seen_, false)) {
        return std::nullopt;
    }
    return std::exchange(cancelled_, {});
}

inline void worker_pool_executor::fail_all_waiting(const std::string& message) {
    while (!waiting_.empty()) {
        std::unique_ptr<pending_request> job = std::move(waiting_.front());
        waiting_.pop_front();
        job->done.set_exception(std::make_exception_ptr(worker_start_error(message)));
    }
}

// ---- a worker's life ----------------------------------------------------------------------------

inline void worker_pool_executor::start_worker(worker& w) {
    ++w.generation;
    w.reader = protocol::frame_reader(options_.max_frame);
    w.tasks_done = 0;
    w.said_hello = false;
    w.stopping_for = stop_reason::none;
    w.output_lines.clear();
    w.error_lines.clear();
    w.memory.reset();
    if (options_.memory_limit) {
        w.memory.emplace();
        w.memory->limit = *options_.memory_limit;
    }
    starts_.fetch_add(1, std::memory_order_relaxed);
    try {
        process::pipe_ends requests = process::make_pipe();
        process::pipe_ends responses = process::make_pipe();
        const std::array<int, 2> channels{requests.read.get(), responses.write.get()};
        process::child_process child = process::spawn(options_.worker, channels);
        w.pid = child.pid;
        w.pidfd = std::move(child.pidfd);
        if (w.memory) {
            w.memory->cgroup = std::move(child.cgroup);
        }
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

inline void worker_pool_executor::start_failed(worker& w, const std::string& why, bool held_task) {
    start_failures_.fetch_add(1, std::memory_order_relaxed);
    set_start_failures_in_a_row(consecutive_start_failures_ + 1);
    close_all(w);
    w.current = state::empty;
    const auto backoff = std::min<std::chrono::milliseconds>(
        options_.restart_backoff *
            (std::int64_t{1} << std::min<std::size_t>(consecutive_start_failures_ - 1, 20)),
        options_.max_restart_backoff);
    ++w.generation;
    schedule(w, backoff, deadline_kind::restart);
    last_start_failure_ = "btq: cannot start a worker: " + why;
    // (While the pool is failing(), the event loop answers every waiting request after this.)
    if (!held_task && !waiting_.empty()) {
        std::unique_ptr<pending_request> job = std::move(waiting_.front());
        waiting_.pop_front();
        job->done.set_exception(std::make_exception_ptr(worker_start_error(last_start_failure_)));
    }
}

inline bool worker_pool_executor::failing() const {
    if (consecutive_start_failures_ <= slots_.size()) {
        return false;
    }
    return std::none_of(slots_.begin(), slots_.end(), [](const auto& slot) {
        return slot->current == state::idle || slot->current == state::busy;
    });
}

inline void worker_pool_executor::hung_up(worker& w) {
    // Either the worker is exiting (its exit closed the descriptor) or it closed it and lives
    // on, unable to answer. Either way it gets no request: SIGKILL, and reap() tells the two
    // apart by how it ended.
    if (w.current == state::starting) {
        w.current = state::stopping;
        w.stopping_for = stop_reason::hang_up;
        w.stop_message = "the worker closed its response descriptor before its hello";
    } else {
        begin_stop(w, stop_reason::hang_up,
                   w.current == state::busy
                       ? "btq: the worker closed its response descriptor while handling the "
                         "request"
                       : "the worker closed its response descriptor while idle");
    }
    ::kill(-w.pid, SIGKILL);
}

inline void worker_pool_executor::protocol_failure(worker& w, const std::string& why) {
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

inline void worker_pool_executor::begin_stop(worker& w, stop_reason reason, std::string message) {
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

inline void worker_pool_executor::reap(worker& w) {
    ::kill(-w.pid, SIGKILL); // whatever is left of its process group
    siginfo_t info{};
    rusage usage{};
    if (!process::try_reap(w.pidfd.get(), info, &usage)) {
        return;
    }
    flush_log(w);
    if (w.current == state::busy || w.current == state::starting) {
        drain_responses(w); // an answer (or a hello) written just before the exit still counts
    }
    const bool exited = info.si_code == CLD_EXITED;
    const std::string how = exited ? "exited with code " + std::to_string(info.si_status)
                                   : "was killed by signal " + std::to_string(info.si_status);
    if (w.stopping_for == stop_reason::hang_up && w.memory && w.memory->cgroup &&
        w.memory->cgroup->oom_killed()) {
        // The OOM killer killed it in its cgroup: the end of file it left was seen before its
        // exit, and the hang-up's SIGKILL came after. Its limit ended it, not the protocol.
        w.stopping_for = stop_reason::none;
    }
    if (w.stopping_for == stop_reason::hang_up) {
        // Only a worker that was still running for hung_up()'s SIGKILL hung up; one that had
        // closed the descriptor by exiting ended on its own, and is reported as such.
        if (info.si_code == CLD_KILLED && info.si_status == SIGKILL) {
            protocol_errors_.fetch_add(1, std::memory_order_relaxed);
        } else {
            w.stopping_for = stop_reason::none;
        }
    }
    if (w.task && w.memory && w.stopping_for == stop_reason::none &&
        process::ended_at_limit(w.memory->limit,
                                process::peak_resident_of(usage, w.memory->largest_resident),
                                *w.memory)) {
        // It died on its own holding a request, close to its limit: the kernel limit refused it
        // memory (an allocation failed, and the program ended over it).
        memory_limit_kills_.fetch_add(1, std::memory_order_relaxed);
        w.stopping_for = stop_reason::memory_limit;
        w.stop_message = "btq: worker request '" + w.task->request.operation +
                         "' reached the worker's memory limit of " +
                         std::to_string(w.memory->limit) +
                         (w.memory->cgroup ? " bytes (the kernel's OOM killer stopped it)"
                                           : " bytes (the kernel refused it memory)");
    }
    // A worker that ends of itself or for breaking the protocol before it has answered a
    // request has failed to start, hello or not.
    const bool failed_start =
        w.tasks_done == 0 &&
        (!w.said_hello || w.stopping_for == stop_reason::none ||
         w.stopping_for == stop_reason::protocol || w.stopping_for == stop_reason::hang_up);
    const state was = w.current;
    if (was == state::idle || was == state::busy) {
        ready_.fetch_sub(1, std::memory_order_relaxed);
    }
    const bool held_task = w.task != nullptr;
    w.memory.reset(); // its cgroup is removed before its task is answered
    if (w.task) {
        std::unique_ptr<pending_request> job = std::move(w.task);
        std::exception_ptr error;
        switch (w.stopping_for) {
        case stop_reason::timeout:
            error = std::make_exception_ptr(task_timeout(w.stop_message));
            break;
        case stop_reason::protocol:
        case stop_reason::hang_up:
        case stop_reason::shutdown:
        case stop_reason::cancel:
        case stop_reason::requested:
        case stop_reason::memory_limit:
            error = std::make_exception_ptr(
                worker_failure(w.stop_message + "; the worker " + how, exited ? info.si_status : -1,
                               exited ? 0 : info.si_status, failure_cause_of(w.stopping_for)));
            break;
        default:
            crashes_.fetch_add(1, std::memory_order_relaxed);
            error = std::make_exception_ptr(worker_failure(
                "btq: the worker " + how +
                    (failed_start ? " after its hello, while handling the request (its first)"
                                  : " while handling the request"),
                exited ? info.si_status : -1, exited ? 0 : info.si_status));
            break;
        }
        job->done.set_exception(std::move(error));
    }
    close_all(w);
    w.current = state::empty;
    if (!w.said_hello) {
        start_failed(w, w.stopping_for == stop_reason::protocol ||
                                w.stopping_for == stop_reason::hang_up
                            ? w.stop_message
                            : "the worker " + how + " before its hello");
        return;
    }
    if (failed_start) {
        constexpr std::string_view when = " after its hello, before answering a request";
        std::string why;
        switch (w.stopping_for) {
        case stop_reason::protocol:
            why = w.stop_message + " (" + std::string(when.substr(1)) + "; the worker " + how + ")";
            break;
        case stop_reason::hang_up:
            why = "the worker closed its response descriptor" + std::string(when);
            break;
        default:
            why = "the worker " + how + std::string(when);
            break;
        }
        start_failed(w, why, held_task);
        return;
    }
    if (!events_.stopping()) {
        // Restarted after this batch of events: later events of the batch may still name
        // the old process's descriptors, and must find them closed, not reused.
        ++w.generation;
        schedule(w, clock_type::duration::zero(), deadline_kind::restart);
    }
}

inline void worker_pool_executor::drain_responses(worker& w) {
    std::array<char, 65536> buffer; // NOLINT(cppcoreguidelines-pro-type-member-init)
    const state was = w.current;
    while (w.responses && w.current == was) {
        const ssize_t got = ::read(w.responses.get(), buffer.data(), buffer.size());
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return;
        }
        w.reader.feed(buffer.data(), static_cast<std::size_t>(got));
        try {
            while (w.current == was) {
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

// ---- output and deadlines -----------------------------------------------------------------------

inline void worker_pool_executor::read_log(worker& w, stream which) {
    std::array<char, 16384> buffer; // NOLINT(cppcoreguidelines-pro-type-member-init)
    const ssize_t got = ::read(descriptor(w, which).get(), buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) {
        return;
    }
    process::line_splitter& lines = which == stream::output ? w.output_lines : w.error_lines;
    const auto log = [this, &w](std::string_view line) { options_.log(w.pid, line); };
    if (got <= 0) {
        close_stream(w, which);
        lines.flush(log);
        return;
    }
    lines.feed(std::string_view(buffer.data(), static_cast<std::size_t>(got)), log);
}

inline void worker_pool_executor::flush_log(worker& w) const {
    const auto log = [this, &w](std::string_view line) { options_.log(w.pid, line); };
    w.output_lines.flush(log);
    w.error_lines.flush(log);
}

inline void worker_pool_executor::run_due_deadlines() {
    deadlines_.pop_due(clock_type::now(), [this](deadline_key key, deadline_kind kind) {
        if (key.slot >= slots_.size()) {
            return; // the shutdown grace: only wakes the loop
        }
        worker& w = *slots_[key.slot];
        const bool current = key.generation == w.generation;
        switch (kind) {
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
                const std::string message = "btq: worker request '" + w.task->request.operation +
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
            if (current && w.current == state::empty && !events_.stopping()) {
                start_worker(w);
            }
            break;
        case deadline_kind::memory_check:
            if (current && w.current == state::busy) {
                if (w.memory->check(w.pid)) {
                    memory_limit_kills_.fetch_add(1, std::memory_order_relaxed);
                    begin_stop(w, stop_reason::memory_limit,
                               "btq: worker request '" + w.task->request.operation +
                                   "' went above the worker's memory limit of " +
                                   std::to_string(w.memory->limit) + " bytes (resident " +
                                   std::to_string(w.memory->resident_at_stop) + ")");
                    ::kill(-w.pid, SIGKILL); // no grace: it would go on allocating
                } else {
                    schedule(w, memory_check_interval, deadline_kind::memory_check);
                }
            }
            break;
        }
    });
}

} // namespace btq
